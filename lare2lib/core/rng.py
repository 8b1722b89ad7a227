"""Per-image random streams: randomness that depends only on (seed, image id, stream).

LaRE draws a posterior sample and K noise tensors per image. Drawing them from one global
generator would tie each map to the batch size, the order of the images and the number of
processes sharing the work. Here every image gets its own ``torch.Generator`` seeded from
``sha256(seed, stream, image_id)``, so a map is the same whether the image is extracted alone,
in a batch of 64, after a crash and resume, or on another worker of an ``accelerate launch``.

Generators live on the CPU by default and tensors are moved to the compute device afterwards:
CPU and CUDA generators produce different numbers for the same seed, and drawing on the CPU
keeps maps identical across devices (the cost is a small host-to-device copy per batch).

Named streams keep independent draws independent: the posterior sample (``"posterior"``) and
the LaRE noise (``"lare-noise"``) of one image never share numbers, and LaRE and DIRE see the
same latent sample of an image for the same seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

__all__ = [
    "POSTERIOR_STREAM",
    "LARE_NOISE_STREAM",
    "image_seed",
    "image_generator",
    "image_generators",
    "randn_per_image",
]

POSTERIOR_STREAM = "posterior"
"""Stream of the VAE posterior sample ``z = mean + std * n`` (shared by LaRE and DIRE)."""
LARE_NOISE_STREAM = "lare-noise"
"""Stream of LaRE's K noise draws ``eps`` added to the latent at timestep t."""

_SEED_BITS = 63  # torch.Generator.manual_seed accepts non-negative 64-bit ints; stay signed-safe


def image_seed(seed: int, image_id: str, stream: str = "lare") -> int:
    """A 63-bit seed from ``sha256("{seed}\\0{stream}\\0{image_id}")``.

    The NUL separators make the encoding unambiguous (``seed=1, id="2x"`` and
    ``seed=12, id="x"`` hash differently).
    """
    text = f"{int(seed)}\0{stream}\0{image_id}".encode()
    digest = hashlib.sha256(text).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << _SEED_BITS) - 1)


def image_generator(seed: int, image_id: str, stream: str = "lare",
                    device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh generator for one image and one stream; same arguments → same numbers."""
    generator = torch.Generator(device=device)
    generator.manual_seed(image_seed(seed, image_id, stream))
    return generator


def image_generators(seed: int, image_ids: Sequence[str], stream: str = "lare",
                     device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per image (the list form diffusers' ``randn_tensor`` accepts)."""
    return [image_generator(seed, image_id, stream, device) for image_id in image_ids]


def randn_per_image(shape: Sequence[int], seed: int, image_ids: Sequence[str], stream: str,
                    device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of shape ``(len(image_ids), *shape)``, one stream per image.

    Row ``i`` equals ``torch.randn(shape, generator=image_generator(seed, image_ids[i],
    stream))``: it does not depend on the other ids in the batch. Drawn in float32 on the
    CPU, then moved and cast, so the numbers are the same on every device and precision.
    """
    rows = [
        torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
        for generator in image_generators(seed, image_ids, stream)
    ]
    if not rows:
        return torch.empty((0, *shape), dtype=dtype, device=device)
    return torch.stack(rows).to(device=device, dtype=dtype)
