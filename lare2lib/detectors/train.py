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
Checkpoints are written as a new folder ``ckpt-<step>/`` (model and optimizer state as
safetensors, scheduler and history as JSON) and only then published by atomically replacing
``state.json``; a kill during a write leaves the previous checkpoint intact.

Devices and processes go through Hugging Face Accelerate, with ``split_batches=True`` so that
``accelerate launch --num_processes N`` splits each batch of ``batch_size`` across the
processes: the optimisation (global batch, learning rate, number of steps) is the same as in
one process, and DDP averages the gradients.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from lare2lib.eval import metrics as M

__all__ = [
    "TrainConfig",
    "FitResult",
    "detector_loss",
    "fake_probability",
    "fit",
    "predict",
    "get_accelerator",
    "flatten_optimizer",
    "restore_optimizer",
    "TrainingError",
]

STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"


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


# -- accelerate ------------------------------------------------------------------------------

_ACCELERATORS: dict[tuple[str, bool], Any] = {}


def get_accelerator(mixed_precision: str = "no", cpu: bool | None = None):
    """One ``Accelerator`` per (precision, cpu) in this process (its state is process-wide).

    ``cpu=None`` follows ``LARE2_DEVICE=cpu`` or else lets Accelerate choose (CUDA when
    present). Batches are split across processes (``split_batches=True``), see the module doc.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    if cpu is None:
        cpu = os.environ.get("LARE2_DEVICE", "").lower() == "cpu" or not torch.cuda.is_available()
    if cpu:
        mixed_precision = "no"  # bf16 autocast on CPU is slow and changes results; keep fp32
    key = (mixed_precision, bool(cpu))
    if key not in _ACCELERATORS:
        _ACCELERATORS[key] = Accelerator(
            cpu=bool(cpu),
            mixed_precision=mixed_precision,
            dataloader_config=DataLoaderConfiguration(split_batches=True, even_batches=True),
        )
    return _ACCELERATORS[key]


# -- data order ------------------------------------------------------------------------------


def _labels_of(dataset: Dataset) -> np.ndarray:
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


def _step_seed(seed: int, step: int) -> int:
    digest = hashlib.sha256(f"{int(seed)}\0dropout\0{int(step)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# -- optimizer state as safetensors -------------------------------------------------------------


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """Optimizer state as (tensors for safetensors, JSON of the param groups without params)."""
    state = optimizer.state_dict()
    tensors = {
        f"opt.{pid}.{key}": (value.detach().clone() if torch.is_tensor(value) else torch.tensor(value))
        for pid, entry in state["state"].items()
        for key, value in entry.items()
    }
    groups = [{k: v for k, v in group.items() if k != "params"} for group in state["param_groups"]]
    return tensors, json.dumps(groups)


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups_json: str = ""
) -> None:
    """Inverse of :func:`flatten_optimizer` (learning rates included when ``groups_json`` is given)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    full = optimizer.state_dict()
    full["state"] = state
    if groups_json:
        for group, saved in zip(full["param_groups"], json.loads(groups_json)):
            group.update(saved)
    optimizer.load_state_dict(full)


# -- checkpoints -----------------------------------------------------------------------------


