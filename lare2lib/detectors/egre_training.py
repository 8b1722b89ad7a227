"""EGRE's training protocol and runs: the mini budget, one trained variant, its test metrics.

* :func:`train_config` is the mini protocol's :class:`~lare2lib.detectors.train.TrainConfig`
  (12 epochs, early stopping after 3, batch 48, Adam 1e-4, validation batches of 256);
  :data:`SMOKE_TRAIN` shrinks it for the smoke profile, :data:`FROZEN_HEAD_LR` is the rate of a
  head over a frozen backbone; :func:`protocol_record` is the flat record a run is keyed by.
* :func:`train_variant` trains one built detector with :func:`lare2lib.detectors.train.fit` (runs
  are resumable and a finished run is read back, not retrained); :func:`evaluate_detector`
  scores every test set.
* :func:`train_and_report` is the body of ``lare2 train egre``
  (:func:`lare2lib.detectors.egre.train_command`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare2lib.detectors.egre_data import EgreDataset
from lare2lib.detectors.egre_splits import EgreData, SplitBudget
from lare2lib.detectors.train import TrainConfig

__all__ = [
    "FROZEN_HEAD_LR",
    "MINI_DIRE_STEPS",
    "MINI_TRAIN",
    "SMOKE_TRAIN",
    "train_config",
    "head_lr",
    "protocol_record",
    "protocol_from_args",
    "data_fingerprint",
    "without_features",
    "train_variant",
    "evaluate_detector",
    "train_and_report",
]

FROZEN_HEAD_LR = 1e-3
"""Learning rate of a head trained over a frozen backbone (the mini default): the released 1e-4
is for fine-tuning all of CLIP, and leaves a head of tens of thousands of weights unconverged
within the mini epoch budget (measured: backbone-only still improving at epoch 15)."""

MINI_DIRE_STEPS = 4
"""DDIM steps each way of the DIRE-style maps in the mini and smoke worlds (DIRE: 20 + 20),
fewer to fit the CPU budget; ``--dire-steps`` / the notebook's ``DIRE_STEPS`` change it."""

MINI_TRAIN: dict[str, Any] = {"epochs": 12, "early_stopping": 3, "batch_size": 48, "lr": 1e-4,
                              "eval_batch_size": 256}
"""The mini protocol's training settings (the rest: :class:`TrainConfig`'s released defaults)."""

SMOKE_TRAIN: dict[str, Any] = {"epochs": 2}
"""What the smoke profile changes in :data:`MINI_TRAIN` (two epochs)."""


def train_config(**overrides: Any) -> TrainConfig:
    """The mini protocol's :class:`TrainConfig` (:data:`MINI_TRAIN`), with ``overrides``."""
    return TrainConfig(**{**MINI_TRAIN, **overrides})


def head_lr(freeze_backbone: bool) -> float:
    """The default learning rate: :data:`FROZEN_HEAD_LR` over a frozen backbone, else the released 1e-4."""
    return FROZEN_HEAD_LR if freeze_backbone else MINI_TRAIN["lr"]


def protocol_record(budget: SplitBudget, train: TrainConfig) -> dict[str, Any]:
    """The split budget and the training settings a run depends on, as one flat dict.

    Runs are keyed by it (a rerun with the same record reads the finished run back) and
    notebook 02's metrics.json reports it as ``study``. ``train.seed`` is left out: the run
    seed is part of the run's folder name.
    """
    return {"train_per_class": budget.train_per_class, "val_per_class": budget.val_per_class,
            "test_per_set": budget.test_per_set, "train_crops": budget.train_crops,
            "map_batch_size": budget.map_batch_size,
            "feature_batch_size": budget.feature_batch_size, "epochs": train.epochs,
            "early_stopping": train.early_stopping, "batch_size": train.batch_size,
            "lr": train.lr, "max_steps": train.max_steps, "num_workers": train.num_workers,
            "seed": budget.seed}


def protocol_from_args(args: argparse.Namespace, profile,
                       freeze_backbone: bool) -> tuple[SplitBudget, TrainConfig]:
    """``lare2 train egre``'s budget and training settings: the profile's (mini or smoke), then
    every argument given; the data seed is the profile's."""
    smoke = profile.smoke
    budget = SplitBudget.smoke() if smoke else SplitBudget()
    sizes = {"train_per_class": args.train_per_class, "val_per_class": args.val_per_class,
             "train_crops": args.train_crops}
    budget = dataclasses.replace(budget, seed=profile.seed,
                                 **{k: v for k, v in sizes.items() if v is not None})
    train = train_config(**(SMOKE_TRAIN if smoke else {}))
    given = {"epochs": args.epochs, "early_stopping": args.early_stopping,
             "batch_size": args.batch_size, "max_steps": args.max_steps,
             "lr": args.lr if args.lr is not None else head_lr(freeze_backbone)}
    return budget, dataclasses.replace(train, num_workers=args.num_workers,
                                       **{k: v for k, v in given.items() if v is not None})


# -- one run ---------------------------------------------------------------------------------


def data_fingerprint(*datasets: EgreDataset) -> str:
    """What a run's data is: the item ids, the alignment and the maps' sum of every dataset."""
    from lare2lib.data.store import manifest_hash

    parts = [manifest_hash(ds.item_ids()) + f"/{ds.aligned}/{float(ds.maps.sum()):.6e}"
             for ds in datasets]
    return "|".join(parts)


