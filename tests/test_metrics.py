"""Metrics against hand-computed values and sklearn, intervals, seed summaries."""

from __future__ import annotations

import numpy as np
import pytest

from lare2lib.eval import metrics as M


def _data(n_real=200, n_fake=150, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0, 1, n_real), rng.normal(shift, 1, n_fake)])
    labels = np.concatenate([np.zeros(n_real, int), np.ones(n_fake, int)])
    return scores, labels


def test_accuracy_at_fixed_threshold():
    scores = np.array([0.1, 0.6, 0.4, 0.9])
    labels = np.array([0, 0, 1, 1])
    assert M.accuracy(scores, labels) == 0.5
    assert M.accuracy(scores, labels, threshold=0.3) == 0.75


def test_auc_and_ap_match_definitions():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    # pairs (fake > real): (0.35>0.1), (0.8>0.1), (0.8>0.4); (0.35<0.4) → 3/4
    assert M.roc_auc(scores, labels) == pytest.approx(0.75)
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision at the two positives 1 and 2/3
    assert M.average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)


def _release_tpr_at_max_fpr(labels, scores, max_fpr):
    """AEROBLADE's released ``tpr_at_max_fpr``: the ROC curve's last TPR before FPR exceeds max_fpr."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_true=labels, y_score=scores, drop_intermediate=False)
    return tpr[np.argmax(fpr > max_fpr) - 1]


def test_tpr_at_fpr_allows_the_false_positives_the_roc_curve_allows():
    real = np.arange(1000) / 1000.0  # 0.000 … 0.999
    fake = np.array([0.9985, 0.9995, 0.5, 0.999])
    scores = np.concatenate([real, fake])
    labels = np.concatenate([np.zeros(1000, int), np.ones(4, int)])
    # 1000 reals at 0.1 % FPR: one false positive allowed, so the threshold is the 2nd-highest real
    assert M.threshold_at_fpr(real, 0.001) == pytest.approx(0.998)
    assert M.tpr_at_fpr(scores, labels, 0.001) == pytest.approx(0.75)
    assert M.tpr_at_fpr(scores, labels, 0.001) == _release_tpr_at_max_fpr(labels, scores, 0.001)
    # the pre-v2 quantile definition allows none: one real short of the ROC curve
    assert M.threshold_at_fpr(real, 0.001, definition="quantile") == pytest.approx(0.999)
    assert M.tpr_at_fpr(scores, labels, 0.001, definition="quantile") == pytest.approx(0.25)
    assert M.tpr_at_fpr(scores, labels, 0.05) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="valid: roc, quantile"):
        M.tpr_at_fpr(scores, labels, 0.05, definition="percentile")


@pytest.mark.parametrize("n_real", [7, 100, 999, 1000, 2000, 3000, 6000])
@pytest.mark.parametrize("fpr", [0.001, 0.01, 0.05, 0.5, 1.0])
def test_tpr_at_fpr_equals_the_released_definition(n_real, fpr):
    rng = np.random.default_rng(n_real)
    # rounded scores make ties, within the reals and across the classes
    real = np.round(rng.normal(0, 1, n_real), 2)
    fake = np.round(rng.normal(1.5, 1, 300), 2)
    scores = np.concatenate([real, fake])
    labels = np.concatenate([np.zeros(n_real, int), np.ones(300, int)])
    expected = _release_tpr_at_max_fpr(labels, scores, fpr)
    assert M.tpr_at_fpr(scores, labels, fpr) == pytest.approx(expected, abs=1e-12)
    rows = M.tpr_rows(np.stack([real, real[::-1]]), np.stack([fake, fake]), fpr)
    np.testing.assert_allclose(rows, expected, atol=1e-12)


def test_tpr_with_few_reals_uses_the_top_real_score():
    scores = np.array([0.2, 0.7, 0.3, 0.8, 0.71])
    labels = np.array([0, 0, 0, 1, 1])
    assert M.tpr_at_fpr(scores, labels, 0.001) == 1.0
    scores[1] = 0.75
    assert M.tpr_at_fpr(scores, labels, 0.001) == 0.5
    scores[4] = 0.75  # a fake tied with the top real is not above it (the ROC point would take both)
    assert M.tpr_at_fpr(scores, labels, 0.001) == _release_tpr_at_max_fpr(labels, scores, 0.001) == 0.5


def test_oracle_accuracy_is_at_least_any_fixed_threshold():
    scores, labels = _data()
    oracle, threshold = M.oracle_accuracy(scores, labels)
    grid = np.linspace(scores.min() - 1, scores.max() + 1, 301)
    assert oracle >= max(M.accuracy(scores, labels, t) for t in grid) - 1e-12
    assert M.accuracy(scores, labels, threshold) == pytest.approx(oracle)


def test_oracle_accuracy_handles_ties_and_one_sided_cuts():
    assert M.oracle_accuracy([0.5, 0.5, 0.5], [0, 1, 1])[0] == pytest.approx(2 / 3)
    acc, threshold = M.oracle_accuracy([0.1, 0.2], [1, 1])
    assert acc == 1.0 and threshold < 0.1


def test_bootstrap_interval_contains_estimate_and_is_reproducible():
    scores, labels = _data()
    auc = M.roc_auc(scores, labels)
    low, high = M.bootstrap_interval(M.roc_auc, scores, labels, resamples=300, seed=1)
    assert low < auc < high and high - low < 0.2
    assert (low, high) == M.bootstrap_interval(M.roc_auc, scores, labels, resamples=300, seed=1)
    assert (low, high) != M.bootstrap_interval(M.roc_auc, scores, labels, resamples=300, seed=2)


def test_binary_metrics_keys_and_intervals():
    scores, labels = _data()
    result = M.binary_metrics(scores, labels, bootstrap=50)
    for key in ("acc", "ap", "auc", "tpr@0.1%", "tpr@5%", "oracle_acc"):
        assert isinstance(result[key], float)
    assert result["n_real"] == 200 and result["n_fake"] == 150
    for key in ("auc", "ap", "tpr@0.1%", "tpr@5%"):
        low, high = result[f"{key}_ci"]
        assert low <= high
    assert "acc_ci" not in M.binary_metrics(scores, labels)


def test_real_vs_sets_mean_is_over_sets():
    real = np.zeros(10)
    table = M.real_vs_sets(real, {"easy": np.ones(10), "chance": np.zeros(30)})
    assert table["easy"]["auc"] == 1.0 and table["chance"]["auc"] == 0.5
    assert table["mean"]["auc"] == pytest.approx(0.75)
    assert table["chance"]["n_fake"] == 30 and "n_fake" not in table["mean"]


def test_mean_std_over_seeds():
    runs = [{"a": {"acc": 0.9}, "note": "x"}, {"a": {"acc": 0.8}}]
    summary = M.mean_std(runs)
    assert summary["a"]["acc"]["mean"] == pytest.approx(0.85)
    assert summary["a"]["acc"]["std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert summary["a"]["acc"]["n"] == 2 and "note" not in summary
    assert M.mean_std([{"x": 1.0}])["x"]["std"] == 0.0


@pytest.mark.parametrize("bad", [
    dict(scores=[0.1, np.nan], labels=[0, 1]),
    dict(scores=[0.1, 0.2], labels=[0, 2]),
    dict(scores=[0.1], labels=[0, 1]),
])
def test_bad_inputs_are_refused(bad):
    with pytest.raises(ValueError):
        M.binary_metrics(bad["scores"], bad["labels"])


def test_single_class_is_refused_for_ranking_metrics():
    with pytest.raises(ValueError, match="both"):
        M.roc_auc([0.1, 0.2], [1, 1])
