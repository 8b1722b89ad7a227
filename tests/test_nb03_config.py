"""Notebook 03's budget: every parameter smoke mode shrinks, and an explicit value winning over it.

Before :class:`Config`, the notebook's smoke branch overwrote ``CROP``, ``N_SEEDS``,
``TRAIN_IMAGES``, ``BOOTSTRAP``, ``BENCH_IMAGES``, ``AEROBLADE_DISTRACTOR`` and the robustness
axes whatever the parameters said.
"""

from __future__ import annotations

import math

import pytest

from lare2lib.core.profiles import get_profile
from lare2lib.data import perturb
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.common import study_config
from lare2lib.studies.nb03_recon import Config

SHRUNK = [
    # (notebook parameter, study_config keyword, mini default, smoke value, explicit)
    ("N_SEEDS", "n_seeds", 3, 1, 2),
    ("TRAIN_IMAGES", "train_images", 8000, 64, 96),
    ("BOOTSTRAP", "bootstrap", 1000, 50, 20),
    ("BENCH_IMAGES", "bench_images", 8, 2, 0),
    ("AEROBLADE_DISTRACTOR", "aeroblade_distractor", "taef2", "", "vq_ae"),
]
MINI = get_profile("mini", seed=0)
SMOKE = get_profile("mini", smoke=True, seed=0)


@pytest.mark.parametrize("parameter, keyword, mini, smoke, explicit", SHRUNK, ids=[r[0] for r in SHRUNK])
def test_smoke_shrinks_the_parameter_and_an_explicit_value_wins(parameter, keyword, mini, smoke, explicit):
    assert getattr(study_config(Config, MINI, **{keyword: None}), keyword) == mini
    assert getattr(study_config(Config, SMOKE, **{keyword: None}), keyword) == smoke
    assert getattr(study_config(Config, SMOKE, **{keyword: explicit}), keyword) == explicit
    assert getattr(study_config(Config, MINI, **{keyword: explicit}), keyword) == explicit


def test_robustness_axes_shrink_in_smoke():
    assert study_config(Config, MINI).robust_axes == perturb.ROBUSTNESS_GRID
    assert study_config(Config, SMOKE).robust_axes == {"jpeg": (50,), "resize": (0.5,)}


@pytest.mark.parametrize("profile", [MINI, SMOKE], ids=["mini", "smoke"])
def test_plan_trains_what_the_notebook_trained(profile):
    """The old cell: epochs = ceil(TRAIN_IMAGES / (2 n_train)), max_steps = ceil(TRAIN_IMAGES / 48)."""
    config = study_config(Config, profile, lr=None, backbone=None)
    images = 64 if profile.smoke else 8000
    plan = config.plan(profile, 500)
    assert plan.backbone == profile.models.recon_classifiers[0]
    assert plan.seeds == ((0,) if profile.smoke else (0, 1, 2))
    assert plan.train == TrainConfig(epochs=max(1, math.ceil(images / 1000)), batch_size=48, lr=1e-4,
                                     max_steps=math.ceil(images / 48), early_stopping=0)
    assert list(plan.settings(config)) == ["backbone", "autoencoder", "crop", "small_image_policy", "seeds",
                                           "epochs", "max_steps", "batch_size", "lr", "score_batch", "tries",
                                           "bootstrap"]
    assert study_config(Config, profile, lr=1e-3).plan(profile, 500).train.lr == 1e-3


def _world(profile, recon: str, blade: list[str]):
    from types import SimpleNamespace

    return SimpleNamespace(profile=profile, recon_autoencoder=recon, aeroblade_autoencoders=blade)


@pytest.mark.parametrize("profile, crop", [(MINI, 48), (SMOKE, 24), (get_profile("full"), 256)],
                         ids=["mini", "smoke", "full"])
def test_for_world_fills_the_worlds_autoencoders_and_the_profiles_crop(profile, crop):
    """Crop 0 is three quarters of the world's image side (the notebook's 48 px of 64), in full the
    paper's 256; unnamed autoencoders are the world's; named ones are kept."""
    config = study_config(Config, profile).for_world(_world(profile, "ae1", ["ae1", "ae2"]))
    assert (config.crop, config.autoencoder, config.aeroblade_autoencoders()) == (crop, "ae1", ["ae1", "ae2"])
    given = study_config(Config, profile, crop=32, autoencoder="x", aeroblade_aes="y,z")
    assert given.for_world(_world(profile, "ae1", ["ae2"])) == given


def test_for_world_gives_eva02_its_patch_multiple_in_full():
    full = get_profile("full")
    config = study_config(Config, full, backbone="eva02_large_patch14_448.mim_m38m_ft_in22k_in1k")
    assert config.for_world(_world(full, "a", ["a"])).crop == 252
