"""What every study module shares: how a notebook turns its parameters into the study's config.

Each study module (``nb02_egre``, ``nb04_ae_family``, …) declares one frozen dataclass whose
defaults are the mini notebook's budget. The training protocol is a nested
:class:`~lare2lib.detectors.train.TrainConfig` in a field named ``train`` (built on it, not a copy
of its fields), and a classmethod ``smoke()`` returns the tiny budget of the tests and CI (and
``full()``, where the GPU profile needs other defaults).

A notebook declares the parameters that a budget sets as ``Optional[...] = None`` and builds its
config with :func:`study_config`: the profile picks the budget, then every parameter the user set
(anything not ``None``) replaces the budget's value. So ``lare2 run --smoke -p EPOCHS=2`` trains
two epochs on the smoke world, and a value typed in JupyterLab wins in the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from lare2lib.core.profiles import Profile

__all__ = ["budget", "load_study_world", "study_config", "with_overrides"]

ConfigT = TypeVar("ConfigT")

TRAIN_FIELD = "train"
"""Name of the nested :class:`~lare2lib.detectors.train.TrainConfig` in a study config."""


def budget(config_class: type[ConfigT], profile: Profile) -> ConfigT:
    """The study's defaults for ``profile``: ``smoke()``, ``full()`` (when declared) or ``()``."""
    if profile.smoke:
        return config_class.smoke()
    if profile.name == "full" and hasattr(config_class, "full"):
        return config_class.full()
    return config_class()


def with_overrides(config: ConfigT, **overrides: Any) -> ConfigT:
    """``config`` with every override that is not ``None``.

    A name that is a field of ``config`` replaces it; a name that is a field of its nested
    ``train`` config (``epochs``, ``lr``, …) replaces that one. Any other name is a typo and
    raises, naming the valid ones.
    """
    own_fields = {field.name for field in dataclasses.fields(config)}
    nested = getattr(config, TRAIN_FIELD, None) if TRAIN_FIELD in own_fields else None
    train_fields = {field.name for field in dataclasses.fields(nested)} if nested is not None else set()
    own, train = {}, {}
    for name, value in overrides.items():
        if value is None:
            continue
        if name in own_fields:
            own[name] = value
        elif name in train_fields:
            train[name] = value
        else:
            valid = ", ".join(sorted((own_fields - {TRAIN_FIELD}) | train_fields))
            raise TypeError(f"{type(config).__name__} has no parameter {name!r}; valid: {valid}")
    if train:
        own[TRAIN_FIELD] = dataclasses.replace(own.get(TRAIN_FIELD, nested), **train)
    return dataclasses.replace(config, **own)


def study_config(config_class: type[ConfigT], profile: Profile, **overrides: Any) -> ConfigT:
    """The profile's budget of ``config_class``, then every parameter the user set (not ``None``)."""
    return with_overrides(budget(config_class, profile), **overrides)


def load_study_world(profile: Profile, *, genimage_root: str = "", train_subset: str = "sdv4",
                     val_classes: str = "", fit: str = "", sample: str = "", progress: bool = False):
    """The world a notebook studies: the mini (or smoke) world of notebook 00, or in the full
    profile GenImage under the same interface (:class:`lare2lib.world.genimage.GenImageWorld`:
    ``genimage_root``, else the profile's ``data_root``; ``val_classes``: the release's
    ``anns/filename_to_folder.json`` for the ``ILSVRC2012_val_*`` reals; ``fit``: how its images
    are brought to one size, :attr:`lare2lib.world.genimage.Budget.fit`; ``sample``: images per set,
    ``"train,val,test"``, empty for the :class:`~lare2lib.world.genimage.Budget`'s)."""
    if profile.name == "full":
        from lare2lib.world.genimage import Budget, load_genimage_world

        root = genimage_root or profile.data_root
        if not root:
            raise ValueError("the full profile needs GENIMAGE_ROOT: the GenImage folder "
                             "(<subset>/{train,val}/{ai,nature}), and VAL_CLASSES for its val reals' classes")
        budget = Budget.parse(sample) if sample else None
        return load_genimage_world(profile, root, train_subset, budget=budget, val_classes=val_classes or None,
                                   fit=fit, progress=progress)
    from lare2lib.world.build import load_world

    return load_world(profile, progress=progress)
