"""Training resolution of reconstruction detectors, and LaRE's fixed resize (notebook 05).

Vesnin et al. train on LAION images at whatever resolution they come in and list "effect of
training resolution" and "images above 512²" as open. A crop-based detector always sees a
``crop``-sized patch; what the resolution of an image changes is **what is in that patch**: a
photo downscaled to a 96 px short side packs a whole scene into the patch, sharp to the pixel
(antialiased resampling), while the same photo at its native resolution shows a small,
smooth region carrying the camera's and the JPEG codec's own pixel-level traces. Reconstruction
removes less from smooth content, so the real/reconstruction gap shrinks as resolution grows.

This module builds, from the package photos (:func:`lare2lib.world.photos.find_photos`, split by photo
as in the world) or from any folder of large images (``full``):

* **level sets**: for each *level* (``"96"``: the photo downscaled, antialiased, to a 96 px short
  side; ``"native"``: its own pixels, no resampling) square windows of one side
  (:attr:`ResolutionConfig.window`) at seeded random positions, per split, and their
  reconstructions through one autoencoder at that native size (:func:`lare2lib.world.recipes.reconstruct`:
  the posterior sample is drawn per image id);
* a **"larger than seen"** test: native windows of :attr:`ResolutionConfig.large_window` (4× the
  training side) from the largest test photos, scored with 1 and 10 random crops;
* the **training-resolution × test-resolution matrix** of :class:`lare2lib.detectors.recon_classifier.ReconClassifier`
  detectors, one per training level (:func:`run_resolution_matrix`);
* **LaRE's squash resize**: LaRE resizes every image, whatever its size, to one side (256 in SD,
  64 in the mini world) before encoding. :func:`lare_resize_study` measures the AUC of
  ``-mean LaRE`` for reconstructions against reals as a function of the input side, with the
  released squash and with the map computed at the native size (no resize).

Every set is one :class:`lare2lib.data.imagesets.ImageSet` safetensors file under a folder keyed by
the photos, the settings, the seed and the autoencoder: computed once, then read back.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lare2lib.data.imagesets import ImageSet

__all__ = [
    "ResolutionConfig",
    "SourcePhoto",
    "world_photos",
    "folder_photos",
    "level_image",
    "cut_windows",
    "ResolutionData",
    "run_resolution_matrix",
    "resolution_cells",
    "lare_resize_study",
    "level_gallery",
    "matrix_figure",
    "lare_resize_figure",
    "findings",
    "NATIVE",
]

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
    """The mini world's package photos with their fixed splits (:data:`lare2lib.world.photos.CATALOGUE`)."""
    from lare2lib.world.photos import CLASS_NAMES, find_photos

    found, _ = find_photos(max_photos)
    return [SourcePhoto(p.spec.photo_id, p.path, p.spec.split, CLASS_NAMES.index(p.spec.category), p.width, p.height)
            for p in found]


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
        from lare2lib.world.recipes import reconstruct

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


# -- the matrix -------------------------------------------------------------------------------


