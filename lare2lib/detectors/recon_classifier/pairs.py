"""The training pairs: real images (label 0) against their reconstructions (label 1).

:func:`reconstruct_folder` writes a folder's pairs to disk (resumable, with a ``pairs.json``
manifest); :class:`ReconPairs` serves world sets or such a folder as a dataset; :func:`is_val`
splits a folder's images by a hash of their ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lare2lib.data import transforms
from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.recon_classifier.pixels import from_pil, to_pil
from lare2lib.detectors.recon_classifier.reconstruct import downsampling_factor, reconstruct_images

__all__ = ["PAIRS_FILE", "pair_paths", "reconstruct_folder", "ReconPairs", "is_val"]

PAIRS_FILE = "pairs.json"
"""Manifest :func:`reconstruct_folder` writes in its output folder."""


def _write_png(image: torch.Tensor, path: Path, fmt: str, quality: int) -> None:
    """One image through the shared codec (``reencode``), saved losslessly, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = to_pil(image)
    if fmt != "png":
        pil = transforms.reencode(pil, fmt, quality=quality)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pil.save(tmp, format="PNG")
    os.replace(tmp, path)


def pair_paths(out: Path, image_id: str) -> tuple[Path, Path]:
    """``(out/real/<id>.png, out/recon/<id>.png)``: where the pair of ``image_id`` is stored."""
    return out / "real" / f"{image_id}.png", out / "recon" / f"{image_id}.png"


def _fingerprint(path: Path) -> list[int]:
    """(bytes, mtime in ns) of a source file: a pair is redone when its source changed."""
    status = Path(path).stat()
    return [status.st_size, status.st_mtime_ns]