def _fingerprint(config: TrainConfig, model: nn.Module, extra: str) -> str:
    model_config = getattr(model, "config", None)
    payload = json.dumps(
        {
            "train": asdict(config),
            "model": model_config if isinstance(model_config, dict) else type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "data": extra,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def _save_model(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """The best model: through the detector registry when the model is a registered kind."""
    if hasattr(model, "kind") and isinstance(getattr(model, "config", None), dict):
        from lare2lib.detectors.registry import save_detector

        save_detector(model, path, metadata)
    else:
        from lare2lib.data.imagesets import atomic_save

        atomic_save(_state_dict(model), path, metadata)


def _write_checkpoint(
    out_dir: Path, model: nn.Module, optimizer, scheduler, progress: dict[str, Any]
) -> Path:
    """Write ``ckpt-<step>/`` completely, then publish it by replacing ``state.json``."""
    from lare2lib.data.imagesets import atomic_save

    step = int(progress["global_step"])
    # Never replace a checkpoint folder in place: it may be the published one (a mid-epoch and
    # an end-of-epoch checkpoint can share a step), and a kill between deleting it and renaming
    # its successor would leave state.json naming nothing.
    folder, suffix = out_dir / f"ckpt-{step:08d}", 0
    while folder.exists():
        suffix += 1
        folder = out_dir / f"ckpt-{step:08d}-{suffix}"
    for stale in out_dir.glob(".ckpt-*.staging"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    staging = out_dir / f".{folder.name}.{os.getpid()}.staging"
    staging.mkdir(parents=True)
    tensors, groups = flatten_optimizer(optimizer)
    atomic_save(_state_dict(model), staging / "model.safetensors", {"step": str(step)})
    atomic_save(tensors or {"opt.none": torch.zeros(0)}, staging / "optimizer.safetensors",
                {"step": str(step), "param_groups": groups})
    (staging / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
    os.replace(staging, folder)
    state = {**progress, "checkpoint": folder.name}
    tmp = out_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, out_dir / STATE_FILE)
    for old in out_dir.glob("ckpt-*"):  # older checkpoints are no longer referenced
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _read_state(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if not (out_dir / state["checkpoint"] / "model.safetensors").is_file():
        raise TrainingError(f"{path} names {state['checkpoint']}, which is missing: delete {out_dir}")
    return state


def _restore(out_dir: Path, state: dict[str, Any], model: nn.Module, optimizer, scheduler) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    folder = out_dir / state["checkpoint"]
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    with safe_open(str(folder / "optimizer.safetensors"), framework="pt") as handle:
        groups = (handle.metadata() or {}).get("param_groups", "")
    restore_optimizer(optimizer, load_file(str(folder / "optimizer.safetensors")), groups)
    scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))


# -- evaluation ------------------------------------------------------------------------------


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 128,
    progress: bool = True,
    num_workers: int = 0,
    accelerator: Any = None,
    desc: str = "predict",
) -> tuple[np.ndarray, np.ndarray]:
    """(P(fake), labels) for every item of ``dataset``, in dataset order.

    Under several processes each takes a slice of every batch and the results are gathered
    (``gather_for_metrics`` drops the padding of the last batch), so every process returns the
    full arrays.
    """
    from tqdm.auto import tqdm

    accelerator = accelerator or get_accelerator()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if accelerator.num_processes > 1:
        loader = accelerator.prepare_data_loader(loader)
    was_training = model.training
    model.eval()
    scores, labels = [], []
    for batch in tqdm(loader, desc=desc, disable=not progress or not accelerator.is_main_process,
                      leave=False):
        batch = _to_device(batch, accelerator.device)
        probability = fake_probability(model(batch))
        label = batch["label"].reshape(-1)
        if accelerator.num_processes > 1:
            probability, label = accelerator.gather_for_metrics((probability, label))
        scores.append(probability.float().cpu())
        labels.append(label.cpu())
    model.train(was_training)
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return torch.cat(scores).numpy().astype(np.float64), torch.cat(labels).numpy().astype(np.int64)


def _evaluate(model, dataset, config: TrainConfig, accelerator, progress: bool) -> dict[str, float]:
    scores, labels = predict(model, dataset, batch_size=config.eval_batch_size, progress=progress,
                             num_workers=config.num_workers, accelerator=accelerator, desc="validate")
    result = M.binary_metrics(scores, labels)
    return {k: result[k] for k in ("acc", "ap", "auc", "tpr@5%")}


# -- the loop --------------------------------------------------------------------------------


def _make_optimizer(model: nn.Module, config: TrainConfig):
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience,
        min_lr=config.min_lr,
    )
    return optimizer, scheduler


def _epoch_loader(dataset: Dataset, indices: np.ndarray, config: TrainConfig, accelerator):
    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=config.batch_size,
                        shuffle=False, num_workers=config.num_workers, drop_last=False)
    return accelerator.prepare_data_loader(loader) if accelerator.num_processes > 1 else loader


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    test_set: Dataset | None = None,
    progress: bool = True,
    data_fingerprint: str = "",
    accelerator: Any = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train ``model`` in place, validating after every epoch; resume from ``out_dir`` if it holds a run.

    ``data_fingerprint`` (e.g. a hash of the image ids) is stored with the run: resuming a run
    whose config, model or data differ is refused instead of silently mixing two runs. A run
    that already finished is not recomputed: its best weights are loaded and its history
    returned. After the call ``model`` holds the best weights (by ``config.monitor``).

    Datasets should expose ``labels`` (a sequence of 0/1, one per item) so that class balancing
    needs no pass over the images; without it the labels are read item by item once.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.select_on_test and test_set is None:
        raise ValueError("select_on_test=True reproduces the released protocol and needs test_set")
    selection_set = test_set if config.select_on_test else val_set
    accelerator = accelerator or get_accelerator(config.mixed_precision)
    fingerprint = _fingerprint(config, model, data_fingerprint)
    started = time.time()

    optimizer, scheduler = _make_optimizer(model, config)
    progress_state: dict[str, Any] = {
        "fingerprint": fingerprint, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
        "history": [], "best_metric": -float("inf"), "best_epoch": -1, "bad_epochs": 0,
        "finished": False, "stopped_early": False, "config": asdict(config),
    }
    state = _read_state(out_dir)
    resumed_from = None
    if state is not None:
        if state["fingerprint"] != fingerprint:
            raise TrainingError(
                f"{out_dir} holds a run with another config, model or data "
                f"(fingerprint {state['fingerprint']} != {fingerprint}); use a new out_dir"
            )
        _restore(out_dir, state, model, optimizer, scheduler)
        progress_state.update(state)
        resumed_from = int(state["global_step"])

    model, optimizer = accelerator.prepare(model, optimizer)
    labels = _labels_of(train_set)
    _check_classes(labels)
    while not progress_state["finished"]:
        _run_epoch(model, optimizer, train_set, labels, config, accelerator, progress_state,
                   out_dir, scheduler, progress)
        if progress_state["finished"]:
            break
        _end_epoch(model, optimizer, scheduler, selection_set, config, accelerator,
                   progress_state, out_dir, progress)
        if on_epoch is not None and accelerator.is_main_process:
            on_epoch(progress_state["history"][-1])

    unwrapped = accelerator.unwrap_model(model)
    best = out_dir / BEST_FILE
    if best.is_file():
        from safetensors.torch import load_file

        unwrapped.load_state_dict(load_file(str(best)), strict=True)
    accelerator.wait_for_everyone()
    accelerator.free_memory()  # drop Accelerate's references: notebooks fit many models in one process
    return FitResult(
        best_checkpoint=best,
        last_checkpoint=out_dir / progress_state.get("checkpoint", ""),
        history=list(progress_state["history"]),
        best_epoch=int(progress_state["best_epoch"]),
        best_metric=float(progress_state["best_metric"]),
        resumed_from=resumed_from,
        stopped_early=bool(progress_state["stopped_early"]),
        seconds=time.time() - started,
        steps=int(progress_state["global_step"]),
    )


