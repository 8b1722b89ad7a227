"""Pixel-format facts the decoder (:func:`lare2lib.data.images.decode_image`) acts on.

EXIF orientation, 16-bit sample detection and the 16-bit → 8-bit mapping: small Pillow helpers with
no error policy of their own (the decoder turns their outcomes into notes or ``BadImageError``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

__all__ = ["HIGH_BIT_DEPTH_MODES", "has_16bit_samples", "exif_transpose", "high_byte"]

HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
"""Pillow modes holding 16-bit samples (16-bit PNG greyscale opens as ``I;16``, TIFF as ``I``)."""


def has_16bit_samples(image: Image.Image) -> bool:
    """True when the file stores 16-bit samples that Pillow unpacks to 8 bits (``RGB;16B``)."""
    for tile in getattr(image, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def exif_transpose(image: Image.Image, notes: list[str]) -> Image.Image:
    """Apply the EXIF orientation tag (phones store portrait photos rotated plus a tag)."""
    try:
        orientation = image.getexif().get(0x0112, 1)
        if orientation in (None, 1):
            return image
        transposed = ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not lose the image; keep stored orientation
        notes.append("exif_ignored")
        return image
    notes.append("exif_transposed")
    return transposed


def high_byte(image: Image.Image) -> Image.Image:
    """16-bit greyscale → 8-bit ``L`` by keeping the high byte (``v >> 8``), never by clipping.

    Pillow's own ``convert("L")`` clips (256 → 255), turning a 16-bit photo white. The high byte
    is what Pillow does for 16-bit RGB PNGs (it has no 16-bit RGB mode) and what libpng's
    ``strip_16`` does, so greyscale and colour 16-bit files get the same mapping; it is within one
    level of the exact ``round(v * 255 / 65535)``.
    """
    values = np.asarray(image).astype(np.int64)
    return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))