def _written_fingerprints(out: Path, settings: dict[str, Any]) -> dict[str, list[int]]:
    """The source fingerprints of the pairs a previous run wrote with the same settings (none
    when it used other settings, another source folder, or predates the fingerprints)."""
    try:
        manifest = json.loads((out / PAIRS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if any(manifest.get(key) != value for key, value in settings.items()):
        return {}
    return {key: list(value) for key, value in manifest.get("files", {}).items()}


def reconstruct_folder(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    ae: nn.Module,
    *,
    ae_name: str = "",
    seed: int = 0,
    batch_size: int = 16,
    chunk: int = 256,
    reencode: str = "png",
    jpeg_quality: int = 96,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out/real/<id>.png`` (cut to the multiple) and ``out/recon/<id>.png`` for a folder.

    Resumable: pairs already written from the same source file (size and modification time, as
    ``pairs.json`` records them) with the same settings are skipped; others are redone. Images
    are decoded ``chunk`` at a time in size order (so buckets fill), never all at once.
    Unreadable files are listed under ``bad`` in ``out/pairs.json``, which records every pair
    (id, size) and the settings.
    ``reencode="jpeg"`` passes **both** classes through one JPEG round trip at ``jpeg_quality``
    (GenImage's reals are JPEG: without it a detector could learn "JPEG ⇒ real").
    """
    from lare2lib.data.images import BadImageError, load_image
    from lare2lib.signals.extract import read_records

    out = Path(out)
    records, bad = read_records(str(source))
    multiple = downsampling_factor(ae)
    records = sorted(records, key=lambda r: ((r.height or 0) // multiple, (r.width or 0) // multiple, r.image_id))
    settings = {"source": str(Path(source).resolve()), "seed": seed, "multiple": multiple,
                "reencode": reencode, "jpeg_quality": jpeg_quality}  # what a pair depends on
    files = {r.image_id: _fingerprint(r.path) for r in records}
    written = _written_fingerprints(out, settings)
    todo = [r for r in records if written.get(r.image_id) != files[r.image_id]
            or not all(p.is_file() for p in pair_paths(out, r.image_id))]
    for start in tqdm(range(0, len(todo), chunk), desc=f"pairs {ae_name or 'ae'}", disable=not progress):
        images, ids = [], []
        for record in todo[start:start + chunk]:
            try:
                images.append(from_pil(load_image(record.path)))
                ids.append(record.image_id)
            except BadImageError as error:
                bad[record.image_id] = f"{error.reason}: {error.message}"
        real, recon = reconstruct_images(ae, images, ids, seed=seed, batch_size=batch_size)
        for image_id, a, b in zip(ids, real, recon):
            real_path, recon_path = pair_paths(out, image_id)
            _write_png(a, real_path, reencode, jpeg_quality)
            _write_png(b, recon_path, reencode, jpeg_quality)
    pairs = [r.image_id for r in records if r.image_id not in bad and pair_paths(out, r.image_id)[1].is_file()]
    manifest = {**settings, "autoencoder": ae_name, "pairs": pairs, "bad": bad,
                "files": {i: files[i] for i in pairs}}
    tmp = out / f".{PAIRS_FILE}.{os.getpid()}.tmp"
    out.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, out / PAIRS_FILE)
    return manifest



class ReconPairs(torch.utils.data.Dataset):
    """Real (label 0) and reconstructed (label 1) uint8 images as ``{"image", "label"}`` items.

    ``window=None``: images are returned whole (they must share one size, as a world set does),
    and :class:`ReconClassifier` takes the random training crop itself, from the random state
    :func:`lare2lib.detectors.train.fit` seeds per step, so a resumed run sees the same crops. ``window=N``
    (folders of mixed sizes): each image is first centre-cropped to N × N (smaller ones follow
    ``small_image_policy``) so a batch stacks; the random crop is then taken inside that window.
    """

    def __init__(self, real: Sequence[torch.Tensor] | Sequence[Path],
                 recon: Sequence[torch.Tensor] | Sequence[Path], *, window: int | None = None,
                 small_image_policy: transforms.SmallImagePolicy = "reflect"):
        self.items = list(real) + list(recon)
        self.labels = torch.cat([torch.zeros(len(real), dtype=torch.long),
                                 torch.ones(len(recon), dtype=torch.long)])
        self.window = window
        self.small_image_policy = small_image_policy

    @classmethod
    def from_sets(cls, real: ImageSet, recon: ImageSet, **kwargs: Any) -> "ReconPairs":
        return cls(list(real.pixels), list(recon.pixels), **kwargs)

    @classmethod
    def from_folder(cls, pairs_dir: str | os.PathLike[str], ids: Sequence[str] | None = None,
                    **kwargs: Any) -> "ReconPairs":
        """Pairs written by :func:`reconstruct_folder` (all of them, or ``ids``)."""
        pairs_dir = Path(pairs_dir)
        manifest = json.loads((pairs_dir / PAIRS_FILE).read_text())
        ids = manifest["pairs"] if ids is None else list(ids)
        paths = [pair_paths(pairs_dir, image_id) for image_id in ids]
        kwargs.setdefault("window", 512)
        return cls([p[0] for p in paths], [p[1] for p in paths], **kwargs)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        if isinstance(item, Path):
            from lare2lib.data.images import load_image

            item = from_pil(load_image(item))
        if self.window is not None:
            item = from_pil(transforms.center_crop(to_pil(item), self.window, self.small_image_policy))
        return {"image": item, "label": self.labels[index]}



def _position(image_id: str) -> float:
    digest = hashlib.sha256(image_id.encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2 ** 64


def is_val(image_id: str, fraction: float) -> bool:
    """Whether ``image_id`` falls in the validation split: a hash of the id, not its position,
    so a folder that grows keeps every old image on its side of the split."""
    return _position(image_id) < fraction


def split_ids(ids: Sequence[str], fraction: float) -> tuple[list[str], list[str]]:
    """``(train, val)`` ids by :func:`is_val`; when that holds none out of two or more images,
    the one with the lowest hash is validation (a small folder still gets model selection)."""
    val = [i for i in ids if is_val(i, fraction)]
    if not val and len(ids) > 1 and fraction > 0:
        val = [min(ids, key=_position)]
    held = set(val)
    return [i for i in ids if i not in held], val

