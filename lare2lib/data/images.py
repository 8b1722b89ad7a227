"""Image decoding for every method: 8-bit RGB or a named reason, and a report of what happened.

Everything a detector sees is decoded here, so the choices below are the same for real and
generated images by construction:

* **Decoding** (:func:`decode_image`) returns 8-bit RGB or raises :class:`BadImageError` with a
  short stable ``reason`` code (:data:`BAD_IMAGE_REASONS`). Nothing is silently replaced by a
  blank image: the official LaRE release wrote an all-zero map for an unreadable file.
* **Reports** (:class:`DecodeReport`) list every skipped file with its reason and every file that
  needed a conversion, so a run's outputs say exactly which inputs got no feature and why.

The rest of the image input lives in one module per concern (import each name from its module):

* :mod:`lare2lib.data.manifests`: image ids, :class:`ImageRecord`, folder scans, CSV/parquet
  manifests, GenImage discovery;
* :mod:`lare2lib.data.transforms`: tensors, resizing, crops with a small-image policy, re-encoding,
  JPEG quality estimates;
* :mod:`lare2lib.data.datasets`: :class:`RecordDataset` and the collate/iterate helpers that keep
  failures inside DataLoader workers from being lost;
* :mod:`lare2lib.data.pixel_modes`: EXIF orientation and 16-bit samples, used by the decoder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile, UnidentifiedImageError

from lare2lib.data.pixel_modes import HIGH_BIT_DEPTH_MODES, exif_transpose, has_16bit_samples, high_byte

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ALPHA_BACKGROUND",
    "BAD_IMAGE_REASONS",
    "BadImageError",
    "DecodedImage",
    "decode_image",
    "load_image",
    "probe_image",
    "DecodeFailure",
    "DecodeReport",
]

DEFAULT_MAX_PIXELS = 8192 * 8192
"""Largest image decoded (67 M pixels, 200 MB as RGB), checked from the header before decoding.

Well above every GenImage image (Midjourney 1024², the largest ImageNet photos ~ 10 M pixels) and
below Pillow's own warning limit (89 M pixels), so a decompression bomb is refused by this check,
not by Pillow's global ``Image.MAX_IMAGE_PIXELS`` (which this module never changes). Pillow still
refuses anything above twice its limit at open time; that is reported as ``too_large`` as well.
"""

ALPHA_BACKGROUND = (255, 255, 255)
"""Colour that transparent pixels are composited over (white, as browsers and viewers show them).

Dropping alpha instead would expose whatever RGB a transparent pixel happens to store, which
depends on the encoder. A fixed background makes the result depend on the visible image only, and
because the same constant is used for real and generated images, it cannot become a label cue.
"""

BAD_IMAGE_REASONS = {
    "missing": "the file does not exist",
    "unreadable": "the file exists but cannot be read (permissions, a directory, an I/O error)",
    "empty": "the file has zero bytes",
    "not_an_image": "Pillow recognises no image format in the file (e.g. text with a .jpg suffix)",
    "too_large": "the header declares more pixels than max_pixels (decompression-bomb guard)",
    "truncated": "the file ends before the image data does",
    "corrupt": "the decoder failed on the image data",
    "unsupported_mode": "a pixel format with no defined 8-bit RGB conversion (e.g. float 'F')",
    "too_small": "smaller than a crop and the small-image policy is 'skip'",
    "escapes_root": "a symlink that resolves outside the data root",
}
"""Stable ``BadImageError.reason`` codes (keys) and what each means; reports count by these."""

ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class BadImageError(Exception):
    """An image that cannot be turned into 8-bit RGB; ``reason`` is a key of :data:`BAD_IMAGE_REASONS`."""

    def __init__(self, path: str | os.PathLike | None, reason: str, message: str):
        if reason not in BAD_IMAGE_REASONS:
            raise ValueError(f"unknown reason {reason!r}; valid: {sorted(BAD_IMAGE_REASONS)}")
        self.path = None if path is None else str(path)
        self.reason = reason
        self.message = message
        super().__init__(f"{self.path or '<image>'}: {reason}: {message}")


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedImage:
    """The result of :func:`decode_image`."""

    image: Image.Image
    """8-bit RGB, EXIF orientation applied, alpha composited over :data:`ALPHA_BACKGROUND`."""
    source_mode: str
    """Pillow mode of the file's first frame before conversion (``"CMYK"``, ``"I;16"``, ...)."""
    source_format: str | None
    """Pillow format name (``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"WEBP"``, ...)."""
    n_frames: int
    """Frames in the file; only the first is decoded (``> 1``: animated)."""
    notes: tuple[str, ...]
    """What was done to reach RGB: ``animated``, ``exif_transposed``, ``alpha_composited``,
    ``from:<mode>`` (e.g. ``from:CMYK``), ``exif_ignored``. Empty for plain RGB files."""


