"""The store's on-disk layout: file names, shard names, writer names, the format version."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["FEATURES", "STORE_FILE", "LEGACY_INDEX", "INDEX_DIR", "FORMAT_VERSION",
           "WRITER_PATTERN", "SHARD_PATTERN", "writer_name", "shard_name", "parse_shard_name",
           "shard_path", "report_path", "library_version"]

FEATURES = "features"
"""The tensor name inside every shard file."""
STORE_FILE = "store.json"
LEGACY_INDEX = "index.parquet"
"""Format 1 kept one index for all shards, rewritten after each (quadratic at scale); still read."""
INDEX_DIR = "index"
FORMAT_VERSION = 2
WRITER_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
SHARD_PATTERN = re.compile(r"shard-(?:(?P<writer>[a-z][a-z0-9_]*)-)?(?P<number>\d{5,})")


def writer_name(process_index: int) -> str:
    """The writer of process ``process_index`` of a distributed run: ``""`` (the main writer,
    as a single process) for 0, ``"rank<i>"`` otherwise."""
    if process_index < 0:
        raise ValueError(f"process index must be >= 0, got {process_index}")
    return "" if process_index == 0 else f"rank{process_index}"


def library_version() -> str:
    """The lare2lib version, recorded in ``store.json`` and in every shard."""
    from lare2lib import __version__

    return __version__


def shard_name(writer: str, number: int) -> str:
    """The file stem of shard ``number`` of ``writer``: ``shard-00003``, ``shard-rank1-00003``."""
    return f"shard-{writer}-{number:05d}" if writer else f"shard-{number:05d}"


def parse_shard_name(stem: str) -> tuple[str, int] | None:
    """``(writer, number)`` of a shard file stem, or ``None`` when it names no shard."""
    match = SHARD_PATTERN.fullmatch(stem)
    return (match["writer"] or "", int(match["number"])) if match else None


def shard_path(folder: Path, name: str) -> Path:
    """The safetensors file of shard ``name`` in the store ``folder``."""
    return folder / f"{name}.safetensors"


def report_path(folder: Path, writer: str) -> Path:
    """The report file of ``writer`` in the store ``folder``."""
    return folder / (f"report-{writer}.json" if writer else "report.json")
