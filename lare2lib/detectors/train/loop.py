"""The training loop: :func:`fit` trains a model in place, validating after every epoch, and
resumes from its folder (:mod:`lare2lib.detectors.train.checkpoints`) wherever a kill left it.

The scheduler, early stopping and the best checkpoint follow a **validation** split
(``TrainConfig.select_on_test`` reproduces the released fault: they follow the test set).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from lare2lib.detectors.train.checkpoints import (
    BEST_FILE,
    read_state,
    restore_checkpoint,
    run_fingerprint,
    save_model,
    write_checkpoint,
)
from lare2lib.detectors.train.devices import get_accelerator, predict, to_device
from lare2lib.detectors.train.protocol import (
    FitResult,
    TrainConfig,
    TrainingError,
    detector_loss,
    epoch_indices,
    labels_of,
    step_seed,
)
from lare2lib.eval import metrics as M

__all__ = ["fit", "evaluate"]


def evaluate(model, dataset, config: TrainConfig, accelerator, progress: bool) -> dict[str, float]:
    """Validation metrics (acc, ap, auc, tpr@5%) of ``model`` on ``dataset``."""
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
    fingerprint = run_fingerprint(config, model, data_fingerprint)
    started = time.time()

    optimizer, scheduler = _make_optimizer(model, config)
    progress_state: dict[str, Any] = {
        "fingerprint": fingerprint, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
        "history": [], "best_metric": -float("inf"), "best_epoch": -1, "bad_epochs": 0,
        "finished": False, "stopped_early": False, "config": asdict(config),
    }
    state = read_state(out_dir)
    resumed_from = None
    if state is not None:
        if state["fingerprint"] != fingerprint:
            raise TrainingError(
                f"{out_dir} holds a run with another config, model or data "
                f"(fingerprint {state['fingerprint']} != {fingerprint}); use a new out_dir"
            )
        restore_checkpoint(out_dir, state, model, optimizer, scheduler)
        progress_state.update(state)
        resumed_from = int(state["global_step"])

    model, optimizer = accelerator.prepare(model, optimizer)
    labels = labels_of(train_set)
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
        torch.manual_seed(step_seed(config.seed, state["global_step"]))
        batch = to_device(batch, accelerator.device)
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
    val = evaluate(model, selection_set, config, accelerator, progress)
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
            save_model(accelerator.unwrap_model(model), out_dir / BEST_FILE,
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
        folder = write_checkpoint(out_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                   _jsonable_state(state))
        state["checkpoint"] = folder.name
    accelerator.wait_for_everyone()


def _jsonable_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "checkpoint"}
