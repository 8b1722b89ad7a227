"""Notebook 00's premise study (lare2lib.studies.nb00_premise): detail, scale windows, extrapolation, findings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lare2lib.core.profiles import get_profile
from lare2lib.studies import nb00_premise
from lare2lib.world import photos


def test_smoothness_is_zero_on_flat_images_and_grows_with_detail():
    flat = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 255).to(torch.uint8).expand(1, 3, 16, 16)
    ramp = torch.linspace(0, 255, 16).round().to(torch.uint8).expand(1, 3, 16, 16)
    values = nb00_premise.smoothness(torch.cat([flat, ramp, checker]))
    assert values[0] == 0 and values[1] < 1e-2  # a linear ramp has (almost) no second derivative
    assert values[2] == 4.0  # |4·1 − 0| at every pixel of a unit checkerboard


def test_scale_windows_cut_test_photos_at_one_scale_and_shrinking_adds_detail():
    world = SimpleNamespace(profile=get_profile("mini"))
    test_photos = [p for p in photos.find_photos() if p.split == "test"]
    shrunk = nb00_premise.scale_windows(world, 96, per_photo=6)
    stored = nb00_premise.scale_windows(world, None, per_photo=6)
    assert len(shrunk) == len(stored) == 6 * len(test_photos)
    assert shrunk.pixels.shape[1:] == (3, 64, 64) and shrunk.pixels.dtype == torch.uint8
    assert {i.split("@")[0] for i in shrunk.ids} == {p.photo_id for p in test_photos}
    assert [photos.CLASS_NAMES[c] for c in shrunk.class_index[::6]] == [p.category for p in test_photos]
    # The premise study's reason to vary scale: a window of a shrunk photo holds more edges.
    assert nb00_premise.smoothness(shrunk.pixels).mean() > 1.5 * nb00_premise.smoothness(stored.pixels).mean()
    again = nb00_premise.scale_windows(world, 96, per_photo=6)
    assert torch.equal(again.pixels, shrunk.pixels)  # seeded by the profile


def _premise_log(steps, aucs, kid_ratios, seconds_per_step=2.0):
    import pandas as pd

    return pd.DataFrame({"ldm": "kl_ldm", "step": steps, "step_seconds": [s * seconds_per_step for s in steps],
                         "auc": aucs, "kid": [0.05 * r for r in kid_ratios], "kid_floor": 0.05})


def test_premise_extrapolation_solves_the_fitted_power_law():
    import numpy as np

    steps = [1000, 2000, 4000]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    # logit(AUC) rises by 0.5 per doubling from 0.3: it meets logit(0.65) at 1000 · 2^((l(.65)−l(.3))/.5)
    aucs = [1 / (1 + np.exp(-(logit(0.3) + 0.5 * k))) for k in range(3)]
    ratios = [8.0, 4.0, 2.0 * 1.5]  # not a clean power law: the fit is least squares
    out = nb00_premise.premise_extrapolation(_premise_log(steps, aucs, ratios)).set_index("measure")
    expected = 1000 * 2 ** ((logit(0.65) - logit(0.3)) / 0.5)
    assert out.loc["premise AUC", "steps_needed"] == pytest.approx(expected, rel=1e-6)
    assert out.loc["premise AUC", "cpu_hours_needed"] == pytest.approx(expected * 2.0 / 3600, rel=1e-6)
    assert not out.loc["premise AUC", "reached"]
    slope, intercept = np.polyfit(np.log10(steps), np.log(ratios), 1)
    assert out.loc["KID / floor", "steps_needed"] == pytest.approx(10 ** ((np.log(2.0) - intercept) / slope))


def test_premise_extrapolation_says_when_a_target_is_reached_or_moving_away():
    out = nb00_premise.premise_extrapolation(_premise_log([1000, 2000], [0.30, 0.25], [1.5, 1.8]))
    out = out.set_index("measure")
    assert out.loc["premise AUC", "steps_needed"] == float("inf")  # getting worse: never at this rate
    assert out.loc["KID / floor", "reached"] and out.loc["KID / floor", "steps_needed"] == 2000


def test_detail_residuals_measure_samples_against_the_reals_trend():
    import numpy as np
    import pandas as pd

    detail = np.array([0.02, 0.05, 0.1, 0.2])
    real = pd.DataFrame({"set": "r", "kind": "real", "ldm": "kl_ldm", "smoothness": detail, "loss": 0.5 * detail ** 0.8})
    fake = pd.DataFrame({"set": "g", "kind": "generated", "ldm": "kl_ldm", "smoothness": [0.03, 0.07],
                         "loss": 3.0 * 0.5 * np.array([0.03, 0.07]) ** 0.8})  # three times the reals' loss
    out = nb00_premise.detail_residuals(pd.concat([real, fake])).iloc[0]
    assert out["ratio"] == pytest.approx(3.0) and out["slope"] == pytest.approx(0.8)
    gap = {"g": {"auc": 0.3, "auc_low": 0.25, "auc_high": 0.35}}
    scale = pd.DataFrame({"generator": "g", "reals": ["a", "b"], "auc": [0.3, 0.6]})
    text = nb00_premise.premise_findings(gap, scale, pd.concat([real, fake]))
    assert "is inverted" in text and "misses the target" in text and "from 0.300 (a) to 0.600 (b)" in text
    assert "above the reals' loss-vs-detail trend" in text and "× 3.00" in text


def test_training_findings_state_reached_and_extrapolated_targets():
    log = _premise_log([1000, 2000, 4000], [0.5, 0.6, 0.7], [4.0, 3.0, 2.5])
    log["auc_low"], log["auc_high"] = log["auc"] - 0.05, log["auc"] + 0.05
    text = nb00_premise.training_findings(log, nb00_premise.premise_extrapolation(log))
    assert "0.700 [0.650, 0.750] at step 4000" in text and "2.5× the real floor" in text
    assert "premise AUC target (0.65) reached by step 4000" in text
    assert "KID / floor would reach 2.0 near step" in text and "CPU-hours" in text
