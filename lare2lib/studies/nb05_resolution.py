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

This module holds the **training-resolution × test-resolution matrix** of
:class:`lare2lib.detectors.recon_classifier.ReconClassifier` detectors, one per training level
(:func:`run_resolution_matrix`, with notebook 04's scoring), its ``metrics.json`` schema
(:func:`resolution_cells`) and the answer in words (:func:`findings`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.studies.nb05_levels import NATIVE, ResolutionData

__all__ = ["run_resolution_matrix", "resolution_cells", "findings"]


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
