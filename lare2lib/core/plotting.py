"""Figures and headline numbers, written so that a rerun with the same inputs changes no byte.

Every notebook ends the same way: figures go to ``OUT_DIR`` as PNG (for reading) and PDF (for
papers), headline numbers go to ``OUT_DIR/metrics.json``. Both are written to a temporary name
and moved into place with :func:`os.replace`, so an interrupted run never leaves half a file,
and both carry no timestamps, so ``git diff`` and the notebook runner's change detection only
see real changes.

This module never selects a matplotlib backend: under papermill the kernel's inline backend is
what captures the images into the executed notebook, and forcing ``Agg`` would silently drop
them.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lare2lib import __version__
from lare2lib.core import paths

if TYPE_CHECKING:
    import torch

__all__ = [
    "METRICS_FILENAME",
    "set_theme",
    "save_figure",
    "write_metrics",
    "read_metrics",
    "to_jsonable",
    "atomic_write",
    "SET_ORDER",
    "colour_of",
    "show_image",
    "show_map",
]

METRICS_FILENAME = "metrics.json"
"""Name of the headline-number file in every notebook's output folder."""

_PRODUCER = f"lare2lib {__version__}"

# Per-format savefig metadata. Matplotlib stamps PDFs with the current time and every format
# with its own version; ``None`` removes a key, a fixed string replaces it.
_DETERMINISTIC_METADATA: dict[str, dict[str, str | None]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": _PRODUCER, "Creator": _PRODUCER},
    "svg": {"Date": None, "Creator": _PRODUCER},
    "eps": {"CreationDate": None, "Creator": _PRODUCER},
    "ps": {"CreationDate": None, "Creator": _PRODUCER},
}

_SVG_HASH_SALT = "lare2"
"""Fixed salt for the ids matplotlib generates inside SVGs (random per process otherwise)."""


def set_theme(context: str = "paper", font_scale: float = 1.2) -> None:
    """Apply the project's figure style: seaborn ``whitegrid``, colour-blind palette.

    ``paper`` context with a slightly larger font keeps labels readable both in the notebook
    and at single-column width in a PDF. ``savefig.dpi=200`` gives PNGs sharp enough to zoom
    into reconstruction-error maps without making them large.
    """
    import seaborn as sns

    sns.set_theme(
        context=context,
        style="whitegrid",
        palette="colorblind",
        font_scale=font_scale,
        rc={
            "figure.dpi": 100,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "image.cmap": "viridis",
        },
    )


def save_figure(
    fig: Any,
    out_dir: str | os.PathLike[str],
    name: str,
    formats: Iterable[str] = ("png", "pdf"),
    **savefig_kwargs: Any,
) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format; return the written paths.

    Call it *before* the figure is displayed (displaying may close it). Extra keyword
    arguments go to :meth:`matplotlib.figure.Figure.savefig`.
    """
    import matplotlib

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra_metadata = savefig_kwargs.pop("metadata", None) or {}
    written = []
    for fmt in formats:
        fmt = fmt.lower().lstrip(".")
        target = out_dir / f"{name}.{fmt}"
        metadata = {**_DETERMINISTIC_METADATA.get(fmt, {}), **extra_metadata}
        with matplotlib.rc_context({"svg.hashsalt": _SVG_HASH_SALT}):
            atomic_write(
                target,
                lambda tmp: fig.savefig(tmp, format=fmt, metadata=metadata, **savefig_kwargs),
            )
        written.append(target)
    return written


def write_metrics(
    out_dir: str | os.PathLike[str],
    metrics: Mapping[str, Any],
    notebook: str | None = None,
) -> Path:
    """Write ``out_dir/metrics.json``: ``{"notebook": ..., "metrics": {...}}`` with sorted keys.

    Values may be numpy or torch scalars and arrays, paths, tuples or nested mappings; they are
    converted to plain JSON (:func:`to_jsonable`). Non-finite floats (NaN, ±inf) become
    ``null``: a metric that could not be computed on a smoke-sized split is reported as
    missing rather than as an invalid JSON token. ``notebook`` defaults to the folder name,
    which is the notebook's stem when ``out_dir`` came from the runner.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook or out_dir.name, "metrics": to_jsonable(dict(metrics))}
    text = json.dumps(payload, sort_keys=True, indent=2, allow_nan=False) + "\n"
    target = out_dir / METRICS_FILENAME
    atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return target


def read_metrics(notebook: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``metrics`` of a notebook's ``metrics.json``.

    ``root`` is the folder holding one output folder per notebook; it defaults to
    :func:`lare2lib.core.paths.figures_dir`. Inside a notebook, ``Path(OUT_DIR).parent`` is the root
    of the current run, which also works for smoke and test runs.
    """
    base = Path(root) if root is not None else paths.figures_dir()
    path = base / notebook / METRICS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {METRICS_FILENAME} for notebook '{notebook}' at {path}; "
            f"run it first with `lare2 run {notebook}`"
        )
    return json.loads(path.read_text(encoding="utf-8"))["metrics"]


def to_jsonable(value: Any) -> Any:
    """Plain-JSON version of ``value`` (see :func:`write_metrics` for the rules)."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(item) for item in items]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays, without importing either
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    raise TypeError(f"cannot write a {type(value).__name__} to JSON: {value!r}")


def atomic_write(target: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then move ``tmp_path`` over ``target`` in one step.

    Readers never see a half-written file: they find the old one or the complete new one.
    """
    # A fresh name in the same folder (same filesystem, so the replace is atomic); created by
    # the writer itself so the file gets the usual permissions, not mkstemp's 0600.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the sets' colours and map panels, shared by every notebook's figures ------------------
SET_ORDER = ("real", "kl_ldm", "vq_ldm", "kl_ldm_fast")
"""Held-out reals, then the world's generators (:data:`lare2lib.world.recipes.GENERATORS`): every
figure draws a set in the same colour, ``C<position>`` of the seaborn palette."""


def colour_of(name: str) -> str:
    """The set's colour in every figure of the notebook (unknown names follow the known ones)."""
    if name in SET_ORDER:
        return f"C{SET_ORDER.index(name)}"
    return f"C{len(SET_ORDER) + zlib.crc32(name.encode()) % (10 - len(SET_ORDER))}"


def show_image(ax, pixels: torch.Tensor, title: str = "") -> None:
    ax.imshow(pixels.permute(1, 2, 0).numpy())
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def show_map(ax, error_map: torch.Tensor, vmax: float, title: str = ""):
    """One LaRE map (``(h, w)``) on a fixed colour scale, so panels can be compared."""
    handle = ax.imshow(error_map.numpy(), cmap="magma", vmin=0, vmax=vmax,
                       interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return handle
