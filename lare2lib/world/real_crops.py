"""The mini world's real crops: cut once from the shipped photo corpus per split, cached under a key of what they depend on.

Derived (``<data_dir>/world/<recipe>-<crops key>/``, git-ignored)::

    real_{train,val,test}.safetensors          uint8 crops (see :mod:`lare2lib.data.imagesets`)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lare2lib.core import paths
from lare2lib.core.profiles import Profile, WorldConfig
from lare2lib.data.imagesets import ImageSet
from lare2lib.world.photos import Photo, corpus_summary, find_photos, make_crops

__all__ = ["crops_key", "world_dir", "real_sets"]


def _crop_fields(world: WorldConfig) -> dict:
    keep = ("image_size", "photo_short_side", "crop_min", "crop_max", "crops_per_photo_train",
            "crops_per_photo_heldout", "max_photos")
    return {k: getattr(world, k) for k in keep}


def crops_key(profile: Profile, photos: list[Photo]) -> str:
    """Hash of everything the real crops depend on: crop settings, seed, and each photo's bytes and split."""
    corpus = [[p.photo_id, p.sha256, p.split, p.category] for p in photos]
    payload = json.dumps({"crops": _crop_fields(profile.world), "seed": profile.seed, "photos": corpus},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def world_dir(profile: Profile, key: str) -> Path:
    return paths.data_dir() / "world" / f"{profile.world.recipe}-{key}"


def real_sets(profile: Profile, progress: bool = True) -> tuple[dict[str, ImageSet], dict]:
    """The real crops per split (cached), and a report of the photos behind them."""
    photos = find_photos(profile.world.max_photos)
    key = crops_key(profile, photos)
    folder = world_dir(profile, key)
    files = {split: folder / f"real_{split}.safetensors" for split in ("train", "val", "test")}
    if all(f.is_file() for f in files.values()):
        sets = {split: ImageSet.load(f) for split, f in files.items()}
    else:
        w = profile.world
        sets = make_crops(photos, image_size=w.image_size, short_side=w.photo_short_side, crop_min=w.crop_min,
                          crop_max=w.crop_max, seed=profile.seed,
                          per_photo={"train": w.crops_per_photo_train, "val": w.crops_per_photo_heldout,
                                     "test": w.crops_per_photo_heldout})
        for split, image_set in sets.items():
            image_set.meta.update({"crops_key": key})
            image_set.save(files[split])
    summary = corpus_summary(photos)
    info = {
        "crops_key": key,
        "folder": str(folder),
        "photos": [{"id": p.photo_id, "category": p.category, "split": p.split, "package": p.package,
                    "author": p.author, "licence": p.licence, "width": p.width, "height": p.height}
                   for p in photos],
        **summary,
        "summary": (f"{summary['count']} shipped photos (" +
                    ", ".join(f"{n} {s}" for s, n in summary["per_split"].items()) + ")"),
    }
    return sets, info