def _check_classes(labels: np.ndarray) -> None:
    counts = np.bincount(labels, minlength=2)
    if len(counts) > 2 or counts.min() == 0:
        raise ValueError(f"the training set needs both classes (0 real, 1 fake); counts: {counts.tolist()}")


def _run_epoch(model, optimizer, train_set, labels, config, accelerator, state, out_dir,
               scheduler, progress) -> None:
    """One epoch from ``state['step_in_epoch']`` on; sets ``finished`` when max_steps is reached."""
    from tqdm.auto import tqdm

    epoch = int(state["epoch"])
    indices = epoch_indices(labels, config.seed, epoch, config.balance)
    loader = _epoch_loader(train_set, indices, config, accelerator)
    skip = int(state["step_in_epoch"])
    batches = accelerator.skip_first_batches(loader, skip) if skip else loader
    total = -(-len(indices) // config.batch_size)
    model.train()
    losses = list(state.pop("epoch_losses", []))
    bar = tqdm(batches, total=total - skip, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
               disable=not progress or not accelerator.is_main_process)
    for batch in bar:
        torch.manual_seed(_step_seed(config.seed, state["global_step"]))
        batch = _to_device(batch, accelerator.device)
        with accelerator.autocast():
            loss = detector_loss(model(batch), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        state["global_step"] += 1
        state["step_in_epoch"] += 1
        losses.append(float(accelerator.reduce(loss.detach(), "mean")))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if config.max_steps and state["global_step"] >= config.max_steps:
            state["finished"] = True
            break
        if config.checkpoint_every and state["global_step"] % config.checkpoint_every == 0:
            state["epoch_losses"] = losses
            _checkpoint(accelerator, model, optimizer, scheduler, state, out_dir)
            state.pop("epoch_losses")
    state["epoch_losses"] = losses
    if state["finished"]:  # max_steps inside the epoch: validate it as a (partial) epoch
        state["finished"] = False
        state["max_steps_reached"] = True


def _end_epoch(model, optimizer, scheduler, selection_set, config, accelerator, state, out_dir,
               progress) -> None:
    losses = state.pop("epoch_losses", [])
    val = _evaluate(model, selection_set, config, accelerator, progress)
    value = float(val[config.monitor])
    scheduler.step(value)
    improved = value > state["best_metric"]
    record = {
        "epoch": int(state["epoch"]) + 1, "steps": int(state["global_step"]),
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "lr": float(optimizer.param_groups[0]["lr"]),
        **{f"{'test' if config.select_on_test else 'val'}_{k}": v for k, v in val.items()},
        "best": bool(improved),
    }
    state["history"].append(record)
    if improved:
        state["best_metric"], state["best_epoch"], state["bad_epochs"] = value, record["epoch"], 0
        if accelerator.is_main_process:
            _save_model(accelerator.unwrap_model(model), out_dir / BEST_FILE,
                        {"epoch": str(record["epoch"]), "monitor": config.monitor,
                         "selected_on": "test" if config.select_on_test else "validation",
                         "value": repr(value), "train_config": json.dumps(asdict(config))})
    else:
        state["bad_epochs"] += 1
    state["epoch"] += 1
    state["step_in_epoch"] = 0
    out_of_patience = config.early_stopping and state["bad_epochs"] >= config.early_stopping
    state["stopped_early"] = bool(out_of_patience)
    if out_of_patience or state["epoch"] >= config.epochs or state.pop("max_steps_reached", False):
        state["finished"] = True
    _checkpoint(accelerator, model, optimizer, scheduler, state, out_dir)


def _checkpoint(accelerator, model, optimizer, scheduler, state, out_dir) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        folder = _write_checkpoint(out_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                   _jsonable_state(state))
        state["checkpoint"] = folder.name
    accelerator.wait_for_everyone()


def _jsonable_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "checkpoint"}

