"""Feature store: round trip, shards, config guard, fp16 error, crash safety and resumption."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lare2lib.data.store import (
    FeatureStore,
    StoreConfigError,
    StoreError,
    StoreLockedError,
    config_hash,
    writer_name,
)

CONFIG = {"method": "lare", "timestep": 200, "seed": 0}
SHAPE = (4, 2, 2)


def rows(count: int, start: int = 0) -> tuple[list[str], torch.Tensor]:
    """Ids ``dir{i%2}/x{i}.png`` (duplicate stems across folders) and distinct features."""
    ids = [f"dir{i % 2}/x{i}.png" for i in range(start, start + count)]
    generator = torch.Generator().manual_seed(start)
    return ids, torch.rand((count, *SHAPE), generator=generator) + torch.arange(
        start, start + count).view(-1, 1, 1, 1)


def test_round_trip_across_shards_and_buffer(tmp_path):
    ids, features = rows(7)
    with FeatureStore(tmp_path, CONFIG, shard_size=3) as store:
        store.append(ids[:5], features[:5])
        assert len(store.shard_files()) == 1  # 3 rows written, 2 still buffered
        order = [4, 0, 2]  # two buffered rows and one durable
        torch.testing.assert_close(store.get([ids[i] for i in order]), features[order])
        store.append(ids[5:], features[5:])
    reopened = FeatureStore(tmp_path, CONFIG)
    assert len(reopened) == 7 and reopened.ids() == ids
    assert [p.name for p in reopened.shard_files()] == [
        "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    shuffled = [6, 3, 0, 5, 1]
    torch.testing.assert_close(reopened.get([ids[i] for i in shuffled]), features[shuffled],
                               rtol=0, atol=0)
    assert reopened.missing(["new.png", ids[2], "dir0/x0.jpg"]) == ["new.png", "dir0/x0.jpg"]


def test_shard_metadata_describes_its_rows(tmp_path):
    ids, features = rows(2)
    with FeatureStore(tmp_path, CONFIG) as store:
        store.append(ids, features, manifest="abc123")
    metadata = store.shard_metadata(0)
    assert metadata == store.shard_metadata("shard-00000")
    assert json.loads(metadata["image_ids"]) == ids
    assert json.loads(metadata["config"]) == CONFIG
    assert metadata["config_hash"] == config_hash(CONFIG) == store.config_hash
    assert metadata["manifest_hash"] == "abc123"
    assert json.loads(metadata["feature_shape"]) == list(SHAPE) and metadata["dtype"] == "float32"
    assert metadata["library_version"] and metadata["writer"] == ""
    import pyarrow.parquet as pq

    index = pq.read_table(tmp_path / "index" / "shard-00000.parquet").to_pydict()
    assert index == {"image_id": ids, "shard": ["shard-00000"] * 2, "row": [0, 1]}


def test_index_is_one_part_per_shard_readable_as_one_table(tmp_path):
    """Writing a shard adds its own index part (cost O(shard), not O(store)); the folder
    reads as one table with pandas / pyarrow, temporary files ignored."""
    ids, features = rows(7)
    with FeatureStore(tmp_path, CONFIG, shard_size=3) as store:
        store.append(ids, features)
    parts = sorted(path.name for path in (tmp_path / "index").iterdir())
    assert parts == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    (tmp_path / "index" / ".shard-00003.parquet.main.tmp").write_bytes(b"torn")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "index").to_pydict()
    assert sorted(zip(table["image_id"], table["shard"], table["row"])) == sorted(
        (image_id, f"shard-{i // 3:05d}", i % 3) for i, image_id in enumerate(ids))


def test_format_1_store_with_one_index_file_is_read_and_extended(tmp_path):
    """Stores written before the per-shard index (one index.parquet) stay readable and
    writable; new shards get index parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.torch import save_file

    ids, features = rows(5)
    meta = {"format_version": 1, "config": CONFIG, "config_hash": config_hash(CONFIG),
            "storage_dtype": "float32", "shard_size": 2, "library_version": "0",
            "feature_shape": list(SHAPE)}
    (tmp_path / "store.json").write_text(json.dumps(meta))
    for shard in range(2):
        save_file({"features": features[2 * shard: 2 * shard + 2].contiguous()},
                  str(tmp_path / f"shard-{shard:05d}.safetensors"),
                  metadata={"config_hash": config_hash(CONFIG),
                            "image_ids": json.dumps(ids[2 * shard: 2 * shard + 2])})
    pq.write_table(pa.table({"image_id": ids[:4], "shard": [0, 0, 1, 1], "row": [0, 1, 0, 1]}),
                   tmp_path / "index.parquet")
    store = FeatureStore(tmp_path, CONFIG)
    assert store.ids() == ids[:4]
    store.append(ids[4:], features[4:])
    store.close()
    assert (tmp_path / "index" / "shard-00002.parquet").is_file()
    reader = FeatureStore.open_read_only(tmp_path)
    torch.testing.assert_close(reader.get(ids[::-1]), features.flip(0), rtol=0, atol=0)


