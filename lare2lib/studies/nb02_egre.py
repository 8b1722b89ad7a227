"""Notebook 02's protocol: EGRE's ablations trained on one generator, tested on every one.

* :class:`Config` is the study's budget: the splits (:class:`lare2lib.detectors.egre_splits.SplitBudget`),
  the training seeds and the training protocol (a nested :class:`~lare2lib.detectors.train.TrainConfig`);
  :meth:`Config.smoke` is the tests' and CI's budget. The notebook builds it with
  :func:`lare2lib.studies.common.study_config`, so every parameter the user set wins.
* The data: :func:`lare2lib.detectors.egre_splits.world_data` (mini / smoke) and
  :func:`~lare2lib.detectors.egre_splits.genimage_data` (full), maps and frozen features cached.
* :data:`ABLATIONS` names the rows of the table: backbone only, + ESR, + ECR, ESR + ECR (EGRE),
  the LaRE-only CNN, EGRE on DIRE maps, EGRE with the released misaligned map.
* :func:`run_ablation` trains each row with :func:`lare2lib.detectors.egre_training.train_variant`
  for every seed (runs are resumable and a finished run is read back, not retrained) and scores
  every test set.
* Summaries, tables and the metrics.json record: :mod:`lare2lib.studies.nb02_tables`; figures and
  the run's findings: :mod:`lare2lib.studies.nb02_figures`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lare2lib.detectors.egre_splits import EgreData, SplitBudget
from lare2lib.detectors.egre_training import (
    MINI_DIRE_STEPS,
    SMOKE_TRAIN,
    head_lr,
    protocol_record,
    train_config,
)
from lare2lib.detectors.train import TrainConfig

__all__ = [
    "ABLATIONS",
    "ABLATION_LABELS",
    "Config",
    "detector_config",
    "default_lr",
    "run_ablation",
    "metrics_record",
    "write_metrics",
]

ABLATIONS: dict[str, dict[str, Any]] = {
    "backbone": {"variant": "backbone"},
    "esr": {"variant": "esr"},
    "ecr": {"variant": "ecr"},
    "egre": {"variant": "egre"},
    "lare_cnn": {"variant": "lare_cnn"},
    "egre_dire": {"variant": "egre", "feature": "dire"},
    "egre_misaligned": {"variant": "egre", "aligned": False},
}
"""Ablation rows: name → :class:`lare2lib.detectors.egre.EgreDetector` config overrides."""

ABLATION_LABELS: dict[str, str] = {
    "backbone": "backbone only",
    "esr": "+ ESR",
    "ecr": "+ ECR",
    "egre": "ESR + ECR (EGRE)",
    "lare_cnn": "LaRE-only CNN",
    "egre_dire": "EGRE on DIRE maps",
    "egre_misaligned": "EGRE, misaligned map (released)",
}


@dataclass(frozen=True)
class Config(SplitBudget):
    """Notebook 02's budget: the splits (the fields of :class:`SplitBudget`: ``train_per_class``,
    ``val_per_class``, ``test_per_set``, ``train_crops``, ``map_batch_size``,
    ``feature_batch_size``, ``seed``), the training seeds and the training protocol.

    The defaults are the mini notebook's; :meth:`smoke` is the tests' and CI's budget. ``seed``
    draws the subsets and crop offsets; each run's ``train.seed`` is replaced by its seed from
    :attr:`seeds`.
    """

    seeds: str = "0,1,2"
    """Training seeds per ablation row, comma-separated (at least 3 for a spread)."""
    train: TrainConfig = field(default_factory=train_config)
    """The training protocol (:func:`lare2lib.detectors.egre_training.train_config`: 12 epochs,
    early stopping after 3, batch 48, Adam 1e-4; :func:`head_lr` for a frozen backbone)."""

    @classmethod
    def smoke(cls) -> Config:
        """Seconds, not minutes: every image of the tiny world, one seed, two epochs."""
        return dataclasses.replace(super().smoke(), seeds="0",
                                   train=train_config(**SMOKE_TRAIN))

    @property
    def seed_list(self) -> list[int]:
        """:attr:`seeds` as integers."""
        return [int(s) for s in self.seeds.split(",")]

    def record(self) -> dict[str, Any]:
        """The flat record runs are keyed by and metrics.json reports as ``study``
        (:func:`lare2lib.detectors.egre_training.protocol_record`)."""
        return protocol_record(self, self.train)


def detector_config(profile, backbone_mode: str = "frozen", crop_size: int = 0,
                    dire_steps: int = 0) -> dict[str, Any]:
    """The :class:`~lare2lib.detectors.egre.EgreDetector` config every row starts from.

    ``backbone_mode`` ``frozen`` (the mini budget) or ``finetune`` (released); ``crop_size`` 0:
    the profile's; ``dire_steps`` 0: 20 for the full profile (DIRE), else :data:`MINI_DIRE_STEPS`.
    """
    from lare2lib.detectors.egre import default_config

    dire_steps = dire_steps or (20 if profile.name == "full" else MINI_DIRE_STEPS)
    overrides = {"freeze_backbone": backbone_mode == "frozen", "dire_steps": dire_steps}
    if crop_size:
        overrides["crop_size"] = crop_size
    return default_config(profile, **overrides)


def default_lr(backbone_mode: str) -> float:
    """The learning rate of a backbone mode: 1e-3 for a head over frozen features, else 1e-4."""
    return head_lr(backbone_mode == "frozen")


# -- the ablation runs ---------------------------------------------------------------------------


def run_ablation(data: EgreData, base_config: Mapping[str, Any], study: Config,
                 seeds: Sequence[int] | None = None, variants: Sequence[str] = tuple(ABLATIONS), *,
                 progress: bool = True) -> dict[str, dict[int, dict[str, Any]]]:
    """Train and test every ablation row for every seed (default: ``study.seed_list``).

    Returns ``variant → seed → {"metrics": real_vs_sets table, "best_epoch", "epochs",
    "steps", "seconds", "checkpoint"}``. Runs live under ``data.root/runs``.
    """
    from tqdm.auto import tqdm

    seeds = study.seed_list if seeds is None else seeds
    results: dict[str, dict[int, dict[str, Any]]] = {}
    jobs = [(name, seed) for name in variants for seed in seeds]
    for name, seed in tqdm(jobs, desc="ablation runs", disable=not progress):
        head_only = base_config.get("freeze_backbone") and ABLATIONS[name]["variant"] != "lare_cnn"
        with _threads(1 if head_only else None):
            results.setdefault(name, {})[seed] = _ablation_run(data, base_config, study, name, seed)
    return results


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` torch threads (None: unchanged). Head-only steps on cached
    features are a few small matrix products: split over threads they only wait on each other."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ablation_run(data: EgreData, base_config: Mapping[str, Any], study: Config, name: str,
                  seed: int) -> dict[str, Any]:
    """One (row, seed): train (or read back a finished run), then score every test set."""
    from lare2lib.data.store import config_hash
    from lare2lib.detectors.egre import build_detector
    from lare2lib.detectors.egre_training import data_fingerprint, evaluate_detector, train_variant

    config = {**base_config, **ABLATIONS[name]}
    train, val, _ = data.splits(config.get("feature", "lare"), config.get("aligned", True))
    key = config_hash({"config": config, "study": study.record(),
                       "data": data_fingerprint(train, val)})
    out_dir = data.root / "runs" / f"{name}-seed{seed}-{key}"
    started = time.perf_counter()
    model, fit_result = train_variant(build_detector(config, seed), data,
                                      dataclasses.replace(study.train, seed=seed), out_dir)
    _, _, tests = data.splits(config.get("feature", "lare"), config.get("aligned", True),
                              with_image=config.get("variant") != "lare_cnn")
    return {
        "metrics": evaluate_detector(model, tests),
        "best_epoch": fit_result.best_epoch, "epochs": len(fit_result.history),
        "steps": fit_result.steps, "best_val_auc": fit_result.best_metric,
        "resumed": fit_result.resumed_from is not None,
        "seconds": time.perf_counter() - started, "checkpoint": str(fit_result.best_checkpoint),
    }


# -- metrics.json --------------------------------------------------------------------------------


def metrics_record(*, profile, study: Config, config: Mapping[str, Any], seeds: Sequence[int],
                   results: Mapping[str, Mapping[int, Mapping[str, Any]]],
                   summary: Mapping[str, Any], bias_effect: Mapping[str, Any] | None,
                   shuffle: Mapping[str, Any], token_grid: Sequence[int], data: EgreData,
                   started: float) -> dict[str, Any]:
    """Notebook 02's metrics.json record: the ablation table (acc, ap, auc per row and test
    set), the diagnostics (ESR bias effect, map shuffle, oracle ACC), how each run ended, and
    what the run used (detector config, :meth:`Config.record`, token grid, items per split).

    ``started``: ``time.time()`` at the notebook's start; ``bias_effect`` None without an EGRE row.
    """
    sizes = {"train": len(data.train), "val": len(data.val),
             **{k: len(v) for k, v in data.test.items()}}
    return {
        "profile": profile.name,
        "seeds": list(seeds),
        "ablation": {name: {t: {k: s[t][k] for k in ("acc", "ap", "auc")} for t in s}
                     for name, s in summary.items()},
        "esr_bias_effect": bias_effect,
        "map_shuffle_diagnostic": shuffle,
        "oracle_acc_diagnostic": {name: {t: s[t]["oracle_acc"] for t in s}
                                  for name, s in summary.items()},
        "runs": {name: {str(seed): {k: r[k] for k in ("epochs", "best_epoch", "best_val_auc",
                                                      "seconds", "checkpoint")}
                        for seed, r in per_seed.items()} for name, per_seed in results.items()},
        "detector_config": config,
        "study": study.record(),
        "token_grid": list(token_grid),
        "items": sizes,
        "data_seconds": data.seconds,
        "load_average": os.getloadavg()[0],
        "seconds": time.time() - started,
    }


def write_metrics(out_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (:func:`metrics_record`) as notebook 02's ``out_dir/metrics.json``."""
    from lare2lib.core.plotting import write_metrics as write

    return write(out_dir, record, notebook="02_egre_ablations")
