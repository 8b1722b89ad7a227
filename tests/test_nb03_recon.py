"""Notebook 03's study helpers: seed-averaged metrics with bootstrap intervals, the metrics.json
schema notebook 07 reads, robustness sweeps, the comparison table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lare2lib.core.plotting import write_metrics
from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.recon_classifier import ReconClassifier
from lare2lib.eval import metrics as M
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs
from lare2lib.studies import nb03_baselines, nb03_figures, nb03_scoring


def scores(seed: int, n_real: int = 150, n_fake: int = 120, shift: float = 1.0, seeds: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (seeds, n_real)), rng.normal(shift, 1, (seeds, n_fake))


@pytest.mark.parametrize("metric, reference", [
    ("auc", M.roc_auc),
    ("tpr@0.1%", lambda s, y: M.tpr_at_fpr(s, y, 0.001)),
    ("tpr@5%", lambda s, y: M.tpr_at_fpr(s, y, 0.05)),
])
def test_vectorised_metrics_equal_the_metrics_module(metric, reference):
    real, fake = scores(0, seeds=3)
    real[0, :5] = fake[0, :5]  # ties between classes count half in the AUC
    rows = M.row_metric(metric)(real, fake)
    labels = np.r_[np.zeros(real.shape[1]), np.ones(fake.shape[1])]
    expected = [reference(np.r_[r, f], labels) for r, f in zip(real, fake)]
    np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-12)


def test_seed_mean_interval_matches_the_stratified_bootstrap_for_one_seed():
    real, fake = scores(1)
    labels = np.r_[np.zeros(real.shape[1]), np.ones(fake.shape[1])]
    ours = nb03_scoring.seed_mean_interval("auc", real, fake, resamples=2000, seed=0)
    theirs = M.bootstrap_interval(M.roc_auc, np.r_[real[0], fake[0]], labels, resamples=300, seed=0)
    assert ours[0] < M.roc_auc(np.r_[real[0], fake[0]], labels) < ours[1]
    np.testing.assert_allclose(ours, theirs, atol=0.02)  # same method, different random draws
    assert nb03_scoring.seed_mean_interval("auc", real, fake, resamples=200, seed=3) == \
        nb03_scoring.seed_mean_interval("auc", real, fake, resamples=200, seed=3)


def test_interval_of_the_mean_over_seeds_is_narrower_than_one_seeds():
    """Seeds that disagree image by image average out: the mean's interval shrinks."""
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (4, 200))
    fake = rng.normal(0.5, 1, (4, 200))
    one = nb03_scoring.seed_mean_interval("auc", real[:1], fake[:1], resamples=500)
    four = nb03_scoring.seed_mean_interval("auc", real, fake, resamples=500)
    assert four[1] - four[0] < one[1] - one[0]


def test_detection_table_and_headline_schema():
    real, fake_a = scores(2, seeds=2)
    _, fake_b = scores(3, shift=3.0, seeds=2)
    table = nb03_scoring.detection_table(real, {"kl_ldm": fake_a, "vq_ldm": fake_b, "recon_kl_ae": fake_b},
                                      bootstrap=100, mean_over=["kl_ldm", "vq_ldm"])
    row = table["vq_ldm"]
    assert set(row) >= {"auc", "ap", "tpr@0.1%", "tpr@5%", "n_real", "n_fake"}
    assert row["auc"]["n"] == 2 and len(row["auc"]["per_seed"]) == 2 and "ci" not in row["ap"]
    low, high = row["auc"]["ci"]
    assert low <= row["auc"]["value"] <= high
    assert table["mean"]["auc"]["value"] == pytest.approx(
        (table["kl_ldm"]["auc"]["value"] + table["vq_ldm"]["auc"]["value"]) / 2)
    out = nb03_scoring.headline({"1_try": table, "10_tries": table}, "tpr@0.1%")
    assert set(out["kl_ldm"]) == {"1_try", "10_tries"}
    assert set(out["kl_ldm"]["1_try"]) == {"value", "ci", "std", "n"}
    assert set(out["mean"]["10_tries"]) == {"value"}