def run_resolution_matrix(data: ResolutionData, root: str | Path, family_config, train_config, *,
                          generators: Mapping[str, tuple[ImageSet, ImageSet]] | None = None,
                          large_tries: Sequence[int] = (1, 10), progress: bool = True,
                          on_row: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """One detector per training level, tested on every level, the large images and the generators.

    ``family_config``: a :class:`lare2lib.studies.nb04_ae_family.FamilyConfig` (backbone, crop, tries,
    bootstrap); ``generators``: name → (reals, generated) pairs scored as extra columns (the
    mini world's own 64 px test sets). Returns ``{"matrix": train level → test level → metrics,
    "large": train level → "<k>_tries" → metrics, "generators": train level → name → metrics,
    "history", "seconds"}``; the test column of the large images is ``"native_<side>"`` (1 try).
    """
    from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs
    from lare2lib.detectors.train import fit
    from lare2lib.studies.nb04_ae_family import matrix_row, score_sets

    cfg = family_config
    as_images = lambda s: (list(s.pixels), list(s.ids))  # noqa: E731 - uint8 (3, H, W) per image
    large_real, large_recon = data.large()
    out: dict[str, Any] = {"matrix": {}, "large": {}, "generators": {}, "history": {}, "seconds": {}}
    for level in data.config.levels:
        started = time.time()
        train = ReconPairs.from_sets(data.real(level, "train"), data.recon(level, "train"))
        val = ReconPairs.from_sets(data.real(level, "val"), data.recon(level, "val"))
        torch.manual_seed(train_config.seed)  # the head's initialisation
        model = ReconClassifier(cfg.backbone, pretrained=cfg.pretrained, crop_size=cfg.crop_size,
                                create_kwargs=dict(cfg.create_kwargs))
        result = fit(model, train, val, train_config, Path(root) / f"train_{level}", progress=progress,
                     data_fingerprint=f"{data.folder.name}:{level}")
        model.eval()
        trained = time.time()
        score = lambda real, fakes, tries=cfg.tries: matrix_row(  # noqa: E731
            *score_sets(model, as_images(real), {k: as_images(v) for k, v in fakes.items()}, tries=tries,
                        batch_size=cfg.score_batch, seed=train_config.seed),
            bootstrap=cfg.bootstrap, seed=train_config.seed)
        row = {test: score(data.real(test, "test"), {"recon": data.recon(test, "test")})["recon"]
               for test in data.config.levels}
        large = {f"{tries}_tries": score(large_real, {"recon": large_recon}, tries)["recon"] for tries in large_tries}
        row[f"{NATIVE}_{data.config.large_window}"] = large[f"{large_tries[0]}_tries"]
        out["matrix"][level] = row
        out["large"][level] = large
        out["generators"][level] = {name: score(real, {name: fake})[name]
                                    for name, (real, fake) in (generators or {}).items()}
        out["history"][level] = result.history
        out["seconds"][level] = {"train": trained - started, "score": time.time() - trained}
        if on_row is not None:
            on_row(level, row)
    return out


def resolution_cells(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """The ``metrics.json`` schema: train resolution → test resolution → ``{"auc", "tpr@0.1%"}``."""
    return {train: {test: {"auc": cell["auc"], "tpr@0.1%": cell["tpr@0.1%"]} for test, cell in row.items()}
            for train, row in matrix.items()}


def matrix_figure(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]]):
    """Annotated AUC and TPR@0.1% heatmaps: rows = training level, columns = test level."""
    from lare2lib.studies.nb04_ae_family import matrix_figure as heatmaps

    return heatmaps(matrix, row_label="trained at", col_label="tested at")


# -- LaRE's squash resize ---------------------------------------------------------------------


def _mean_lare(components, images: ImageSet, class_names: Sequence[str], config, seed: int,
               batch_size: int) -> np.ndarray:
    from lare2lib.signals.set_maps import lare_maps

    maps = lare_maps(components, images, class_names, config, seed=seed, batch_size=batch_size)
    return maps.mean(dim=(1, 2, 3)).numpy()


def lare_resize_study(components, data: ResolutionData, class_names: Sequence[str], lare_config, *,
                      native: bool = True, native_max_side: int = 0, seed: int = 0, batch_size: int = 16,
                      bootstrap: int = 1000, progress: bool = False) -> dict[str, dict[int, dict[str, float]]]:
    """AUC of ``-mean LaRE`` (reconstructions positive) against reals, per input side.

    ``"squash"``: every image resized to ``lare_config.image_size`` as the release does (bicubic,
    whole image); ``"native"``: the map computed at the image's own size (no resize), for sides up
    to ``native_max_side`` (0: all). Returns ``{"squash": {side: lare_auc_interval dict}, "native": ...}``.
    """
    from dataclasses import replace

    from tqdm.auto import tqdm

    from lare2lib.studies.nb01_lare import lare_auc_interval

    out: dict[str, dict[int, dict[str, float]]] = {"squash": {}, "native": {}}
    for side in tqdm(data.config.lare_sides, desc="LaRE sides", disable=not progress):
        real, recon = data.sided(side)
        variants = [("squash", lare_config)]
        if native and (not native_max_side or side <= native_max_side):
            variants.append(("native", replace(lare_config, image_size=side)))
        for name, config in variants:
            scores = [_mean_lare(components, s, class_names, config, seed, batch_size) for s in (real, recon)]
            out[name][side] = lare_auc_interval(*scores, resamples=bootstrap, seed=seed)
    return out


