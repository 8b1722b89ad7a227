"""The :class:`FeatureStore` class: open (config check, lock, index, recovery), append, flush,
read. The layout and guarantees are described in :mod:`lare2lib.data.store`."""

from __future__ import annotations

import json
import os
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from lare2lib.data.store.errors import StoreConfigError, StoreError
from lare2lib.data.store.files import atomic_write_json, remove_temporaries
from lare2lib.data.store.hashes import config_hash, config_mismatch_message
from lare2lib.data.store.index import read_index, write_index_part
from lare2lib.data.store.layout import (FEATURES, FORMAT_VERSION, INDEX_DIR, STORE_FILE,
                                        WRITER_PATTERN, library_version, parse_shard_name,
                                        report_path, shard_name, shard_path)
from lare2lib.data.store.locks import acquire_lock, release_lock
from lare2lib.data.store.precision import STORAGE_DTYPES, all_finite, to_storage
from lare2lib.data.store.reports import merge_reports, read_report
from lare2lib.data.store.shards import (next_shard_name, read_shard_metadata, unindexed_shards,
                                        write_shard_file)

__all__ = ["FeatureStore"]

_OPEN_SHARDS = 8
"""Shard files kept open (memory-mapped) by a reader; per-item reads then cost no open()."""


class FeatureStore:
    """Sharded, resumable storage of one feature tensor per image id.

    Args:
        path: The store folder (created if needed).
        config: Everything the features depend on (method, model, timestep, seed, ...). Its hash
            is written into every shard; reopening with a different config raises
            :class:`StoreConfigError`. ``None`` opens an existing store read-only.
        create: Create the store when the folder holds none (otherwise raise).
        dtype: Storage precision of new stores, ``"float32"`` or ``"float16"``.
        shard_size: Rows per shard; bounds the memory held before a write.
        read_only: Forbid ``append``; the config check is skipped.
        writer: This writer's namespace (``""``: the main writer; see
            :func:`lare2lib.data.store.writer_name`). Writers of one store must have distinct
            names; each sees the others' shards as they were when it opened.
    """

    def __init__(self, path: str | os.PathLike, config: dict[str, Any] | None = None, *,
                 create: bool = True, dtype: str = "float32", shard_size: int = 4096,
                 read_only: bool = False, writer: str = ""):
        self.path = Path(path)
        self.read_only = read_only or config is None
        if dtype not in STORAGE_DTYPES:
            raise StoreError(f"unknown storage dtype {dtype!r}; valid: {sorted(STORAGE_DTYPES)}")
        if shard_size < 1:
            raise StoreError(f"shard_size must be at least 1, got {shard_size}")
        if writer and (not WRITER_PATTERN.fullmatch(writer) or writer == "main"):
            raise StoreError(f"writer name {writer!r} must match [a-z][a-z0-9_]* and not be "
                             "'main' (the main writer's tag), or be ''")
        self.writer = writer
        self._tag = writer or "main"
        self._lock_key: tuple[str, str] | None = None
        self._shards: list[str] = []  # shard names (file stems) in the order they were indexed
        self._shard_position: dict[str, int] = {}
        self._locations: dict[str, int] = {}  # image id → shard position << 32 | row
        self._pending_ids: list[str] = []
        self._pending_set: set[str] = set()
        self._pending_rows: list[torch.Tensor] = []
        self._pending_manifest: str = ""
        self._handles: OrderedDict[int, Any] = OrderedDict()
        store_file = self.path / STORE_FILE
        if store_file.is_file():
            self._meta = json.loads(store_file.read_text())
            if not self.read_only and self._meta["config_hash"] != config_hash(config):
                raise StoreConfigError(config_mismatch_message(self.path, self._meta, config))
        elif create and not self.read_only:
            self.path.mkdir(parents=True, exist_ok=True)
            self._meta = {
                "format_version": FORMAT_VERSION,
                "config": config,
                "config_hash": config_hash(config),
                "storage_dtype": dtype,
                "shard_size": int(shard_size),
                "library_version": library_version(),
                "feature_shape": None,
            }
            atomic_write_json(store_file, self._meta, self._tag)
        else:
            raise StoreError(f"no feature store at {self.path} (missing {STORE_FILE}); "
                             "pass a config with create=True to make one")
        if not self.read_only:
            self._lock()
        self._report = read_report(report_path(self.path, writer))
        self._load_index()
        self._recover()

    @classmethod
    def open_read_only(cls, path: str | os.PathLike) -> "FeatureStore":
        """Open any existing store for reading, whatever its config."""
        return cls(path, None, create=False, read_only=True)

    # -- properties ------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return self._meta["config"]

    @property
    def config_hash(self) -> str:
        return self._meta["config_hash"]

    @property
    def storage_dtype(self) -> str:
        return self._meta["storage_dtype"]

    @property
    def shard_size(self) -> int:
        return int(self._meta["shard_size"])

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        shape = self._meta.get("feature_shape")
        return tuple(shape) if shape is not None else None

    @property
    def report(self) -> dict[str, Any]:
        """``{"bad": {image_id: reason}}`` over every writer, without ids that have a feature
        (a retry that succeeded), plus ``"storage_error"`` (max_abs, relative_rms, rows) for
        float16 stores. A copy; the writers' ``report*.json`` files hold the parts."""
        parts = [self._report] + [read_report(path) for path in
                                  sorted(self.path.glob("report*.json"))
                                  if path != report_path(self.path, self.writer)]
        return merge_reports(parts, self)

    def __len__(self) -> int:
        return len(self._locations) + len(self._pending_ids)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._locations or image_id in self._pending_set

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (DataLoader workers under spawn) as a reader: no open files, no lock."""
        state = dict(self.__dict__)
        state.update(_handles=OrderedDict(), _lock_key=None, read_only=True,
                     _pending_ids=[], _pending_set=set(), _pending_rows=[])
        state.pop("_lock_finalizer", None)
        return state

    def ids(self) -> list[str]:
        """Every stored id, in the order written (durable rows first, then buffered ones)."""
        return list(self._locations) + list(self._pending_ids)

    def missing(self, image_ids: Iterable[str]) -> list[str]:
        """The ids (in the given order) that have no feature yet; bad images are retried."""
        return [i for i in image_ids if i not in self]

    # -- writing ---------------------------------------------------------------------------
    def append(self, image_ids: Sequence[str], features: torch.Tensor, *,
               manifest: str = "") -> None:
        """Buffer one row per id; a full buffer is written as a shard.

        ``features`` is ``(len(image_ids), *shape)``; rows are stored as float32 or float16
        (see ``dtype``). ``manifest`` (e.g. :func:`lare2lib.data.store.manifest_hash` of the
        run's inputs) is recorded in the metadata of the shard the rows land in.
        """
        self._check_writable()
        self._lock()
        features = torch.as_tensor(features).detach().to("cpu", torch.float32)
        if features.shape[0] != len(image_ids):
            raise StoreError(f"{len(image_ids)} ids but {features.shape[0]} feature rows")
        self._check_shape(tuple(features.shape[1:]))
        self._check_new_ids(image_ids)
        if not all_finite(features):
            bad = [i for i, row in zip(image_ids, features) if not torch.isfinite(row).all()]
            raise StoreError(f"non-finite features for {bad[:5]} (refusing to store them)")
        features = to_storage(features, self.storage_dtype, self._report)
        self._pending_manifest = manifest or self._pending_manifest
        for image_id, row in zip(image_ids, features):
            self._pending_ids.append(image_id)
            self._pending_set.add(image_id)
            self._pending_rows.append(row.clone())
            self._report["bad"].pop(image_id, None)
            if len(self._pending_ids) >= self.shard_size:
                self._write_shard()

    def mark_bad(self, image_id: str, reason: str) -> None:
        """Record an image that gets no feature (unreadable, empty, ...), with why."""
        self._check_writable()
        self._report["bad"][image_id] = str(reason)

    def flush(self) -> None:
        """Write buffered rows as a (possibly short) shard, and the report."""
        if self.read_only:
            return
        self._lock()
        if self._pending_ids:
            self._write_shard()
        else:
            self._write_report()

    def close(self) -> None:
        """Flush, then release the writer lock and the open shard files (reads still work)."""
        self.flush()
        self._handles.clear()
        if self._lock_key is not None:
            self._lock_finalizer.detach()
            release_lock(self._lock_key)
            self._lock_key = None

    # -- reading ---------------------------------------------------------------------------
    def get(self, image_ids: Sequence[str]) -> torch.Tensor:
        """``(len(image_ids), *shape)`` float32 features, read through memory maps.

        Rows are sliced from the shards in runs of consecutive rows and placed with a single
        indexed copy: one tensor operation per call, not one per row (on a busy CPU every
        small parallel operation can wait milliseconds for its threads).
        """
        missing = self.missing(image_ids)
        if missing:
            raise KeyError(f"{len(missing)} id(s) not in the store, e.g. {missing[:3]}")
        pending = (dict(zip(self._pending_ids, self._pending_rows)) if self._pending_ids else {})
        chunks: list[torch.Tensor] = []
        positions: list[int] = []
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for position, image_id in enumerate(image_ids):
            if image_id in pending:
                chunks.append(pending[image_id][None])
                positions.append(position)
            else:
                location = self._locations[image_id]
                by_shard.setdefault(location >> 32, []).append((location & 0xFFFFFFFF, position))
        for shard, pairs in by_shard.items():
            view = self._handle(shard).get_slice(FEATURES)
            for start, stop, run_positions in _contiguous_runs(pairs):
                chunks.append(view[start:stop])
                positions.extend(run_positions)
        if not chunks:
            return torch.empty((0, *(self.feature_shape or ())), dtype=torch.float32)
        rows = torch.cat(chunks).float()  # a new tensor: nothing returned aliases a shard's map
        if positions == list(range(len(positions))):  # asked in stored order (one id, a shard)
            return rows
        out = torch.empty_like(rows)
        out[torch.tensor(positions)] = rows
        return out

    def shard_metadata(self, shard: int | str) -> dict[str, str]:
        """The text metadata of one shard (config, hashes, ids, shape, dtype, version):
        ``shard`` is a main-writer shard number or a shard name (``"shard-rank1-00000"``)."""
        name = shard_name("", shard) if isinstance(shard, int) else shard
        return read_shard_metadata(self._shard_path(name))

    def shard_files(self) -> list[Path]:
        """Every indexed shard file, sorted by name."""
        return [self._shard_path(name) for name in sorted(self._shards)]

    # -- internals: writing ----------------------------------------------------------------
    def _shard_path(self, name: str) -> Path:
        return shard_path(self.path, name)

    def _lock(self) -> None:
        if self._lock_key is None:
            self._lock_key = acquire_lock(self.path, self._tag)
            self._lock_finalizer = weakref.finalize(self, release_lock, self._lock_key)

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.feature_shape is None:
            self._meta["feature_shape"] = list(shape)
            atomic_write_json(self.path / STORE_FILE, self._meta, self._tag)
        elif shape != self.feature_shape:
            raise StoreError(f"feature shape {shape} differs from the store's {self.feature_shape}")

    def _check_new_ids(self, image_ids: Sequence[str]) -> None:
        if len(set(image_ids)) != len(image_ids):
            raise StoreError("duplicate image ids within one append")
        present = [i for i in image_ids if i in self]
        if present:
            raise StoreError(f"ids already stored (use store.missing first): {present[:5]}")

    def _write_shard(self) -> None:
        name = next_shard_name(self.path, self.writer)
        ids, rows = self._pending_ids, self._pending_rows
        features = torch.stack(rows).contiguous()
        metadata = {
            "config": json.dumps(self.config, sort_keys=True, default=str),
            "config_hash": self.config_hash,
            "manifest_hash": self._pending_manifest,
            "library_version": library_version(),
            "feature_shape": json.dumps(list(self.feature_shape)),
            "dtype": self.storage_dtype,
            "writer": self.writer,
            "image_ids": json.dumps(ids),
        }
        write_shard_file(self._shard_path(name), features, metadata, self._tag)
        self._register_shard(name, ids)
        self._pending_ids, self._pending_rows, self._pending_set = [], [], set()
        self._write_index_part(name, ids)
        self._write_report()

    def _write_index_part(self, name: str, ids: Sequence[str]) -> None:
        """``index/<shard>.parquet``: the shard's ids, rows and name (O(shard) per shard)."""
        write_index_part(self.path, name, ids, self._tag)

    def _write_report(self) -> None:
        atomic_write_json(report_path(self.path, self.writer), self._report, self._tag)

    # -- internals: reading the index and recovering ---------------------------------------
    def _register_shard(self, name: str, ids: Sequence[str]) -> None:
        position = self._shard_position.setdefault(name, len(self._shards))
        if position == len(self._shards):
            self._shards.append(name)
        base = position << 32
        for row, image_id in enumerate(ids):
            self._locations[image_id] = base | row

    def _load_index(self) -> None:
        for name, ids in read_index(self.path):
            self._register_shard(name, ids)

    def _recover(self) -> None:
        """Adopt complete shards that have no index part (killed between the two writes); a
        writer also indexes its own and deletes its stray temporary files."""
        if not self.read_only:
            for folder in (self.path, self.path / INDEX_DIR):
                remove_temporaries(folder, self._tag)
        adopted = False
        for name in unindexed_shards(self.path, self._shard_position):
            metadata = self.shard_metadata(name)
            if metadata.get("config_hash") != self.config_hash:
                raise StoreConfigError(f"{self._shard_path(name)} was written with config "
                                       f"{metadata.get('config_hash')}, store has {self.config_hash}")
            ids = json.loads(metadata["image_ids"])
            self._register_shard(name, ids)
            if not self.read_only and parse_shard_name(name)[0] == self.writer:
                self._write_index_part(name, ids)  # another writer's part is its own to write
                for image_id in ids:
                    self._report["bad"].pop(image_id, None)
                adopted = True
        if adopted:
            self._write_report()

    def _handle(self, shard: int):
        """A memory-mapped ``safe_open`` handle of shard ``shard`` (a few kept open)."""
        handle = self._handles.get(shard)
        if handle is None:
            from safetensors import safe_open

            handle = safe_open(self._shard_path(self._shards[shard]), framework="pt")
            self._handles[shard] = handle
            while len(self._handles) > _OPEN_SHARDS:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(shard)
        return handle



def _contiguous_runs(pairs: list[tuple[int, int]]):
    """Group (row, output position) pairs into runs of consecutive rows: ``(start, stop,
    positions)``. One slice per run keeps reads few and sequential."""
    pairs = sorted(pairs)
    start = 0
    for end in range(1, len(pairs) + 1):
        if end == len(pairs) or pairs[end][0] != pairs[end - 1][0] + 1:
            rows = pairs[start:end]
            yield rows[0][0], rows[-1][0] + 1, [position for _, position in rows]
            start = end

