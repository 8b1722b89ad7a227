"""The id index: ``index/<shard>.parquet`` parts (image_id → row of one shard), and format 1's
single ``index.parquet``; read at open, one part written after each shard."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lare2lib.data.store.errors import StoreError
from lare2lib.data.store.files import atomic_write
from lare2lib.data.store.layout import INDEX_DIR, LEGACY_INDEX, shard_name

__all__ = ["write_index_part", "read_index"]


def write_index_part(folder: Path, name: str, ids: Sequence[str], tag: str) -> None:
    """``index/<shard>.parquet``: the shard's ids, rows and name (O(shard) per shard)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"image_id": pa.array(list(ids), pa.string()),
                      "shard": pa.array([name] * len(ids), pa.string()),
                      "row": np.arange(len(ids), dtype=np.int32)})
    index_folder = folder / INDEX_DIR
    index_folder.mkdir(exist_ok=True)
    atomic_write(index_folder / f"{name}.parquet", lambda tmp: pq.write_table(table, str(tmp)),
                 tag)


def read_index(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """``(shard name, its ids in row order)`` of every indexed shard of the store ``folder``:
    format 1's shards first (by number), then the index parts (by name)."""
    import pyarrow.parquet as pq

    legacy = folder / LEGACY_INDEX
    if legacy.is_file():  # format 1: (image_id, shard number, row) of every shard
        table = pq.read_table(legacy).to_pydict()
        by_shard: dict[int, list[str]] = {}
        for image_id, shard in zip(table["image_id"], table["shard"]):
            by_shard.setdefault(int(shard), []).append(image_id)  # rows are in order
        for shard, ids in sorted(by_shard.items()):
            yield shard_name("", shard), ids
    for part in sorted((folder / INDEX_DIR).glob("shard-*.parquet")):
        table = pq.read_table(part, columns=["image_id", "row"])
        rows = table.column("row").to_numpy()
        ids = table.column("image_id").to_pylist()
        if not np.array_equal(rows, np.arange(len(ids))):
            raise StoreError(f"index part {part} is not in row order")
        yield part.name[: -len(".parquet")], ids
