"""Notebook 03's scores and metrics: every crop's P(fake), "1 try" and "10 tries", AUC and TPR
over seeds with bootstrap intervals, the headline cells, ROC points and the robustness sweep.

* :func:`score_sets`: every crop's P(fake) once (``(seeds, images, tries)``); "1 try" is the
  first crop, "10 tries" the mean of the first ten (try k of an image is the same crop in both).
* :func:`detection_table`: AUC, TPR at 0.1 % / 5 % FPR and AP, the mean over seeds with a
  percentile-bootstrap interval of that mean (:func:`seed_mean_interval`: the test images are
  resampled, reals and fakes separately, and every seed is scored on the same resample).
* :func:`detect`: both tries' tables, their headlines and the ROC points of the first seed.
* :func:`robustness`: the same metrics after post-processing (:mod:`lare2lib.data.perturb`) applied
  to the test images of both classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.recon_classifier import ReconClassifier
from lare2lib.eval import metrics as M

__all__ = [
    "TRIES_KEYS",
    "INTERVAL_METRICS",
    "score_sets",
    "tries_scores",
    "seed_mean_interval",
    "detection_table",
    "headline",
    "roc_points",
    "Detection",
    "detect",
    "robustness",
]

TRIES_KEYS = {"1_try": 1, "10_tries": 10}
"""metrics.json key → number of crops averaged."""
INTERVAL_METRICS = ("auc", "tpr@0.1%", "tpr@5%")
"""Metrics reported with a bootstrap interval (AP: mean ± std over seeds only)."""


def score_sets(models: Sequence[ReconClassifier], sets: Mapping[str, ImageSet], *, tries: int = 10,
               seed: int = 0, batch_size: int = 120, progress: bool = False) -> dict[str, np.ndarray]:
    """Set name → ``(len(models), N, tries)`` P(fake) of every inference crop."""
    return {name: np.stack([model.crop_probabilities(list(images.pixels), images.ids, seed=seed, tries=tries,
                                                     batch_size=batch_size, progress=progress).numpy()
                            for model in models])
            for name, images in sets.items()}


def tries_scores(crop_scores: np.ndarray, tries: int) -> np.ndarray:
    """``(S, N, T)`` crop probabilities → ``(S, N)`` scores of the first ``tries`` crops' mean."""
    if crop_scores.shape[-1] < tries:
        raise ValueError(f"{crop_scores.shape[-1]} crops were scored, {tries} tries asked")
    return crop_scores[..., :tries].mean(axis=-1)



# -- metrics over seeds with bootstrap intervals --------------------------------------------------


