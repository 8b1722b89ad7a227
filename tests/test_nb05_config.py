"""Notebook 05's config and metrics.json: the budgets of the notebook, and what it writes.

Every parameter that smoke mode shrinks is checked three ways: the mini default, the smoke
budget (both as the notebook had them), and an explicit value winning over the smoke budget
(before, the smoke branch overwrote all of them, whatever the parameters said).
"""

from __future__ import annotations

import ast
import dataclasses
import json
from types import SimpleNamespace

import pytest

from lare2lib.core import paths
from lare2lib.core.profiles import get_profile
from lare2lib.detectors.recon_classifier import default_crop
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.common import study_config
from lare2lib.studies.nb04_matrix import FamilyConfig
from lare2lib.studies.nb05_levels import NATIVE, ResolutionConfig
from lare2lib.studies.nb05_resolution import Config, write_metrics
from notebook_cells import parameter_cell, study_config_call

NOTEBOOK = paths.notebooks_dir() / "05_training_resolution.py"
MINI = get_profile("mini", seed=0)
SMOKE = get_profile("mini", smoke=True, seed=0)

SHRUNK = [
    # (notebook parameter, study_config keyword, read the value, mini default, smoke value, explicit)
    ("LEVELS", "levels", lambda c: c.resolution(SMOKE).levels, ("96", "192", NATIVE), ("64", NATIVE), ("48",)),
    ("TRAIN_WINDOWS", "train_windows", lambda c: c.resolution(SMOKE).train_windows, 512, 32, 20),
    ("VAL_WINDOWS", "val_windows", lambda c: c.resolution(SMOKE).val_windows, 96, 8, 6),
    ("TEST_WINDOWS", "test_windows", lambda c: c.resolution(SMOKE).test_windows, 256, 16, 12),
    ("LARGE_WINDOW", "large_window", lambda c: c.large_window, 0, 96, 128),
    ("LARGE_PHOTOS", "large_photos", lambda c: c.resolution(SMOKE).large_photos, 4, 2, 3),
    ("LARGE_WINDOWS", "large_windows", lambda c: c.resolution(SMOKE).large_windows, 64, 8, 5),
    ("LARE_SIDES", "lare_sides", lambda c: c.resolution(SMOKE).lare_sides, (32, 64, 128, 256), (16, 32, 64), (24,)),
    ("LARE_WINDOWS", "lare_windows", lambda c: c.resolution(SMOKE).lare_windows, 128, 8, 4),
    ("LARE_NATIVE_MAX", "lare_native_max", lambda c: c.lare_native_max, 256, 0, 32),
    ("BOOTSTRAP", "bootstrap", lambda c: c.family(SMOKE).bootstrap, 1000, 100, 20),
    ("EPOCHS", "epochs", lambda c: c.train.epochs, 3, 1, 2),
    ("BATCH_SIZE", "batch_size", lambda c: c.train.batch_size, 48, 16, 8),
]
"""The notebook's smoke branch set ``levels=("64", "native"), train_windows=32, val_windows=8,
test_windows=16, large_window=96, large_photos=2, large_windows=8, lare_sides=(16, 32, 64),
lare_windows=8``, ``family.bootstrap=100``, ``train_config.epochs=1, batch_size=16, max_steps=2``
and ``lare_native_max=0``."""

EXPLICIT_TEXT = {"levels": "48", "lare_sides": "24"}
"""The notebook passes LEVELS and LARE_SIDES as comma-separated text."""


@pytest.mark.parametrize("parameter, keyword, read, mini, smoke, explicit", SHRUNK,
                         ids=[row[0] for row in SHRUNK])
def test_smoke_shrinks_the_parameter_and_an_explicit_value_wins(parameter, keyword, read, mini, smoke,
                                                                explicit):
    given = EXPLICIT_TEXT.get(keyword, explicit)
    assert read(study_config(Config, MINI, **{keyword: None})) == mini
    assert read(study_config(Config, SMOKE, **{keyword: None})) == smoke
    assert read(study_config(Config, SMOKE, **{keyword: given})) == explicit
    assert read(study_config(Config, MINI, **{keyword: given})) == explicit


