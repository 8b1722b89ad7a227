"""Pixels of the attacks: the score-function type, 8-bit conversions, PSNR of a perturbation.

Every attack works on float batches ``x01`` in [0, 1] and ends on the 8-bit grid, as a saved
file would; :func:`psnr` measures what a perturbation costs in image quality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["ScoreFn", "to_unit", "to_uint8", "quantise_within", "psnr", "as_numpy"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""``f(x01)``: float ``(B, 3, H, W)`` in [0, 1] → fake score ``(B,)`` (higher = more fake)."""



def to_unit(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` (or a list of equal-size ``(3, H, W)``) → float32 in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        images = torch.stack(list(images))
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.float() / 255.0


def to_uint8(x01: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] → uint8, rounded (exact for values already on the 8-bit grid)."""
    return (x01.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)


def quantise_within(x01: torch.Tensor, clean01: torch.Tensor, eps: float) -> torch.Tensor:
    """Round ``x01`` to the 8-bit grid, staying within ``eps`` (L∞) of ``clean01`` and in [0, 1].

    For an 8-bit ``clean01`` and a budget of whole 8-bit steps the rounding never leaves the
    budget anyway; the clamp covers fractional budgets (it rounds towards the clean image).
    """
    levels = (x01.detach() * 255.0).round()
    low = torch.ceil((clean01 - eps) * 255.0 - 1e-4).clamp_min(0)
    high = torch.floor((clean01 + eps) * 255.0 + 1e-4).clamp_max(255)
    return torch.minimum(torch.maximum(levels, low), high) / 255.0


def psnr(clean: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of a perturbation, peak 255 (:func:`lare2lib.world.quality.psnr_db`).

    Takes uint8 images or floats in [0, 1] (both arguments the same kind); identical images
    give ``inf``, not the 100 dB floor of a clamped MSE.
    """
    from lare2lib.world.quality import psnr_db

    if clean.dtype != changed.dtype or clean.shape != changed.shape:
        raise ValueError(f"psnr needs two batches of one dtype and shape, got {clean.dtype} "
                         f"{tuple(clean.shape)} and {changed.dtype} {tuple(changed.shape)}")
    scale = 1.0 if clean.dtype == torch.uint8 else 255.0
    a, b = clean.float() * scale, changed.float() * scale
    values = psnr_db(a, b)
    identical = (a - b).flatten(1).abs().amax(dim=1) == 0
    return torch.where(identical, torch.full_like(values, math.inf), values)


def as_numpy(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    """Scores as a NumPy array (a tensor detached and moved to the CPU first)."""
    return scores.detach().cpu().numpy() if torch.is_tensor(scores) else np.asarray(scores)
