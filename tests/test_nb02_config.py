"""Notebook 02's budget (lare2lib.studies.nb02_egre.Config): the mini defaults and the smoke budget
are the runs they always were, and an explicit parameter wins over the smoke budget."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path

import pytest

from lare2lib.core.profiles import get_profile
from lare2lib.detectors import egre_training
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies import nb02_egre
from lare2lib.studies.common import study_config

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_egre_ablations.py"

LEGACY_MINI = {"train_per_class": 768, "val_per_class": 256, "test_per_set": 0, "train_crops": 2,
               "map_batch_size": 32, "feature_batch_size": 128, "epochs": 12,
               "early_stopping": 3, "batch_size": 48, "lr": 1e-3, "max_steps": 0,
               "num_workers": 0, "seed": 0}
"""The mini notebook's study record before Config (frozen backbone: lr 1e-3)."""
LEGACY_SMOKE = {**LEGACY_MINI, "train_per_class": 0, "val_per_class": 0, "epochs": 2}
"""The smoke notebook's study record before Config (its metrics.json ``study``)."""

SMOKE_SHRUNK = {
    # notebook parameter: (Config override name, mini default, smoke budget, an explicit value)
    "TRAIN_PER_CLASS": ("train_per_class", 768, 0, 5),
    "VAL_PER_CLASS": ("val_per_class", 256, 0, 3),
    "TRAIN_CROPS": ("train_crops", 2, 2, 4),
    "EPOCHS": ("epochs", 12, 2, 7),
    "SEEDS": ("seeds", "0,1,2", "0", "4,5"),
}
"""Every notebook-02 parameter that smoke mode sets (TRAIN_CROPS: to its mini value, 2)."""


def notebook_config(profile: str, **parameters):
    """The notebook's own call: every budget parameter None unless given."""
    names = {"SEEDS": "seeds", "TRAIN_PER_CLASS": "train_per_class",
             "VAL_PER_CLASS": "val_per_class", "TEST_PER_SET": "test_per_set",
             "TRAIN_CROPS": "train_crops", "EPOCHS": "epochs", "EARLY_STOPPING": "early_stopping"}
    overrides = {name: parameters.get(param) for param, name in names.items()}
    lr = parameters.get("LR") or nb02_egre.default_lr(parameters.get("BACKBONE_MODE", "frozen"))
    return study_config(nb02_egre.Config, get_profile(profile, smoke=parameters.get("SMOKE", False)),
                        seed=0, lr=lr, **overrides)


def value(config: nb02_egre.Config, name: str):
    return getattr(config.train, name) if name == "epochs" else getattr(config, name)


def test_mini_defaults_and_smoke_budget_are_the_runs_they_were():
    mini, smoke = notebook_config("mini"), notebook_config("smoke")
    assert mini.record() == LEGACY_MINI and mini.seed_list == [0, 1, 2]
    assert smoke.record() == LEGACY_SMOKE and smoke.seed_list == [0]
    assert notebook_config("mini", SMOKE=True).record() == LEGACY_SMOKE  # mini --smoke too
    # the TrainConfig each run trains with: what the study built by hand before
    run = dataclasses.replace(smoke.train, seed=2)
    assert run == TrainConfig(epochs=2, batch_size=48, lr=1e-3, early_stopping=3, seed=2,
                              num_workers=0, max_steps=0, eval_batch_size=256)
    assert notebook_config("mini", BACKBONE_MODE="finetune").train.lr == 1e-4


@pytest.mark.parametrize("parameter", sorted(SMOKE_SHRUNK))
def test_an_explicit_parameter_wins_over_the_smoke_budget(parameter):
    name, mini, smoke, explicit = SMOKE_SHRUNK[parameter]
    assert value(notebook_config("mini"), name) == mini
    assert value(notebook_config("smoke"), name) == smoke
    assert value(notebook_config("smoke", **{parameter: explicit}), name) == explicit
    assert value(notebook_config("mini", **{parameter: explicit}), name) == explicit
    # the rest of the smoke budget stays
    others = notebook_config("smoke", **{parameter: explicit}).record()
    assert {k: v for k, v in others.items() if k != name} == {
        k: v for k, v in LEGACY_SMOKE.items() if k != name}


