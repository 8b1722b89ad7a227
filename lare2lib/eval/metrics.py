"""Detection metrics, as the papers report them, with the intervals they leave out.

Convention everywhere in the project: **label 1 = generated or reconstructed** (the positive
class), 0 = real; a **score** is larger for "more likely fake" (P(fake) for trained detectors,
``-distance`` for AEROBLADE, ``-mean LaRE`` for the bare LaRE score).

What each paper reports:

* LaRE² / EGRE: ACC at the fixed threshold 0.5 ("rawAcc") and AP, per GenImage subset and
  averaged. The released logs also print an accuracy at the best threshold found *on the test
  set itself*; :func:`oracle_accuracy` computes it, under a name that says what it is.
* Reconstruction detectors (Vesnin et al.): TPR at 0.1 % FPR (the ROC definition: the largest
  TPR whose FPR ≤ 0.1 %, see :func:`threshold_at_fpr`) and ROC AUC.
* AEROBLADE: AP and TPR at 5 % FPR.

A TPR at 0.1 % FPR is decided by the top ~N/1000 real scores: with a few hundred reals it is the
single highest real score. :func:`bootstrap_interval` resamples reals and fakes separately
(stratified percentile bootstrap) so such numbers always travel with their uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "FPR_POINTS",
    "accuracy",
    "average_precision",
    "roc_auc",
    "TPR_DEFINITIONS",
    "tpr_at_fpr",
    "threshold_at_fpr",
    "oracle_accuracy",
    "auc_rows",
    "rank_auc",
    "tpr_rows",
    "row_metric",
    "resample_indices",
    "percentile_interval",
    "bootstrap_interval",
    "bootstrap_rows",
    "auc_interval",
    "binary_metrics",
    "real_vs_sets",
    "mean_std",
]

FPR_POINTS: dict[str, float] = {"tpr@0.1%": 0.001, "tpr@5%": 0.05}
"""The two low-FPR operating points the papers use: key in :func:`binary_metrics` → FPR."""

_INTERVAL_KEYS = ("auc", "ap", "tpr@0.1%", "tpr@5%")
"""Metrics that get a bootstrap interval in :func:`binary_metrics`."""


def _arrays(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (generated/reconstructed)")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    return scores, labels


def _both_classes(labels: np.ndarray) -> None:
    if labels.min(initial=1) != 0 or labels.max(initial=0) != 1:
        raise ValueError("this metric needs both real (0) and fake (1) examples")


def accuracy(scores: Any, labels: Any, threshold: float = 0.5) -> float:
    """Fraction classified right when ``score > threshold`` means fake (ACC at 0.5 by default)."""
    scores, labels = _arrays(scores, labels)
    return float(((scores > threshold).astype(np.int64) == labels).mean())


def average_precision(scores: Any, labels: Any) -> float:
    """AP with the fakes as positives (sklearn's step-wise definition, as the papers use)."""
    from sklearn.metrics import average_precision_score

    scores, labels = _arrays(scores, labels)
    _both_classes(labels)
    return float(average_precision_score(labels, scores))


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve = P(score of a random fake > score of a random real)."""
    from sklearn.metrics import roc_auc_score

    scores, labels = _arrays(scores, labels)
    _both_classes(labels)
    return float(roc_auc_score(labels, scores))


TPR_DEFINITIONS = ("roc", "quantile")
"""How TPR at a fixed FPR picks its threshold (see :func:`threshold_at_fpr`)."""


def _false_positives_allowed(n_real: int, fpr: float) -> int:
    """``floor(n_real · fpr)``, robust to the float error of e.g. ``3000 * 0.001``."""
    return int(math.floor(n_real * fpr + 1e-9))


def threshold_at_fpr(real_scores: Any, fpr: float, definition: str = "roc") -> float:
    """The score a fake must exceed (strictly) to be called fake at false-positive rate ``fpr``.

    ``roc`` (default; the released AEROBLADE ``tpr_at_max_fpr`` and sklearn's ``roc_curve``):
    with k = floor(N · fpr) false positives allowed, the (k+1)-th highest real score, so the TPR
    is the largest on the ROC curve whose FPR ≤ ``fpr``; below ``1 / fpr`` reals that is the top
    real score. ``quantile``: the ``1 - fpr`` quantile of the reals (``higher`` method), this
    project's definition before v2: whenever N · fpr is whole it allows one false positive fewer
    (at 1000 reals and 0.1 % FPR: none instead of one).
    """
    real = np.asarray(real_scores, dtype=np.float64).reshape(-1)
    if real.size == 0:
        raise ValueError("no real scores to set a threshold on")
    return float(_thresholds(real[None], fpr, definition)[0])


def _thresholds(real: np.ndarray, fpr: float, definition: str) -> np.ndarray:
    """Row-wise :func:`threshold_at_fpr` of ``(R, N)`` real scores."""
    if definition == "quantile":
        return np.quantile(real, 1.0 - fpr, axis=1, method="higher")
    if definition != "roc":
        raise ValueError(f"unknown TPR definition {definition!r}; valid: {', '.join(TPR_DEFINITIONS)}")
    n_real = real.shape[1]
    allowed = _false_positives_allowed(n_real, fpr)
    if allowed >= n_real:
        return np.full(real.shape[0], -np.inf)
    # the (allowed + 1)-th highest score of each row, i.e. ascending position n - 1 - allowed
    return np.partition(real, n_real - 1 - allowed, axis=1)[:, n_real - 1 - allowed]


def tpr_at_fpr(scores: Any, labels: Any, fpr: float = 0.001, definition: str = "roc") -> float:
    """Fraction of fakes scoring strictly above :func:`threshold_at_fpr` of the reals."""
    scores, labels = _arrays(scores, labels)
    _both_classes(labels)
    threshold = threshold_at_fpr(scores[labels == 0], fpr, definition)
    return float((scores[labels == 1] > threshold).mean())


def oracle_accuracy(scores: Any, labels: Any) -> tuple[float, float]:
    """(accuracy, threshold) at the threshold that maximises accuracy *on these very scores*.

    A diagnostic only (how separable the scores are): choosing the threshold on the test set is
    the released EGRE logs' "best accuracy", which must never be reported as ACC.
    """
    scores, labels = _arrays(scores, labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Threshold just below position i: items [i:] are called fake. Count correct ones for each i.
    fakes_at_or_above = np.concatenate([np.cumsum(sorted_labels[::-1])[::-1], [0]])
    reals_below = np.concatenate([[0], np.cumsum(1 - sorted_labels)])
    correct = fakes_at_or_above + reals_below
    # Only cut between distinct scores (ties must fall on one side).
    valid = np.ones(len(correct), dtype=bool)
    valid[1:-1] = sorted_scores[1:] != sorted_scores[:-1]
    best = int(np.argmax(np.where(valid, correct, -1)))
    if best == 0:
        threshold = sorted_scores[0] - 1.0
    elif best == len(sorted_scores):
        threshold = sorted_scores[-1]
    else:
        threshold = 0.5 * (sorted_scores[best - 1] + sorted_scores[best])
    return float(correct[best] / len(scores)), float(threshold)


def auc_rows(real: Any, fake: Any) -> np.ndarray:
    """Row-wise ROC AUC, ``P(fake > real) + ½ P(tie)`` (Mann-Whitney U), without sklearn's checks.

    ``real``: ``(R, Nr)`` and ``fake``: ``(R, Nf)`` scores (1-D inputs are one row): one AUC per
    row, so a whole block of bootstrap resamples is ranked in one call. Equal to
    :func:`roc_auc` up to float rounding (≤ 1e-15); used wherever AUC is computed many times.
    """
    from scipy.stats import rankdata

    real, fake = np.atleast_2d(np.asarray(real, np.float64)), np.atleast_2d(np.asarray(fake, np.float64))
    n_real, n_fake = real.shape[1], fake.shape[1]
    if n_real == 0 or n_fake == 0:
        raise ValueError("this metric needs both real (0) and fake (1) examples")
    ranks = rankdata(np.concatenate([real, fake], axis=1), axis=1)
    # U statistic of the fakes: their rank sum minus its minimum, Nf (Nf + 1) / 2 (exact in float64).
    return (ranks[:, n_real:].sum(axis=1) - n_fake * (n_fake + 1) / 2) / (n_real * n_fake)


def rank_auc(real: Any, fake: Any) -> float:
    """ROC AUC of 1-D ``real`` vs ``fake`` scores by ranks (:func:`auc_rows` of one row)."""
    return float(auc_rows(np.reshape(real, -1), np.reshape(fake, -1))[0])


def tpr_rows(real: Any, fake: Any, fpr: float, definition: str = "roc") -> np.ndarray:
    """Row-wise :func:`tpr_at_fpr`: fakes strictly above each row's real threshold."""
    real, fake = np.atleast_2d(np.asarray(real, np.float64)), np.atleast_2d(np.asarray(fake, np.float64))
    if real.shape[1] == 0 or fake.shape[1] == 0:
        raise ValueError("this metric needs both real (0) and fake (1) examples")
    return (fake > _thresholds(real, fpr, definition)[:, None]).mean(axis=1)


def row_metric(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The vectorised ``(real rows, fake rows) → values`` form of ``auc`` or a TPR@FPR key."""
    if name == "auc":
        return auc_rows
    if name in FPR_POINTS:
        return lambda real, fake: tpr_rows(real, fake, FPR_POINTS[name])
    raise ValueError(f"no vectorised metric {name!r}; valid: auc, {', '.join(FPR_POINTS)}")


def resample_indices(n_real: int, n_fake: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The one bootstrap stream of the project: ``(resamples, n_real)`` and ``(resamples, n_fake)``.

    Each resample draws ``n_real`` reals and ``n_fake`` fakes with replacement (the classes are
    resampled separately: they were drawn independently, and their counts stay fixed), from
    ``numpy.random.default_rng(seed)``, reals then fakes, one resample after the other. Every
    interval of the project (scalar or vectorised) uses these indices, so the same seed gives the
    same resamples whichever function computes the metric.
    """
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if n_real < 1 or n_fake < 1:
        raise ValueError("this metric needs both real (0) and fake (1) examples")
    rng = np.random.default_rng(seed)
    real_index = np.empty((resamples, n_real), np.int64)
    fake_index = np.empty((resamples, n_fake), np.int64)
    for k in range(resamples):
        real_index[k] = rng.integers(0, n_real, n_real)
        fake_index[k] = rng.integers(0, n_fake, n_fake)
    return real_index, fake_index


def percentile_interval(values: Any, level: float = 0.95) -> tuple[float, float]:
    """Central ``level`` percentile interval of bootstrap ``values`` (linear interpolation)."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(values, np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores: Any,
    labels: Any,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(scores, labels)`` over :func:`resample_indices`."""
    scores, labels = _arrays(scores, labels)
    _both_classes(labels)
    real, fake = scores[labels == 0], scores[labels == 1]
    real_index, fake_index = resample_indices(real.size, fake.size, resamples, seed)
    resampled_labels = np.r_[np.zeros(real.size, np.int64), np.ones(fake.size, np.int64)]
    values = [metric(np.r_[real[r], fake[f]], resampled_labels) for r, f in zip(real_index, fake_index)]
    return percentile_interval(values, level)


def bootstrap_rows(
    metric: str,
    real: Any,
    fake: Any,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 250,
) -> tuple[float, float]:
    """Vectorised bootstrap interval of ``metric`` (``auc``, ``tpr@0.1%``, ``tpr@5%``), averaged
    over models: the same resamples as :func:`bootstrap_interval`.

    ``real``: ``(S, Nr)`` and ``fake``: ``(S, Nf)`` scores of S models (seeds) on the same
    images (1-D: one model). Each resample scores every model on the same drawn images and
    averages them, so the interval is the test-set uncertainty of the mean over models.
    ``chunk`` resamples are ranked per call (memory: chunk × N floats per model).
    """
    real, fake = np.atleast_2d(np.asarray(real, np.float64)), np.atleast_2d(np.asarray(fake, np.float64))
    rows = row_metric(metric)
    real_index, fake_index = resample_indices(real.shape[1], fake.shape[1], resamples, seed)
    values = np.empty(resamples)
    for start in range(0, resamples, chunk):
        block = slice(start, start + chunk)
        values[block] = np.mean([rows(r[real_index[block]], f[fake_index[block]])
                                 for r, f in zip(real, fake)], axis=0)
    return percentile_interval(values, level)


def auc_interval(real: Any, fake: Any, *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, float]:
    """Rank AUC of ``real`` vs ``fake`` scores with its :func:`bootstrap_rows` interval.

    ``{"auc", "low", "high", "level", "resamples", "n_real", "n_fake"}``.
    """
    real, fake = np.reshape(np.asarray(real, np.float64), -1), np.reshape(np.asarray(fake, np.float64), -1)
    low, high = bootstrap_rows("auc", real, fake, resamples=resamples, seed=seed, level=level)
    return {"auc": rank_auc(real, fake), "low": low, "high": high, "level": level,
            "resamples": resamples, "n_real": int(real.size), "n_fake": int(fake.size)}


def _metric_functions() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    functions: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "acc": accuracy,
        "ap": average_precision,
        "auc": roc_auc,
    }
    for key, fpr in FPR_POINTS.items():
        functions[key] = lambda s, y, fpr=fpr: tpr_at_fpr(s, y, fpr)
    return functions


def binary_metrics(
    scores: Any, labels: Any, *, bootstrap: int = 0, seed: int = 0, threshold: float = 0.5
) -> dict[str, Any]:
    """Every headline metric of one real-vs-fake test set.

    Keys: ``acc`` (at ``threshold``), ``ap``, ``auc``, ``tpr@0.1%``, ``tpr@5%``,
    ``oracle_acc`` (diagnostic, see :func:`oracle_accuracy`), ``n_real``, ``n_fake``, and with
    ``bootstrap > 0`` resamples, ``<key>_ci: [low, high]`` for auc, ap and the TPRs.
    """
    scores, labels = _arrays(scores, labels)
    functions = _metric_functions()
    result: dict[str, Any] = {"acc": accuracy(scores, labels, threshold)}
    result.update({key: fn(scores, labels) for key, fn in functions.items() if key != "acc"})
    result["oracle_acc"] = oracle_accuracy(scores, labels)[0]
    result["n_real"] = int((labels == 0).sum())
    result["n_fake"] = int((labels == 1).sum())
    if bootstrap > 0:
        for key in _INTERVAL_KEYS:
            result[f"{key}_ci"] = list(
                bootstrap_interval(functions[key], scores, labels, resamples=bootstrap, seed=seed)
            )
    return result


def real_vs_sets(
    real_scores: Any, fake_scores: Mapping[str, Any], **kwargs: Any
) -> dict[str, dict[str, Any]]:
    """:func:`binary_metrics` of the one real test set against each fake set, plus ``"mean"``.

    ``"mean"`` averages each scalar metric over the fake sets (the papers' "average over
    subsets"), not over the pooled images, so a large set does not outweigh a small one.
    """
    real = np.asarray(real_scores, dtype=np.float64).reshape(-1)
    table: dict[str, dict[str, Any]] = {}
    for name, fake in fake_scores.items():
        fake = np.asarray(fake, dtype=np.float64).reshape(-1)
        scores = np.concatenate([real, fake])
        labels = np.concatenate([np.zeros(real.size, np.int64), np.ones(fake.size, np.int64)])
        table[name] = binary_metrics(scores, labels, **kwargs)
    if table:
        scalar_keys = [k for k, v in next(iter(table.values())).items()
                       if isinstance(v, float) and not k.startswith("n_")]
        table["mean"] = {k: float(np.mean([row[k] for row in table.values()])) for k in scalar_keys}
    return table


def mean_std(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and spread over runs (seeds) of every float leaf of equally nested dicts.

    ``[{"kl_ldm": {"acc": 0.9}}, {"kl_ldm": {"acc": 0.8}}]`` →
    ``{"kl_ldm": {"acc": {"mean": 0.85, "std": 0.0707, "n": 2}}}``; ``std`` is the sample
    standard deviation (ddof = 1; 0.0 for a single run). Keys missing from some runs are
    summarised over the runs that have them; non-numeric leaves are dropped.
    """
    if not runs:
        raise ValueError("mean_std needs at least one run")
    keys = list(dict.fromkeys(key for run in runs for key in run))
    summary: dict[str, Any] = {}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, Mapping) for v in values):
            summary[key] = mean_std(values)
        elif all(_is_number(v) for v in values):
            array = np.asarray(values, dtype=np.float64)
            std = float(array.std(ddof=1)) if array.size > 1 else 0.0
            summary[key] = {"mean": float(array.mean()), "std": std, "n": int(array.size)}
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and math.isfinite(float(value))
