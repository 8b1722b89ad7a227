"""Notebook 05's level sets: windows cut from photos at several resolutions, and their reconstructions.

From the shipped photo corpus (:func:`lare2lib.world.photos.find_photos`, split by photo as in the world)
or from any folder of large images (``full``):

* **level sets**: for each *level* (``"96"``: the photo downscaled, antialiased, to a 96 px short
  side; ``"native"``: its own pixels, no resampling) square windows of one side
  (:attr:`ResolutionConfig.window`) at seeded random positions, per split, and their
  reconstructions through one autoencoder at that native size (:func:`lare2lib.world.autoencoder_training.reconstruct`:
  the posterior sample is drawn per image id);
* a **"larger than seen"** test: native windows of :attr:`ResolutionConfig.large_window` (4× the
  training side) from the largest test photos;
* the native windows of several sides that LaRE's resize study reads (:meth:`ResolutionData.sided`).

Every set is one :class:`lare2lib.data.imagesets.ImageSet` safetensors file under a folder keyed by
the photos, the settings, the seed and the autoencoder: computed once, then read back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lare2lib.data.imagesets import ImageSet

__all__ = ["NATIVE", "WINDOW_STREAM", "ResolutionConfig", "SourcePhoto", "world_photos", "folder_photos",
           "level_image", "cut_windows", "ResolutionData", "window_counts"]

NATIVE = "native"
"""The level whose windows are the photo's own pixels (no resampling)."""
WINDOW_STREAM = "resolution-windows"
""":mod:`lare2lib.core.rng` stream of the window positions of a (photo, level, split)."""


@dataclass(frozen=True)
class ResolutionConfig:
    """Which sets are cut from the photos (defaults: the mini world's 64 px images)."""

    window: int = 64
    """Side of every level image (the world's image size; the classifier crops inside it)."""
    levels: tuple[str, ...] = ("96", "192", NATIVE)
    """Short side (px) the photo is downscaled to before windows are cut, or ``"native"``.
    A photo smaller than a level is used as it is (never upscaled); :meth:`ResolutionData.level_info` says how many."""
    train_windows: int = 512
    """Training windows per level, spread evenly over the training photos."""
    val_windows: int = 96
    """Validation windows per level."""
    test_windows: int = 256
    """Test windows per level."""
    large_window: int = 256
    """Side of the "larger than seen" native test images (4× the training side)."""
    large_photos: int = 4
    """How many of the largest test photos (by pixel count) give the large test images."""
    large_windows: int = 64
    """Large test images in all (spread over ``large_photos``)."""
    lare_sides: tuple[int, ...] = (32, 64, 128, 256)
    """Image sides of the LaRE resize study (native windows of the test photos)."""
    lare_windows: int = 128
    """Images per side in the LaRE study (each against its reconstruction); the sides equal to
    ``window`` and ``large_window`` reuse the native test level and the large test images."""


@dataclass(frozen=True)
class SourcePhoto:
    """One source photo: where it is, which split it belongs to, its class for LaRE's prompt."""

    photo_id: str
    path: Path
    split: str
    class_index: int
    width: int
    height: int


def world_photos(max_photos: int = 0) -> list[SourcePhoto]:
    """The mini world's corpus photos with their fixed splits (:func:`lare2lib.world.photos.find_photos`)."""
    from lare2lib.world.photos import CLASS_NAMES, find_photos

    return [SourcePhoto(p.photo_id, p.path, p.split, CLASS_NAMES.index(p.category), p.width, p.height)
            for p in find_photos(max_photos)]


def _hash_unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") / 2 ** 64


def folder_photos(folder: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.2) -> list[SourcePhoto]:
    """Every readable image of a folder (recursively), split by a hash of its id (``full``).

    Unreadable files are skipped with :func:`lare2lib.data.manifests.scan_folder`'s warning.
    """
    from lare2lib.data.manifests import scan_folder

    photos = []
    for record in scan_folder(folder):
        u = _hash_unit(record.image_id)
        split = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
        photos.append(SourcePhoto(record.image_id, Path(record.path), split, 0, record.width, record.height))
    if not photos:
        raise ValueError(f"no readable images in {folder}")
    return photos


def level_image(photo: SourcePhoto, level: str) -> Image.Image:
    """The RGB photo at a level: downscaled (Lanczos, antialiased) to the level's short side,
    or untouched for ``"native"``; never enlarged."""
    from lare2lib.world.photos import downscaled

    if level == NATIVE:
        with Image.open(photo.path) as image:
            return image.convert("RGB").copy()
    return downscaled(photo, int(level))