_TRUNCATION_LOCK = threading.Lock()


@contextlib.contextmanager
def _strict_truncation() -> Iterator[None]:
    """Make Pillow raise on truncated files even if some library set ``LOAD_TRUNCATED_IMAGES``.

    With that flag on, Pillow pads a truncated image with grey and returns it: exactly the silent
    fake input we refuse. Pillow has no per-call switch, so when (and only when) the flag is on we
    turn it off for the duration of one decode, under a lock, and restore it.
    """
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield
        return
    with _TRUNCATION_LOCK:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = True


@contextlib.contextmanager
def _open_checked(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """Open an image lazily (header only) after the cheap checks; closes the file afterwards."""
    try:
        n_bytes = path.stat().st_size
    except FileNotFoundError:
        raise BadImageError(path, "missing", "no such file") from None
    except OSError as error:
        raise BadImageError(path, "unreadable", f"stat failed: {error.strerror or error}") from None
    if path.is_dir():
        raise BadImageError(path, "unreadable", "is a directory")
    if n_bytes == 0:
        raise BadImageError(path, "empty", "zero-byte file")
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed in the finally below)
    except OSError as error:
        raise BadImageError(path, "unreadable", f"cannot open: {error.strerror or error}") from None
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below decides; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(handle)
            except UnidentifiedImageError:
                raise BadImageError(path, "not_an_image", f"no known image format in {n_bytes} bytes") from None
            except Image.DecompressionBombError as error:
                raise BadImageError(path, "too_large", str(error)) from None
            except Exception as error:  # a plugin failing on a malformed header
                raise BadImageError(path, "corrupt", f"bad header: {error}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise BadImageError(
                path, "too_large", f"{width}x{height} = {width * height} pixels > max_pixels={max_pixels}"
            )
        yield image
    finally:
        handle.close()


def _full_decode(image: Image.Image, path: Path) -> None:
    """Decode every pixel of the current frame now, so truncation surfaces here and not later."""
    try:
        with _strict_truncation():
            image.load()
    except (EOFError, OSError) as error:
        text = str(error)
        if isinstance(error, EOFError) or "truncated" in text:
            raise BadImageError(path, "truncated", text or "unexpected end of file") from None
        raise BadImageError(path, "corrupt", text) from None
    except Exception as error:  # zlib/struct/Syntax errors from plugins on broken data
        raise BadImageError(path, "corrupt", f"{type(error).__name__}: {error}") from None


ALPHA_POLICIES = ("composite", "drop")
"""``composite``: transparent pixels over :data:`ALPHA_BACKGROUND`; ``drop``: Pillow's plain
``convert("RGB")``, which keeps whatever colour a transparent pixel stores (the released LaRE)."""