def test_other_budget_parameters_reach_the_config():
    config = notebook_config("smoke", TEST_PER_SET=9, EARLY_STOPPING=1, LR=5e-4)
    assert (config.test_per_set, config.train.early_stopping, config.train.lr) == (9, 1, 5e-4)


def test_the_notebook_declares_every_budget_parameter_optional_and_passes_it():
    source = NOTEBOOK.read_text()
    cell = source.split('# %% tags=["parameters"]')[1].split("# %%")[0]
    declared = {node.target.id: node for node in ast.parse(cell).body
                if isinstance(node, ast.AnnAssign)}
    for parameter in (*SMOKE_SHRUNK, "TEST_PER_SET", "EARLY_STOPPING", "LR"):
        node = declared[parameter]
        assert ast.unparse(node.annotation).startswith("Optional["), parameter
        assert isinstance(node.value, ast.Constant) and node.value.value is None, parameter
    call = source.split("study = study_config(nb02_egre.Config, profile,")[1].split("\nseeds")[0]
    for parameter, (name, *_) in SMOKE_SHRUNK.items():
        assert f"{name}={parameter}" in call.replace(" ", ""), parameter


def cli_args(**given):
    fields = ("train_per_class", "val_per_class", "train_crops", "epochs", "early_stopping",
              "batch_size", "max_steps", "lr")
    return argparse.Namespace(**{**dict.fromkeys(fields), "num_workers": 0, **given})


def test_the_train_command_budget_keeps_its_values_and_explicit_arguments_win():
    budget, train = egre_training.protocol_from_args(cli_args(), get_profile("smoke"), True)
    assert egre_training.protocol_record(budget, train) == {**LEGACY_SMOKE, "seed": 0}
    budget, train = egre_training.protocol_from_args(cli_args(epochs=5, train_per_class=3),
                                                     get_profile("smoke"), True)
    assert (train.epochs, budget.train_per_class, budget.val_per_class) == (5, 3, 0)
    budget, train = egre_training.protocol_from_args(cli_args(), get_profile("mini"), False)
    assert egre_training.protocol_record(budget, train) == {**LEGACY_MINI, "lr": 1e-4}


def test_metrics_record_keeps_the_notebook_keys(tmp_path):
    import json
    import time
    from types import SimpleNamespace

    row = {"acc": 0.5, "ap": 0.6, "auc": 0.7, "oracle_acc": 0.8}
    summary = {"egre": {"g1": row, "mean": row}}
    run = {"epochs": 2, "best_epoch": 1, "best_val_auc": 0.9, "seconds": 1.0, "checkpoint": "c",
           "steps": 4, "resumed": False, "metrics": {}}
    data = SimpleNamespace(train=[0] * 4, val=[0] * 2, test={"real": [0], "g1": [0, 0]},
                           seconds={"maps_lare": 1.0})
    record = nb02_egre.metrics_record(
        profile=get_profile("smoke"), study=notebook_config("smoke"), config={"crop_size": 24},
        seeds=[0], results={"egre": {0: run}}, summary=summary, bias_effect=None, shuffle={},
        token_grid=(2, 2), data=data, started=time.time())
    assert list(record) == ["profile", "seeds", "ablation", "esr_bias_effect",
                            "map_shuffle_diagnostic", "oracle_acc_diagnostic", "runs",
                            "detector_config", "study", "token_grid", "items", "data_seconds",
                            "load_average", "seconds"]
    assert record["ablation"] == {"egre": {"g1": {"acc": 0.5, "ap": 0.6, "auc": 0.7},
                                           "mean": {"acc": 0.5, "ap": 0.6, "auc": 0.7}}}
    assert record["runs"] == {"egre": {"0": {"epochs": 2, "best_epoch": 1, "best_val_auc": 0.9,
                                             "seconds": 1.0, "checkpoint": "c"}}}
    assert record["items"] == {"train": 4, "val": 2, "real": 1, "g1": 2}
    assert record["study"] == LEGACY_SMOKE and record["token_grid"] == [2, 2]
    path = nb02_egre.write_metrics(tmp_path, record)
    assert json.loads(path.read_text())["notebook"] == "02_egre_ablations"
