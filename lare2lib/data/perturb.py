"""Post-processing of test images: JPEG, resizing, crop-and-resize, blur, Gaussian noise.

Used by the robustness studies (notebook 03: JPEG quality and resize factors, as Vesnin et al.
test; AEROBLADE's grid) and by the evasion study (notebook 06). Every perturbation:

* takes and returns 8-bit RGB tensors ``(3, H, W)`` (uint8), the form every image set holds;
* is applied **identically to both classes**: it depends on the pixels, the level and, for
  noise only, on ``(seed, image id)`` (:mod:`lare2lib.core.rng`), never on the class, the batch
  or the order of the images;
* is deterministic: the same image, level, seed and id give the same bytes.

Resampling is Pillow's bicubic (antialiased when shrinking); JPEG is Pillow/libjpeg with 4:2:0
chroma subsampling through :func:`lare2lib.data.transforms.reencode`; blur is a separable Gaussian
with reflected borders and a kernel radius of ``ceil(3σ)``; noise is ``σ · N(0, 1)`` added in
[0, 1] units, clipped and rounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lare2lib.core.rng import image_generator
from lare2lib.data.imagesets import ImageSet
from lare2lib.data.transforms import reencode

__all__ = [
    "PerturbationKind",
    "Perturbation",
    "KINDS",
    "NOISE_STREAM",
    "ROBUSTNESS_GRID",
    "AEROBLADE_GRID",
    "grid",
    "jpeg",
    "resize",
    "crop_resize",
    "blur",
    "gaussian_noise",
    "apply",
    "perturb_set",
]

PerturbationKind = Literal["none", "jpeg", "resize", "crop", "blur", "noise"]
KINDS: tuple[str, ...] = ("none", "jpeg", "resize", "crop", "blur", "noise")
"""``none`` (identity), ``jpeg`` (level = quality 1-100), ``resize`` (level = scale factor),
``crop`` (level = kept fraction of each side, then resized back), ``blur`` (level = σ in
pixels), ``noise`` (level = σ in [0, 1] units)."""

NOISE_STREAM = "perturb-noise"
""":mod:`lare2lib.core.rng` stream of the additive noise (independent of every other draw)."""

ROBUSTNESS_GRID: dict[str, tuple[float, ...]] = {
    "jpeg": (95, 90, 80, 70, 60, 50),
    "resize": (0.5, 0.75, 1.25, 1.5),
    "crop": (0.9, 0.8, 0.7, 0.6, 0.5),
}
"""Vesnin et al.'s robustness axes (JPEG quality 95…50, resize 0.5…1.5) plus crop-and-resize."""

AEROBLADE_GRID: dict[str, tuple[float, ...]] = {
    "jpeg": (90, 80, 70, 60, 50),
    "crop": (0.9, 0.8, 0.7, 0.6, 0.5),
    "blur": (1, 2, 3, 4, 5),
    "noise": (0.05, 0.1, 0.15, 0.2, 0.25),
}
"""AEROBLADE's robustness grid (METHODS.md §4), applied before reconstruction to both classes."""


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def _check_image(image: torch.Tensor) -> None:
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"perturbations take uint8 (3, H, W) images, got {image.dtype} {tuple(image.shape)}")


def jpeg(image: torch.Tensor, quality: float) -> torch.Tensor:
    """JPEG round trip at ``quality`` (libjpeg scale, 4:2:0 chroma subsampling)."""
    quality = int(round(quality))
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    return _from_pil(reencode(_to_pil(image), "jpeg", quality=quality))


