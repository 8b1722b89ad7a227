"""Feature store: per-image feature maps in sharded safetensors, atomic and resumable.

The released LaRE code writes one ``.pt`` file per image named by file stem: two images with
the same stem in different folders silently overwrite each other, a crash can leave a
half-written file, and 2.68 M tiny files strain any file system. Here features are keyed by
image id (a path relative to the data root, unique by construction) and packed into shards::

    store/
      store.json                 config, its hash, feature shape/dtype, library version
      shard-00000.safetensors    tensor "features" (N, *shape) + text metadata (ids, hashes)
      shard-00001.safetensors
      index.parquet              image_id → (shard, row); rewritten after each shard
      report.json                images that got no feature, with the reason

Crash safety. Every file is written to ``<name>.tmp``, flushed to disk (``fsync``) and moved
into place with ``os.replace`` (atomic on POSIX), and a shard is written *before* the index
that points at it. A SIGKILL at any moment therefore leaves either the old or the new version
of each file, never a torn one. A shard that reached disk but not the index (killed between
the two renames) is complete, so reopening adopts it from its own metadata (it lists its
image ids) instead of recomputing it; stray ``*.tmp`` files are removed.

Scale. Rows are buffered in memory up to one shard (``shard_size`` rows, a few thousand) and
then written, so memory is bounded by one shard whatever the number of images; reads use
safetensors' memory-mapped ``safe_open`` and touch only the requested rows. The in-memory
index costs about 150 bytes per image id (≈ 400 MB for all of GenImage).

A store belongs to one configuration: ``FeatureStore(path, config)`` refuses to add to a store
whose config hash differs (``FeatureStore.open_read_only(path)`` reads any store).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FeatureStore",
    "StoreError",
    "StoreConfigError",
    "config_hash",
    "manifest_hash",
    "STORAGE_DTYPES",
]

STORAGE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
"""On-disk precisions. float16 halves the size (a 4×32×32 LaRE map: 16 KB → 8 KB); its
rounding error is measured on every row written and kept in the report."""

_FEATURES = "features"
_STORE_FILE = "store.json"
_INDEX_FILE = "index.parquet"
_REPORT_FILE = "report.json"
_SHARD_PATTERN = "shard-{:05d}.safetensors"
_FORMAT_VERSION = 1


class StoreError(RuntimeError):
    """A store that cannot be used as asked (wrong shape, duplicate id, read-only, ...)."""


class StoreConfigError(StoreError):
    """The store on disk was made with another configuration."""


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


def _library_version() -> str:
    from lare2lib import __version__

    return __version__


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)``, fsync, then ``os.replace`` onto ``path`` and fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _atomic_write_json(path: Path, data: Any) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


@dataclass(frozen=True)
class _Location:
    shard: int
    row: int


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
    """

    def __init__(self, path: str | os.PathLike, config: dict[str, Any] | None = None, *,
                 create: bool = True, dtype: str = "float32", shard_size: int = 4096,
                 read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only or config is None
        if dtype not in STORAGE_DTYPES:
            raise StoreError(f"unknown storage dtype {dtype!r}; valid: {sorted(STORAGE_DTYPES)}")
        if shard_size < 1:
            raise StoreError(f"shard_size must be at least 1, got {shard_size}")
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
            _atomic_write_json(store_file, self._meta)
        else:
            raise StoreError(f"no feature store at {self.path} (missing {_STORE_FILE}); "
                             "pass a config with create=True to make one")
        self._locations: dict[str, _Location] = {}
        self._shard_ids: dict[int, list[str]] = {}
        self._pending_ids: list[str] = []
        self._pending_set: set[str] = set()
        self._pending_rows: list[torch.Tensor] = []
        self._pending_manifest: str = ""
        self._report = self._read_report()
        self._load_index()
        if not self.read_only:
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
        """``{"bad": {image_id: reason}}``, plus ``"storage_error"`` (max_abs, relative_rms,
        rows) for float16 stores. A copy; ``report.json`` on disk holds the same."""
        return json.loads(json.dumps(self._report))

    def __len__(self) -> int:
        return len(self._locations) + len(self._pending_ids)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._locations or image_id in self._pending_set

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()

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
        features = torch.as_tensor(features).detach().to("cpu", torch.float32)
        if features.shape[0] != len(image_ids):
            raise StoreError(f"{len(image_ids)} ids but {features.shape[0]} feature rows")
        self._check_shape(tuple(features.shape[1:]))
        self._check_new_ids(image_ids)
        if not torch.isfinite(features).all():
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
        if self._pending_ids:
            self._write_shard()
        else:
            self._write_report()

    # -- reading ---------------------------------------------------------------------------
    def get(self, image_ids: Sequence[str]) -> torch.Tensor:
        """``(len(image_ids), *shape)`` float32 features, read through memory maps."""
        from safetensors import safe_open

        missing = self.missing(image_ids)
        if missing:
            raise KeyError(f"{len(missing)} id(s) not in the store, e.g. {missing[:3]}")
        out = torch.empty((len(image_ids), *self.feature_shape), dtype=torch.float32)
        pending = {image_id: row for image_id, row in zip(self._pending_ids, self._pending_rows)}
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for position, image_id in enumerate(image_ids):
            if image_id in pending:
                out[position] = pending[image_id].float()
            else:
                location = self._locations[image_id]
                by_shard.setdefault(location.shard, []).append((location.row, position))
        for shard, pairs in by_shard.items():
            with safe_open(self._shard_path(shard), framework="pt") as handle:
                view = handle.get_slice(_FEATURES)
                for start, stop, positions in _contiguous_runs(pairs):
                    out[positions] = view[start:stop].float()
        return out

    def shard_metadata(self, shard: int) -> dict[str, str]:
        """The text metadata of one shard (config, hashes, ids, shape, dtype, version)."""
        from safetensors import safe_open

        with safe_open(self._shard_path(shard), framework="pt") as handle:
            return dict(handle.metadata())

    def shard_files(self) -> list[Path]:
        return [self._shard_path(shard) for shard in sorted(self._shard_ids)]

    # -- internals -------------------------------------------------------------------------
    def _shard_path(self, shard: int) -> Path:
        return self.path / _SHARD_PATTERN.format(shard)

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.feature_shape is None:
            self._meta["feature_shape"] = list(shape)
            _atomic_write_json(self.path / _STORE_FILE, self._meta)
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
        if not torch.isfinite(stored).all():
            raise StoreError("features overflow float16 (|x| > 65504); use dtype='float32'")
        error = stored.double() - features.double()
        stats = self._report.setdefault(
            "storage_error", {"dtype": "float16", "rows": 0, "max_abs": 0.0, "relative_rms": 0.0,
                              "sum_sq_error": 0.0, "sum_sq_value": 0.0})
        stats["rows"] += int(features.shape[0])
        if error.numel():
            stats["max_abs"] = max(stats["max_abs"], float(error.abs().max()))
        stats["sum_sq_error"] += float(error.pow(2).sum())
        stats["sum_sq_value"] += float(features.double().pow(2).sum())
        # ||stored - x|| / ||x|| over every value written so far (≈ 2^-11 / sqrt(3) for fp16)
        stats["relative_rms"] = (stats["sum_sq_error"] / max(stats["sum_sq_value"], 1e-300)) ** 0.5
        return stored

    def _write_shard(self) -> None:
        from safetensors.torch import save_file

        shard = max(self._shard_ids, default=-1) + 1
        ids, rows = self._pending_ids, self._pending_rows
        features = torch.stack(rows).contiguous()
        metadata = {
            "config": json.dumps(self.config, sort_keys=True, default=str),
            "config_hash": self.config_hash,
            "manifest_hash": self._pending_manifest,
            "library_version": _library_version(),
            "feature_shape": json.dumps(list(self.feature_shape)),
            "dtype": self.storage_dtype,
            "image_ids": json.dumps(ids),
        }
        _atomic_write(self._shard_path(shard),
                      lambda tmp: save_file({_FEATURES: features}, str(tmp), metadata=metadata))
        self._register_shard(shard, ids)
        self._pending_ids, self._pending_rows, self._pending_set = [], [], set()
        self._write_index()
        self._write_report()

    def _register_shard(self, shard: int, ids: list[str]) -> None:
        self._shard_ids[shard] = list(ids)
        for row, image_id in enumerate(ids):
            self._locations[image_id] = _Location(shard, row)

    def _write_index(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids, shards, rows = [], [], []
        for shard in sorted(self._shard_ids):
            shard_ids = self._shard_ids[shard]
            ids.extend(shard_ids)
            shards.append(np.full(len(shard_ids), shard, dtype=np.int32))
            rows.append(np.arange(len(shard_ids), dtype=np.int32))
        table = pa.table({
            "image_id": pa.array(ids, pa.string()),
            "shard": np.concatenate(shards) if shards else np.zeros(0, np.int32),
            "row": np.concatenate(rows) if rows else np.zeros(0, np.int32),
        })
        _atomic_write(self.path / _INDEX_FILE, lambda tmp: pq.write_table(table, tmp))

    def _load_index(self) -> None:
        index_file = self.path / _INDEX_FILE
        if not index_file.is_file():
            return
        import pyarrow.parquet as pq

        table = pq.read_table(index_file).to_pydict()
        for image_id, shard, row in zip(table["image_id"], table["shard"], table["row"]):
            self._shard_ids.setdefault(int(shard), []).append(image_id)
            self._locations[image_id] = _Location(int(shard), int(row))

    def _recover(self) -> None:
        """Adopt complete shards the index missed; delete temp files of a killed write."""
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink()
        adopted = False
        for shard_file in sorted(self.path.glob("shard-*.safetensors")):
            shard = int(shard_file.stem.split("-")[1])
            if shard in self._shard_ids:
                continue
            metadata = self.shard_metadata(shard)
            if metadata.get("config_hash") != self.config_hash:
                raise StoreConfigError(f"{shard_file} was written with config "
                                       f"{metadata.get('config_hash')}, store has {self.config_hash}")
            ids = json.loads(metadata["image_ids"])
            self._register_shard(shard, ids)
            for image_id in ids:
                self._report["bad"].pop(image_id, None)
            adopted = True
        if adopted:
            self._write_index()
            self._write_report()

    def _read_report(self) -> dict[str, Any]:
        report_file = self.path / _REPORT_FILE
        if report_file.is_file():
            return json.loads(report_file.read_text())
        return {"bad": {}}

    def _write_report(self) -> None:
        _atomic_write_json(self.path / _REPORT_FILE, self._report)

    def _mismatch_message(self, config: dict[str, Any] | None) -> str:
        stored = self._meta.get("config") or {}
        given = config or {}
        changed = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
        return (f"feature store {self.path} was made with config hash {self._meta['config_hash']}, "
                f"this run's config hashes to {config_hash(config)} (keys that differ: {changed}). "
                "Write to a new folder, or open it with FeatureStore.open_read_only(path).")


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