def test_other_config_is_refused_but_readable(tmp_path):
    ids, features = rows(2)
    with FeatureStore(tmp_path, CONFIG) as store:
        store.append(ids, features)
    with pytest.raises(StoreConfigError, match=r"keys that differ: \['timestep'\].*read_only"):
        FeatureStore(tmp_path, {**CONFIG, "timestep": 261})
    reader = FeatureStore.open_read_only(tmp_path)
    torch.testing.assert_close(reader.get(ids), features)
    with pytest.raises(StoreError, match="read-only"):
        reader.append(["other.png"], features[:1])


@pytest.mark.parametrize(("call", "message"), [
    (lambda s, f: s.append(["a", "a"], f[:2]), "duplicate"),
    (lambda s, f: s.append(["dir0/x0.png"], f[:1]), "already stored"),
    (lambda s, f: s.append(["b"], torch.zeros(1, 3)), "shape"),
    (lambda s, f: s.append(["c"], torch.full((1, *SHAPE), float("nan"))), "non-finite"),
    (lambda s, f: s.append(["d", "e"], f[:1]), "2 ids but 1"),
])
def test_bad_appends_are_refused(tmp_path, call, message):
    ids, features = rows(2)
    store = FeatureStore(tmp_path, CONFIG)
    store.append(ids, features)
    with pytest.raises(StoreError, match=message):
        call(store, features)


def test_float16_storage_reports_its_error(tmp_path):
    ids, features = rows(4)
    with FeatureStore(tmp_path, CONFIG, dtype="float16") as store:
        store.append(ids, features)
    error = FeatureStore(tmp_path, CONFIG).report["storage_error"]
    read = store.get(ids)
    assert read.dtype == torch.float32
    true_max = float((read - features).abs().max())
    assert error["rows"] == 4 and error["max_abs"] == pytest.approx(true_max)
    assert 0 < error["relative_rms"] < 2 ** -10
    with pytest.raises(StoreError, match="overflow float16"):
        store.append(["big"], torch.full((1, *SHAPE), 1e6))


def test_bad_images_are_reported_without_features(tmp_path):
    ids, features = rows(2)
    with FeatureStore(tmp_path, CONFIG) as store:
        store.mark_bad("broken.png", "UnidentifiedImageError: cannot identify image file")
        store.mark_bad(ids[0], "OSError: truncated")
        store.append(ids, features)  # a retried image that now decodes leaves the report
    reopened = FeatureStore(tmp_path, CONFIG)
    assert reopened.report["bad"] == {"broken.png": "UnidentifiedImageError: cannot identify "
                                                    "image file"}
    assert "broken.png" not in reopened and reopened.missing(["broken.png"]) == ["broken.png"]
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["bad"] == reopened.report["bad"]


