"""What one training run optimises, and in which order: its config, loss, and data order.

:class:`TrainConfig` is the optimisation and protocol of a run (defaults: the released EGRE
scripts); :func:`detector_loss` and :func:`fake_probability` are the project's two heads (one
logit with BCE, two with cross-entropy); :func:`epoch_indices` and :func:`step_seed` make every
epoch's order and every step's dropout a function of the seed alone, so a resumed run sees the
same batches and random numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = [
    "TrainingError",
    "TrainConfig",
    "FitResult",
    "detector_loss",
    "fake_probability",
    "labels_of",
    "epoch_indices",
    "step_seed",
]


class TrainingError(RuntimeError):
    """A training run that cannot start or resume as asked (e.g. a different config in out_dir)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and protocol of one training run (defaults: the released EGRE scripts)."""

    epochs: int = 20
    """Maximum epochs (the released scripts never set one and were stopped by hand)."""
    batch_size: int = 48
    """Images per optimisation step, over all processes (released: 48)."""
    lr: float = 1e-4
    """Adam learning rate (released: 1e-4)."""
    weight_decay: float = 0.0
    """Adam weight decay (released: none)."""
    grad_clip: float = 5.0
    """Gradient-norm clip (released: 5.0); 0 disables it."""
    plateau_factor: float = 0.5
    """ReduceLROnPlateau factor (released: 0.5)."""
    plateau_patience: int = 4
    """Epochs without improvement before the learning rate is reduced (released: 4)."""
    min_lr: float = 1e-7
    """Floor of the learning rate (released: 1e-7)."""
    early_stopping: int = 8
    """Stop after this many epochs without validation improvement (0 = never)."""
    monitor: str = "auc"
    """Validation metric that drives the scheduler, early stopping and the best checkpoint:
    ``auc``, ``ap`` or ``acc`` (accuracy at 0.5)."""
    seed: int = 0
    """Seed of the data order and of dropout (the model's initialisation is the caller's)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    eval_batch_size: int = 128
    """Batch size of validation and prediction."""
    checkpoint_every: int = 0
    """Also checkpoint every this many steps inside an epoch (0 = at the end of each epoch)."""
    select_on_test: bool = False
    """Reproduce the released fault: drive the scheduler and pick the best model on the test
    set (needs ``test_set``). Never use the result as a test number."""
    balance: bool = True
    """Each epoch draws a class-balanced sample (all of the smaller class, as many of the
    larger, fresh each epoch) when the classes differ in size."""
    max_steps: int = 0
    """Stop after this many optimisation steps in all (0 = no limit; for smoke runs)."""
    mixed_precision: str = "no"
    """Accelerate's ``no``, ``bf16`` or ``fp16`` (GPU only; fp32 on CPU)."""

    def __post_init__(self) -> None:
        if self.monitor not in ("auc", "ap", "acc"):
            raise ValueError(f"monitor must be 'auc', 'ap' or 'acc', not {self.monitor!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be at least 1")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError("mixed_precision must be 'no', 'bf16' or 'fp16'")


@dataclass
class FitResult:
    """What :func:`fit` leaves behind; the model passed in holds the best weights afterwards."""

    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_metric: float
    resumed_from: int | None = None
    """Global step the run resumed from (None: started fresh); equal to the total when the
    run had already finished and nothing was recomputed."""
    stopped_early: bool = False
    seconds: float = 0.0
    steps: int = 0


# -- loss and probability ---------------------------------------------------------------------


def detector_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE for one logit per image, cross-entropy for two (the two heads of the project)."""
    if logits.ndim == 2 and logits.shape[1] == 2:
        return nn.functional.cross_entropy(logits.float(), labels.long())
    return nn.functional.binary_cross_entropy_with_logits(
        logits.reshape(-1).float(), labels.float().reshape(-1)
    )


def fake_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(fake) per image: softmax[:, 1] of two logits, sigmoid of one."""
    if logits.ndim == 2 and logits.shape[1] == 2:
        return logits.float().softmax(dim=1)[:, 1]
    return torch.sigmoid(logits.float().reshape(-1))


# -- data order ------------------------------------------------------------------------------


def labels_of(dataset: Dataset) -> np.ndarray:
    """Labels of a dataset: its ``labels`` attribute, else read item by item (slow)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    return np.asarray(torch.as_tensor(labels).reshape(-1).tolist(), dtype=np.int64)


def epoch_indices(labels: np.ndarray, seed: int, epoch: int, balance: bool) -> np.ndarray:
    """The dataset indices of one epoch, in order: a function of (labels, seed, epoch) only."""
    rng = np.random.default_rng([int(seed), int(epoch), 0x7A1])
    index = np.arange(len(labels))
    if balance:
        by_class = [index[labels == c] for c in (0, 1)]
        sizes = [len(c) for c in by_class]
        if min(sizes) > 0 and sizes[0] != sizes[1]:
            small = int(np.argmin(sizes))
            large = 1 - small
            drawn = rng.choice(by_class[large], size=sizes[small], replace=False)
            index = np.concatenate([by_class[small], np.sort(drawn)])
    return rng.permutation(index)


def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s random numbers (dropout), from (seed, step) alone."""
    digest = hashlib.sha256(f"{int(seed)}\0dropout\0{int(step)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
