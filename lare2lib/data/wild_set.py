"""Notebook 08's test set: real generator outputs against held-out photos, processed identically.

The fakes are the text-to-image previews :func:`lare2lib.data.wild_templates.template_catalogue`
keeps: WebP thumbnails, mostly 400², of images generated at about 1024². The reals are the
shipped corpus's **test** photos (JPEG or PNG, short side 512), which no detector of this
project trained or selected on. Left as they are, the two classes differ in format and size,
and a detector can separate them by that alone. So :func:`process` applies one rule to every
image of both classes:

1. resize the short side to ``size`` (Lanczos, antialiased), centre-crop ``size × size``;
2. one lossy round trip, WebP at ``webp_quality``, so both classes end compressed alike.

``process(..., webp_quality=None)`` keeps step 1 only, and :func:`as_shipped` skips both: the
notebook scores those too, to show how large the format/size shortcut is without the control.

Reals contribute ``real_views`` square windows per photo (the centre square of the full frame,
then the four corner squares of ¾ the short side) before the rule; intervals resample photos,
not windows, because windows of one photo are not independent.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from lare2lib.data.wild_templates import WildTemplate, template_catalogue

__all__ = ["WildImage", "WildSet", "process", "as_shipped", "real_windows", "build_wild_set",
           "dedupe_pixels"]

CORNER_FRACTION = 0.75
"""Side of the four corner windows of a real photo, as a fraction of its short side."""


@dataclass
class WildImage:
    """One image of the set, decoded (``uint8 (3, H, W)``), with what it is."""

    image_id: str
    pixels: torch.Tensor
    label: int
    """0 real, 1 generated."""
    group: str
    """The photo (reals) or template (fakes) it comes from: the bootstrap's unit."""
    generator: str = "real"
    generator_family: str = "real"
    vae_family: str = "real"
    source: str = ""
    """Source file format and size, e.g. ``WEBP 400x400``."""


@dataclass
class WildSet:
    """The images of one processing condition and every file that was dropped, with why."""

    images: list[WildImage]
    dropped: dict[str, str] = field(default_factory=dict)
    """``{template or file id: reason}`` (animated, duplicate, undecodable, not text-to-image)."""
    condition: str = "controlled"

    def of(self, label: int) -> list[WildImage]:
        return [image for image in self.images if image.label == label]

    def column(self, name: str, label: int | None = None) -> list:
        return [getattr(image, name) for image in self.images if label is None or image.label == label]


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def process(image: Image.Image, size: int, webp_quality: int | None = 80) -> torch.Tensor:
    """The one rule both classes go through: short side → ``size``, centre crop, WebP round trip."""
    if size < 8:
        raise ValueError(f"size={size}: too small to carry any detector's input")
    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                           Image.Resampling.LANCZOS)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    if webp_quality is None:
        return _to_tensor(cropped)
    if not 1 <= webp_quality <= 100:
        raise ValueError(f"webp_quality={webp_quality}: must be 1..100 (or None for no round trip)")
    buffer = io.BytesIO()
    cropped.save(buffer, format="WEBP", quality=int(webp_quality), method=4)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return _to_tensor(decoded)


def as_shipped(image: Image.Image) -> torch.Tensor:
    """The image as its file holds it (no control): only converted to RGB."""
    return _to_tensor(image)


def real_windows(image: Image.Image, views: int) -> list[Image.Image]:
    """Up to 5 square windows of a photo: the centre square of the full frame, then the
    top-left, top-right, bottom-left and bottom-right squares of ¾ the short side."""
    if not 1 <= views <= 5:
        raise ValueError(f"real_views={views}: must be 1..5")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    boxes = [(left, top, left + side, top + side)]
    corner = int(round(side * CORNER_FRACTION))
    for x, y in ((0, 0), (width - corner, 0), (0, height - corner), (width - corner, height - corner)):
        boxes.append((x, y, x + corner, y + corner))
    return [image.crop(box) for box in boxes[:views]]


