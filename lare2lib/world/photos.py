"""The photo corpus that ships with the project, cut into the mini world's real image sets.

No dataset host is reachable, so the mini world's "real" class is a corpus of photographs
committed under ``lare2lib/world/corpus/``: licence-checked photos from Debian and PyPI packages
(OpenCV samples, GCompris, desktop wallpapers, scikit-image, scikit-learn, matplotlib), stored
with their short side at most 512 px. ``corpus/manifest.json`` holds, per file, its source
package, original path, author, licence and sha256; ``corpus/LICENSES.md`` is the attribution
(``tools/photo_corpus/`` rebuilds both). Nothing is looked up on the machine, so every clone
builds the identical world whichever OS packages are installed.

Each photo carries

* a **category** (the class the latent UNet is conditioned on, standing in for ImageNet's
  "a photo of a {class}" in LaRE), and
* a fixed **split**. Splitting is by photo, never by crop, so no photo has crops on both sides;
  photos of one scene (stereo pairs, neighbouring shots) share a ``group`` and a split.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lare2lib.data.imagesets import ImageSet

__all__ = [
    "CLASS_NAMES",
    "SPLITS",
    "CorpusError",
    "Photo",
    "corpus_dir",
    "load_corpus",
    "find_photos",
    "corpus_summary",
    "make_crops",
]

CLASS_NAMES: tuple[str, ...] = ("animal", "object", "person", "plant", "scene")
"""Photo categories; class index ``i`` in the world's tensors is ``CLASS_NAMES[i]``."""

SPLITS: tuple[str, ...] = ("train", "val", "test")


class CorpusError(RuntimeError):
    """The shipped corpus is missing, altered or inconsistent with its manifest."""


@dataclass(frozen=True)
class Photo:
    """One corpus photo: where it is, what it shows, which split it belongs to and whose it is."""

    photo_id: str
    """Its path inside the corpus (``<category>/<source>-<name>.jpg``); crops are ``<photo_id>#<k>``."""
    path: Path
    category: str
    """One of :data:`CLASS_NAMES`."""
    split: str
    """``train``, ``val`` or ``test``."""
    group: str
    """Photos of one scene share a group (and a split); empty for most."""
    width: int
    height: int
    package: str
    """Source package (Debian or PyPI) the original came from."""
    author: str
    licence: str
    sha256: str
    """Of the stored file; checked when the corpus is loaded."""


def corpus_dir() -> Path:
    return Path(__file__).parent / "corpus"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _photo(entry: dict, root: Path) -> Photo:
    path = root / entry["file"]
    if not path.is_file():
        raise CorpusError(f"corpus photo missing: {path} (listed in {root / 'manifest.json'}); "
                          "restore it with `git checkout -- lare2lib/world/corpus`")
    if _sha256(path) != entry["sha256"]:
        raise CorpusError(f"corpus photo altered: {path} does not match its sha256 in the manifest; "
                          "restore it with `git checkout -- lare2lib/world/corpus`, or rebuild the "
                          "corpus and its manifest with tools/photo_corpus/build.py")
    if entry["category"] not in CLASS_NAMES or entry["split"] not in SPLITS:
        raise CorpusError(f"{entry['file']}: category {entry['category']!r} / split {entry['split']!r} "
                          f"not in {CLASS_NAMES} / {SPLITS}")
    return Photo(entry["file"], path, entry["category"], entry["split"], entry.get("group", ""),
                 entry["width"], entry["height"], entry["source_package"], entry["author"],
                 entry["licence"], entry["sha256"])


@lru_cache(maxsize=4)
def load_corpus(root: Path | None = None) -> tuple[Photo, ...]:
    """Every photo of the manifest, in manifest order, each checked against its sha256.

    Raises :class:`CorpusError` naming the file when one is missing or altered: a world built
    from a silently different corpus would not be the world everyone else has.
    """
    root = Path(root) if root is not None else corpus_dir()
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise CorpusError(f"photo corpus manifest not found: {manifest}; the corpus ships with the "
                          "project (reinstall it, or `git checkout -- lare2lib/world/corpus`)")
    return tuple(_photo(entry, root) for entry in json.loads(manifest.read_text()))


def _category_round_robin(photos: list[Photo]) -> list[Photo]:
    """Photos reordered animal, object, person, … , animal, …, so any prefix spans the categories."""
    by_category = {name: [p for p in photos if p.category == name] for name in CLASS_NAMES}
    ordered = []
    for rank in range(max(map(len, by_category.values()), default=0)):
        ordered += [group[rank] for group in by_category.values() if rank < len(group)]
    return ordered


