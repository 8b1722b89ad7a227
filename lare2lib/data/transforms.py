"""Pure, deterministic image transforms: tensors, resizing, crops, re-encoding, JPEG quality.

Sizes are ints for squares or ``(height, width)``. Crops of images smaller than the crop follow
an explicit :data:`SmallImagePolicy`. Re-encoding (:func:`reencode`) puts both classes through
the same codec: GenImage reals are ImageNet JPEGs (quality ~96) and fakes are PNG, a shortcut a
detector learns (METHODS.md §6).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Literal

import numpy as np
import torch
from PIL import Image

from lare2lib.data.images import BadImageError

__all__ = [
    "SmallImagePolicy",
    "to_tensor",
    "to_model_range",
    "squash_resize",
    "cut_to_multiple",
    "center_crop",
    "random_crop",
    "reencode",
    "jpeg_quality_estimate",
]

SmallImagePolicy = Literal["reflect", "resize_up", "skip"]
"""What a crop does with an image smaller than the crop.

``reflect``    pad centred with mirror reflection (no edge repeat), EGRE's released train transform
               (albumentations ``PadIfNeeded`` with ``BORDER_REFLECT_101`` then ``RandomCrop``);
``resize_up``  upscale (bicubic, aspect kept) until the crop fits: changes the pixel statistics;
``skip``       raise :class:`BadImageError` with reason ``too_small`` (reported, not used).
"""


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB image → float32 tensor (3, H, W) in [0, 1]."""
    if image.mode != "RGB":
        raise ValueError(f"to_tensor expects an RGB image (use load_image), got mode {image.mode!r}")
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1], the range diffusers VAEs and LaRE expect."""
    return pixels * 2.0 - 1.0


def squash_resize(
    image: Image.Image, size: int | tuple[int, int], resample: int = Image.Resampling.BICUBIC
) -> Image.Image:
    """Resize the whole image to ``size`` ignoring aspect ratio (LaRE: 256×256 bicubic, no crop)."""
    height, width = _size_hw(size)
    return image.resize((width, height), resample=resample)


def cut_to_multiple(image: Image.Image, multiple: int = 8) -> Image.Image:
    """Centre-crop each side down to a multiple of ``multiple`` (8: the VAE downsampling factor).

    Autoencoders at native resolution need sides divisible by their downsampling; cropping (not
    resizing) keeps the pixels and their traces intact.
    """
    width, height = image.size
    new_width, new_height = width - width % multiple, height - height % multiple
    if new_width == 0 or new_height == 0:
        raise BadImageError(None, "too_small", f"{width}x{height} has no side of at least {multiple}")
    left, top = (width - new_width) // 2, (height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height))


def _fit_small(image: Image.Image, height: int, width: int, pad_mode: SmallImagePolicy) -> Image.Image:
    """Make ``image`` at least ``height`` × ``width`` according to the small-image policy."""
    image_width, image_height = image.size
    if image_width >= width and image_height >= height:
        return image
    if pad_mode == "skip":
        raise BadImageError(
            None, "too_small", f"{image_width}x{image_height} is smaller than the {width}x{height} crop"
        )
    if pad_mode == "resize_up":
        scale = max(height / image_height, width / image_width)
        new_size = (max(width, round(image_width * scale)), max(height, round(image_height * scale)))
        return image.resize(new_size, resample=Image.Resampling.BICUBIC)
    if pad_mode == "reflect":
        pad_y, pad_x = max(0, height - image_height), max(0, width - image_width)
        array = np.pad(
            np.asarray(image),
            ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)),
            mode="reflect",
        )
        return Image.fromarray(array)
    raise ValueError(f"pad_mode must be 'reflect', 'resize_up' or 'skip', got {pad_mode!r}")


def center_crop(image: Image.Image, size: int | tuple[int, int], pad_mode: SmallImagePolicy = "reflect") -> Image.Image:
    """Centred crop of ``size``; smaller images follow ``pad_mode`` (:data:`SmallImagePolicy`)."""
    height, width = _size_hw(size)
    image = _fit_small(image, height, width, pad_mode)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def random_crop(
    image: Image.Image,
    size: int | tuple[int, int],
    generator: torch.Generator | None = None,
    pad_mode: SmallImagePolicy = "reflect",
) -> Image.Image:
    """Uniformly placed crop of ``size``, positions drawn from ``generator`` (torch's global RNG if None)."""
    height, width = _size_hw(size)
    image = _fit_small(image, height, width, pad_mode)
    top = int(torch.randint(0, image.height - height + 1, (1,), generator=generator))
    left = int(torch.randint(0, image.width - width + 1, (1,), generator=generator))
    return image.crop((left, top, left + width, top + height))


def reencode(
    image: Image.Image, fmt: Literal["png", "jpeg"] = "png", quality: int = 96, subsampling: str = "4:2:0"
) -> Image.Image:
    """Encode and decode in memory with one codec, so both classes carry the same format traces.

    The output depends on the pixels only, never on the file the image came from. ``png`` is
    lossless (pixels unchanged: real JPEG artefacts stay, fakes stay clean); to remove the
    "JPEG ⇒ real" shortcut use ``jpeg`` for both classes at the reals' quality (96 for GenImage,
    4:2:0 chroma subsampling as in ImageNet), as "Fake or JPEG?" (arXiv 2403.17608) does.
    """
    buffer = io.BytesIO()
    rgb = image.convert("RGB")
    if fmt == "jpeg":
        rgb.save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    elif fmt == "png":
        rgb.save(buffer, format="PNG")
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


_IJG_LUMINANCE = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.int64,
)  # fmt: skip
"""JPEG Annex K luminance table (natural order), which libjpeg scales by the quality setting."""


def _ijg_luminance_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMINANCE * scale + 50) // 100, 1, 255)


def jpeg_quality_estimate(source: str | os.PathLike | Image.Image) -> int | None:
    """libjpeg quality (1-100) whose luminance table is closest to the file's; None if not a JPEG.

    Reads only the header's quantisation table. Exact for encoders that scale the standard table
    (libjpeg, Pillow, most cameras' software); a nearest match otherwise. Useful to report format
    bias: GenImage reals estimate at ~96, re-encoded fakes at whatever :func:`reencode` used.
    """
    context = contextlib.nullcontext(source) if isinstance(source, Image.Image) else Image.open(source)
    with context as image:
        if image.format != "JPEG" or not getattr(image, "quantization", None):
            return None
        table = np.asarray(image.quantization[0], dtype=np.int64)
    errors = [np.abs(_ijg_luminance_table(q) - table).sum() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1
