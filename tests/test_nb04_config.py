"""Notebook 04's config and metrics.json: the budgets of the notebook, and what it writes.

Every parameter that smoke mode shrinks is checked three ways: the mini default, the smoke
budget (both as the notebook had them), and an explicit value winning over the smoke budget
(before, the smoke branch overwrote ``TRAIN_IMAGES``, ``BOOTSTRAP``, ``EPOCHS``, ``BATCH_SIZE``).
"""

from __future__ import annotations

import ast
import json

import pytest

from lare2lib.core import paths
from lare2lib.core.profiles import get_profile
from lare2lib.detectors.recon_classifier import default_crop
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.common import study_config
from lare2lib.studies.nb04_ae_family import Config, describe, run_root, write_metrics
from lare2lib.studies.nb04_matrix import FamilyConfig
from notebook_cells import parameter_cell, study_config_call

NOTEBOOK = paths.notebooks_dir() / "04_autoencoder_family.py"

SHRUNK = [
    # (notebook parameter, study_config keyword, read the value, mini default, smoke value, explicit)
    ("TRAIN_IMAGES", "train_images", lambda c: c.train_images, 1536, 0, 64),
    ("BOOTSTRAP", "bootstrap", lambda c: c.bootstrap, 1000, 100, 20),
    ("EPOCHS", "epochs", lambda c: c.train.epochs, 3, 1, 2),
    ("BATCH_SIZE", "batch_size", lambda c: c.train.batch_size, 48, 16, 8),
]
"""The notebook's smoke branch set ``family.train_images=0, bootstrap=100`` and
``train_config.epochs=1, batch_size=16, max_steps=2``, whatever the parameters said."""

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


def _old_notebook(profile, **parameters):
    """The notebook's cell before :class:`Config`: parameters, then the smoke branch on top."""
    import dataclasses

    p = dict(TRAIN_IMAGES=1536, VAL_IMAGES=0, EPOCHS=3, EARLY_STOPPING=2, BATCH_SIZE=48, LR=1e-4, TRIES=1,
             BOOTSTRAP=1000, BACKBONE="", CROP=0, SEED=0) | parameters
    family = FamilyConfig(backbone=p["BACKBONE"] or profile.models.recon_classifiers[0],
                          crop_size=p["CROP"] or default_crop(profile), train_images=p["TRAIN_IMAGES"],
                          val_images=p["VAL_IMAGES"], tries=p["TRIES"], bootstrap=p["BOOTSTRAP"])
    train = TrainConfig(epochs=p["EPOCHS"], batch_size=p["BATCH_SIZE"], lr=p["LR"],
                        early_stopping=p["EARLY_STOPPING"], seed=p["SEED"])
    if profile.smoke:
        family = dataclasses.replace(family, train_images=0, bootstrap=100)
        train = dataclasses.replace(train, epochs=1, batch_size=16, max_steps=2)
    return family, train


@pytest.mark.parametrize("profile", [MINI, SMOKE], ids=["mini", "smoke"])
def test_defaults_build_the_runs_the_notebook_built(profile):
    config = study_config(Config, profile, backbone="", crop_size=0, seed=0)
    assert (config.family(profile), config.train) == _old_notebook(profile)
    seeded = study_config(Config, profile, seed=3, backbone="resnet10t", crop_size=16)
    assert (seeded.family(profile), seeded.train) == _old_notebook(profile, SEED=3, BACKBONE="resnet10t", CROP=16)
    mini = study_config(Config, MINI, val_images=8, tries=2, early_stopping=5, lr=1e-3)
    assert (mini.family(MINI), mini.train) == _old_notebook(MINI, VAL_IMAGES=8, TRIES=2, EARLY_STOPPING=5,
                                                            LR=1e-3)
    with pytest.raises(TypeError, match="no parameter"):
        study_config(Config, profile, epoch=3)


def test_every_optional_notebook_parameter_reaches_the_config_and_defaults_to_none():
    optional = set()
    for node in parameter_cell(NOTEBOOK).body:
        if isinstance(node, ast.AnnAssign) and "Optional" in ast.unparse(node.annotation):
            assert isinstance(node.value, ast.Constant) and node.value.value is None, node.target.id
            optional.add(node.target.id)
    passed = {keyword.arg: keyword.value.id for keyword in study_config_call(NOTEBOOK).keywords}
    assert optional <= set(passed.values())
    assert all(passed[keyword] == parameter for parameter, keyword, *_ in SHRUNK)
    assert {passed[k] for k in ("backbone", "crop_size", "seed")} == {"BACKBONE", "CROP", "SEED"}


class _Source:
    autoencoders = ["kl_ae", "vq_ae"]
    config = FamilyConfig(backbone="b", crop_size=24)
    seed = 0


def test_run_root_is_keyed_by_settings_and_profile(tmp_path):
    train = TrainConfig(epochs=1)
    first = run_root(_Source(), train, SMOKE, tmp_path)
    assert first.parent == tmp_path / "aefamily" and first.name.startswith(f"{SMOKE.name}-")
    assert run_root(_Source(), train, SMOKE, tmp_path) == first
    assert run_root(_Source(), TrainConfig(epochs=2), SMOKE, tmp_path) != first


def test_write_metrics_keeps_the_notebooks_keys_in_order(tmp_path):
    cell = {"auc": 0.9, "auc_ci": [0.8, 1.0], "tpr@0.1%": 0.5, "tpr@0.1%_ci": [0.1, 0.9], "ap": 0.8}
    result = {"matrix": {"kl_ae": {"recon_kl_ae": cell}}, "n_train": {"kl_ae": 4}, "n_val": {"kl_ae": 2},
              "best_epoch": {"kl_ae": 1}, "history": {"kl_ae": []}, "seconds": {"kl_ae": {"train": 1.0}}}
    import torch

    spectra = {"summary": {"autoencoders": {}}, "residual": {"kl_ae": torch.zeros(8, 8)}}
    train = TrainConfig(epochs=1, seed=0)
    metrics = write_metrics(tmp_path, profile=SMOKE, seed=0, source=_Source(), train_config=train, result=result,
                            spectra=spectra, family_of={"kl_ldm": "kl_ae"}, n_test_real=5, started=0.0)
    assert list(metrics) == [
        "profile", "seed", "matrix", "matrix_full", "spectra_summary", "residual_spectra",
        "training_autoencoders", "generator_autoencoder", "n_train", "n_val", "n_test_real", "best_epoch",
        "history", "row_seconds", "settings", "threads", "load_average", "seconds"]
    assert metrics["matrix"] == {"kl_ae": {"recon_kl_ae": {"auc": 0.9, "tpr@0.1%": 0.5, "tpr@0.1%_ci": [0.1, 0.9]}}}
    assert metrics["matrix_full"] is result["matrix"] and metrics["row_seconds"] is result["seconds"]
    assert metrics["settings"] == describe(_Source(), train)
    assert list(metrics["settings"]) == ["autoencoders", "family", "train", "seed"]
    assert list(metrics["residual_spectra"]["kl_ae"]) == ["frequency", "log_magnitude"]
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["notebook"] == "04_autoencoder_family" and written["metrics"]["n_test_real"] == 5