def dedupe_pixels(items: Sequence[tuple[str, Image.Image]]) -> tuple[list[str], dict[str, str]]:
    """Ids to keep (first of each decoded-pixel duplicate) and ``{dropped id: reason}``."""
    seen: dict[str, str] = {}
    keep, dropped = [], {}
    for item_id, image in items:
        array = np.asarray(image.convert("RGB"))
        digest = hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()
        if digest in seen:
            dropped[item_id] = f"duplicate pixels of {seen[digest]}"
        else:
            seen[digest] = item_id
            keep.append(item_id)
    return keep, dropped


def _open_fake(template: WildTemplate) -> Image.Image:
    """The first frame's pixels, or a ValueError naming why the preview is unusable."""
    from lare2lib.data.images import BadImageError, decode_image

    try:
        decoded = decode_image(template.preview, exif=False)
    except BadImageError as error:
        raise ValueError(f"undecodable ({error.reason})") from error
    if decoded.n_frames > 1:
        raise ValueError(f"animated ({decoded.n_frames} frames)")
    return decoded.image


def _fakes(catalogue: Sequence[WildTemplate]) -> tuple[list[tuple[WildTemplate, Image.Image]], dict[str, str]]:
    dropped = {t.template_id: t.reason for t in catalogue if not t.keep}
    opened = []
    for template in (t for t in catalogue if t.keep):
        try:
            opened.append((template, _open_fake(template)))
        except ValueError as error:
            dropped[template.template_id] = str(error)
    keep, duplicates = dedupe_pixels([(t.template_id, image) for t, image in opened])
    dropped.update(duplicates)
    kept = set(keep)
    return [(t, image) for t, image in opened if t.template_id in kept], dropped


def _reals(views: int, max_photos: int) -> list[tuple[str, str, Image.Image, str]]:
    """``(image id, photo id, window, source)`` of the corpus's test photos."""
    from lare2lib.world.photos import load_corpus

    photos = [p for p in load_corpus() if p.split == "test"]
    photos = photos[:max_photos] if max_photos else photos
    out = []
    for photo in photos:
        with Image.open(photo.path) as image:
            image.load()
            source = f"{image.format} {image.width}x{image.height}"
            for k, window in enumerate(real_windows(image.convert("RGB"), views)):
                out.append((f"real/{photo.photo_id}#{k}", photo.photo_id, window, source))
    return out


def build_wild_set(*, size: int = 256, webp_quality: int | None = 80, real_views: int = 5,
                   condition: str = "controlled", max_fakes: int = 0, max_photos: int = 0,
                   catalogue: Sequence[WildTemplate] | None = None) -> WildSet:
    """The in-the-wild set under one processing ``condition``.

    ``controlled``: :func:`process` (``size``, ``webp_quality``) on both classes;
    ``as_shipped``: the files' own pixels (fakes: WebP thumbnails; reals: the centre square of
    the photo at its stored size). ``max_fakes`` / ``max_photos`` (0: all) make the smoke set.
    """
    if condition not in ("controlled", "as_shipped"):
        raise ValueError(f"unknown condition {condition!r}; valid: controlled, as_shipped")
    catalogue = template_catalogue() if catalogue is None else catalogue
    fakes, dropped = _fakes(catalogue)
    if max_fakes and max_fakes < len(fakes):  # evenly spread over the sorted templates, not the first few
        fakes = [fakes[k] for k in np.linspace(0, len(fakes) - 1, max_fakes).round().astype(int)]
    views = real_views if condition == "controlled" else 1
    transform = (lambda im: process(im, size, webp_quality)) if condition == "controlled" else as_shipped
    images = [WildImage(rid, transform(window), 0, photo_id, source=source)
              for rid, photo_id, window, source in _reals(views, max_photos)]
    for template, image in fakes:
        images.append(WildImage(f"fake/{template.template_id}", transform(image), 1, template.template_id,
                                template.generator, template.generator_family, template.vae_family,
                                f"WEBP {image.width}x{image.height}"))
    return WildSet(images, dropped, condition)
