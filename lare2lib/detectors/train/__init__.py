"""One training loop for every detector of the project (EGRE, reconstruction classifiers, ...).

The released scripts of both papers train with Adam, clip gradients, reduce the learning rate
on a plateau, and pick the "best" checkpoint, but on the **test** sets, with no seeds. This loop
keeps their optimisation recipe (METHODS.md §2: Adam lr 1e-4, no weight decay, batch 48,
grad-norm clip 5, ReduceLROnPlateau(mode=max, factor 0.5, patience 4, min 1e-7)) and fixes the
protocol: the scheduler, early stopping and the best checkpoint follow a **validation** split
(``TrainConfig.select_on_test`` reproduces the original fault, for the notebook that shows
what it costs).

Contract with the models: ``model(batch) -> logits`` where ``batch`` is the dict of tensors a
dataset item collates into (it holds at least ``label``, long 0/1, 1 = fake). Logits of shape
(B,) or (B, 1) are one logit trained with BCE (the reconstruction detectors); (B, 2) are two
logits trained with cross-entropy, P(fake) = softmax[:, 1] (EGRE, as released).

Determinism and resumption: the order of an epoch is a permutation drawn from (seed, epoch), the
dropout of step ``s`` is seeded from (seed, s), so a run killed at any point and restarted from
its last checkpoint continues with exactly the batches and random numbers it would have seen.
Checkpoints (:mod:`~lare2lib.detectors.train.checkpoints`) are written as a new folder ``ckpt-<step>/`` (model and optimizer state as
safetensors, scheduler and history as JSON) and only then published by atomically replacing
``state.json``; a kill during a write leaves the previous checkpoint intact.

Devices and processes go through Hugging Face Accelerate, with ``split_batches=True`` so that
``accelerate launch --num_processes N`` splits each batch of ``batch_size`` across the
processes: the optimisation (global batch, learning rate, number of steps) is the same as in
one process, and DDP averages the gradients.

The package: :mod:`~lare2lib.detectors.train.protocol` (:class:`TrainConfig`, the loss, the data
order), :mod:`~lare2lib.detectors.train.devices` (Accelerate, :func:`predict`),
:mod:`~lare2lib.detectors.train.checkpoints` (run folders, optimizer state as safetensors) and
:mod:`~lare2lib.detectors.train.loop` (:func:`fit`). Their public names are importable from here
(``from lare2lib.detectors.train import TrainConfig, fit``).
"""

from lare2lib.detectors.train.checkpoints import (
    BEST_FILE,
    STATE_FILE,
    flatten_optimizer,
    restore_optimizer,
)
from lare2lib.detectors.train.devices import get_accelerator, predict
from lare2lib.detectors.train.loop import fit
from lare2lib.detectors.train.protocol import (
    FitResult,
    TrainConfig,
    TrainingError,
    detector_loss,
    epoch_indices,
    fake_probability,
)

__all__ = [
    "TrainConfig",
    "FitResult",
    "detector_loss",
    "fake_probability",
    "epoch_indices",
    "fit",
    "predict",
    "get_accelerator",
    "flatten_optimizer",
    "restore_optimizer",
    "TrainingError",
    "STATE_FILE",
    "BEST_FILE",
]
