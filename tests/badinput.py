"""A corpus of awkward image files, each with the outcome the pipeline must produce.

``make_bad_corpus(root)`` writes the files under ``root`` (and one target file in a sibling folder
``<root>-outside/`` that escapes are aimed at) and returns ``{relative path: ExpectedOutcome}``.
Keys are POSIX paths relative to ``root``, which is also the ``image_id`` a scan gives them. Other
tests (extraction, CLI, training) import this module to run their stage over the same corpus:

* ``outcome.reason`` is the :class:`lare2lib.data.images.BadImageError` reason ``load_image`` must raise,
  or None when the file must load, as RGB of ``outcome.size`` with ``outcome.pixels`` (within
  ``outcome.tolerance``) and at least ``outcome.notes`` among the decode notes;
* ``outcome.scan_reason`` is what ``scan_folder`` reports (header-only, so truncation is not seen);
* manifests (``kind == "manifest"``) must make ``read_manifest(path, root=root)`` raise
  ``ManifestError`` naming ``outcome.line``, unless ``outcome.reason`` is None;
* ``outcome.skip_reason`` says why a case cannot be produced on this machine (e.g. running as
  root, where permission bits do not stop reads); tests skip those instead of passing falsely,
  or call :func:`simulate_unreadable` first, which makes lare2lib's reads of the mode-000 file
  fail as they would for an ordinary user and returns the outcomes with the case enabled.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, features

__all__ = ["ExpectedOutcome", "make_bad_corpus", "png_bytes", "simulate_unreadable"]

HUGE_SIDE = 100_000
"""Declared side of the decompression bomb (10^10 pixels: above Pillow's own hard limit)."""
OVER_LIMIT_SIZE = (9000, 8000)
"""72 M pixels: above lare2lib's DEFAULT_MAX_PIXELS (67 M) but below Pillow's limits, so only
lare2lib's own header check can refuse it."""


@dataclass(frozen=True)
class ExpectedOutcome:
    """What the pipeline must do with one corpus entry."""

    description: str
    """What the file is."""
    kind: Literal["image", "manifest"] = "image"
    reason: str | None = None
    """Expected ``BadImageError.reason`` from ``load_image`` (images), or ``"escapes_root"`` for a
    manifest that ``read_manifest`` must refuse; None: loads / reads fine."""
    scan_reason: str | None = None
    """Expected reason when ``scan_folder`` meets the file; None: listed as a record."""
    size: tuple[int, int] | None = None
    """(width, height) of the decoded RGB image."""
    pixels: np.ndarray | None = None
    """Expected decoded pixels (H, W, 3) uint8, compared with a max-abs ``tolerance``."""
    tolerance: int = 0
    """0 for lossless files; a few levels for JPEG."""
    notes: tuple[str, ...] = ()
    """Decode notes that must be present (``animated``, ``from:CMYK``, ...)."""
    line: int | None = None
    """Manifests: the line ``ManifestError`` must name."""
    skip_reason: str | None = None
    """Set when this machine cannot produce the case; the test must skip it."""

    @property
    def loads(self) -> bool:
        return self.kind == "image" and self.reason is None


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor a header that lies about its size).

    ``raw_rows`` are the scanlines, each prefixed by its filter byte; ``color_type`` 0 grey, 2 RGB.
    """
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw_rows)) + _chunk(b"IEND", b"")
    )


def _scanlines(array: np.ndarray) -> bytes:
    """Big-endian scanlines with filter 0 (none), as PNG stores them."""
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    return b"".join(b"\x00" + row.tobytes() for row in big_endian)


def _rgb(array_or_color, size=None) -> np.ndarray:
    if size is not None:
        width, height = size
        return np.broadcast_to(np.asarray(array_or_color, np.uint8), (height, width, 3)).copy()
    return np.asarray(array_or_color, np.uint8)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _write(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _image_entries(root: Path) -> dict[str, ExpectedOutcome]:
    rng = np.random.default_rng(0)
    out: dict[str, ExpectedOutcome] = {}

    control = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    _write(root, "control.png", _encoded(Image.fromarray(control), "PNG"))
    out["control.png"] = ExpectedOutcome("valid RGB PNG", size=(40, 30), pixels=control)

    flat = _rgb((200, 100, 50), (32, 24))
    _write(root, "control.jpg", _encoded(Image.fromarray(flat), "JPEG", quality=95))
    out["control.jpg"] = ExpectedOutcome("valid RGB JPEG", size=(32, 24), pixels=flat, tolerance=4)

    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for fmt, suffix in (("JPEG", "jpg"), ("PNG", "png")):
        data = _encoded(noise, fmt)
        _write(root, f"truncated.{suffix}", data[: len(data) // 2])
        out[f"truncated.{suffix}"] = ExpectedOutcome(f"{fmt} cut in half", reason="truncated")

    _write(root, "empty.jpg", b"")
    out["empty.jpg"] = ExpectedOutcome("zero-byte file", reason="empty", scan_reason="empty")

    _write(root, "text.jpg", b"this is a text file, not a JPEG\n" * 4)
    out["text.jpg"] = ExpectedOutcome("text with an image suffix", reason="not_an_image", scan_reason="not_an_image")

    tiny_rows = b"\x00" + b"\x00" * 3
    _write(root, "huge_header.png", png_bytes(HUGE_SIDE, HUGE_SIDE, 8, 2, tiny_rows))
    out["huge_header.png"] = ExpectedOutcome(
        f"PNG header declaring {HUGE_SIDE}x{HUGE_SIDE} in a few bytes", reason="too_large", scan_reason="too_large"
    )
    _write(root, "over_limit.png", png_bytes(*OVER_LIMIT_SIZE, 8, 2, tiny_rows))
    out["over_limit.png"] = ExpectedOutcome(
        "PNG header over DEFAULT_MAX_PIXELS but under Pillow's limit", reason="too_large", scan_reason="too_large"
    )

    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1))  # 32 wide, 8 high
    _write(root, "gray_L.png", _encoded(Image.fromarray(ramp), "PNG"))
    out["gray_L.png"] = ExpectedOutcome(
        "8-bit greyscale", size=(32, 8), pixels=np.repeat(ramp[..., None], 3, -1), notes=("from:L",)
    )

    alpha = np.array([[0, 255, 128, 255]], np.uint8).repeat(4, 0)
    grey = np.full_like(alpha, 40)
    composited = np.round(grey * (alpha / 255) + 255 * (1 - alpha / 255)).astype(np.uint8)
    _write(root, "gray_LA.png", _encoded(Image.fromarray(np.stack([grey, alpha], -1), mode="LA"), "PNG"))
    out["gray_LA.png"] = ExpectedOutcome(
        "greyscale with alpha", size=(4, 4), pixels=np.repeat(composited[..., None], 3, -1), tolerance=1,
        notes=("from:LA", "alpha_composited"),
    )  # fmt: skip

    palette_image = Image.new("P", (6, 4), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    palette_image.paste(1, (3, 0, 6, 4))
    _write(root, "palette_transparency.png", _encoded(palette_image, "PNG", transparency=0))
    palette_pixels = _rgb((255, 255, 255), (6, 4))
    palette_pixels[:, 3:] = (255, 0, 0)
    out["palette_transparency.png"] = ExpectedOutcome(
        "palette image whose index 0 is transparent (shown white)", size=(6, 4), pixels=palette_pixels,
        notes=("from:P", "alpha_composited"),
    )  # fmt: skip

    cmyk_red = Image.new("CMYK", (24, 24), (0, 255, 255, 0))
    _write(root, "cmyk.jpg", _encoded(cmyk_red, "JPEG", quality=95))
    out["cmyk.jpg"] = ExpectedOutcome(
        "CMYK JPEG (Adobe inverted CMYK as Pillow writes it), pure red", size=(24, 24),
        pixels=_rgb((255, 0, 0), (24, 24)), tolerance=6, notes=("from:CMYK",),
    )  # fmt: skip

    values16 = np.array([[0, 255, 256, 32768, 40000, 65535]], np.uint16).repeat(2, 0)
    _write(root, "gray16.png", png_bytes(6, 2, 16, 0, _scanlines(values16)))
    out["gray16.png"] = ExpectedOutcome(
        "16-bit greyscale PNG (Pillow's convert('L') would clip 256 to 255)", size=(6, 2),
        pixels=np.repeat((values16 >> 8).astype(np.uint8)[..., None], 3, -1), notes=("from:I;16",),
    )  # fmt: skip

    rgb16 = np.stack([values16, values16[:, ::-1], values16 // 2], -1)
    _write(root, "rgb16.png", png_bytes(6, 2, 16, 2, _scanlines(rgb16)))
    out["rgb16.png"] = ExpectedOutcome(
        "16-bit RGB PNG", size=(6, 2), pixels=(rgb16 >> 8).astype(np.uint8), notes=("from:16bit",)
    )

    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = [[0, 255, 0], [255, 0, 255]]
    rgba[0, 0, :3] = (0, 0, 255)  # colour hidden under alpha 0 must not leak out
    rgba_pixels = np.where(rgba[..., 3:] == 255, rgba[..., :3], 255).astype(np.uint8)
    _write(root, "rgba.png", _encoded(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    out["rgba.png"] = ExpectedOutcome(
        "RGBA with transparent pixels", size=(3, 2), pixels=rgba_pixels, notes=("from:RGBA", "alpha_composited")
    )

    frames = [Image.new("RGB", (16, 12), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    first = _rgb((255, 0, 0), (16, 12))
    animations = {
        "animated.gif": ("GIF", {}),
        "animated.png": ("PNG", {}),
        "animated.webp": ("WEBP", {"lossless": True}),
    }
    for name, (fmt, options) in animations.items():
        skip = None if fmt != "WEBP" or features.check("webp") else "Pillow built without WebP"
        if skip is None:
            _write(
                root,
                name,
                _encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **options),
            )
        out[name] = ExpectedOutcome(
            f"animated {fmt} (3 frames): first frame only", size=(16, 12), pixels=first, tolerance=2,
            notes=("animated",), skip_reason=skip,
        )  # fmt: skip

    stored = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high, as the camera stored it
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    _write(
        root,
        "exif_rotated.jpg",
        _encoded(Image.fromarray(stored), "JPEG", quality=95, subsampling=0, exif=exif.tobytes()),
    )
    out["exif_rotated.jpg"] = ExpectedOutcome(
        "JPEG with EXIF orientation 6: the left (red) half must end up on top", size=(16, 32),
        pixels=np.rot90(stored, k=-1).copy(), tolerance=8, notes=("exif_transposed",),
    )  # fmt: skip

    for folder, colour in (("a", (1, 2, 3)), ("b", (4, 5, 6))):
        _write(root, f"dup/{folder}/image.png", _encoded(Image.new("RGB", (8, 8), colour), "PNG"))
        out[f"dup/{folder}/image.png"] = ExpectedOutcome(
            f"same stem as dup/{'b' if folder == 'a' else 'a'}/image.png", size=(8, 8), pixels=_rgb(colour, (8, 8))
        )

    locked = _write(root, "no_permission.png", _encoded(Image.new("RGB", (8, 8)), "PNG"))
    locked.chmod(0)
    out["no_permission.png"] = ExpectedOutcome(
        "file with mode 000", reason="unreadable", scan_reason="unreadable", skip_reason=_readable_anyway(locked)
    )
    return out


def _readable_anyway(path: Path) -> str | None:
    try:
        path.read_bytes()
    except PermissionError:
        return None
    return "running as root (or with CAP_DAC_OVERRIDE): permission bits do not stop reads here"


def _escape_entries(root: Path) -> dict[str, ExpectedOutcome]:
    outside = root.parent / f"{root.name}-outside"
    secret = _write(outside, "secret.png", _encoded(Image.new("RGB", (8, 8), (9, 9, 9)), "PNG"))
    link = root / "link_outside.png"
    link.symlink_to(secret)
    manifests = {
        "valid.csv": (["control.png", "dup/a/image.png"], None),
        "escape_dotdot.csv": (["control.png", f"../{outside.name}/secret.png"], 3),
        "escape_absolute.csv": ([str(secret)], 2),
        "escape_symlink.csv": (["link_outside.png"], 2),
    }
    out = {
        "link_outside.png": ExpectedOutcome(
            "symlink to a file outside the root (loads by path, refused by scans and manifests)",
            scan_reason="escapes_root", size=(8, 8), pixels=_rgb((9, 9, 9), (8, 8)),
        )
    }  # fmt: skip
    for name, (paths, bad_line) in manifests.items():
        _write(root, f"manifests/{name}", ("path\n" + "".join(f"{p}\n" for p in paths)).encode())
        out[f"manifests/{name}"] = ExpectedOutcome(
            f"manifest listing {paths}",
            kind="manifest",
            reason=None if bad_line is None else "escapes_root",
            line=bad_line,
        )
    return out


def make_bad_corpus(root: str | os.PathLike) -> dict[str, ExpectedOutcome]:
    """Write the corpus under ``root`` (created if needed) and return the expected outcomes.

    Also writes ``<root>-outside/secret.png``, the target of the escape cases. Manifests list paths
    relative to ``root``; read them with ``read_manifest(root / key, root=root)``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return {**_image_entries(root), **_escape_entries(root)}


def simulate_unreadable(monkeypatch, root: str | os.PathLike,
                        corpus: dict[str, ExpectedOutcome]) -> dict[str, ExpectedOutcome]:
    """Make the corpus's ``unreadable`` files unreadable to lare2lib even as root.

    Patches the ``open`` that :mod:`lare2lib.data.images` uses for every read (decode, header probe,
    folder scan, DataLoader workers forked afterwards) to raise ``PermissionError`` for those
    paths only, exactly as ``open`` does for a non-root user on a mode-000 file, and returns the
    outcomes with their ``skip_reason`` cleared. ``monkeypatch`` may be pytest's fixture or a
    ``pytest.MonkeyPatch()`` context (for module-scoped fixtures).
    """
    import lare2lib.data.images as images

    keys = {key for key, outcome in corpus.items() if outcome.reason == "unreadable"}
    denied = {str((Path(root) / key).resolve()) for key in keys}

    def guarded_open(file, *args, **kwargs):
        if str(Path(file).resolve()) in denied:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(images, "open", guarded_open, raising=False)
    return {key: dataclasses.replace(outcome, skip_reason=None) if key in keys else outcome
            for key, outcome in corpus.items()}
