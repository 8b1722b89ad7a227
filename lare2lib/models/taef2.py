"""TAEF2: the tiny autoencoder for the FLUX.2 latent space (Ollin Boer Bohan, MIT licence).

A re-implementation that loads the released fp16 state dicts ``taef2_encoder.pth`` and
``taef2_decoder.pth`` with ``strict=True``. It is the one real, pretrained LDM-family
autoencoder this environment has, so studies of "what an autoencoder leaves behind" can be
checked on real weights; the weights stay where they are (``paths.taef2_dir()``) and are never
copied into the project.

Architecture (TAESD family; the tensor names are positions in an ``nn.Sequential``):

* ``Block``: three 3×3 convs (64→64, ReLU between), identity skip, ReLU after the sum. The
  blocks at the lowest resolution also carry a ``pool`` branch, 1×1 conv 64→256 → GroupNorm(4)
  → ReLU → 1×1 conv 256→64 (no biases), added to the block's input first: a cheap global
  context path (the GroupNorm statistics span the whole image).
* Encoder: conv 3→64, Block, then three times (stride-2 conv, 3 Blocks), conv 64→32:
  ``(B, 3, H, W)`` in [0, 1] → ``(B, 32, H/8, W/8)``.
* Decoder: soft clamp ``3·tanh(z/3)``, conv 32→64, ReLU, then three times (3 Blocks,
  2× nearest upsample, conv), Block, conv 64→3: latents → images in [0, 1].

The latents approximate FLUX.2's VAE latents (32 channels, 8× downsampling) before FLUX.2's
2×2 patchify; they are not scaled.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["TAEF2", "TAEF2_LATENT_CHANNELS", "TAEF2_SCALE_FACTOR"]

TAEF2_LATENT_CHANNELS = 32
"""FLUX.2's VAE has 32 latent channels (SD's has 4)."""
TAEF2_SCALE_FACTOR = 8
"""Three stride-2 stages: pixels per latent along each side."""
_WIDTH = 64
"""Channels everywhere inside the TAESD-family networks."""


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, kernel_size=3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp to (-3, 3): keeps the decoder sane on out-of-distribution latents."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block of three 3×3 convs, optionally preceded by a GroupNorm context branch."""

    def __init__(self, channels: int = _WIDTH, use_pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
        )
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if use_pool:
            hidden = channels * 4
            self.pool = nn.Sequential(
                nn.Conv2d(channels, hidden, 1, bias=False),
                nn.GroupNorm(4, hidden),
                nn.ReLU(),
                nn.Conv2d(hidden, channels, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def _blocks(count: int, use_pool: bool = False) -> list[nn.Module]:
    return [Block(use_pool=use_pool) for _ in range(count)]


def build_encoder(latent_channels: int = TAEF2_LATENT_CHANNELS) -> nn.Sequential:
    down = lambda: _conv(_WIDTH, _WIDTH, stride=2, bias=False)  # noqa: E731
    return nn.Sequential(
        _conv(3, _WIDTH),
        Block(),
        down(),
        *_blocks(3),
        down(),
        *_blocks(3),
        down(),
        *_blocks(3, use_pool=True),
        _conv(_WIDTH, latent_channels),
    )


def build_decoder(latent_channels: int = TAEF2_LATENT_CHANNELS) -> nn.Sequential:
    up = lambda: [nn.Upsample(scale_factor=2), _conv(_WIDTH, _WIDTH, bias=False)]  # noqa: E731
    return nn.Sequential(
        Clamp(),
        _conv(latent_channels, _WIDTH),
        nn.ReLU(),
        *_blocks(3, use_pool=True),
        *up(),
        *_blocks(3),
        *up(),
        *_blocks(3),
        *up(),
        Block(),
        _conv(_WIDTH, 3),
    )


class TAEF2(nn.Module):
    """Encoder + decoder with the TAESD convention: images in [0, 1], raw latents."""

    latent_channels = TAEF2_LATENT_CHANNELS
    scale_factor = TAEF2_SCALE_FACTOR

    def __init__(self, latent_channels: int = TAEF2_LATENT_CHANNELS):
        super().__init__()
        self.encoder = build_encoder(latent_channels)
        self.decoder = build_decoder(latent_channels)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> "TAEF2":
        """Load ``taef2_encoder.pth``/``taef2_decoder.pth`` (fp16 state dicts) strictly, as float32."""
        folder = Path(folder)
        model = cls()
        for half in ("encoder", "decoder"):
            file = folder / f"taef2_{half}.pth"
            if not file.is_file():
                raise FileNotFoundError(
                    f"TAEF2 weights missing: {file} (expected taef2_encoder.pth and taef2_decoder.pth)"
                )
            state = torch.load(file, map_location="cpu", weights_only=True)
            getattr(model, half).load_state_dict(
                {k: v.float() for k, v in state.items()}, strict=True
            )
        return model.eval()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] (H, W multiples of 8) → ``(B, 32, H/8, W/8)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, 32, h, w)`` → ``(B, 3, 8h, 8w)`` clamped to [0, 1]."""
        return self.decoder(z).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` (both in [0, 1])."""
        return self.decode(self.encode(x))
