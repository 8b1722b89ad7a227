"""Crash-safe file writes: a hidden temporary file, fsync, ``os.replace``, fsync of the folder."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "atomic_write", "atomic_write_json", "remove_temporaries"]


def fsync_dir(path: Path) -> None:
    """Flush the folder ``path`` (its entries: a rename into it) to disk, where possible."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], Any], tag: str) -> None:
    """``write(tmp)``, fsync, ``os.replace`` onto ``path``, fsync the folder.

    ``tmp`` is hidden (``.name.<tag>.tmp``: parquet readers of ``index/`` skip it) and carries
    the writer's tag, so two writers never share a temporary file.
    """
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any, tag: str) -> None:
    """:func:`atomic_write` of ``data`` as indented JSON with sorted keys."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)),
                 tag)


def remove_temporaries(folder: Path, tag: str) -> None:
    """Delete the temporary files that writer ``tag`` left in ``folder`` (killed mid-write)."""
    for tmp in folder.glob(f".*.{tag}.tmp"):
        tmp.unlink()
