"""Notebook 06's config and metrics.json: the budgets of the notebook, and what it writes.

Every parameter that smoke mode shrinks is checked three ways: the mini default, the smoke
budget (both as the notebook had them), and an explicit value winning over the smoke budget.
"""

from __future__ import annotations

import ast
import json

import pytest

from lare2lib.core import paths
from lare2lib.core.profiles import get_profile
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.common import study_config
from lare2lib.studies.nb06_evasion import Config, write_metrics
from notebook_cells import parameter_cell, study_config_call

NOTEBOOK = paths.notebooks_dir() / "06_evasion.py"

SHRUNK = [
    # (notebook parameter, study_config keyword, read the value, mini default, smoke value, explicit)
    ("N_REAL", "n_real", lambda c: c.n_real, 160, 0, 7),
    ("N_FAKE", "n_fake", lambda c: c.n_fake, 40, 4, 9),
    ("POSTPROCESS", "postprocess", lambda c: c.postprocess,
     "jpeg:90,70,50;resize:0.5;blur:1,2;noise:0.03", "jpeg:70;blur:1", "noise:0.1"),
    ("PGD_IMAGES", "pgd_images", lambda c: c.pgd_images, 32, 4, 6),
    ("PGD_BUDGETS", "pgd_budgets", lambda c: c.pgd_budgets, "0,1,2,4,8", "0,4", "0,2"),
    ("PGD_STEPS", "pgd_steps", lambda c: c.pgd_steps, 5, 2, 3),
    ("TRAIN_PER_CLASS", "train_per_class", lambda c: c.train_per_class, 512, 0, 16),
    ("TRAIN_EPOCHS", "epochs", lambda c: c.train.epochs, 8, 1, 3),
]
"""The notebook's smoke branch set these: ``N_REAL, N_FAKE, PGD_IMAGES, PGD_STEPS, PGD_BUDGETS =
0, 4, 4, 2, "0,4"``, ``POSTPROCESS = "jpeg:70;blur:1"`` and the fallback training budget
``{"train_per_class": 0, "val_per_class": 0, "epochs": 1, "max_steps": 2}``."""

MINI = get_profile("mini", seed=0)
SMOKE = get_profile("mini", smoke=True, seed=0)


@pytest.mark.parametrize("parameter, keyword, read, mini, smoke, explicit", SHRUNK,
                         ids=[row[0] for row in SHRUNK])
def test_smoke_shrinks_the_parameter_and_an_explicit_value_wins(parameter, keyword, read, mini, smoke,
                                                                explicit):
    assert read(study_config(Config, MINI, **{keyword: None})) == mini
    assert read(study_config(Config, SMOKE, **{keyword: None})) == smoke
    assert read(study_config(Config, SMOKE, **{keyword: explicit})) == explicit
    assert read(study_config(Config, MINI, **{keyword: explicit})) == explicit


def test_the_rest_of_the_budget_is_the_notebooks():
    mini, smoke = study_config(Config, MINI), study_config(Config, SMOKE)
    assert mini.pgd_batch == smoke.pgd_batch == 16  # PGD_BATCH: not shrunk
    assert study_config(Config, SMOKE, pgd_batch=4).pgd_batch == 4
    assert mini.val_per_class == 128 and smoke.val_per_class == 0
    # the classifier's TrainConfig(epochs, seed, max_steps, early_stopping=3) of the notebook
    assert mini.train == TrainConfig(epochs=8, early_stopping=3)
    assert smoke.train == TrainConfig(epochs=1, early_stopping=3, max_steps=2)
    # reported in metrics.json ("trained here (...)"): same keys, order and values as before
    assert list(mini.training_budget().items()) == [("train_per_class", 512), ("val_per_class", 128),
                                                    ("epochs", 8)]
    assert list(smoke.training_budget().items()) == [("train_per_class", 0), ("val_per_class", 0),
                                                     ("epochs", 1), ("max_steps", 2)]
    assert mini.budgets() == [0.0, 1.0, 2.0, 4.0, 8.0] and smoke.budgets() == [0.0, 4.0]
    assert smoke.grid() == {"jpeg": (70.0,), "blur": (1.0,)}
    with pytest.raises(TypeError, match="no parameter"):
        study_config(Config, SMOKE, n_reals=3)


def test_every_optional_notebook_parameter_reaches_the_config_and_defaults_to_none():
    optional = {}
    for node in parameter_cell(NOTEBOOK).body:
        if isinstance(node, ast.AnnAssign) and "Optional" in ast.unparse(node.annotation):
            assert isinstance(node.value, ast.Constant) and node.value.value is None, node.target.id
            optional[node.target.id] = ast.unparse(node.annotation)
    passed = {keyword.arg: keyword.value.id for keyword in study_config_call(NOTEBOOK).keywords}
    assert sorted(passed.values()) == sorted(optional)
    assert {row[0]: row[1] for row in SHRUNK}.items() <= {v: k for k, v in passed.items()}.items()
    assert passed["pgd_batch"] == "PGD_BATCH"


class _Images:
    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count


def test_write_metrics_keeps_the_notebooks_keys_in_order(tmp_path):
    results = {name: {"value": k} for k, name in enumerate(
        ("clean", "clean_per_generator", "postprocess", "post_mean", "removal", "removal_psnr", "pgd",
         "ten_tries", "graceful", "graceful_auc", "scoring_seconds", "section_seconds"))}
    config = Config.smoke()
    metrics = write_metrics(tmp_path, profile=SMOKE, config=config, origin={"egre": "here"},
                            reals=_Images(5), fakes={"kl_ldm": _Images(2), "vq_ldm": _Images(3)},
                            pgd_set=_Images(4), started=0.0, **results)
    assert list(metrics) == [
        "profile", "seed", "fpr", "threshold_rule", "detectors", "n_real", "n_fake_per_generator",
        "clean", "clean_per_generator", "postprocess", "postprocess_mean_tpr", "artifact_removal",
        "artifact_removal_psnr", "pgd", "pgd_setup", "pgd_classifier_10_tries", "most_graceful",
        "most_graceful_auc", "scoring_seconds", "section_seconds", "cpu_seconds", "threads",
        "load_average", "seconds"]
    assert metrics["profile"] == SMOKE.name and metrics["seed"] == 0 and metrics["fpr"] == 0.05
    assert metrics["n_real"] == 5 and metrics["n_fake_per_generator"] == {"kl_ldm": 2, "vq_ldm": 3}
    assert metrics["postprocess_mean_tpr"] == results["post_mean"]
    assert metrics["pgd_classifier_10_tries"] == results["ten_tries"]
    assert metrics["pgd_setup"] == {"images": 4, "generator": "kl_ldm", "steps": 2,
                                    "step_size": "2.5*eps/steps", "random_start": True,
                                    "objective": "log-odds (trained) / -mean LaRE / -min distance",
                                    "quantised": "8-bit, within the budget"}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["notebook"] == "06_evasion" and written["metrics"]["detectors"] == {"egre": "here"}
