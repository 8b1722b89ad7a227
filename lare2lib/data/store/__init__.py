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

Modules: :mod:`.feature_store` (the class), :mod:`.layout` (file, shard and writer names),
:mod:`.files` (atomic writes), :mod:`.locks` (writer locks), :mod:`.shards` (shard files),
:mod:`.index` (the id index), :mod:`.precision` (float16 storage and its error),
:mod:`.reports` (bad images, merged over writers), :mod:`.hashes`, :mod:`.errors`.
"""

from __future__ import annotations

from lare2lib.data.store.errors import StoreConfigError, StoreError, StoreLockedError
from lare2lib.data.store.feature_store import FeatureStore
from lare2lib.data.store.hashes import config_hash, manifest_hash
from lare2lib.data.store.layout import writer_name
from lare2lib.data.store.precision import STORAGE_DTYPES

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
