"""Profiles: JSON round trip, a hash that is stable yet sensitive to every field, clear errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from lare2lib.core.profiles import PROFILE_NAMES, Profile, ProfileError, get_profile


def _leaf_fields(obj, prefix=""):
    """Dotted names and values of every non-dataclass field, nested sections included."""
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            yield from _leaf_fields(value, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", value


def _changed(value):
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, tuple):
        return (*value, "extra")
    raise TypeError(f"add a rule for {type(value).__name__}")


MINI_LEAVES = dict(_leaf_fields(get_profile("mini")))


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_json_round_trip(name):
    profile = get_profile(name)
    restored = Profile.from_json(profile.to_json())
    assert restored == profile
    assert restored.config_hash() == profile.config_hash()


def test_profiles_differ():
    hashes = {get_profile(name).config_hash() for name in PROFILE_NAMES}
    assert len(hashes) == len(PROFILE_NAMES)


def test_hash_is_stable_across_processes():
    """No dependence on dict order, ``hash()`` randomisation or object ids."""
    code = "from lare2lib.core.profiles import get_profile; print(get_profile('full').config_hash())"
    hashes = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(hashes) == 1
    assert len(hashes.pop()) == 12


@pytest.mark.parametrize("dotted", sorted(MINI_LEAVES))
def test_hash_changes_with_every_field(dotted):
    base = get_profile("mini")
    changed = base.replace(**{dotted: _changed(MINI_LEAVES[dotted])})
    assert changed != base
    assert changed.config_hash() != base.config_hash()


def test_smoke_flag():
    assert get_profile("mini", smoke=True) == get_profile("smoke")
    smoke = get_profile("smoke")
    assert smoke.smoke and smoke.world != get_profile("mini").world  # tiny budgets
    full_smoke = get_profile("full", smoke=True)
    assert full_smoke.smoke and full_smoke.name == "full"
    assert not get_profile("mini").smoke


def test_seed_and_dotted_overrides():
    profile = get_profile("mini", seed=7, **{"lare.timestep": 261, "world.ddim_steps": 10})
    assert (profile.seed, profile.lare.timestep, profile.world.ddim_steps) == (7, 261, 10)
    assert get_profile("mini").lare.timestep == 200  # the default is untouched (frozen)


def test_tuples_survive_json():
    profile = get_profile("full")
    data = json.loads(profile.to_json())
    assert isinstance(data["models"]["aeroblade_autoencoders"], list)
    assert isinstance(Profile.from_dict(data).models.aeroblade_autoencoders, tuple)


def test_unknown_profile_lists_valid_names():
    with pytest.raises(ProfileError) as error:
        get_profile("huge")
    assert "huge" in str(error.value)
    assert all(name in str(error.value) for name in PROFILE_NAMES)


@pytest.mark.parametrize(
    "dotted, valid_example",
    [("timestep", "seed"), ("lare.steps", "timestep"), ("nowhere.timestep", "lare")],
)
def test_unknown_field_lists_valid_fields(dotted, valid_example):
    with pytest.raises(ProfileError) as error:
        get_profile("mini", **{dotted: 1})
    assert dotted in str(error.value) and valid_example in str(error.value)


def test_unknown_field_in_json_is_rejected():
    data = json.loads(get_profile("mini").to_json())
    data["world"]["colour"] = "blue"
    with pytest.raises(ProfileError, match="colour.*image_size"):
        Profile.from_dict(data)
