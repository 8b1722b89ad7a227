"""Artifact removal: re-encode a generated image through another autoencoder, or denoise it.

The attacker hopes to replace the generator's decoder trace by another one
(:func:`reencode_through`; which autoencoder: the world's ``cross_family_autoencoder``) or to wash it out
(:func:`denoise` with one of :data:`DENOISERS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["median_filter", "blur_unsharp", "DENOISERS", "denoise", "reencode_through"]


def median_filter(image: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Per-channel median over ``size × size`` windows (reflected borders), uint8 in and out."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median window must be odd and positive, got {size}")
    radius = size // 2
    x = F.pad(image.float()[None], (radius,) * 4, mode="reflect")     # (1, 3, H+2r, W+2r)
    windows = x.unfold(2, size, 1).unfold(3, size, 1)                  # (1, 3, H, W, s, s)
    return windows.flatten(-2).median(dim=-1).values[0].round().to(torch.uint8)


def blur_unsharp(image: torch.Tensor, sigma: float = 1.0, amount: float = 0.6) -> torch.Tensor:
    """Gaussian blur (σ, :func:`lare2lib.data.perturb.blur`), then an unsharp mask of the same σ:
    the finest frequencies (where decoder traces live) go, edges are sharpened back."""
    from lare2lib.data.perturb import blur

    smooth = blur(image, sigma).float()
    sharpened = smooth + amount * (smooth - blur(smooth.round().to(torch.uint8), sigma).float())
    return sharpened.round().clamp(0, 255).to(torch.uint8)


DENOISERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "median3": median_filter,
    "blur_unsharp": blur_unsharp,
}
"""Simple denoisers of the artifact-removal attack: name → uint8 (3, H, W) → uint8."""


def denoise(images: Sequence[torch.Tensor] | torch.Tensor, method: str) -> torch.Tensor:
    """Every image through one of :data:`DENOISERS`; returns a uint8 batch."""
    if method not in DENOISERS:
        raise ValueError(f"unknown denoiser {method!r}; valid: {sorted(DENOISERS)}")
    return torch.stack([DENOISERS[method](image) for image in images])


def reencode_through(autoencoder, images: torch.Tensor, image_ids: Sequence[str], *,
                     seed: int = 0, batch_size: int = 32) -> torch.Tensor:
    """Generated images re-encoded and decoded by ``autoencoder`` (uint8 batch, same size).

    :func:`lare2lib.detectors.recon_classifier.reconstruct_images`: KL posterior sample per (seed, id), VQ
    quantised as its own generator decodes, rounded to 8 bits. Sides must be multiples of the
    autoencoder's downsampling (world images are).
    """
    from lare2lib.detectors.recon_classifier import reconstruct_images

    cut, recon = reconstruct_images(autoencoder, images, list(image_ids), seed=seed,
                                    batch_size=batch_size)
    if any(a.shape != b.shape for a, b in zip(images, cut)):
        raise ValueError("image sides are not multiples of the autoencoder's downsampling")
    return torch.stack(recon)