def resize(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale both sides by ``factor`` (bicubic, antialiased when shrinking); at least 1 pixel."""
    if factor <= 0:
        raise ValueError(f"resize factor must be positive, got {factor}")
    if factor == 1:
        return image.clone()
    height, width = image.shape[-2:]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return _from_pil(_to_pil(image).resize(size, resample=Image.Resampling.BICUBIC))


def crop_resize(image: torch.Tensor, fraction: float) -> torch.Tensor:
    """Centre crop keeping ``fraction`` of each side, resized back to the original size (bicubic)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return image.clone()
    height, width = image.shape[-2:]
    new_h, new_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - new_h) // 2, (width - new_w) // 2
    cropped = _to_pil(image[:, top:top + new_h, left:left + new_w])
    return _from_pil(cropped.resize((width, height), resample=Image.Resampling.BICUBIC))


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of standard deviation ``sigma`` pixels, reflected borders."""
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return image.clone()
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    x = image.float()[:, None]  # (3, 1, H, W): one channel at a time, same kernel
    # reflect padding needs pad < side; replicate covers images smaller than the kernel
    mode = "reflect" if min(image.shape[-2:]) > radius else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return x[:, 0].round().clamp(0, 255).to(torch.uint8)


def gaussian_noise(image: torch.Tensor, sigma: float, image_id: str, seed: int = 0) -> torch.Tensor:
    """Add ``sigma · N(0, 1)`` in [0, 1] units; noise drawn from ``(seed, image_id)`` only."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return image.clone()
    noise = torch.randn(tuple(image.shape), generator=image_generator(seed, image_id, NOISE_STREAM))
    noisy = image.float() / 255.0 + sigma * noise
    return (noisy.clamp(0, 1) * 255.0).round().to(torch.uint8)


@dataclass(frozen=True)
class Perturbation:
    """One post-processing step at one level (see :data:`KINDS` for the meaning of ``level``)."""

    kind: PerturbationKind
    """Which perturbation: ``none``, ``jpeg``, ``resize``, ``crop``, ``blur`` or ``noise``."""
    level: float = 0.0
    """Its strength: JPEG quality, resize factor, kept crop fraction, blur σ or noise σ."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown perturbation {self.kind!r}; valid: {list(KINDS)}")

    @property
    def name(self) -> str:
        """``"jpeg@90"``, ``"resize@0.5"``, ``"none"``: a stable key for tables and metrics."""
        return "none" if self.kind == "none" else f"{self.kind}@{self.level:g}"

    def __call__(self, image: torch.Tensor, image_id: str = "", seed: int = 0) -> torch.Tensor:
        """Apply to one uint8 ``(3, H, W)`` image; ``image_id``/``seed`` matter for noise only."""
        _check_image(image)
        if self.kind == "none":
            return image.clone()
        if self.kind == "jpeg":
            return jpeg(image, self.level)
        if self.kind == "resize":
            return resize(image, self.level)
        if self.kind == "crop":
            return crop_resize(image, self.level)
        if self.kind == "blur":
            return blur(image, self.level)
        if not image_id:
            raise ValueError("noise needs the image id: its draw depends on (seed, image id) only")
        return gaussian_noise(image, self.level, image_id, seed)


def grid(axes: Mapping[str, Sequence[float]]) -> list[Perturbation]:
    """``{"jpeg": (90, 50)}`` → ``[Perturbation("jpeg", 90), Perturbation("jpeg", 50)]``."""
    return [Perturbation(kind, float(level)) for kind, levels in axes.items() for level in levels]


def apply(images: Sequence[torch.Tensor] | torch.Tensor, perturbation: Perturbation,
          image_ids: Sequence[str] | None = None, seed: int = 0) -> list[torch.Tensor]:
    """Apply one perturbation to every image (a list of ``(3, H, W)`` or a ``(N, 3, H, W)`` batch)."""
    ids = list(image_ids) if image_ids is not None else [""] * len(images)
    if len(ids) != len(images):
        raise ValueError(f"{len(images)} images but {len(ids)} image ids")
    return [perturbation(image, image_id, seed) for image, image_id in zip(images, ids)]


def perturb_set(images: ImageSet, perturbation: Perturbation, seed: int = 0) -> ImageSet:
    """The same set post-processed (all images keep one size, so the result stacks again)."""
    out = apply(images.pixels, perturbation, images.ids, seed)
    pixels = torch.stack(out) if out else images.pixels[:0]
    meta = {**images.meta, "perturbation": perturbation.name, "perturbation_seed": seed}
    return ImageSet(f"{images.name}+{perturbation.name}", pixels, images.class_index.clone(),
                    list(images.ids), meta)