def without_features(dataset: EgreDataset) -> EgreDataset:
    """``dataset`` without cached backbone features (a fine-tuned backbone must see the pixels)."""
    copy = dataset.options()
    copy.features = None
    return copy


def train_variant(model, data: EgreData, train: TrainConfig, out_dir: str | Path, *,
                  progress: bool = False, test_set=None):
    """Train a built detector (:func:`lare2lib.detectors.egre.build_detector`) on ``data``, with the
    maps and alignment of its config; ``train.seed`` seeds the data order and dropout.

    Returns ``(model with best weights, FitResult)``. A run directory that already holds this
    finished run is read back, not retrained.
    """
    from lare2lib.detectors.train import fit

    config = model.config
    train_set, val, _ = data.splits(config["feature"], config["aligned"],
                                    with_image=config["variant"] != "lare_cnn")
    if not config["freeze_backbone"]:  # a fine-tuned backbone must see the pixels
        train_set, val = without_features(train_set), without_features(val)
    result = fit(model, train_set, val, train, out_dir, test_set=test_set, progress=progress,
                 data_fingerprint=data_fingerprint(train_set, val))
    return model, result


def evaluate_detector(model, tests: dict[str, EgreDataset], *, bootstrap: int = 0,
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """Metrics per test set and their ``"mean"`` (:func:`lare2lib.eval.metrics.real_vs_sets`).

    The world's layout: one ``"real"`` set against every generator. GenImage's: each subset
    ``X`` against its own reals ``"X:real"``.
    """
    from lare2lib.detectors.train import predict
    from lare2lib.eval import metrics

    if not model.config["freeze_backbone"]:
        tests = {name: without_features(ds) for name, ds in tests.items()}
    scores = {name: predict(model, ds, batch_size=256, progress=False)[0]
              for name, ds in tests.items()}
    if "real" in scores:
        return metrics.real_vs_sets(scores.pop("real"), scores, bootstrap=bootstrap, seed=seed)
    table = {name: metrics.real_vs_sets(scores[f"{name}:real"], {name: scores[name]},
                                        bootstrap=bootstrap, seed=seed)[name]
             for name in scores if not name.endswith(":real")}
    scalar = [k for k, v in next(iter(table.values())).items() if isinstance(v, float)]
    table["mean"] = {k: float(np.mean([row[k] for row in table.values()])) for k in scalar}
    return table


# -- `lare2 train egre` ------------------------------------------------------------------------


def command_data(args: argparse.Namespace, profile, config: dict[str, Any],
                 budget: SplitBudget, train: TrainConfig) -> EgreData:
    """The command's splits: GenImage for the full profile, else the profile's built world."""
    from lare2lib.detectors.egre_splits import genimage_data, world_data

    progress = not args.no_progress
    if profile.name == "full":
        data_root = args.data_root or profile.data_root
        if not data_root:
            raise ValueError("the full profile trains on GenImage: pass --data-root <GenImage root>")
        return genimage_data(data_root, args.train_subset, config, budget,
                             features=(config["feature"],), seed=args.seed,
                             num_workers=train.num_workers, progress=progress)
    from lare2lib.world.build import load_world

    world = load_world(profile, progress=progress)
    return world_data(world, config, budget, features=(config["feature"],), progress=progress)


def train_and_report(args: argparse.Namespace, profile, config: dict[str, Any],
                     budget: SplitBudget, train: TrainConfig, model) -> int:
    """Build the data (maps cached), train ``model``, copy the best checkpoint to ``--out``,
    print its test metrics (read back from the copy) as JSON."""
    from lare2lib.data.store import config_hash
    from lare2lib.detectors.registry import load_detector

    data = command_data(args, profile, config, budget, train)
    key = config_hash({"config": config, "study": protocol_record(budget, train),
                       "select_on_test": args.select_on_test})
    run_dir = Path(args.run_dir) if args.run_dir else (
        data.root / "runs" / f"cli-{args.variant}-seed{args.seed}-{key}")
    train = dataclasses.replace(train, seed=args.seed)
    test_set = None
    if args.select_on_test:
        train = dataclasses.replace(train, select_on_test=True)
        tests = data.splits(config["feature"], config["aligned"])[2]
        test_set = torch.utils.data.ConcatDataset(list(tests.values()))
        test_set.labels = torch.cat([ds.labels for ds in test_set.datasets])
    started = time.perf_counter()
    _, result = train_variant(model, data, train, run_dir, progress=not args.no_progress,
                              test_set=test_set)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.best_checkpoint, out)
    _, _, tests = data.splits(config["feature"], config["aligned"],
                              with_image=config["variant"] != "lare_cnn")
    table = {name: {k: round(float(row[k]), 4) for k in ("acc", "ap", "auc")}
             for name, row in evaluate_detector(load_detector(out), tests).items()}
    print(json.dumps({"checkpoint": str(out), "run_dir": str(run_dir), "best_epoch": result.best_epoch,
                      "best_val_" + ("test" if args.select_on_test else "auc"): result.best_metric,
                      "seconds": round(time.perf_counter() - started, 1), "test": table},
                     indent=1, default=float))
    return 0
