"""Image input for every method: robust decoding, image ids and manifests, GenImage, transforms.

Everything a detector sees passes through here, so the choices below are the same for real and
generated images by construction:

* **Decoding** (:func:`decode_image`) returns 8-bit RGB or raises :class:`BadImageError` with a
  short stable ``reason`` code (:data:`BAD_IMAGE_REASONS`). Nothing is silently replaced by a
  blank image: the official LaRE release wrote an all-zero map for an unreadable file.
* **Image ids** are paths relative to the data root in POSIX form, so ``a/img.png`` and
  ``b/img.png`` never collide (the official release keyed features by file stem and overwrote).
* **Manifests** (CSV or parquet) list records; reading one refuses paths that leave the data root.
* **Transforms** are pure, deterministic functions; small-image crops follow an explicit policy.
* **Re-encoding** (:func:`reencode`) puts both classes through the same codec: GenImage reals are
  ImageNet JPEGs (quality ~96) and fakes are PNG, a shortcut a detector learns (METHODS.md §6).
* **Dataset** (:class:`RecordDataset`) returns an error item for a bad file instead of raising;
  :func:`collate_skip_bad` separates them and :func:`iter_good_batches` records them in the main
  process, so failures inside DataLoader workers are never lost.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ALPHA_BACKGROUND",
    "IMAGE_EXTENSIONS",
    "BAD_IMAGE_REASONS",
    "BadImageError",
    "ManifestError",
    "MANIFEST_COLUMNS",
    "GENIMAGE_LABELS",
    "SmallImagePolicy",
    "DecodedImage",
    "decode_image",
    "load_image",
    "probe_image",
    "DecodeFailure",
    "DecodeReport",
    "ImageRecord",
    "scan_folder",
    "write_manifest",
    "read_manifest",
    "manifest_hash",
    "discover_genimage",
    "genimage_records",
    "to_tensor",
    "to_model_range",
    "squash_resize",
    "cut_to_multiple",
    "center_crop",
    "random_crop",
    "reencode",
    "jpeg_quality_estimate",
    "RecordDataset",
    "collate_skip_bad",
    "iter_good_batches",
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

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""File suffixes :func:`scan_folder` picks up (compared case-insensitively)."""

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

HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
"""Pillow modes holding 16-bit samples (16-bit PNG greyscale opens as ``I;16``, TIFF as ``I``)."""

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


class ManifestError(ValueError):
    """A manifest that cannot be used as it is; the message names the file, the line and the fix."""


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


def _has_16bit_samples(image: Image.Image) -> bool:
    """True when the file stores 16-bit samples that Pillow unpacks to 8 bits (``RGB;16B``)."""
    for tile in getattr(image, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _exif_transpose(image: Image.Image, notes: list[str]) -> Image.Image:
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


def _high_byte(image: Image.Image) -> Image.Image:
    """16-bit greyscale → 8-bit ``L`` by keeping the high byte (``v >> 8``), never by clipping.

    Pillow's own ``convert("L")`` clips (256 → 255), turning a 16-bit photo white. The high byte
    is what Pillow does for 16-bit RGB PNGs (it has no 16-bit RGB mode) and what libpng's
    ``strip_16`` does, so greyscale and colour 16-bit files get the same mapping; it is within one
    level of the exact ``round(v * 255 / 65535)``.
    """
    values = np.asarray(image).astype(np.int64)
    return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))