def test_crash_between_shard_and_index_loses_nothing(tmp_path, monkeypatch):
    """Killed after a shard's rename but before its index part's: adopted on reopen."""
    ids, features = rows(6)
    store = FeatureStore(tmp_path, CONFIG, shard_size=2)
    store.append(ids[:2], features[:2])

    def crash(self, name, ids):
        raise KeyboardInterrupt("killed before the index was updated")

    monkeypatch.setattr(FeatureStore, "_write_index_part", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(ids[2:4], features[2:4])
    monkeypatch.undo()
    (tmp_path / ".shard-00002.safetensors.main.tmp").write_bytes(b"half a shard")  # torn write
    (tmp_path / ".shard-rank1-00000.safetensors.rank1.tmp").write_bytes(b"not ours")
    assert not (tmp_path / "index" / "shard-00001.parquet").exists()

    resumed = FeatureStore(tmp_path, CONFIG, shard_size=2)
    assert not (tmp_path / ".shard-00002.safetensors.main.tmp").exists()
    assert (tmp_path / ".shard-rank1-00000.safetensors.rank1.tmp").exists()  # rank1's to remove
    assert (tmp_path / "index" / "shard-00001.parquet").is_file()  # adopted and indexed
    assert resumed.missing(ids) == ids[4:]
    resumed.append(ids[4:], features[4:])
    resumed.flush()
    final = FeatureStore.open_read_only(tmp_path)
    torch.testing.assert_close(final.get(ids), features, rtol=0, atol=0)
    assert [path.name for path in final.shard_files()] == [
        f"shard-{i:05d}.safetensors" for i in range(3)]


def test_readers_adopt_unindexed_shards_without_writing(tmp_path, monkeypatch):
    ids, features = rows(2)
    monkeypatch.setattr(FeatureStore, "_write_index_part", lambda self, name, ids: None)
    with FeatureStore(tmp_path, CONFIG) as store:
        store.append(ids, features)
    monkeypatch.undo()
    reader = FeatureStore.open_read_only(tmp_path)
    torch.testing.assert_close(reader.get(ids), features)
    assert not (tmp_path / "index").exists()


# -- several writers ----------------------------------------------------------------------
def test_writers_share_a_store_without_sharing_a_file(tmp_path):
    """Process 0 and 1 of a distributed run: own shards, index parts and reports; readers see
    the union; each writer skips what the other had stored when it opened."""
    ids, features = rows(8)
    main = FeatureStore(tmp_path, CONFIG, shard_size=2, dtype="float16")
    other = FeatureStore(tmp_path, CONFIG, shard_size=2, dtype="float16", writer=writer_name(1))
    main.append(ids[0:4:2], features[0:4:2])
    other.append(ids[1:4:2], features[1:4:2])
    main.mark_bad("bad0.png", "empty: zero-byte file")
    other.mark_bad("bad1.png", "truncated: cut")
    other.mark_bad(ids[6], "corrupt: transient")  # later stored by the main writer
    main.close()
    other.close()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert "shard-00000.safetensors" in names and "shard-rank1-00000.safetensors" in names
    assert "report.json" in names and "report-rank1.json" in names
    assert not [name for name in names if name.endswith(".tmp")]

    resumed = FeatureStore(tmp_path, CONFIG, shard_size=2)  # e.g. a 1-process rerun
    assert resumed.missing(ids) == ids[4:]
    resumed.append(ids[4:], features[4:])
    resumed.close()
    reader = FeatureStore.open_read_only(tmp_path)
    assert sorted(reader.ids()) == sorted(ids)
    torch.testing.assert_close(reader.get(ids), features, atol=2e-3, rtol=1e-3)
    report = reader.report
    assert report["bad"] == {"bad0.png": "empty: zero-byte file", "bad1.png": "truncated: cut"}
    assert report["storage_error"]["rows"] == 8
    assert report["storage_error"]["max_abs"] == pytest.approx(
        float((reader.get(ids) - features).abs().max()))
    for bad_name in ("Rank 2", "main"):
        with pytest.raises(StoreError, match="must match"):
            FeatureStore(tmp_path, CONFIG, writer=bad_name)
    assert writer_name(0) == "" and writer_name(3) == "rank3"


def test_a_second_process_under_the_same_writer_is_refused(tmp_path):
    """Another process holding the writer's lock (simulated by a second open file description:
    flock treats it like another process) makes opening for writing fail; readers still
    open, and another writer name is free."""
    import fcntl

    with FeatureStore(tmp_path, CONFIG) as store:
        store.append(*rows(1))
    fd = os.open(tmp_path / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StoreLockedError, match="another process"):
            FeatureStore(tmp_path, CONFIG)
        assert len(FeatureStore.open_read_only(tmp_path)) == 1
        FeatureStore(tmp_path, CONFIG, writer="rank1").close()
    finally:
        os.close(fd)
    first = FeatureStore(tmp_path, CONFIG)  # in one process, instances share the lock
    second = FeatureStore(tmp_path, CONFIG)
    first.append(*rows(1, start=1))
    first.flush()
    second.append(*rows(1, start=2))
    second.flush()  # numbered after first's shard, not over it
    assert len(FeatureStore.open_read_only(tmp_path)) == 3


def test_a_pickled_store_is_a_reader(tmp_path):
    import pickle

    ids, features = rows(3)
    store = FeatureStore(tmp_path, CONFIG, shard_size=2)
    store.append(ids, features)
    copy = pickle.loads(pickle.dumps(store))  # what a spawned DataLoader worker receives
    assert copy.read_only and copy.ids() == ids[:2]
    torch.testing.assert_close(copy.get(ids[:2]), features[:2])
