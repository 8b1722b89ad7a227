"""Feature store: per-image feature maps in sharded safetensors, atomic, resumable, multi-writer.

The released LaRE code writes one ``.pt`` file per image named by file stem: two images with
the same stem in different folders silently overwrite each other, a crash can leave a
half-written file, and 2.68 M tiny files strain any file system. Here features are keyed by
image id (a path relative to the data root, unique by construction) and packed into shards::

    store/
      store.json                       config, its hash, feature shape/dtype, library version
      shard-00000.safetensors          tensor "features" (N, *shape) + text metadata (ids, hashes)
      shard-00001.safetensors          ... written by the main writer (one process, or rank 0)
      shard-rank1-00000.safetensors    written by writer "rank1" (process 1 of a distributed run)
      index/shard-00000.parquet        image_id → (shard, row) of one shard, written after it
      report.json, report-rank1.json   per writer: images that got no feature, with the reason
      .lock, .lock-rank1               held (flock) by the live process of each writer

Crash safety. Every file is written to a hidden temporary name, flushed to disk (``fsync``)
and moved into place with ``os.replace`` (atomic on POSIX), and a shard is written *before*
its index part. A SIGKILL at any moment therefore leaves either no file or a complete one. A
shard that reached disk but not its index part is complete, so reopening adopts it from its
own metadata (it lists its image ids) instead of recomputing it; a writer's stray temporary
files are removed when it reopens.

Several writers, one store. Each writer owns a namespace (``writer="rank1"``; the default
``""`` is the main writer): its shards, index parts, report and temporary files carry the name,
so no two processes ever write the same file (``store.json`` is written by each with identical
content, atomically). Readers see the union. A lock per writer refuses a second live process
under the same name (two ``lare2 extract`` runs on one folder would otherwise number their
shards alike); within one process, instances share it. :func:`writer_name` maps a process
index to its writer, so a distributed run (:mod:`lare2lib.signals.extract`) resumes under any
number of processes: every process skips what any writer has stored.

Scale. Rows are buffered in memory up to one shard (``shard_size`` rows, a few thousand) and
then written together with that shard's index part, so writing costs the same per row at
10 000 or 2.68 M images and memory is bounded by one shard. Reads go through safetensors'
memory-mapped ``safe_open`` (a few shards kept open) and touch only the requested rows; one
``get`` of many ids is one tensor operation, so read in batches. What grows with the store is
the in-memory id index: ~185 bytes per GenImage-style id (≈ 500 MB for all 2.68 M in one
store, ~60 MB per generator subset; measured by ``bench/bench_store.py``).

A store belongs to one configuration: ``FeatureStore(path, config)`` refuses to add to a store
whose config hash differs (``FeatureStore.open_read_only(path)`` reads any store).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # POSIX advisory locks; elsewhere a second writer is not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "FeatureStore",
    "StoreError",
    "StoreConfigError",
    "StoreLockedError",
    "config_hash",
    "manifest_hash",
    "writer_name",
    "STORAGE_DTYPES",
]

STORAGE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
"""On-disk precisions. float16 halves the size (a 4×32×32 LaRE map: 16 KB → 8 KB); its
rounding error is measured on every row written and kept in the report."""

_FEATURES = "features"
_STORE_FILE = "store.json"
_LEGACY_INDEX = "index.parquet"
"""Format 1 kept one index for all shards, rewritten after each (quadratic at scale); still read."""
_INDEX_DIR = "index"
_FORMAT_VERSION = 2
_WRITER_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_SHARD_PATTERN = re.compile(r"shard-(?:(?P<writer>[a-z][a-z0-9_]*)-)?(?P<number>\d{5,})")
_OPEN_SHARDS = 8
"""Shard files kept open (memory-mapped) by a reader; per-item reads then cost no open()."""


class StoreError(RuntimeError):
    """A store that cannot be used as asked (wrong shape, duplicate id, read-only, ...)."""


class StoreConfigError(StoreError):
    """The store on disk was made with another configuration."""


class StoreLockedError(StoreError):
    """Another live process writes to this store under the same writer name."""


def config_hash(config: dict[str, Any], length: int = 16) -> str:
    """sha256 of the canonical JSON of ``config`` (sorted keys, no whitespace)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def manifest_hash(image_ids: Iterable[str], length: int = 16) -> str:
    """Order-free hash of a set of image ids (which inputs a shard was extracted from)."""
    digest = hashlib.sha256()
    for image_id in sorted(image_ids):
        digest.update(image_id.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:length]


