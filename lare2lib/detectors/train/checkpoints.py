"""A run's folder: checkpoints written completely, then published by replacing ``state.json``.

Each checkpoint is a new folder ``ckpt-<step>/`` (model and optimizer state as safetensors,
scheduler state as JSON); ``state.json`` (progress, history, the checkpoint's name) is replaced
atomically only once the folder is complete, so a kill during a write leaves the previous
checkpoint intact. The best model is ``best.safetensors`` (a registered detector's file format
when the model is a detector kind). A run's fingerprint (config, model, data) guards resuming.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lare2lib.detectors.train.protocol import TrainConfig, TrainingError

__all__ = [
    "STATE_FILE",
    "BEST_FILE",
    "flatten_optimizer",
    "restore_optimizer",
    "run_fingerprint",
    "model_state",
    "save_model",
    "write_checkpoint",
    "read_state",
    "restore_checkpoint",
]

STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"


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


def run_fingerprint(config: TrainConfig, model: nn.Module, extra: str) -> str:
    """Hash of what a run is: its config, the model's config (or class) and size, ``extra`` (the data)."""
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


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors (what safetensors writes)."""
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save_model(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """The best model: through the detector registry when the model is a registered kind."""
    if hasattr(model, "kind") and isinstance(getattr(model, "config", None), dict):
        from lare2lib.detectors.registry import save_detector

        save_detector(model, path, metadata)
    else:
        from lare2lib.data.imagesets import atomic_save

        atomic_save(model_state(model), path, metadata)


def write_checkpoint(
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
    atomic_save(model_state(model), staging / "model.safetensors", {"step": str(step)})
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


def read_state(out_dir: Path) -> dict[str, Any] | None:
    """The published ``state.json`` of ``out_dir`` (None: no run there yet)."""
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if not (out_dir / state["checkpoint"] / "model.safetensors").is_file():
        raise TrainingError(f"{path} names {state['checkpoint']}, which is missing: delete {out_dir}")
    return state


def restore_checkpoint(out_dir: Path, state: dict[str, Any], model: nn.Module, optimizer,
                       scheduler) -> None:
    """Load the model, optimizer and scheduler of the checkpoint ``state`` names."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    folder = out_dir / state["checkpoint"]
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    with safe_open(str(folder / "optimizer.safetensors"), framework="pt") as handle:
        groups = (handle.metadata() or {}).get("param_groups", "")
    restore_optimizer(optimizer, load_file(str(folder / "optimizer.safetensors")), groups)
    scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))