def _split_quotas(sizes: dict[str, int], max_photos: int) -> dict[str, int]:
    """Photos per split for a subset of ``max_photos``: proportional, at least one per split."""
    if max_photos < len(SPLITS):
        raise ValueError(f"max_photos={max_photos}: need at least {len(SPLITS)} (one photo per split)")
    total = sum(sizes.values())
    quotas = {s: max(1, math.floor(max_photos * sizes[s] / total)) for s in SPLITS}
    while sum(quotas.values()) < max_photos:  # hand the remainder to the most under-served split
        quotas[max(SPLITS, key=lambda s: sizes[s] / quotas[s])] += 1
    while sum(quotas.values()) > max_photos:
        quotas[max(SPLITS, key=lambda s: quotas[s])] -= 1
    return quotas


def find_photos(max_photos: int = 0) -> list[Photo]:
    """The corpus photos the world is cut from (all of them unless ``max_photos``).

    ``max_photos`` (the smoke profile's small world) keeps a subset that still has every split,
    in proportion to the splits' sizes, and within each split spans the categories first.
    """
    photos = list(load_corpus())
    if not max_photos or max_photos >= len(photos):
        return photos
    by_split = {s: _category_round_robin([p for p in photos if p.split == s]) for s in SPLITS}
    quotas = _split_quotas({s: len(by_split[s]) for s in SPLITS}, max_photos)
    keep = {p.photo_id for s in SPLITS for p in by_split[s][:quotas[s]]}
    return [p for p in photos if p.photo_id in keep]


def corpus_summary(photos: list[Photo]) -> dict:
    """Counts per split, category and source package, for the notebook's environment section."""
    def count(values) -> dict[str, int]:
        return dict(sorted(Counter(values).items()))

    return {"count": len(photos), "per_split": count(p.split for p in photos),
            "per_category": count(p.category for p in photos), "per_package": count(p.package for p in photos),
            "test_categories": sorted({p.category for p in photos if p.split == "test"})}


# -- crops --------------------------------------------------------------------------------


def _rng_for(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def downscaled(photo: Photo, short_side: int) -> Image.Image:
    """RGB photo with its short side reduced to ``short_side`` (never enlarged).

    The corpus stores photos with short sides of 172 to 512 px; a smaller ``short_side`` sets
    the scale the crops are cut at. Downscaling is antialiased (PIL's resize filters scale with the
    reduction factor).
    """
    with Image.open(photo.path) as image:
        image = image.convert("RGB")
        scale = short_side / min(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.Resampling.LANCZOS)
        return image.copy()


def crop_boxes(width: int, height: int, count: int, crop_min: int, crop_max: int,
               rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """``count`` square boxes with log-uniform sides in [crop_min, crop_max] (clipped to the image)."""
    largest = min(crop_max, width, height)
    smallest = min(crop_min, largest)
    boxes = []
    for _ in range(count):
        side = int(round(math.exp(rng.uniform(math.log(smallest), math.log(largest)))))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        boxes.append((left, top, left + side, top + side))
    return boxes


def make_crops(photos: list[Photo], *, image_size: int, short_side: int, crop_min: int,
               crop_max: int, per_photo: dict[str, int], seed: int) -> dict[str, ImageSet]:
    """Cut every photo into multi-scale square crops resized to ``image_size``.

    Returns one :class:`ImageSet` per split (``train``/``val``/``test``), uint8, with the class
    index of the photo's category and ids ``"<photo id>#<k>"``. Crop positions come from a
    generator seeded by (seed, photo id), so a photo's crops do not change when other photos
    appear or disappear.
    """
    per_split: dict[str, list] = {"train": [], "val": [], "test": []}
    for photo in photos:
        image = downscaled(photo, short_side)
        rng = _rng_for(seed, photo.photo_id)
        count = per_photo[photo.split]
        for k, box in enumerate(crop_boxes(image.width, image.height, count, crop_min, crop_max, rng)):
            crop = image.crop(box).resize((image_size, image_size), Image.Resampling.LANCZOS)
            per_split[photo.split].append(
                (f"{photo.photo_id}#{k}", np.asarray(crop), CLASS_NAMES.index(photo.category))
            )
    return {split: _to_imageset(f"real_{split}", rows) for split, rows in per_split.items()}


def _to_imageset(name: str, rows: list) -> ImageSet:
    if not rows:
        raise ValueError(f"no photos for set '{name}': every split needs at least one photo (see find_photos)")
    ids, arrays, labels = zip(*rows)
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N,3,H,W) uint8
    return ImageSet(name=name, pixels=pixels, class_index=torch.tensor(labels), ids=list(ids))