def _old_notebook(profile, **parameters):
    """The notebook's cell before :class:`Config`: parameters, then the smoke branch on top."""
    p = dict(LEVELS="96,192,native", WINDOW=0, TRAIN_WINDOWS=512, VAL_WINDOWS=96, TEST_WINDOWS=256,
             LARGE_WINDOW=0, LARGE_PHOTOS=4, LARGE_WINDOWS=64, EPOCHS=3, EARLY_STOPPING=2, BATCH_SIZE=48,
             LR=1e-4, TRIES=1, BOOTSTRAP=1000, BACKBONE="", CROP=0, LARE_SIDES="32,64,128,256",
             LARE_WINDOWS=128, LARE_NATIVE_MAX=256, SEED=0) | parameters
    window = p["WINDOW"] or (256 if profile.name == "full" else profile.world.image_size)
    config = ResolutionConfig(
        window=window, levels=tuple(level.strip() for level in p["LEVELS"].split(",") if level.strip()),
        train_windows=p["TRAIN_WINDOWS"], val_windows=p["VAL_WINDOWS"], test_windows=p["TEST_WINDOWS"],
        large_window=p["LARGE_WINDOW"] or 4 * window, large_photos=p["LARGE_PHOTOS"],
        large_windows=p["LARGE_WINDOWS"], lare_sides=tuple(int(s) for s in p["LARE_SIDES"].split(",")),
        lare_windows=p["LARE_WINDOWS"])
    family = FamilyConfig(backbone=p["BACKBONE"] or profile.models.recon_classifiers[0],
                          crop_size=p["CROP"] or default_crop(profile), tries=p["TRIES"], bootstrap=p["BOOTSTRAP"])
    train = TrainConfig(epochs=p["EPOCHS"], batch_size=p["BATCH_SIZE"], lr=p["LR"],
                        early_stopping=p["EARLY_STOPPING"], seed=p["SEED"])
    native_max = p["LARE_NATIVE_MAX"]
    if profile.smoke:
        config = dataclasses.replace(config, levels=("64", NATIVE), train_windows=32, val_windows=8,
                                     test_windows=16, large_window=96, large_photos=2, large_windows=8,
                                     lare_sides=(16, 32, 64), lare_windows=8)
        family = dataclasses.replace(family, bootstrap=100)
        train = dataclasses.replace(train, epochs=1, batch_size=16, max_steps=2)
        native_max = 0
    return config, family, train, native_max, p["BOOTSTRAP"]


def _new_notebook(profile, **overrides):
    budget = study_config(Config, profile, backbone="", crop_size=0, seed=0, **overrides)
    return (budget.resolution(profile), budget.family(profile), budget.train, budget.lare_native_max,
            budget.lare_bootstrap)


@pytest.mark.parametrize("profile", [MINI, SMOKE], ids=["mini", "smoke"])
def test_defaults_build_the_runs_the_notebook_built(profile):
    assert _new_notebook(profile) == _old_notebook(profile)
    # the LaRE study took the raw BOOTSTRAP parameter: 1000 in smoke too
    assert _new_notebook(profile)[4] == 1000
    assert _new_notebook(profile, window=48, tries=2, early_stopping=5, lr=1e-3)[1:3] == \
        _old_notebook(profile, WINDOW=48, TRIES=2, EARLY_STOPPING=5, LR=1e-3)[1:3]
    assert _new_notebook(profile, window=48)[0].large_window == (192 if profile is MINI else 96)
    with pytest.raises(TypeError, match="no parameter"):
        study_config(Config, profile, level="64")


def test_large_window_zero_is_four_windows_and_the_window_follows_the_profile():
    assert study_config(Config, MINI).resolution(MINI).window == MINI.world.image_size
    assert study_config(Config, MINI).resolution(MINI).large_window == 4 * MINI.world.image_size
    assert study_config(Config, SMOKE, large_window=0).resolution(SMOKE).large_window == 4 * SMOKE.world.image_size


def test_every_optional_notebook_parameter_reaches_the_config_and_defaults_to_none():
    optional = set()
    for node in parameter_cell(NOTEBOOK).body:
        if isinstance(node, ast.AnnAssign) and "Optional" in ast.unparse(node.annotation):
            assert isinstance(node.value, ast.Constant) and node.value.value is None, node.target.id
            optional.add(node.target.id)
    passed = {keyword.arg: keyword.value.id for keyword in study_config_call(NOTEBOOK).keywords}
    assert optional <= set(passed.values())
    assert all(passed[keyword] == parameter for parameter, keyword, *_ in SHRUNK)
    assert passed["lare_bootstrap"] == "BOOTSTRAP"


def test_write_metrics_keeps_the_notebooks_keys_in_order(tmp_path):
    config = study_config(Config, SMOKE).resolution(SMOKE)
    data = SimpleNamespace(config=config, largest_test_photos=lambda: [SimpleNamespace(photo_id="p1")])
    cell = {"auc": 0.7, "tpr@0.1%": 0.2, "ap": 0.6}
    result = {"matrix": {"64": {"64": cell}}, "large": {"64": {"1_tries": cell}}, "generators": {"64": {}},
              "history": {"64": []}, "seconds": {"64": {"train": 1.0}}}
    study = {"squash": {16: {"auc": 0.6, "low": 0.5, "high": 0.7}}, "native": {}}
    family, train = FamilyConfig(backbone="b", crop_size=24, bootstrap=100), TrainConfig(epochs=1)
    metrics = write_metrics(tmp_path, profile=SMOKE, seed=0, data=data, family=family, train_config=train,
                            result=result, study=study, lare_image_size=32, level_info={"64": {}},
                            sizes={"64": {"train": 3}}, started=0.0)
    assert list(metrics) == [
        "profile", "seed", "matrix", "matrix_full", "large", "generators", "lare_resize",
        "lare_resize_native", "lare_resize_intervals", "lare_image_size", "levels", "windows",
        "large_photos", "history", "row_seconds", "settings", "threads", "load_average", "seconds"]
    assert metrics["matrix"] == {"64": {"64": {"auc": 0.7, "tpr@0.1%": 0.2}}}
    assert metrics["lare_resize"] == {"16": 0.6} and metrics["lare_resize_native"] == {}
    assert metrics["large_photos"] == ["p1"]
    assert metrics["settings"] == {"resolution": dataclasses.asdict(config), "family": dataclasses.asdict(family),
                                   "train": dataclasses.asdict(train)}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["notebook"] == "05_training_resolution" and written["metrics"]["lare_image_size"] == 32
