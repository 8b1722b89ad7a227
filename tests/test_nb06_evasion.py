"""Notebook 06's study modules (lare2lib.studies.nb06_*): grid, thresholds, ranking, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

def test_parse_grid_and_its_errors():
    from lare2lib.studies.nb06_evasion import parse_grid

    assert parse_grid("jpeg:90,50; blur:1") == {"jpeg": (90.0, 50.0), "blur": (1.0,)}
    for bad in ("zoom:2", "jpeg", "none:1"):
        with pytest.raises(ValueError, match="post-processing axis"):
            parse_grid(bad)


def test_detection_uses_the_given_threshold():
    from lare2lib.studies.nb06_suite import detection, thresholds_at

    real = np.linspace(0, 1, 101)
    threshold = thresholds_at({"d": real}, 0.05)["d"]
    assert threshold == pytest.approx(0.95)
    row = detection(threshold, real + 0.5, np.array([0.9, 0.96, 2.0, 3.0]))
    assert row["tpr"] == 0.75 and row["fpr"] == pytest.approx(0.54, abs=0.01)
    assert 0 <= row["auc"] <= 1


def test_most_graceful_ranks_retained_detection_and_skips_detectors_at_chance():
    from lare2lib.studies.nb06_findings import most_graceful
    from lare2lib.studies.nb06_suite import FPR

    def curve(*tprs):
        return {str(eps): {"tpr": t, "auc": 0.5 + t / 2} for eps, t in zip((0, 1, 2, 4), tprs)}

    pgd = {"strong_but_brittle": curve(0.9, 0.3, 0.1, 0.0), "steady": curve(0.6, 0.5, 0.4, 0.3),
           "useless": curve(0.05, 0.05, 0.05, 0.05)}
    result = most_graceful(pgd)
    assert result["detector"] == "steady"
    chance = FPR
    assert result["retained"]["steady"] == pytest.approx(
        np.mean([(v - chance) / (0.6 - chance) for v in (0.5, 0.4, 0.3)]))
    assert result["not_ranked"] == ["useless"]
    assert most_graceful(pgd, metric="auc")["detector"] == "steady"
    assert most_graceful({"useless": pgd["useless"]})["detector"] is None
    broken = most_graceful({"broken": curve(0.9, 0.0, 0.0, 0.0)})
    assert broken["detector"] is None and "none degrades gracefully" in broken["note"]


def test_find_checkpoint_reads_notebook_02_metrics_and_notebook_03_runs(tmp_path):
    from types import SimpleNamespace

    from lare2lib.core import paths
    from lare2lib.core.plotting import write_metrics
    from lare2lib.studies.nb06_detectors import find_checkpoint

    world = SimpleNamespace(folder=tmp_path / "mini-test-world")
    assert find_checkpoint("egre", world, 0, tmp_path / "figures") is None
    assert find_checkpoint("classifier", world, 0) is None
    runs = paths.data_dir() / "egre" / world.folder.name / "runs"
    globbed = runs / "egre-seed0-abc" / "best.safetensors"
    globbed.parent.mkdir(parents=True)
    globbed.write_bytes(b"")
    assert find_checkpoint("egre", world, 0) == globbed
    named = tmp_path / "elsewhere" / "best.safetensors"
    named.parent.mkdir()
    named.write_bytes(b"")
    write_metrics(tmp_path / "figures" / "02_egre_ablations",
                  {"runs": {"egre": {"0": {"checkpoint": str(named)}}}})
    assert find_checkpoint("egre", world, 0, tmp_path / "figures") == named
    assert find_checkpoint("egre", world, 1, tmp_path / "figures") is None
    classifier = (paths.data_dir() / "runs" / "03_ae_reconstruction" / world.folder.name / "lite0-kl_ae"
                  / "seed0" / "best.safetensors")
    classifier.parent.mkdir(parents=True)
    classifier.write_bytes(b"")
    assert find_checkpoint("classifier", world, 0) == classifier
    with pytest.raises(ValueError, match="no earlier notebook"):
        find_checkpoint("aeroblade", world, 0)
