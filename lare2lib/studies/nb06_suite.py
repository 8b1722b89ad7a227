"""Notebook 06's detectors scored together, and the one-threshold protocol.

* :class:`Suite` scores an :class:`~lare2lib.data.imagesets.ImageSet` with every detector's own
  pipeline (EGRE and mean-LaRE share one LaRE map per image when their settings agree).
* Every detector's **threshold** is set once, at :data:`FPR` on the clean held-out reals, as a
  deployed detector would be calibrated (:func:`thresholds_at`); the **detection rate** of an
  attacked fake set is the fraction above it (TPR) and the **AUC** is taken against the reals as
  they are in that experiment (:func:`detection`, :func:`detection_table`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.eval import attacks, metrics

__all__ = [
    "FPR",
    "DETECTOR_LABELS",
    "Suite",
    "thresholds_at",
    "detection",
    "detection_table",
    "pooled",
    "clean_detection",
]

FPR = 0.05
"""False-positive rate on clean reals that fixes every detector's threshold (AEROBLADE's TPR@5%)."""

DETECTOR_LABELS: dict[str, str] = {
    "egre": "EGRE (LaRE-guided)",
    "classifier": "recon classifier",
    "aeroblade": "AEROBLADE",
    "mean_lare": "mean LaRE",
}


@dataclass
class Suite:
    """Every detector's own scoring pipeline on image sets (higher = more likely generated).

    EGRE is scored on its centre crop (``tries=1``) and the classifier on its 1-try crop: the
    views PGD attacks. When the mean-LaRE scorer computes the very maps EGRE would (same LDM,
    settings and seed), EGRE reads them instead of recomputing (:meth:`EgreDetector.score_maps`).
    """

    detectors: dict[str, Any]
    class_names: Sequence[str]
    seed: int = 0
    batch_size: int = 64
    seconds: dict[str, float] = field(default_factory=dict)
    """Scoring time per detector, accumulated over calls."""

    def names(self, images: ImageSet) -> list[str]:
        """The class name of every image of ``images`` (the prompts of EGRE and mean-LaRE)."""
        return [self.class_names[int(c)] for c in images.class_index]

    def shared_maps(self) -> bool:
        """True when EGRE reads the mean-LaRE scorer's maps instead of computing its own.

        That is when both detectors are in the suite and EGRE's map extractor at this seed has
        the very settings and reference LDM of the mean-LaRE scorer: the maps would be equal.
        """
        egre, lare = self.detectors.get("egre"), self.detectors.get("mean_lare")
        if egre is None or lare is None:
            return False
        own = egre.map_extractor(self.seed)
        return (own.config_dict() == lare.extractor.config_dict()
                and egre.reference() is lare.extractor.components)

    def _tick(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def score(self, images: ImageSet) -> dict[str, np.ndarray]:
        """Detector name → float64 scores ``(N,)`` of ``images``, in the suite's detector order."""
        pixels, ids, names = list(images.pixels), list(images.ids), self.names(images)
        out: dict[str, np.ndarray] = {}
        maps = None
        if "mean_lare" in self.detectors:
            started = time.perf_counter()
            maps = self.detectors["mean_lare"].maps(pixels, ids, names, self.batch_size)
            out["mean_lare"] = (-maps.mean(dim=(1, 2, 3))).double().numpy()
            self._tick("mean_lare", started)
        for name, detector in self.detectors.items():
            if name == "mean_lare":
                continue
            started = time.perf_counter()
            if name == "egre" and maps is not None and self.shared_maps():
                scores = detector.score_maps(pixels, ids, maps, seed=self.seed, batch_size=self.batch_size)
            elif name == "egre":
                scores = detector.score_images(pixels, ids, seed=self.seed, class_names=names,
                                               batch_size=self.batch_size)
            elif name == "classifier":
                scores = detector.score_images(pixels, ids, seed=self.seed, tries=1,
                                               batch_size=self.batch_size)
            else:
                scores = detector.score_images(pixels, ids, batch_size=self.batch_size)
            out[name] = attacks.as_numpy(scores).astype(np.float64)
            self._tick(name, started)
        return {name: out[name] for name in self.detectors}



# -- metrics ---------------------------------------------------------------------------------------


def thresholds_at(real_scores: Mapping[str, np.ndarray], fpr: float = FPR) -> dict[str, float]:
    """Each detector's threshold at ``fpr`` on its clean real scores (:func:`metrics.threshold_at_fpr`)."""
    return {name: metrics.threshold_at_fpr(scores, fpr) for name, scores in real_scores.items()}


def detection(threshold: float, real_scores: np.ndarray, fake_scores: np.ndarray) -> dict[str, float]:
    """``tpr`` (fakes above the clean threshold), ``auc`` (these reals vs these fakes) and
    ``fpr`` (these reals above the clean threshold: what post-processing does to the reals)."""
    real, fake = np.asarray(real_scores, float), np.asarray(fake_scores, float)
    labels = np.r_[np.zeros(len(real), int), np.ones(len(fake), int)]
    return {"tpr": float((fake > threshold).mean()), "auc": metrics.roc_auc(np.r_[real, fake], labels),
            "fpr": float((real > threshold).mean())}


def pooled(sets: Mapping[str, ImageSet], name: str = "generated") -> ImageSet:
    """One set of several generators' images (ids and classes kept)."""
    parts = list(sets.values())
    return ImageSet(name, torch.cat([s.pixels for s in parts]), torch.cat([s.class_index for s in parts]),
                    [i for s in parts for i in s.ids], {"sets": list(sets)})


def clean_detection(real_scores: Mapping[str, np.ndarray],
                    fake_scores: Mapping[str, Mapping[str, np.ndarray]],
                    thresholds: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(generator → detector → {tpr, auc, fpr}, detector → the same on the pooled generators)``."""
    per_set = {name: {det: detection(thresholds[det], real_scores[det], scores[det]) for det in scores}
               for name, scores in fake_scores.items()}
    detectors = list(next(iter(fake_scores.values())))
    together = {det: detection(thresholds[det], real_scores[det],
                               np.concatenate([scores[det] for scores in fake_scores.values()]))
                for det in detectors}
    return per_set, together


def detection_table(suite: Suite, thresholds: Mapping[str, float], real: Mapping[str, np.ndarray],
                    fake: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Detector → :func:`detection` of its ``fake`` scores against its ``real`` ones, for every
    detector of ``suite``."""
    return {name: detection(thresholds[name], real[name], fake[name]) for name in suite.detectors}

