"""The budget → override rule every study notebook follows (lare2lib.studies.common)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lare2lib.core.profiles import get_profile
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.common import budget, study_config, with_overrides


@dataclass(frozen=True)
class ToyConfig:
    images: int = 100
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5))

    @classmethod
    def smoke(cls) -> ToyConfig:
        return cls(images=4, train=TrainConfig(epochs=1, max_steps=2))


@dataclass(frozen=True)
class ToyWithFull(ToyConfig):
    @classmethod
    def full(cls) -> ToyWithFull:
        return cls(images=10_000)


def test_budget_follows_the_profile():
    assert budget(ToyConfig, get_profile("mini")).images == 100
    assert budget(ToyConfig, get_profile("smoke")).train.epochs == 1
    assert budget(ToyConfig, get_profile("mini", smoke=True)).images == 4
    assert budget(ToyConfig, get_profile("full")).images == 100  # no full(): the defaults
    assert budget(ToyWithFull, get_profile("full")).images == 10_000


def test_an_explicit_parameter_beats_the_smoke_budget():
    config = study_config(ToyConfig, get_profile("smoke"), epochs=2, images=None)
    assert config.train.epochs == 2  # the user's value
    assert config.train.max_steps == 2  # the rest of the smoke budget stays
    assert config.images == 4  # None = not set: the budget's


def test_own_and_nested_fields_in_one_call():
    config = with_overrides(ToyConfig(), images=7, lr=3e-4)
    assert (config.images, config.train.lr, config.train.epochs) == (7, 3e-4, 5)
    config = with_overrides(ToyConfig(), train=TrainConfig(epochs=9), batch_size=8)
    assert (config.train.epochs, config.train.batch_size) == (9, 8)


def test_a_typo_names_the_valid_parameters():
    with pytest.raises(TypeError, match="no parameter 'epoch'.*epochs"):
        with_overrides(ToyConfig(), epoch=3)
