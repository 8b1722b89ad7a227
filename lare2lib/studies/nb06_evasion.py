"""Notebook 06's protocol: four detectors, three kinds of evasion, one threshold each.

The study is split by responsibility:

* :mod:`~lare2lib.studies.nb06_detectors`: :func:`load_detectors`, the EGRE detector and the
  reconstruction classifier from notebooks 02 and 03 when their checkpoints exist (else a small
  one trained here through the same library calls), plus the two training-free scores,
  AEROBLADE and mean-LaRE.
* :mod:`~lare2lib.studies.nb06_suite`: :class:`Suite` scores an
  :class:`~lare2lib.data.imagesets.ImageSet` with every detector's own pipeline (EGRE and
  mean-LaRE share one LaRE map per image when their settings agree). Every detector's
  **threshold** is set once, at :data:`FPR` on the clean held-out reals, as a deployed detector
  would be calibrated; the **detection rate** of an attacked fake set is the fraction above it
  (TPR) and the **AUC** is taken against the reals as they are in that experiment
  (post-processed with the fakes in the sweeps, clean for the attacks on fakes).
* :mod:`~lare2lib.studies.nb06_experiments`: :func:`postprocess_sweep`, :func:`artifact_removal`,
  :func:`pgd_sweep` run the three experiments;
* :mod:`~lare2lib.studies.nb06_findings`: :func:`most_graceful` names the detector that keeps most
  of its detection rate, :func:`findings_text` says it in words;
* :mod:`~lare2lib.studies.nb06_figures`: the notebook's figures.

This module holds the notebook's run around them: its budget (:class:`Config`, with
:meth:`Config.smoke`; the notebook builds it with :func:`lare2lib.studies.common.study_config`),
the post-processing grid (:func:`parse_grid`), the section timer (:func:`timed`) and the
notebook's ``metrics.json`` (:func:`write_metrics`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lare2lib.core import plotting
from lare2lib.core.profiles import Profile
from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.nb06_suite import FPR

__all__ = ["Config", "parse_grid", "timed", "write_metrics"]


@dataclass(frozen=True)
class Config:
    """Budget of notebook 06 (defaults: the mini notebook's; :meth:`smoke`: the tests' and CI's)."""

    n_real: int = 160
    """Held-out test reals: the 5 % FPR threshold and every AUC (0: all)."""
    n_fake: int = 40
    """Generated test images per generator for post-processing and artifact removal (0: all)."""
    postprocess: str = "jpeg:90,70,50;resize:0.5;blur:1,2;noise:0.03"
    """Post-processing grid, ``kind:level,level;...`` (:func:`parse_grid`, ``perturb.KINDS``)."""
    pgd_images: int = 32
    """Images of the training generator attacked by PGD, per detector and budget."""
    pgd_budgets: str = "0,1,2,4,8"
    """L∞ budgets ε in 8-bit steps (x/255), comma-separated; 0 is the clean subset."""
    pgd_steps: int = 5
    """Signed-gradient steps after the random start (step size 2.5·ε/steps)."""
    pgd_batch: int = 16
    """Images per PGD batch (memory: the UNet keeps its activations for the backward pass)."""
    train_per_class: int = 512
    """Fallback training only: training images per class (0: all)."""
    val_per_class: int = 128
    """Fallback training only: validation images per class (0: all)."""
    train: TrainConfig = TrainConfig(epochs=8, early_stopping=3)
    """Fallback training only: the reconstruction classifier's protocol (its seed is the
    notebook's); the EGRE fallback takes its ``epochs`` and ``max_steps``."""

    @classmethod
    def smoke(cls) -> Config:
        """Seconds: every section runs, on a handful of images, training two steps."""
        return cls(n_real=0, n_fake=4, postprocess="jpeg:70;blur:1", pgd_images=4, pgd_budgets="0,4",
                   pgd_steps=2, train_per_class=0, val_per_class=0,
                   train=TrainConfig(epochs=1, early_stopping=3, max_steps=2))

    def grid(self) -> dict[str, tuple[float, ...]]:
        """The post-processing grid, kind → levels (:func:`parse_grid` of :attr:`postprocess`)."""
        return parse_grid(self.postprocess)

    def budgets(self) -> list[float]:
        """The PGD budgets ε in 8-bit steps, as floats."""
        return [float(b) for b in self.pgd_budgets.split(",")]

    def training_budget(self) -> dict[str, int]:
        """The fallback training's budget as the metrics report it (``max_steps`` when capped)."""
        budget = {"train_per_class": self.train_per_class, "val_per_class": self.val_per_class,
                  "epochs": self.train.epochs}
        if self.train.max_steps:
            budget["max_steps"] = self.train.max_steps
        return budget


def parse_grid(text: str) -> dict[str, tuple[float, ...]]:
    """``"jpeg:90,50;blur:1"`` → ``{"jpeg": (90.0, 50.0), "blur": (1.0,)}``."""
    from lare2lib.data.perturb import KINDS

    grid: dict[str, tuple[float, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, levels = part.partition(":")
        if kind not in KINDS or kind == "none" or not levels:
            raise ValueError(f"bad post-processing axis {part!r}: write kind:level,level with kind "
                             f"in {[k for k in KINDS if k != 'none']}")
        grid[kind] = tuple(float(v) for v in levels.split(","))
    return grid


@contextlib.contextmanager
def timed(record: dict[str, dict[str, float]], name: str):
    """Add the wall and CPU seconds (all threads of this process) of the block to ``record[name]``.

    On a shared machine the CPU seconds are the better measure of the work: wall time there is
    mostly waiting for a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        row = record.setdefault(name, {"wall": 0.0, "cpu": 0.0})
        row["wall"] += time.perf_counter() - wall
        row["cpu"] += time.process_time() - cpu


def write_metrics(out_dir: str | Path, *, profile: Profile, config: Config, origin: Mapping[str, str],
                  reals: ImageSet, fakes: Mapping[str, ImageSet], pgd_set: ImageSet,
                  clean: Mapping[str, Any], clean_per_generator: Mapping[str, Any],
                  postprocess: Mapping[str, Any], post_mean: Mapping[str, float],
                  removal: Mapping[str, Any], removal_psnr: Mapping[str, float], pgd: Mapping[str, Any],
                  ten_tries: Mapping[str, Any], graceful: Mapping[str, Any],
                  graceful_auc: Mapping[str, Any], scoring_seconds: Mapping[str, float],
                  section_seconds: Mapping[str, Any], started: float, pgd_generator: str = "kl_ldm") -> dict[str, Any]:
    """Write notebook 06's ``metrics.json`` under ``out_dir``; returns the metrics written.

    The results are the notebook's, section by section; ``started`` is the ``time.time()`` of
    the run's start (CPU seconds, threads and load are read now); ``pgd_generator``: whose images
    PGD attacked (the world's training generator).
    """
    metrics = {
        "profile": profile.name,
        "seed": profile.seed,
        "fpr": FPR,
        "threshold_rule": "ROC threshold at the FPR on each detector's clean held-out real scores",
        "detectors": origin,
        "n_real": len(reals),
        "n_fake_per_generator": {name: len(images) for name, images in fakes.items()},
        "clean": clean,
        "clean_per_generator": clean_per_generator,
        "postprocess": postprocess,
        "postprocess_mean_tpr": post_mean,
        "artifact_removal": removal,
        "artifact_removal_psnr": removal_psnr,
        "pgd": pgd,
        "pgd_setup": {"images": len(pgd_set), "generator": pgd_generator,
                      "steps": config.pgd_steps, "step_size": "2.5*eps/steps", "random_start": True,
                      "objective": "log-odds (trained) / -mean LaRE / -min distance",
                      "quantised": "8-bit, within the budget"},
        "pgd_classifier_10_tries": ten_tries,
        "most_graceful": graceful,
        "most_graceful_auc": graceful_auc,
        "scoring_seconds": scoring_seconds,
        "section_seconds": section_seconds,
        "cpu_seconds": time.process_time(),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "seconds": time.time() - started,
    }
    plotting.write_metrics(out_dir, metrics, notebook="06_evasion")
    return metrics