def cut_windows(image: Image.Image, side: int, count: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``count`` uint8 ``(3, side, side)`` windows at uniform positions (none if the image is smaller)."""
    if image.width < side or image.height < side or count <= 0:
        return []
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    tops = torch.randint(0, image.height - side + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(0, image.width - side + 1, (count,), generator=generator).tolist()
    return [array[:, t:t + side, l:l + side].contiguous() for t, l in zip(tops, lefts)]


def _windows_set(name: str, photos: Sequence[SourcePhoto], level: str, side: int, total: int,
                 seed: int) -> ImageSet:
    """``total`` windows spread evenly over ``photos`` (ids ``"<photo>@<level>#<k>"``)."""
    from lare2lib.core.rng import image_generator

    per_photo = math.ceil(total / max(1, len(photos)))
    pixels, ids, classes = [], [], []
    for photo in photos:
        image = level_image(photo, level)
        generator = image_generator(seed, f"{photo.photo_id}@{level}:{side}", WINDOW_STREAM)
        for k, window in enumerate(cut_windows(image, side, per_photo, generator)):
            pixels.append(window)
            ids.append(f"{photo.photo_id}@{level}:{side}#{k}")
            classes.append(photo.class_index)
    if not pixels:
        raise ValueError(f"set '{name}': no photo is at least {side} px on both sides at level {level}")
    return ImageSet(name, torch.stack(pixels), torch.tensor(classes), ids,
                    {"level": level, "side": side, "photos": [p.photo_id for p in photos]})


class ResolutionData:
    """Level sets, large test images and LaRE-study sets, each with its reconstructions, cached.

    ``autoencoder`` is the reconstruction model (mini: the world's ``kl_ae``); ``ae_key`` names
    it in the cache key (e.g. the world folder and the model name), so another model never reads
    these sets.
    """

    def __init__(self, photos: Sequence[SourcePhoto], autoencoder, root: str | Path,
                 config: ResolutionConfig = ResolutionConfig(), *, seed: int = 0, ae_key: str = "",
                 progress: bool = False):
        self.photos = list(photos)
        self.autoencoder = autoencoder
        self.config = config
        self.seed = seed
        self.progress = progress
        # The folder is keyed by what every set depends on; each file name carries the rest of
        # its own recipe, so changing one count rebuilds only the sets it defines.
        payload = json.dumps({"photos": [(p.photo_id, p.split, p.width, p.height) for p in self.photos],
                              "seed": seed, "ae": ae_key, "version": 1}, sort_keys=True)
        self.folder = Path(root) / hashlib.sha256(payload.encode()).hexdigest()[:12]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, ImageSet] = {}

    def split_photos(self, split: str) -> list[SourcePhoto]:
        """The photos of ``split`` (raises when there are none)."""
        chosen = [p for p in self.photos if p.split == split]
        if not chosen:
            raise ValueError(f"no photo in split '{split}'")
        return chosen

    def _cached(self, name: str, build: Callable[[], ImageSet]) -> ImageSet:
        if name not in self._cache:
            path = self.folder / f"{name}.safetensors"
            if not path.is_file():
                build().save(path)
            self._cache[name] = ImageSet.load(path)
        return self._cache[name]

    def _recon_of(self, name: str, real: ImageSet) -> ImageSet:
        from lare2lib.world.autoencoder_training import reconstruct

        def build() -> ImageSet:
            pixels = reconstruct(self.autoencoder, real.pixels, self.seed, real.ids, batch_size=16,
                                 progress=self.progress)
            return ImageSet(f"recon_{real.name}", pixels, real.class_index.clone(),
                            [f"{i}@recon" for i in real.ids], dict(real.meta))

        return self._cached(f"recon_{name}", build)

    def _level_name(self, level: str, split: str) -> str:
        total = {"train": self.config.train_windows, "val": self.config.val_windows,
                 "test": self.config.test_windows}[split]
        return f"{level}_{split}_{self.config.window}px_{total}"

    def real(self, level: str, split: str) -> ImageSet:
        """Windows of side ``window`` cut from the split's photos at ``level``."""
        name = self._level_name(level, split)
        total = int(name.rsplit("_", 1)[1])
        return self._cached(name, lambda: _windows_set(name, self.split_photos(split), level,
                                                       self.config.window, total, self.seed))

    def recon(self, level: str, split: str) -> ImageSet:
        """The reconstructions of :meth:`real` ``(level, split)``, in the same order."""
        return self._recon_of(self._level_name(level, split), self.real(level, split))

    def largest_test_photos(self) -> list[SourcePhoto]:
        """The ``large_photos`` largest test photos that hold a ``large_window`` square."""
        side = self.config.large_window
        fitting = [p for p in self.split_photos("test") if min(p.width, p.height) >= side]
        return sorted(fitting, key=lambda p: (-p.width * p.height, p.photo_id))[: self.config.large_photos]

    def large(self) -> tuple[ImageSet, ImageSet]:
        """(native ``large_window`` windows of the largest test photos, their reconstructions)."""
        name = f"large_{self.config.large_window}px_{self.config.large_photos}p_{self.config.large_windows}"
        real = self._cached(name, lambda: _windows_set(name, self.largest_test_photos(), NATIVE,
                                                       self.config.large_window, self.config.large_windows,
                                                       self.seed))
        return real, self._recon_of(name, real)

    def sided(self, side: int) -> tuple[ImageSet, ImageSet]:
        """(native windows of ``side`` from the test photos, their reconstructions): the LaRE study.

        The sides of sets that exist anyway are those sets: ``window`` is the native test level,
        ``large_window`` the large test images (no second reconstruction of the same content).
        """
        if side == self.config.window:
            return self.real(NATIVE, "test"), self.recon(NATIVE, "test")
        if side == self.config.large_window:
            return self.large()
        name = f"side_{side}px_{self.config.lare_windows}"
        real = self._cached(name, lambda: _windows_set(name, self.split_photos("test"), NATIVE, side,
                                                       self.config.lare_windows, self.seed))
        return real, self._recon_of(name, real)

    def level_info(self) -> dict[str, dict[str, Any]]:
        """Per level: mean downscale factor (native px per level px) and photos used unscaled."""
        info = {}
        for level in self.config.levels:
            factors = [1.0 if level == NATIVE else max(1.0, min(p.width, p.height) / int(level))
                       for p in self.photos]
            info[level] = {"mean_downscale": float(np.mean(factors)),
                           "photos_unscaled": int(sum(f == 1.0 for f in factors))}
        return info


def window_counts(data: ResolutionData) -> dict[str, dict[str, int]]:
    """Windows per level and split (``{level: {"train", "val", "test": count}}``), as cut."""
    return {level: {split: len(data.real(level, split)) for split in ("train", "val", "test")}
            for level in data.config.levels}
