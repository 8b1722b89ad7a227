"""Training resolution of reconstruction detectors, and LaRE's fixed resize (notebook 05).

Vesnin et al. train on LAION images at whatever resolution they come in and list "effect of
training resolution" and "images above 512²" as open. A crop-based detector always sees a
``crop``-sized patch; what the resolution of an image changes is **what is in that patch**: a
photo downscaled to a 96 px short side packs a whole scene into the patch, sharp to the pixel
(antialiased resampling), while the same photo at its native resolution shows a small,
smooth region carrying the camera's and the JPEG codec's own pixel-level traces. Reconstruction
removes less from smooth content, so the real/reconstruction gap shrinks as resolution grows.

The study is split by responsibility:

* :mod:`~lare2lib.studies.nb05_levels`: the **level sets** (windows cut from the photos at each
  level, per split, with their reconstructions), the **"larger than seen"** native test images
  and the LaRE study's sets, cached (:class:`ResolutionData`);
* :mod:`~lare2lib.studies.nb05_lare_resize`: **LaRE's squash resize**
  (:func:`lare_resize_study`: AUC of ``-mean LaRE`` per input side, squashed and native);
* :mod:`~lare2lib.studies.nb05_figures`: the notebook's figures.

This module holds the notebook's budget (:class:`Config`, with :meth:`Config.smoke`; the notebook
builds it with :func:`lare2lib.studies.common.study_config`), the **training-resolution ×
test-resolution matrix** of :class:`lare2lib.detectors.recon_classifier.ReconClassifier` detectors,
one per training level (:func:`run_resolution_matrix`, with notebook 04's scoring), its
``metrics.json`` schema (:func:`resolution_cells`), the answer in words (:func:`findings`) and the
notebook's ``metrics.json`` (:func:`write_metrics`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lare2lib.core.profiles import Profile
from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.nb04_matrix import FamilyConfig
from lare2lib.studies.nb05_levels import NATIVE, ResolutionConfig, ResolutionData

__all__ = ["Config", "run_resolution_matrix", "resolution_cells", "findings", "write_metrics"]

NOTEBOOK = "05_training_resolution"


@dataclass(frozen=True)
class Config:
    """Budget of notebook 05 (defaults: the mini notebook's; :meth:`smoke`: the tests' and CI's).

    The sets are :meth:`resolution` (a :class:`ResolutionConfig`), the detector of every row
    :meth:`family` (a :class:`FamilyConfig`), its training protocol :attr:`train` (its seed is the
    notebook's ``SEED``).
    """

    levels: str = "96,192,native"
    """Training and test levels, comma-separated: the short side (px) photos are downscaled to,
    or ``native``."""
    window: int = 0
    """Side of every level image (0: the world's image size; full: 256)."""
    train_windows: int = 512
    """Training windows per level (spread over the training photos)."""
    val_windows: int = 96
    """Validation windows per level."""
    test_windows: int = 256
    """Test windows per level."""
    large_window: int = 0
    """Side of the "larger than seen" native test images (0: 4 × ``window``)."""
    large_photos: int = 4
    """How many of the largest test photos give the large test images."""
    large_windows: int = 64
    """Large test images in all."""
    lare_sides: str = "32,64,128,256"
    """Input sides of the LaRE resize study, comma-separated (native windows of the test photos)."""
    lare_windows: int = 128
    """Images per side in the LaRE study (the sides ``window`` and ``large_window`` reuse the test sets)."""
    lare_native_max: int = 256
    """Largest side whose LaRE map is also computed at the native size (0: every side)."""
    backbone: str = ""
    """timm classifier or local weights file (empty: the profile's first reconstruction classifier)."""
    crop_size: int = 0
    """Classifier crop side (0: the profile's, 48 px in mini, 24 in smoke, 256 in full)."""
    tries: int = 1
    """Random crops averaged per test image (the large images: 1 and 10 always)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the matrix's intervals."""
    lare_bootstrap: int = 1000
    """Bootstrap resamples of the LaRE study's intervals (the notebook's ``BOOTSTRAP`` too; the
    smoke budget has always left it at 1000)."""
    train: TrainConfig = TrainConfig(epochs=3, early_stopping=2)
    """Every training level's protocol (released optimiser: Adam 1e-4, batch 48)."""

    @classmethod
    def smoke(cls) -> Config:
        """Seconds, not minutes: two levels, a few windows, two training steps per row."""
        return cls(levels=f"64,{NATIVE}", train_windows=32, val_windows=8, test_windows=16, large_window=96,
                   large_photos=2, large_windows=8, lare_sides="16,32,64", lare_windows=8, lare_native_max=0,
                   bootstrap=100, train=TrainConfig(epochs=1, early_stopping=2, batch_size=16, max_steps=2))

    def resolution(self, profile: Profile) -> ResolutionConfig:
        """The sets cut from the photos, with the profile's window side where ``window`` is 0."""
        window = self.window or (256 if profile.name == "full" else profile.world.image_size)
        return ResolutionConfig(
            window=window, levels=tuple(level.strip() for level in self.levels.split(",") if level.strip()),
            train_windows=self.train_windows, val_windows=self.val_windows, test_windows=self.test_windows,
            large_window=self.large_window or 4 * window, large_photos=self.large_photos,
            large_windows=self.large_windows, lare_sides=tuple(int(s) for s in self.lare_sides.split(",")),
            lare_windows=self.lare_windows)

    def family(self, profile: Profile) -> FamilyConfig:
        """The detector of every row, with the profile's backbone and crop where left at their defaults."""
        return FamilyConfig.for_profile(profile, self.backbone, self.crop_size, tries=self.tries,
                                        bootstrap=self.bootstrap)


def run_resolution_matrix(data: ResolutionData, root: str | Path, family_config, train_config, *,
                          generators: Mapping[str, tuple[ImageSet, ImageSet]] | None = None,
                          large_tries: Sequence[int] = (1, 10), progress: bool = True,
                          on_row: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """One detector per training level, tested on every level, the large images and the generators.

    ``family_config``: a :class:`lare2lib.studies.nb04_matrix.FamilyConfig` (backbone, crop, tries,
    bootstrap); ``generators``: name → (reals, generated) pairs scored as extra columns (the
    mini world's own 64 px test sets). Returns ``{"matrix": train level → test level → metrics,
    "large": train level → "<k>_tries" → metrics, "generators": train level → name → metrics,
    "history", "seconds"}``; the test column of the large images is ``"native_<side>"`` (1 try).
    """
    from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs
    from lare2lib.detectors.train import fit
    from lare2lib.studies.nb04_matrix import matrix_row, score_sets

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


def write_metrics(out_dir: str | Path, *, profile: Profile, seed: int, data: ResolutionData, family: FamilyConfig,
                  train_config: TrainConfig, result: Mapping[str, Any],
                  study: Mapping[str, Mapping[int, Mapping[str, float]]], lare_image_size: int,
                  level_info: Mapping[str, Any], sizes: Mapping[str, Any], started: float) -> dict[str, Any]:
    """Write the notebook's ``metrics.json`` and return its metrics.

    ``result``: :func:`run_resolution_matrix`'s; ``study``:
    :func:`~lare2lib.studies.nb05_lare_resize.lare_resize_study`'s; ``level_info``:
    :meth:`ResolutionData.level_info`; ``sizes``: :func:`~lare2lib.studies.nb05_levels.window_counts`;
    ``started``: ``time.time()`` at the start.
    """
    from lare2lib.core import plotting

    metrics = {
        "profile": profile.name,
        "seed": seed,
        "matrix": resolution_cells(result["matrix"]),
        "matrix_full": result["matrix"],
        "large": result["large"],
        "generators": result["generators"],
        "lare_resize": {str(side): row["auc"] for side, row in study["squash"].items()},
        "lare_resize_native": {str(side): row["auc"] for side, row in study["native"].items()},
        "lare_resize_intervals": study,
        "lare_image_size": lare_image_size,
        "levels": level_info,
        "windows": sizes,
        "large_photos": [p.photo_id for p in data.largest_test_photos()],
        "history": result["history"],
        "row_seconds": result["seconds"],
        "settings": {"resolution": asdict(data.config), "family": asdict(family), "train": asdict(train_config)},
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "seconds": time.time() - started,
    }
    plotting.write_metrics(out_dir, metrics, notebook=NOTEBOOK)
    return metrics