def _to_rgb8(image: Image.Image, background: tuple[int, int, int], notes: list[str], path: Path) -> Image.Image:
    """Any Pillow mode → 8-bit RGB (see :data:`ALPHA_BACKGROUND` for transparency)."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode == "F":
        raise BadImageError(path, "unsupported_mode", "32-bit float pixels have no agreed 8-bit scale")
    notes.append(f"from:{mode}")
    if mode in HIGH_BIT_DEPTH_MODES:
        image = _high_byte(image)
    has_alpha = image.mode in ALPHA_MODES or "transparency" in image.info
    try:
        if has_alpha:
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
) -> DecodedImage:
    """Decode one file to 8-bit RGB with a record of what was converted.

    Order: header checks (missing, unreadable, empty, not an image, over ``max_pixels``), full
    decode of the first frame (truncated or corrupt data raise here), EXIF orientation, bit depth,
    palette/grey/CMYK/alpha → RGB. Raises :class:`BadImageError`; never returns a placeholder.
    """
    path = Path(path)
    with _open_checked(path, max_pixels) as image:
        n_frames = int(getattr(image, "n_frames", 1) or 1)
        source_mode, source_format = image.mode, image.format
        wide_samples = _has_16bit_samples(image)
        _full_decode(image, path)
        notes = ["animated"] if n_frames > 1 else []
        if wide_samples and image.mode not in HIGH_BIT_DEPTH_MODES:
            notes.append("from:16bit")  # Pillow already kept the high byte (16-bit RGB/RGBA PNG)
        image = _exif_transpose(image, notes)
        rgb = _to_rgb8(image, background, notes, path)
    return DecodedImage(rgb, source_mode, source_format, n_frames, tuple(notes))


def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """8-bit RGB image of ``path`` (see :func:`decode_image`); raises :class:`BadImageError`."""
    return decode_image(path, max_pixels=max_pixels).image


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

    Filled in the main process (see :func:`iter_good_batches`), written next to the run's outputs
    as CSV or JSON so a reader can see exactly which inputs got no feature and why.
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


# --------------------------------------------------------------------------------------------
# Records and folders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """One input image. Everything downstream (features, predictions) is keyed by ``image_id``."""

    image_id: str
    """Path relative to the data root, POSIX form (``"sdv4/val/ai/000_sdv4_00020.png"``)."""
    path: Path
    """Absolute path of the file."""
    label: int | None = None
    """0 real, 1 generated, None unknown."""
    source: str | None = None
    """Set or generator name (a GenImage subset, ``"real"``, a mini-world generator, ...)."""
    class_name: str | None = None
    """ImageNet / photo category for the prompt ``"a photo of a {class}"``; None: class-free."""
    width: int | None = None
    """Width after EXIF orientation, from the header (None if not probed)."""
    height: int | None = None
    """Height after EXIF orientation, from the header."""


def _relative_id(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _iter_image_files(folder: Path, recursive: bool) -> Iterator[Path]:
    """Image files under ``folder`` in sorted order; symlinked folders are not followed (loops)."""
    for directory, subdirectories, filenames in os.walk(folder):
        subdirectories.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(directory) / name
        if not recursive:
            return


def scan_folder(
    root: str | os.PathLike,
    label: int | None = None,
    source: str | None = None,
    recursive: bool = True,
    *,
    data_root: str | os.PathLike | None = None,
    report: DecodeReport | None = None,
    class_name_fn: Callable[[str], str | None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> list[ImageRecord]:
    """Records for the images under ``root``, sorted by image id, sizes read from headers only.

    ``image_id`` is relative to ``data_root`` (default ``root``), which must contain ``root``.
    Files whose header cannot be read (empty, not an image, too large, unreadable) and symlinks
    that resolve outside ``data_root`` are not listed: they go into ``report`` (and a warning
    names how many when no report is passed). Truncation needs a full decode and is found later.
    ``class_name_fn(file_name)`` fills ``class_name`` (e.g. :func:`lare2lib.imagenet.class_name_from_filename`).
    """
    root = Path(root).resolve()
    data_root = root if data_root is None else Path(data_root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root} does not exist or is not a folder")
    if not root.is_relative_to(data_root):
        raise ValueError(f"scan folder {root} is not inside data_root {data_root}")
    local_report = DecodeReport() if report is None else report
    n_failed_before = local_report.n_failed
    records = []
    files = _iter_image_files(root, recursive)
    for path in tqdm(files, desc=f"scan {root.name}", unit="img", disable=not progress):
        try:
            if path.is_symlink() and not path.resolve().is_relative_to(data_root):
                raise BadImageError(path, "escapes_root", f"symlink to {path.resolve()} outside {data_root}")
            width, height = probe_image(path, max_pixels=max_pixels)
        except BadImageError as error:
            local_report.add_error(error, image_id=_relative_id(path, data_root))
            continue
        class_name = class_name_fn(path.name) if class_name_fn else None
        records.append(ImageRecord(_relative_id(path, data_root), path, label, source, class_name, width, height))
    n_new_failures = local_report.n_failed - n_failed_before
    if report is None and n_new_failures:
        warnings.warn(
            f"scan_folder({root}): {n_new_failures} unusable files skipped; pass report= to list them", stacklevel=2
        )
    return sorted(records, key=lambda record: record.image_id)


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------

MANIFEST_COLUMNS = ("image_id", "path", "label", "source", "class_name", "width", "height")
"""Manifest columns; ``path`` is relative to the data root, ``image_id`` usually equals it."""


def _manifest_rows(records: Sequence[ImageRecord], root: Path, manifest: Path) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for record in records:
        if record.image_id in seen:
            raise ManifestError(f"{manifest}: duplicate image_id {record.image_id!r}; ids must be unique")
        seen.add(record.image_id)
        absolute = Path(record.path).resolve()
        if not absolute.is_relative_to(root):
            raise ManifestError(f"{manifest}: {absolute} is outside the data root {root}")
        row = asdict(record)
        row["path"] = _relative_id(absolute, root)
        rows.append(row)
    return rows


def _parquet_schema():
    import pyarrow as pa

    text, integer = pa.string(), pa.int64()
    types = {"label": integer, "width": integer, "height": integer}
    return pa.schema([(column, types.get(column, text)) for column in MANIFEST_COLUMNS])


def write_manifest(
    records: Sequence[ImageRecord], path: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> Path:
    """Write records as CSV (or parquet when ``path`` ends in ``.parquet``), atomically.

    Paths are stored relative to ``root`` (default: the manifest's folder), so a data folder can be
    moved with its manifest. Missing values are empty CSV fields / parquet nulls.
    """
    path = Path(path)
    root = (path.parent if root is None else Path(root)).resolve()
    rows = _manifest_rows(records, root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=_parquet_schema()), temporary)
    else:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    os.replace(temporary, path)
    return path


def _require_path_column(path: Path, columns: Sequence[str]) -> None:
    if "path" not in columns:
        raise ManifestError(f"{path}: no 'path' column; columns are {list(columns)}, expected {MANIFEST_COLUMNS}")


def _manifest_entries(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each entry; ``where`` names the CSV line or parquet row for errors."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        _require_path_column(path, table.column_names)
        for index, row in enumerate(table.to_pylist()):
            yield f"{path}:row {index}", row
        return
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        _require_path_column(path, reader.fieldnames or [])
        for row in reader:
            yield f"{path}:line {reader.line_num}", row


def _cell(value: Any) -> str | None:
    """A manifest cell as text, or None for an empty field or a null."""
    text = "" if value is None else str(value).strip()
    return text or None


def _int_cell(value: Any, column: str, where: str) -> int | None:
    text = _cell(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ManifestError(f"{where}: column {column!r} must be an integer, got {text!r}") from None


def _resolve_inside(root: Path, raw: str, where: str) -> Path:
    """Absolute path of a manifest entry, refusing anything that resolves outside ``root``."""
    candidate = Path(raw)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ManifestError(
            f"{where}: path {raw!r} resolves to {resolved}, outside the data root {root}. "
            "Manifest paths must stay inside the data root (no '..', absolute paths elsewhere or "
            "symlinks leading out); pass root= to read_manifest if the data root is elsewhere."
        )
    return resolved


def read_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[ImageRecord]:
    """Records of a manifest written by :func:`write_manifest` (or by hand: only ``path`` is required).

    ``root`` is the data root (default: the manifest's folder); every path must resolve inside it,
    so a manifest cannot make the pipeline read arbitrary files. ``image_id`` defaults to the path
    as written. Raises :class:`ManifestError` naming the line (CSV) or row (parquet).
    """
    path = Path(path)
    root = (path.parent if root is None else Path(root)).resolve()
    records, seen = [], {}
    for where, row in _manifest_entries(path):
        raw = _cell(row.get("path"))
        if raw is None:
            raise ManifestError(f"{where}: empty path")
        absolute = _resolve_inside(root, raw, where)
        image_id = _cell(row.get("image_id")) or Path(raw).as_posix()
        if image_id in seen:
            raise ManifestError(f"{where}: image_id {image_id!r} already used at {seen[image_id]}")
        seen[image_id] = where
        label = _int_cell(row.get("label"), "label", where)
        if label not in (None, 0, 1):
            raise ManifestError(f"{where}: label must be 0 (real), 1 (generated) or empty, got {label}")
        records.append(
            ImageRecord(
                image_id=image_id,
                path=absolute,
                label=label,
                source=_cell(row.get("source")),
                class_name=_cell(row.get("class_name")),
                width=_int_cell(row.get("width"), "width", where),
                height=_int_cell(row.get("height"), "height", where),
            )
        )
    return records


def manifest_hash(records: Iterable[ImageRecord]) -> str:
    """sha256 of the records' content (ids, labels, sources, classes, sizes), order-independent.

    Absolute paths are left out, so the same data set hashes the same on every machine; the hash
    goes into feature-store metadata to tie features to their inputs.
    """
    rows = sorted(
        [record.image_id, record.label, record.source, record.class_name, record.width, record.height]
        for record in records
    )
    payload = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# GenImage
# --------------------------------------------------------------------------------------------

GENIMAGE_SPLITS = ("train", "val")
GENIMAGE_LABELS = {"nature": 0, "ai": 1}
"""GenImage class folders and their labels (``nature`` = real ImageNet photos)."""


def _genimage_splits(folder: Path) -> dict[str, dict[str, Path]]:
    splits = {}
    for split in GENIMAGE_SPLITS:
        classes = {name: folder / split / name for name in GENIMAGE_LABELS if (folder / split / name).is_dir()}
        if classes:
            splits[split] = classes
    return splits


def discover_genimage(root: str | os.PathLike, max_depth: int = 3) -> dict[str, dict[str, dict[str, Path]]]:
    """GenImage subsets under ``root``, found by shape ``<subset>/{train,val}/{ai,nature}``.

    No subset names are assumed. The key is the subset folder relative to ``root`` (the official
    download nests folders, e.g. ``stable_diffusion_v_1_4/imagenet_ai_0419_sdv4``), or ``root``'s
    own name if ``root`` is a subset. Returns ``{subset: {split: {"ai"|"nature": folder}}}``.
    """
    root = Path(root).resolve()
    found: dict[str, dict[str, dict[str, Path]]] = {}
    frontier = [root]
    for _ in range(max_depth + 1):
        next_frontier = []
        for folder in frontier:
            splits = _genimage_splits(folder)
            if splits:
                found[folder.name if folder == root else _relative_id(folder, root)] = splits
                continue
            next_frontier += sorted(child for child in folder.iterdir() if child.is_dir())
        frontier = next_frontier
    return dict(sorted(found.items()))


def genimage_records(
    root: str | os.PathLike,
    subset: str,
    split: str,
    *,
    report: DecodeReport | None = None,
    include_inferred_classes: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[ImageRecord]:
    """Records of one GenImage subset and split: ``nature`` → label 0, ``ai`` → label 1.

    Ids are relative to ``root``; ``source`` is the subset; ``class_name`` comes from the file
    name (:mod:`lare2lib.imagenet`), None where the name carries no class.
    """
    from lare2lib.imagenet import class_name_from_filename

    subsets = discover_genimage(root)
    if subset not in subsets or split not in subsets[subset]:
        available = {name: sorted(splits) for name, splits in subsets.items()}
        raise ValueError(f"no GenImage {subset!r}/{split!r} under {root}; found {available}")

    def class_name_fn(name: str) -> str | None:
        return class_name_from_filename(name, include_inferred=include_inferred_classes)

    records = []
    for class_folder, folder in sorted(subsets[subset][split].items()):
        records += scan_folder(
            folder,
            label=GENIMAGE_LABELS[class_folder],
            source=subset,
            data_root=root,
            report=report,
            class_name_fn=class_name_fn,
            max_pixels=max_pixels,
        )
    return sorted(records, key=lambda record: record.image_id)


# --------------------------------------------------------------------------------------------
# Transforms (pure and deterministic; sizes are ints for squares or (height, width))
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


class RecordDataset(torch.utils.data.Dataset):
    """Decoded, transformed images of a list of records, with bad files returned as error items.

    ``__getitem__(i)`` returns ``{"pixel_values", "index", "image_id", "notes"}`` for a good file
    and ``{"error", "message", "path", "index", "image_id"}`` for a bad one (undecodable, or
    refused by the transform, e.g. ``too_small``). Errors are data, not exceptions or ``None``:
    DataLoader workers are separate processes, so anything they wrote into a report would be lost.
    :func:`collate_skip_bad` splits a batch into good and bad and :func:`iter_good_batches` records
    the bad ones in ``report`` in the main process.

    ``transform`` maps the decoded RGB image to the model input (must be picklable for workers,
    e.g. a module-level function or :func:`functools.partial`); ``report`` is where
    :func:`iter_good_batches` records outcomes by default (the dataset itself never writes to it).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[[Image.Image], Any] = to_tensor,
        report: DecodeReport | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.records = list(records)
        self.transform = transform
        self.report = report
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        try:
            decoded = decode_image(record.path, max_pixels=self.max_pixels)
            pixel_values = self.transform(decoded.image)
        except BadImageError as error:
            return {
                "error": error.reason,
                "message": error.message,
                "path": str(record.path),
                "index": index,
                "image_id": record.image_id,
            }
        return {"pixel_values": pixel_values, "index": index, "image_id": record.image_id, "notes": decoded.notes}


def collate_skip_bad(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch the good items of :class:`RecordDataset`; the bad ones travel along under ``"bad"``.

    Returns ``pixel_values`` (stacked, or None when every item was bad), ``index`` (long tensor),
    ``image_id`` and ``notes`` (lists), ``bad`` (list of error items).
    """
    good = [item for item in items if "error" not in item]
    bad = [item for item in items if "error" in item]
    return {
        "pixel_values": torch.utils.data.default_collate([item["pixel_values"] for item in good]) if good else None,
        "index": torch.tensor([item["index"] for item in good], dtype=torch.long),
        "image_id": [item["image_id"] for item in good],
        "notes": [item["notes"] for item in good],
        "bad": bad,
    }


def iter_good_batches(loader: Iterable[dict[str, Any]], report: DecodeReport | None = None) -> Iterator[dict[str, Any]]:
    """Batches of a DataLoader built with :func:`collate_skip_bad`, recording outcomes in ``report``.

    ``report`` defaults to ``loader.dataset.report``. Batches in which every file was bad are
    recorded and not yielded, so callers never see an empty batch.
    """
    if report is None:
        report = getattr(getattr(loader, "dataset", None), "report", None)
    for batch in loader:
        if report is not None:
            for item in batch["bad"]:
                report.add_failure(item["path"], item["error"], item["message"], item["image_id"])
            for image_id, notes in zip(batch["image_id"], batch["notes"], strict=True):
                report.add_success(image_id, notes)
        if batch["pixel_values"] is not None:
            yield batch
