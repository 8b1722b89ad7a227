"""Where training runs: one Accelerate ``Accelerator`` per process, batches on its device, and
:func:`predict` (gathered over processes).

Batches are split across processes (``split_batches=True``): ``accelerate launch
--num_processes N`` runs the same optimisation (global batch, learning rate, steps) as one
process, and DDP averages the gradients.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lare2lib.detectors.train.protocol import fake_probability

__all__ = ["get_accelerator", "to_device", "predict"]

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


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Every tensor of ``batch`` on ``device`` (other values unchanged)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


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
        batch = to_device(batch, accelerator.device)
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