def seed_mean_interval(metric: str, real: np.ndarray, fake: np.ndarray, *, resamples: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the seed-averaged ``metric`` (auc, tpr@0.1%, tpr@5%).

    ``real``: ``(S, Nr)``, ``fake``: ``(S, Nf)`` scores of S models on the same images; each
    resample scores every model on the same drawn images (:func:`lare2lib.eval.metrics.bootstrap_rows`),
    so the interval is the test-set uncertainty of the mean.
    """
    return M.bootstrap_rows(metric, real, fake, resamples=resamples, seed=seed, level=level)


def _summary(per_seed: list[float]) -> dict[str, Any]:
    array = np.asarray(per_seed, dtype=np.float64)
    return {"value": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
            "n": int(array.size), "per_seed": [float(v) for v in array]}


def detection_table(real: np.ndarray, fakes: Mapping[str, np.ndarray], *, bootstrap: int = 1000,
                    seed: int = 0, mean_over: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Set → metric → ``{"value" (mean over seeds), "std", "n", "per_seed", "ci"}``.

    ``real``: ``(S, Nr)`` (or ``(Nr,)`` for one run), each fake set ``(S, Nf)``. ``"mean"``
    averages each metric's value over ``mean_over`` (default: every set).
    """
    real = np.atleast_2d(real)
    table: dict[str, dict[str, Any]] = {}
    for name, fake in fakes.items():
        fake = np.atleast_2d(fake)
        labels = np.r_[np.zeros(real.shape[1]), np.ones(fake.shape[1])]
        row = {}
        for metric in (*INTERVAL_METRICS, "ap"):
            fn = {"auc": M.roc_auc, "ap": M.average_precision}.get(metric) or \
                (lambda s, y, m=metric: M.tpr_at_fpr(s, y, M.FPR_POINTS[m]))
            row[metric] = _summary([fn(np.r_[r, f], labels) for r, f in zip(real, fake)])
            if bootstrap and metric in INTERVAL_METRICS:
                row[metric]["ci"] = list(seed_mean_interval(metric, real, fake, resamples=bootstrap, seed=seed))
        row["n_real"], row["n_fake"] = int(real.shape[1]), int(fake.shape[1])
        table[name] = row
    names = list(mean_over) if mean_over is not None else list(fakes)
    if names:
        table["mean"] = {metric: {"value": float(np.mean([table[n][metric]["value"] for n in names]))}
                         for metric in (*INTERVAL_METRICS, "ap")}
    return table


def headline(tables: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """``{"1_try": table, "10_tries": table}`` → set → ``{"1_try": {"value", "ci", "std"}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for tries, table in tables.items():
        for name, row in table.items():
            cell = {k: v for k, v in row[metric].items() if k in ("value", "ci", "std", "n")}
            out.setdefault(name, {})[tries] = cell
    return out


def roc_points(real: np.ndarray, fake: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve (sklearn) thinned to at most ``max_points`` points, log-spaced in FPR."""
    from sklearn.metrics import roc_curve

    labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    fpr, tpr, _ = roc_curve(labels, np.r_[real, fake])
    if len(fpr) > max_points:
        grid = np.unique(np.r_[0.0, np.geomspace(1e-4, 1.0, max_points - 1)])
        index = np.unique(np.searchsorted(fpr, grid, side="right") - 1)
        fpr, tpr = fpr[index], tpr[index]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}



@dataclass(frozen=True)
class Detection:
    """The reconstruction detector on the test sets (what :func:`detect` returns)."""

    tables: dict[str, dict[str, dict[str, Any]]]
    """``"1_try"`` / ``"10_tries"`` → :func:`detection_table` (sets, then ``"mean"`` over generators)."""
    auc: dict[str, dict[str, Any]]
    """:func:`headline` of the AUC: set → tries → ``{"value", "ci", "std", "n"}``."""
    tpr: dict[str, dict[str, Any]]
    """:func:`headline` of TPR at 0.1 % FPR."""
    tpr5: dict[str, dict[str, Any]]
    """:func:`headline` of TPR at 5 % FPR."""
    first_seed: dict[str, np.ndarray]
    """Set (``"real"`` included) → ``(N,)`` scores of the first seed with all ``tries`` crops."""
    roc: dict[str, dict[str, list[float]]]
    """Test set → :func:`roc_points` of :attr:`first_seed` against the reals."""


def detect(crop_scores: Mapping[str, np.ndarray], *, tries: int, bootstrap: int, seed: int,
           mean_over: Sequence[str]) -> Detection:
    """:class:`Detection` from :func:`score_sets` output (set ``"real"`` plus the test sets).

    One table per :data:`TRIES_KEYS` entry; the ROC curves use the first seed's ``tries``-crop scores.
    """
    tables = {}
    for key, key_tries in TRIES_KEYS.items():
        scores = {name: tries_scores(s, key_tries) for name, s in crop_scores.items()}
        real_scores = scores.pop("real")
        tables[key] = detection_table(real_scores, scores, bootstrap=bootstrap, seed=seed, mean_over=mean_over)
    first_seed = {name: tries_scores(s, tries)[0] for name, s in crop_scores.items()}
    roc = {name: roc_points(first_seed["real"], first_seed[name]) for name in crop_scores if name != "real"}
    return Detection(tables, headline(tables, "auc"), headline(tables, "tpr@0.1%"), headline(tables, "tpr@5%"),
                     first_seed, roc)


# -- robustness -------------------------------------------------------------------------------


def robustness(models: Sequence[ReconClassifier], real: ImageSet, fakes: Mapping[str, ImageSet],
               axes: Mapping[str, Sequence[float]], *, tries: int = 1, seed: int = 0,
               batch_size: int = 120, progress: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Perturbation → level → set → ``{"auc", "tpr@5%", "tpr@0.1%"}`` (mean over ``models``).

    Each level is applied to the real and the fake test images alike (:func:`perturb.perturb_set`,
    noise seeded per image id) before scoring with ``tries`` crops. Resize and crop also get
    their identity level 1.0, the unperturbed reference.
    """
    from tqdm.auto import tqdm

    from lare2lib.data.perturb import Perturbation, perturb_set

    out: dict[str, dict[str, dict[str, Any]]] = {}
    jobs = [(kind, float(level)) for kind, levels in axes.items()
            for level in sorted(set(levels) | ({1.0} if kind in ("resize", "crop") else set()))]
    for kind, level in tqdm(jobs, desc="robustness", disable=not progress):
        perturbation = Perturbation(kind, level)
        sets = {name: perturb_set(images, perturbation, seed) for name, images in {"real": real, **fakes}.items()}
        scores = {name: tries_scores(s, tries) for name, s in
                  score_sets(models, sets, tries=tries, seed=seed, batch_size=batch_size).items()}
        real_scores = scores.pop("real")
        cells = {}
        for name, fake in scores.items():
            labels = np.r_[np.zeros(real_scores.shape[1]), np.ones(fake.shape[1])]
            per_seed = [{"auc": M.roc_auc(np.r_[r, f], labels),
                         **{k: M.tpr_at_fpr(np.r_[r, f], labels, fpr) for k, fpr in M.FPR_POINTS.items()}}
                        for r, f in zip(real_scores, fake)]
            cells[name] = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
        out.setdefault(kind, {})[f"{level:g}"] = cells
    return out
