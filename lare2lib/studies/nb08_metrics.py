"""Notebook 08's metrics: AUC, AP and TPR@5 % FPR with intervals that resample photos.

The reals of the in-the-wild set are ``views`` windows of each held-out photo; windows of one
photo are not independent draws, so the bootstrap draws **photos** (with all their windows)
and templates (one image each), never windows. Scores of several seeds of one detector are
averaged per resample, as :func:`lare2lib.eval.metrics.bootstrap_rows` does: the interval is
the test-set uncertainty of the seed mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lare2lib.eval import metrics

__all__ = ["FPR", "fast_average_precision", "grouped_indices", "detection_row"]

FPR = 0.05
"""The operating point of the TPR column (AEROBLADE's TPR@5 %); with about 65 reals, 3 of them
may score above the threshold (the ROC definition, :func:`lare2lib.eval.metrics.tpr_at_fpr`)."""


def fast_average_precision(real: np.ndarray, fake: np.ndarray) -> float:
    """Average precision (sklearn's definition: ties form one step) without sklearn's overhead."""
    scores = np.r_[real, fake]
    labels = np.r_[np.zeros(real.size), np.ones(fake.size)]
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.diff(scores) != 0, True]
    true_pos = np.cumsum(labels)[last_of_tie]
    false_pos = np.cumsum(1 - labels)[last_of_tie]
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def grouped_indices(groups: Sequence[str], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, N)`` indices drawing whole groups with replacement.

    The images of a group must be contiguous and every group the same size (the set is built
    so: ``views`` windows per photo), which keeps every resample of length N.
    """
    groups = list(groups)
    names = list(dict.fromkeys(groups))
    size = len(groups) // len(names)
    if size * len(names) != len(groups) or any(groups[k * size:(k + 1) * size] != [g] * size
                                               for k, g in enumerate(names)):
        raise ValueError("grouped bootstrap needs contiguous groups of equal size")
    drawn = rng.integers(0, len(names), (resamples, len(names)))
    return (drawn[:, :, None] * size + np.arange(size)).reshape(resamples, -1)


def _values(real: np.ndarray, fake: np.ndarray, fpr: float) -> dict[str, float]:
    """AUC, AP and TPR@fpr of one model's scores (``real``, ``fake`` 1-D)."""
    return {"auc": metrics.rank_auc(real, fake), "ap": fast_average_precision(real, fake),
            "tpr": float(metrics.tpr_rows(real[None], fake[None], fpr)[0])}


def detection_row(real: np.ndarray, fake: np.ndarray, real_groups: Sequence[str], *,
                  resamples: int = 1000, seed: int = 0, fpr: float = FPR) -> dict[str, Any]:
    """Seed-mean AUC, AP and TPR@``fpr`` with grouped-bootstrap 95 % intervals.

    ``real``: ``(S, Nr)``, ``fake``: ``(S, Nf)`` scores of S seeds (1-D: one model);
    ``real_groups``: the photo of each real. Also the spread over seeds (``*_std``, 0 for one).
    """
    real, fake = np.atleast_2d(np.asarray(real, np.float64)), np.atleast_2d(np.asarray(fake, np.float64))
    per_seed = [_values(r, f, fpr) for r, f in zip(real, fake)]
    row: dict[str, Any] = {key: float(np.mean([v[key] for v in per_seed])) for key in per_seed[0]}
    row.update({f"{key}_std": float(np.std([v[key] for v in per_seed])) for key in per_seed[0]})
    rng = np.random.default_rng(seed)
    real_index = grouped_indices(real_groups, resamples, rng)
    fake_index = rng.integers(0, fake.shape[1], (resamples, fake.shape[1]))
    auc = np.mean([metrics.auc_rows(r[real_index], f[fake_index]) for r, f in zip(real, fake)], axis=0)
    tpr = np.mean([metrics.tpr_rows(r[real_index], f[fake_index], fpr) for r, f in zip(real, fake)], axis=0)
    ap = np.mean([[fast_average_precision(r[i], f[j]) for i, j in zip(real_index, fake_index)]
                  for r, f in zip(real, fake)], axis=0)
    for key, values in (("auc", auc), ("ap", ap), ("tpr", tpr)):
        row[f"{key}_ci"] = list(metrics.percentile_interval(values))
    row.update(n_real=int(real.shape[1]), n_fake=int(fake.shape[1]), seeds=int(real.shape[0]),
               n_photos=len(set(real_groups)))
    return row
