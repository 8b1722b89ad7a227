"""Feature store: round trip, shards, config guard, fp16 error, crash safety and resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lare2lib.store import FeatureStore, StoreConfigError, StoreError, config_hash

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
    assert json.loads(metadata["image_ids"]) == ids
    assert json.loads(metadata["config"]) == CONFIG
    assert metadata["config_hash"] == config_hash(CONFIG) == store.config_hash
    assert metadata["manifest_hash"] == "abc123"
    assert json.loads(metadata["feature_shape"]) == list(SHAPE) and metadata["dtype"] == "float32"
    assert metadata["library_version"]
    import pyarrow.parquet as pq

    index = pq.read_table(tmp_path / "index.parquet").to_pydict()
    assert index == {"image_id": ids, "shard": [0, 0], "row": [0, 1]}


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
    """Killed after a shard's rename but before the index's: the shard is adopted on reopen."""
    ids, features = rows(6)
    store = FeatureStore(tmp_path, CONFIG, shard_size=2)
    store.append(ids[:2], features[:2])

    def crash(self):
        raise KeyboardInterrupt("killed before the index was updated")

    monkeypatch.setattr(FeatureStore, "_write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(ids[2:4], features[2:4])
    monkeypatch.undo()
    (tmp_path / "shard-00002.safetensors.tmp").write_bytes(b"half a shard")  # a torn write
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "index.parquet").num_rows == 2  # index still the old one

    resumed = FeatureStore(tmp_path, CONFIG, shard_size=2)
    assert not list(tmp_path.glob("*.tmp"))
    assert resumed.missing(ids) == ids[4:]
    resumed.append(ids[4:], features[4:])
    resumed.flush()
    final = FeatureStore.open_read_only(tmp_path)
    torch.testing.assert_close(final.get(ids), features, rtol=0, atol=0)
    assert pq.read_table(tmp_path / "index.parquet").num_rows == 6


# -- a real SIGKILL in the middle of an extraction ----------------------------------------
KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from test_lare import CONFIG
    from lare2lib.extract import extract_to_store
    from lare2lib.lare import LareExtractor
    from lare2lib.store import FeatureStore
    from lare2lib.testing import tiny_ldm_components

    records = {records!r}
    extractor = LareExtractor(tiny_ldm_components("kl"), CONFIG, seed=0)
    compute = extractor.error_at

    def error_at(*args, **kwargs):
        if extractor.unet_calls == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-batch, rows of earlier batches buffered
        return compute(*args, **kwargs)

    extractor.error_at = error_at
    store = FeatureStore({store!r}, {config!r}, shard_size={shard_size})
    extract_to_store(extractor, None, records, store, CONFIG, batch_size=3, progress=False,
                     flush_every_seconds={flush_every})
""")


@pytest.mark.timeout(900)  # ~25 s of CPU, but a subprocess importing diffusers on a busy machine
@pytest.mark.parametrize("shard_size, flush_every", [(2, 3600.0), (4096, 0.0)],
                         ids=["full-small-shards", "timed-flush-large-shards"])
def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(tmp_path, tiny_kl_ldm, shard_size,
                                                                 flush_every):
    from test_lare import CONFIG as LARE_CONFIG
    from test_lare import write_folder

    from lare2lib.extract import extract_to_store
    from lare2lib.lare import LareExtractor

    records = write_folder(tmp_path / "images", 10, {})
    killed_store = tmp_path / "killed"
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), records=records, kill_at=2,
                               store=str(killed_store), config=CONFIG, shard_size=shard_size,
                               flush_every=flush_every)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]

    survived = FeatureStore(killed_store, CONFIG, shard_size=shard_size)
    finished = survived.ids()
    # 2 batches of 3 finished before the kill in the 3rd: durable either as full small shards
    # or, with shards far larger than the run, through the driver's timed flushes
    assert len(finished) == 6
    ldm = tiny_kl_ldm
    rerun = LareExtractor(ldm, LARE_CONFIG, seed=0)
    summary = extract_to_store(rerun, ldm, records, survived, LARE_CONFIG, batch_size=3,
                               progress=False)
    assert summary.skipped_finished == 6 and summary.done == 4  # nothing finished recomputed
    assert rerun.unet_calls == 2

    clean = FeatureStore(tmp_path / "clean", CONFIG, shard_size=2)
    extract_to_store(LareExtractor(ldm, LARE_CONFIG, seed=0), ldm, records, clean, LARE_CONFIG,
                     batch_size=4, progress=False)
    ids = [record[0] for record in records]
    resumed = FeatureStore.open_read_only(killed_store)
    assert sorted(resumed.ids()) == sorted(ids)
    torch.testing.assert_close(resumed.get(ids), clean.get(ids), rtol=1e-5, atol=1e-6)