def _to_rgb8(image: Image.Image, background: tuple[int, int, int] | None, notes: list[str],
             path: Path) -> Image.Image:
    """Any Pillow mode → 8-bit RGB (see :data:`ALPHA_BACKGROUND`; ``background=None`` drops alpha)."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode == "F":
        raise BadImageError(path, "unsupported_mode", "32-bit float pixels have no agreed 8-bit scale")
    notes.append(f"from:{mode}")
    if mode in HIGH_BIT_DEPTH_MODES:
        image = high_byte(image)
    has_alpha = image.mode in ALPHA_MODES or "transparency" in image.info
    try:
        if has_alpha and background is not None:
            # CMYK files (Adobe's inverted CMYK included) are handled by Pillow's JPEG reader;
            # conversion to RGB is its plain formula without ICC colour management.
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*background, 255))
            notes.append("alpha_composited")
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError as error:
        raise BadImageError(path, "unsupported_mode", f"cannot convert mode {mode!r} to RGB: {error}") from None


def decode_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = ALPHA_BACKGROUND,
    exif: bool = True,
    alpha: str = "composite",
) -> DecodedImage:
    """Decode one file to 8-bit RGB with a record of what was converted.

    Order: header checks (missing, unreadable, empty, not an image, over ``max_pixels``), full
    decode of the first frame (truncated or corrupt data raise here), EXIF orientation (unless
    ``exif=False``: the pixels as stored, as the released LaRE reads them), bit depth,
    palette/grey/CMYK/alpha → RGB (``alpha``: :data:`ALPHA_POLICIES`). Raises
    :class:`BadImageError`; never returns a placeholder.
    """
    if alpha not in ALPHA_POLICIES:
        raise ValueError(f"unknown alpha policy {alpha!r}; valid: {list(ALPHA_POLICIES)}")
    path = Path(path)
    with _open_checked(path, max_pixels) as image:
        n_frames = int(getattr(image, "n_frames", 1) or 1)
        source_mode, source_format = image.mode, image.format
        wide_samples = has_16bit_samples(image)
        _full_decode(image, path)
        notes = ["animated"] if n_frames > 1 else []
        if wide_samples and image.mode not in HIGH_BIT_DEPTH_MODES:
            notes.append("from:16bit")  # Pillow already kept the high byte (16-bit RGB/RGBA PNG)
        if exif:
            image = exif_transpose(image, notes)
        rgb = _to_rgb8(image, background if alpha == "composite" else None, notes, path)
    return DecodedImage(rgb, source_mode, source_format, n_frames, tuple(notes))


def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, exif: bool = True,
               alpha: str = "composite") -> Image.Image:
    """8-bit RGB image of ``path`` (see :func:`decode_image`); raises :class:`BadImageError`."""
    return decode_image(path, max_pixels=max_pixels, exif=exif, alpha=alpha).image


def probe_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` as :func:`load_image` will return it, from the header only (fast).

    EXIF orientations 5-8 swap the two. Truncation is not detected here (it needs a full decode).
    """
    path = Path(path)
    with _open_checked(path, max_pixels) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(0x0112, 1)
        except Exception:
            orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeFailure:
    """One skipped file."""

    path: str
    """The file as given (absolute for scans and datasets)."""
    reason: str
    """A key of :data:`BAD_IMAGE_REASONS`."""
    message: str
    """Human-readable detail (decoder message, sizes, ...)."""
    image_id: str | None = None
    """The record's id when the file came from a record list."""


@dataclass
class DecodeReport:
    """What happened to every image of a run: skipped files with reasons, conversions, counts.

    Filled in the main process (see :func:`lare2lib.data.datasets.iter_good_batches`), written next
    to the run's outputs as CSV or JSON so a reader can see exactly which inputs got no feature
    and why.
    """

    failures: list[DecodeFailure] = field(default_factory=list)
    """Skipped files in the order they were met."""
    conversions: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """(image id or path, notes) of decoded files that needed a conversion (grey, CMYK, animated, ...)."""
    n_ok: int = 0
    """Files decoded successfully (with or without conversion)."""

    def add_failure(self, path: str | os.PathLike, reason: str, message: str, image_id: str | None = None) -> None:
        self.failures.append(DecodeFailure(str(path), reason, message, image_id))

    def add_error(self, error: BadImageError, image_id: str | None = None) -> None:
        self.add_failure(error.path or "", error.reason, error.message, image_id)

    def add_success(self, path: str | os.PathLike, notes: Sequence[str] = ()) -> None:
        self.n_ok += 1
        if notes:
            self.conversions.append((str(path), tuple(notes)))

    def merge(self, other: DecodeReport) -> None:
        self.failures.extend(other.failures)
        self.conversions.extend(other.conversions)
        self.n_ok += other.n_ok

    @property
    def counts(self) -> Counter[str]:
        """Skipped files per reason code."""
        return Counter(failure.reason for failure in self.failures)

    @property
    def note_counts(self) -> Counter[str]:
        """Decoded files per conversion note."""
        return Counter(note for _, notes in self.conversions for note in notes)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        """One line for logs and progress bars."""
        reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(self.counts.items())) or "none"
        return f"{self.n_ok} decoded ({len(self.conversions)} converted), {self.n_failed} skipped: {reasons}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_ok": self.n_ok,
            "n_failed": self.n_failed,
            "counts": dict(sorted(self.counts.items())),
            "note_counts": dict(sorted(self.note_counts.items())),
            "failures": [asdict(failure) for failure in self.failures],
            "conversions": [{"image_id": key, "notes": list(notes)} for key, notes in self.conversions],
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write as ``.json`` (everything) or ``.csv`` (one row per skipped or converted file)."""
        path = Path(path)
        if path.suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        elif path.suffix == ".csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["path", "image_id", "status", "reason", "message"])
            writer.writerows((f.path, f.image_id or "", "skipped", f.reason, f.message) for f in self.failures)
            writer.writerows(("", key, "converted", ";".join(notes), "") for key, notes in self.conversions)
            text = buffer.getvalue()
        else:
            raise ValueError(f"report path must end in .json or .csv, got {path.name!r}")
        _atomic_write_text(path, text)
        return path


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
