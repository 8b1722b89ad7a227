"""Where models run and in what precision: device choice, dtype checks, moving and freezing."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["resolve_device", "resolve_dtype", "place", "freeze"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA if present, else Apple MPS, else CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """A precision name or dtype → ``torch.dtype``; half precision is refused on CPU.

    CPU kernels for fp16/bf16 convolutions are slow or missing, and LaRE's maps are squared
    errors of small differences that half precision rounds away (the released fp16 path
    crashes): on CPU only ``float32`` is allowed.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {sorted(_DTYPES)}")
        dtype = _DTYPES[dtype]
    if dtype not in _DTYPES.values():
        raise ValueError(f"unsupported dtype {dtype}; valid: {sorted(_DTYPES)}")
    if resolve_device(device).type == "cpu" and dtype != torch.float32:
        raise ValueError(
            f"dtype {dtype} on CPU is not supported: use dtype='float32' on CPU, "
            "or bfloat16/float16 on a GPU (device='cuda')"
        )
    return dtype


def place(module: nn.Module, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """Move ``module``; cast only when the dtype changes (diffusers warns on every cast)."""
    module.to(device=device)
    current = next(module.parameters(), torch.empty(0)).dtype
    if dtype is not None and dtype != current:
        module.to(dtype=dtype)
    return module


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients: every loader returns inference-ready models."""
    module.eval()
    module.requires_grad_(False)
    return module
