"""uint8 ``(3, H, W)`` tensors to and from PIL images, the form every crop and codec takes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["to_pil", "from_pil"]


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 ``(3, H, W)`` → RGB PIL image (channels last)."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def from_pil(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → uint8 ``(3, H, W)`` (a copy, channels first)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
