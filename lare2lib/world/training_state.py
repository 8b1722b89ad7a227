"""Training state shared by the autoencoder and UNet trainings: checkpoints and the LR schedule.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from lare2lib.data.imagesets import atomic_save
from lare2lib.detectors.train import flatten_optimizer, restore_optimizer

__all__ = [
    "save_checkpoint",
    "resume_checkpoint",
    "cosine_lr",
]


# -- training checkpoints (safetensors: model, optimizer, EMA, step, log) ------------------


def save_checkpoint(workdir: Path, model: torch.nn.Module, optimizer, step: int, log: list[dict],
                extra: dict[str, torch.nn.Module] | None = None) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for prefix, module in (extra or {}).items():
        tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    tensors.update(flatten_optimizer(optimizer)[0])
    atomic_save(tensors, Path(workdir) / "checkpoint.safetensors",
                {"step": str(step), "log": json.dumps(log)})


def resume_checkpoint(workdir: Path, model: torch.nn.Module, optimizer,
            extra: dict[str, torch.nn.Module] | None = None) -> tuple[int, list[dict]]:
    path = Path(workdir) / "checkpoint.safetensors"
    if not path.is_file():
        return 0, []
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for prefix, module in (extra or {}).items():
        n = len(prefix) + 1
        module.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
    restore_optimizer(optimizer, {k: v for k, v in tensors.items() if k.startswith("opt.")})
    return int(metadata["step"]), json.loads(metadata["log"])



def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine decay from ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