def writer_name(process_index: int) -> str:
    """The writer of process ``process_index`` of a distributed run: ``""`` (the main writer,
    as a single process) for 0, ``"rank<i>"`` otherwise."""
    if process_index < 0:
        raise ValueError(f"process index must be >= 0, got {process_index}")
    return "" if process_index == 0 else f"rank{process_index}"


def _library_version() -> str:
    from lare2lib import __version__

    return __version__


def _shard_name(writer: str, number: int) -> str:
    return f"shard-{writer}-{number:05d}" if writer else f"shard-{number:05d}"


def _parse_shard_name(stem: str) -> tuple[str, int] | None:
    match = _SHARD_PATTERN.fullmatch(stem)
    return (match["writer"] or "", int(match["number"])) if match else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[Path], Any], tag: str) -> None:
    """``write(tmp)``, fsync, ``os.replace`` onto ``path``, fsync the folder.

    ``tmp`` is hidden (``.name.<tag>.tmp``: parquet readers of ``index/`` skip it) and carries
    the writer's tag, so two writers never share a temporary file.
    """
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _atomic_write_json(path: Path, data: Any, tag: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)),
                  tag)


# -- one lock per (store, writer) and process ---------------------------------------------
_LOCKS: dict[tuple[str, str], list[int]] = {}
"""(store folder, writer tag) → [fd, users] of the locks this process holds."""
_LOCKS_GUARD = threading.Lock()