def lare_resize_figure(study: Mapping[str, Mapping[int, Mapping[str, float]]], lare_size: int):
    """AUC against the input side, with intervals: the released squash and the native-size map."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for k, (name, label) in enumerate((("squash", f"squashed to {lare_size} px (released)"),
                                       ("native", "native size (no resize)"))):
        rows = study.get(name, {})
        if not rows:
            continue
        sides = sorted(rows)
        auc = np.array([rows[s]["auc"] for s in sides])
        low = np.array([rows[s]["low"] for s in sides])
        high = np.array([rows[s]["high"] for s in sides])
        x = np.array(sides, dtype=float) * 2 ** (0.04 * (2 * k - 1))  # side by side, not on top
        ax.errorbar(x, auc, yerr=[auc - low, high - auc], fmt="o-", capsize=3, label=label, color=f"C{k}")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.axvline(lare_size, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    all_sides = sorted({side for rows in study.values() for side in rows})
    ax.set_xticks(all_sides, [str(side) for side in all_sides])
    ax.minorticks_off()
    ax.set_xlabel("input image side (px)")
    ax.set_ylabel("AUC, recon vs real (−mean LaRE)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def level_gallery(data: ResolutionData, split: str = "test", count: int = 3, seed: int = 0):
    """``count`` windows per level (rows) with their reconstructions: what each level looks like."""
    import matplotlib.pyplot as plt

    levels = list(data.config.levels)
    fig, axes = plt.subplots(len(levels), 2 * count, figsize=(1.5 * 2 * count, 1.6 * len(levels)), squeeze=False)
    for row, level in enumerate(levels):
        real, recon = data.real(level, split), data.recon(level, split)
        picked = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:count].tolist()
        for k, index in enumerate(picked):
            for j, (image, title) in enumerate(((real.pixels[index], "real"), (recon.pixels[index], "recon"))):
                ax = axes[row, 2 * k + j]
                ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize="x-small")
                if k == 0 and j == 0:
                    ax.set_ylabel(f"level {level}", fontsize="small")
    fig.tight_layout()
    return fig


def findings(result: Mapping[str, Any], study: Mapping[str, Mapping[int, Mapping[str, float]]] | None,
             lare_size: int, info: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The answer as it fell in this run, as Markdown composed from the numbers (nothing hard-coded)."""
    matrix = result["matrix"]
    lines = []
    for train, row in matrix.items():
        own = row.get(train)
        tests = ", ".join(f"{test} {cell['auc']:.3f}" for test, cell in row.items())
        text = f"* **trained at `{train}`**: AUC tested at {tests}"
        if own is not None:
            worst = min(row, key=lambda test: row[test]["auc"])
            text += f" (own level {own['auc']:.3f}, lowest at `{worst}`: {row[worst]['auc']:.3f})"
        large = result.get("large", {}).get(train, {})
        if large:
            text += "; large native images " + ", ".join(
                f"{k.replace('1_tries', '1 try').replace('_', ' ')} AUC {v['auc']:.3f} / "
                f"TPR@0.1% {v['tpr@0.1%']:.2f}" for k, v in large.items())
        generators = result.get("generators", {}).get(train, {})
        if generators:
            text += "; generators " + ", ".join(f"`{g}` {v['auc']:.3f}" for g, v in generators.items())
        lines.append(text + ".")
    columns = list(next(iter(matrix.values())))
    best = {test: max(matrix, key=lambda train: matrix[train][test]["auc"]) for test in columns}
    lines.append("* **best training level per test column (AUC)**: "
                 + ", ".join(f"`{test}` ← `{train}`" for test, train in best.items()) + ".")
    if info:
        lines.append("* levels as cut: " + ", ".join(
            f"`{level}` ≈ {v['mean_downscale']:.1f}× downscaled ({v['photos_unscaled']} photos unscaled)"
            for level, v in info.items()) + ".")
    if study and study.get("squash"):
        squash = study["squash"]
        text = (f"* **LaRE** (images squashed to {lare_size} px): AUC of reconstructions vs reals "
                + ", ".join(f"{side} px {v['auc']:.3f} [{v['low']:.2f}, {v['high']:.2f}]" for side, v in sorted(squash.items())))
        native = study.get("native", {})
        if native:
            text += "; computed at the native size instead: " + ", ".join(
                f"{side} px {v['auc']:.3f}" for side, v in sorted(native.items()))
        lines.append(text + ".")
    return "\n".join(lines)