def test_tries_scores_nest():
    crops = np.random.default_rng(0).random((2, 5, 10))
    np.testing.assert_array_equal(nb03_scoring.tries_scores(crops, 1), crops[..., 0])
    np.testing.assert_allclose(nb03_scoring.tries_scores(crops, 10), crops.mean(axis=-1))
    with pytest.raises(ValueError, match="crops were scored"):
        nb03_scoring.tries_scores(crops, 11)


def test_roc_points_are_thinned_and_monotone():
    real, fake = scores(4, n_real=2000, n_fake=2000, shift=0.5)
    points = nb03_scoring.roc_points(real[0], fake[0], max_points=50)
    assert len(points["fpr"]) <= 50
    assert np.all(np.diff(points["fpr"]) >= 0) and np.all(np.diff(points["tpr"]) >= 0)


def _images(n: int, size: int, seed: int, name: str) -> ImageSet:
    rng = np.random.default_rng(seed)
    pixels = torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    return ImageSet(name, pixels, torch.zeros(n, dtype=torch.long), [f"{name}/{k}" for k in range(n)])


def test_score_sets_and_robustness_sweep_shapes():
    torch.manual_seed(0)
    model = ReconClassifier("convnext_large", pretrained=False, crop_size=32,
                            create_kwargs=tiny_classifier_kwargs("convnext_large")).eval()
    real, fake = _images(6, 40, 0, "real"), _images(5, 40, 1, "gen")
    crop_scores = nb03_scoring.score_sets([model, model], {"real": real, "gen": fake}, tries=3)
    assert crop_scores["real"].shape == (2, 6, 3) and np.array_equal(crop_scores["gen"][0], crop_scores["gen"][1])
    sweep = nb03_scoring.robustness([model], real, {"gen": fake}, {"jpeg": (50,), "resize": (0.5,)}, tries=1)
    assert list(sweep) == ["jpeg", "resize"]
    assert list(sweep["jpeg"]) == ["50"] and sorted(sweep["resize"]) == ["0.5", "1"]  # identity added
    assert set(sweep["resize"]["0.5"]["gen"]) == {"auc", "tpr@0.1%", "tpr@5%"}


def test_egre_rows_and_comparison_table(tmp_path):
    assert nb03_baselines.egre_rows(tmp_path) is None
    ablation = {"egre": {"kl_ldm": {"auc": {"mean": 0.9, "std": 0.01, "n": 3}, "ap": {"mean": 0.8}},
                         "mean": {"auc": {"mean": 0.85}, "ap": {"mean": 0.75}}}}
    write_metrics(tmp_path / "02_egre_ablations", {"ablation": ablation})
    egre = nb03_baselines.egre_rows(tmp_path)
    assert egre == {"kl_ldm": {"auc": 0.9, "ap": 0.8}, "mean": {"auc": 0.85, "ap": 0.75}}
    real, fake = scores(5)
    ours = nb03_scoring.detection_table(real, {"kl_ldm": fake}, bootstrap=0)
    frame = nb03_baselines.comparison_table({"recon": ours, "EGRE": egre}, ["kl_ldm", "mean"])
    assert frame.loc["EGRE", ("kl_ldm", "auc")] == 0.9
    assert np.isnan(frame.loc["EGRE", ("kl_ldm", "tpr@5%")])
    assert frame.loc["recon", ("kl_ldm", "auc")] == ours["kl_ldm"]["auc"]["value"]


def test_attribution_table_rows_sum_to_one():
    table = nb03_baselines.attribution_table(["kl", "vq", "kl", "kl"], ["real", "real", "gen", "gen"])
    assert table.loc["gen", "kl"] == 1.0 and table.loc["real"].sum() == pytest.approx(1.0)


def test_figures_build():
    import matplotlib.pyplot as plt

    real, recon = _images(10, 32, 0, "real"), _images(10, 32, 1, "recon")
    fig = nb03_figures.pairs_figure(real, recon, count=4)
    assert len(fig.axes) == 12
    a, b = scores(6)
    fig2 = nb03_figures.roc_figure(a[0], {"kl_ldm": b[0]}, title="t")
    assert fig2.axes[0].get_xscale() == "log"
    plt.close("all")
