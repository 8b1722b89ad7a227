"""Shard files: ``shard[-<writer>]-NNNNN.safetensors``, one ``features`` tensor ``(N, *shape)``
plus text metadata (config and its hash, manifest hash, ids, shape, dtype, writer, version)."""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path

import torch

from lare2lib.data.store.files import atomic_write
from lare2lib.data.store.layout import FEATURES, parse_shard_name, shard_name

__all__ = ["next_shard_name", "write_shard_file", "read_shard_metadata", "unindexed_shards"]


def next_shard_name(folder: Path, writer: str) -> str:
    """One past ``writer``'s highest shard number on disk in the store ``folder`` (re-read at
    every write, so two instances of one writer in one process never reuse a number)."""
    numbers = [-1]
    for path in folder.glob("shard-*.safetensors"):
        parsed = parse_shard_name(path.name[: -len(".safetensors")])
        if parsed and parsed[0] == writer:
            numbers.append(parsed[1])
    return shard_name(writer, max(numbers) + 1)


def write_shard_file(path: Path, features: torch.Tensor, metadata: dict[str, str],
                     tag: str) -> None:
    """Write ``features`` (contiguous, ``(N, *shape)``) and ``metadata`` atomically to ``path``."""
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file({FEATURES: features}, str(tmp), metadata=metadata),
                 tag)


def read_shard_metadata(path: Path) -> dict[str, str]:
    """The text metadata of the shard file ``path``."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return dict(handle.metadata())


def unindexed_shards(folder: Path, indexed: Container[str]) -> list[str]:
    """Names (sorted) of the shard files in ``folder`` that are not in ``indexed``: complete
    shards whose writer was killed before it wrote their index part."""
    names = [path.name[: -len(".safetensors")]
             for path in sorted(folder.glob("shard-*.safetensors"))]
    return [name for name in names if name not in indexed and parse_shard_name(name) is not None]