def _acquire_lock(folder: Path, tag: str) -> tuple[str, str]:
    key = (str(folder.resolve()), tag)
    with _LOCKS_GUARD:
        if key in _LOCKS:
            _LOCKS[key][1] += 1
            return key
        fd = os.open(folder / f".lock{'' if tag == 'main' else '-' + tag}", os.O_RDWR | os.O_CREAT,
                     0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise StoreLockedError(
                    f"feature store {folder} is being written by another process (pid {holder}) "
                    f"as writer {tag!r}; wait for it, or give this run another writer name "
                    "(a distributed run names each process's writer itself)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _LOCKS[key] = [fd, 1]
    return key


def _release_lock(key: tuple[str, str]) -> None:
    with _LOCKS_GUARD:
        entry = _LOCKS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _LOCKS[key]
            os.close(entry[0])  # closing the descriptor releases the flock


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
        writer: This writer's namespace (``""``: the main writer; see :func:`writer_name`).
            Writers of one store must have distinct names; each sees the others' shards as they
            were when it opened.
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
        if writer and (not _WRITER_PATTERN.fullmatch(writer) or writer == "main"):
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
        store_file = self.path / _STORE_FILE
        if store_file.is_file():
            self._meta = json.loads(store_file.read_text())
            if not self.read_only and self._meta["config_hash"] != config_hash(config):
                raise StoreConfigError(self._mismatch_message(config))
        elif create and not self.read_only:
            self.path.mkdir(parents=True, exist_ok=True)
            self._meta = {
                "format_version": _FORMAT_VERSION,
                "config": config,
                "config_hash": config_hash(config),
                "storage_dtype": dtype,
                "shard_size": int(shard_size),
                "library_version": _library_version(),
                "feature_shape": None,
            }
            _atomic_write_json(store_file, self._meta, self._tag)
        else:
            raise StoreError(f"no feature store at {self.path} (missing {_STORE_FILE}); "
                             "pass a config with create=True to make one")
        if not self.read_only:
            self._lock()
        self._report = self._read_report(self._report_path(writer))
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
        parts = [self._report] + [self._read_report(path) for path in
                                  sorted(self.path.glob("report*.json"))
                                  if path != self._report_path(self.writer)]
        bad = {image_id: reason for part in parts for image_id, reason in part["bad"].items()
               if image_id not in self}
        merged: dict[str, Any] = {"bad": dict(sorted(bad.items()))}
        errors = [part["storage_error"] for part in parts if "storage_error" in part]
        if errors:
            merged["storage_error"] = _merge_storage_errors(errors)
        return json.loads(json.dumps(merged))

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
        (see ``dtype``). ``manifest`` (e.g. :func:`manifest_hash` of the run's inputs) is
        recorded in the metadata of the shard the rows land in.
        """
        self._check_writable()
        self._lock()
        features = torch.as_tensor(features).detach().to("cpu", torch.float32)
        if features.shape[0] != len(image_ids):
            raise StoreError(f"{len(image_ids)} ids but {features.shape[0]} feature rows")
        self._check_shape(tuple(features.shape[1:]))
        self._check_new_ids(image_ids)
        if not _all_finite(features):
            bad = [i for i, row in zip(image_ids, features) if not torch.isfinite(row).all()]
            raise StoreError(f"non-finite features for {bad[:5]} (refusing to store them)")
        features = self._to_storage(features)
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
            _release_lock(self._lock_key)
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
            view = self._handle(shard).get_slice(_FEATURES)
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
        from safetensors import safe_open

        name = _shard_name("", shard) if isinstance(shard, int) else shard
        with safe_open(self._shard_path(name), framework="pt") as handle:
            return dict(handle.metadata())

    def shard_files(self) -> list[Path]:
        """Every indexed shard file, sorted by name."""
        return [self._shard_path(name) for name in sorted(self._shards)]

    # -- internals: writing ----------------------------------------------------------------
    def _shard_path(self, name: str) -> Path:
        return self.path / f"{name}.safetensors"

    def _report_path(self, writer: str) -> Path:
        return self.path / (f"report-{writer}.json" if writer else "report.json")

    def _lock(self) -> None:
        if self._lock_key is None:
            self._lock_key = _acquire_lock(self.path, self._tag)
            self._lock_finalizer = weakref.finalize(self, _release_lock, self._lock_key)

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.feature_shape is None:
            self._meta["feature_shape"] = list(shape)
            _atomic_write_json(self.path / _STORE_FILE, self._meta, self._tag)
        elif shape != self.feature_shape:
            raise StoreError(f"feature shape {shape} differs from the store's {self.feature_shape}")

    def _check_new_ids(self, image_ids: Sequence[str]) -> None:
        if len(set(image_ids)) != len(image_ids):
            raise StoreError("duplicate image ids within one append")
        present = [i for i in image_ids if i in self]
        if present:
            raise StoreError(f"ids already stored (use store.missing first): {present[:5]}")

    def _to_storage(self, features: torch.Tensor) -> torch.Tensor:
        if self.storage_dtype == "float32":
            return features
        stored = features.to(torch.float16)
        error = stored.float() - features  # exact in float32; ±inf where float16 overflowed
        error_norm = float(torch.linalg.vector_norm(error))
        if error_norm == float("inf"):  # each finite error is <= 16 (half an ulp at 65504)
            raise StoreError("features overflow float16 (|x| > 65504); use dtype='float32'")
        stats = self._report.setdefault(
            "storage_error", {"dtype": "float16", "rows": 0, "max_abs": 0.0, "relative_rms": 0.0,
                              "sum_sq_error": 0.0, "sum_sq_value": 0.0})
        stats["rows"] += int(features.shape[0])
        if error.numel():
            low, high = torch.aminmax(error)
            stats["max_abs"] = max(stats["max_abs"], -float(low), float(high))
        stats["sum_sq_error"] += error_norm ** 2
        stats["sum_sq_value"] += float(torch.linalg.vector_norm(features)) ** 2
        stats["relative_rms"] = _relative_rms(stats)
        return stored

    def _next_shard_name(self) -> str:
        """One past this writer's highest shard number on disk (re-read at every write, so
        two instances of one writer in one process never reuse a number)."""
        numbers = [-1]
        for path in self.path.glob("shard-*.safetensors"):
            parsed = _parse_shard_name(path.name[: -len(".safetensors")])
            if parsed and parsed[0] == self.writer:
                numbers.append(parsed[1])
        return _shard_name(self.writer, max(numbers) + 1)

    def _write_shard(self) -> None:
        from safetensors.torch import save_file

        name = self._next_shard_name()
        ids, rows = self._pending_ids, self._pending_rows
        features = torch.stack(rows).contiguous()
        metadata = {
            "config": json.dumps(self.config, sort_keys=True, default=str),
            "config_hash": self.config_hash,
            "manifest_hash": self._pending_manifest,
            "library_version": _library_version(),
            "feature_shape": json.dumps(list(self.feature_shape)),
            "dtype": self.storage_dtype,
            "writer": self.writer,
            "image_ids": json.dumps(ids),
        }
        _atomic_write(self._shard_path(name),
                      lambda tmp: save_file({_FEATURES: features}, str(tmp), metadata=metadata),
                      self._tag)
        self._register_shard(name, ids)
        self._pending_ids, self._pending_rows, self._pending_set = [], [], set()
        self._write_index_part(name, ids)
        self._write_report()

    def _write_index_part(self, name: str, ids: Sequence[str]) -> None:
        """``index/<shard>.parquet``: the shard's ids, rows and name (O(shard) per shard)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"image_id": pa.array(list(ids), pa.string()),
                          "shard": pa.array([name] * len(ids), pa.string()),
                          "row": np.arange(len(ids), dtype=np.int32)})
        folder = self.path / _INDEX_DIR
        folder.mkdir(exist_ok=True)
        _atomic_write(folder / f"{name}.parquet", lambda tmp: pq.write_table(table, str(tmp)),
                      self._tag)

    def _write_report(self) -> None:
        _atomic_write_json(self._report_path(self.writer), self._report, self._tag)

    # -- internals: reading the index and recovering ---------------------------------------
    def _register_shard(self, name: str, ids: Sequence[str]) -> None:
        position = self._shard_position.setdefault(name, len(self._shards))
        if position == len(self._shards):
            self._shards.append(name)
        base = position << 32
        for row, image_id in enumerate(ids):
            self._locations[image_id] = base | row

    def _load_index(self) -> None:
        import pyarrow.parquet as pq

        legacy = self.path / _LEGACY_INDEX
        if legacy.is_file():  # format 1: (image_id, shard number, row) of every shard
            table = pq.read_table(legacy).to_pydict()
            by_shard: dict[int, list[str]] = {}
            for image_id, shard in zip(table["image_id"], table["shard"]):
                by_shard.setdefault(int(shard), []).append(image_id)  # rows are in order
            for shard, ids in sorted(by_shard.items()):
                self._register_shard(_shard_name("", shard), ids)
        for part in sorted((self.path / _INDEX_DIR).glob("shard-*.parquet")):
            table = pq.read_table(part, columns=["image_id", "row"])
            rows = table.column("row").to_numpy()
            ids = table.column("image_id").to_pylist()
            if not np.array_equal(rows, np.arange(len(ids))):
                raise StoreError(f"index part {part} is not in row order")
            self._register_shard(part.name[: -len(".parquet")], ids)

    def _recover(self) -> None:
        """Adopt complete shards that have no index part (killed between the two writes); a
        writer also indexes its own and deletes its stray temporary files."""
        own_tmp = f".{self._tag}.tmp"
        if not self.read_only:
            for folder in (self.path, self.path / _INDEX_DIR):
                for tmp in folder.glob(f".*{own_tmp}"):
                    tmp.unlink()
        adopted = False
        for shard_file in sorted(self.path.glob("shard-*.safetensors")):
            name = shard_file.name[: -len(".safetensors")]
            if name in self._shard_position or _parse_shard_name(name) is None:
                continue
            metadata = self.shard_metadata(name)
            if metadata.get("config_hash") != self.config_hash:
                raise StoreConfigError(f"{shard_file} was written with config "
                                       f"{metadata.get('config_hash')}, store has {self.config_hash}")
            ids = json.loads(metadata["image_ids"])
            self._register_shard(name, ids)
            if not self.read_only and _parse_shard_name(name)[0] == self.writer:
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

    @staticmethod
    def _read_report(path: Path) -> dict[str, Any]:
        if path.is_file():
            return json.loads(path.read_text())
        return {"bad": {}}

    def _mismatch_message(self, config: dict[str, Any] | None) -> str:
        stored = self._meta.get("config") or {}
        given = config or {}
        changed = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
        return (f"feature store {self.path} was made with config hash {self._meta['config_hash']}, "
                f"this run's config hashes to {config_hash(config)} (keys that differ: {changed}). "
                "Write to a new folder, or open it with FeatureStore.open_read_only(path).")


def _all_finite(values: torch.Tensor) -> bool:
    """No NaN or inf in ``values``: one fast norm reduction (NaN and inf propagate into it),
    and the exact element check only when the norm itself overflowed."""
    return bool(torch.isfinite(torch.linalg.vector_norm(values))) or bool(
        torch.isfinite(values).all())


def _relative_rms(stats: dict[str, Any]) -> float:
    """||stored - x|| / ||x|| over every value written (≈ 2^-11 / sqrt(3) for float16)."""
    return (stats["sum_sq_error"] / max(stats["sum_sq_value"], 1e-300)) ** 0.5


def _merge_storage_errors(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged = {"dtype": parts[0]["dtype"], "rows": sum(p["rows"] for p in parts),
              "max_abs": max(p["max_abs"] for p in parts),
              "sum_sq_error": sum(p["sum_sq_error"] for p in parts),
              "sum_sq_value": sum(p["sum_sq_value"] for p in parts)}
    merged["relative_rms"] = _relative_rms(merged)
    return merged


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
