"""SIGKILL in the middle of extraction and of training, then a rerun: nothing finished is
recomputed, nothing on disk is torn, and the result equals an uninterrupted run.

The kill is real (``os.kill(getpid(), SIGKILL)``: no handler, no ``finally``, no flush) and
comes from inside the child at a chosen point, so the test is deterministic.
"""

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

from lare2lib.data.store import FeatureStore

TESTS = str(Path(__file__).parent)
STORE_CONFIG = {"method": "lare", "timestep": 200, "seed": 0}


def run_killed(script: str, timeout: float = 300) -> None:
    """Run ``script`` in a fresh interpreter; it must die by SIGKILL."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]


# -- extraction ---------------------------------------------------------------------------
KILLED_EXTRACTION = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from test_lare import CONFIG
    from lare2lib.signals.extract import extract_to_store
    from lare2lib.signals.lare import LareExtractor
    from lare2lib.data.store import FeatureStore
    from lare2lib.models.tiny import tiny_ldm_components

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
@pytest.mark.slow
def test_sigkill_mid_extraction_then_rerun_matches_an_uninterrupted_run(
        tmp_path, tiny_kl_ldm, shard_size, flush_every):
    from test_lare import CONFIG as LARE_CONFIG
    from test_lare import write_folder

    from lare2lib.signals.extract import extract_to_store
    from lare2lib.signals.lare import LareExtractor

    records = write_folder(tmp_path / "images", 10, {})
    killed_store = tmp_path / "killed"
    run_killed(KILLED_EXTRACTION.format(
        tests=TESTS, records=records, kill_at=2, store=str(killed_store), config=STORE_CONFIG,
        shard_size=shard_size, flush_every=flush_every))

    survived = FeatureStore(killed_store, STORE_CONFIG, shard_size=shard_size)
    # 2 batches of 3 finished before the kill in the 3rd: durable either as full small shards
    # or, with shards far larger than the run, through the driver's timed flushes
    assert len(survived.ids()) == 6
    ldm = tiny_kl_ldm
    rerun = LareExtractor(ldm, LARE_CONFIG, seed=0)
    summary = extract_to_store(rerun, ldm, records, survived, LARE_CONFIG, batch_size=3,
                               progress=False)
    assert summary.skipped_finished == 6 and summary.done == 4  # nothing finished recomputed
    assert rerun.unet_calls == 2

    clean = FeatureStore(tmp_path / "clean", STORE_CONFIG, shard_size=2)
    extract_to_store(LareExtractor(ldm, LARE_CONFIG, seed=0), ldm, records, clean, LARE_CONFIG,
                     batch_size=4, progress=False)
    ids = [record[0] for record in records]
    resumed = FeatureStore.open_read_only(killed_store)
    assert sorted(resumed.ids()) == sorted(ids)
    torch.testing.assert_close(resumed.get(ids), clean.get(ids), rtol=1e-5, atol=1e-6)


# -- training -----------------------------------------------------------------------------
TRAIN = dict(epochs=3, batch_size=8, eval_batch_size=16, early_stopping=0, checkpoint_every=3)
"""24 training images → 3 steps per epoch, so the mid-epoch checkpoint of step 3 (every 3
steps) and the end-of-epoch checkpoint share a step: the case where replacing the published
checkpoint by its successor must not delete it first."""


def train_toy(out_dir: Path, progress: bool = False):
    """The run under test (also the body of the killed child): ToyDetector on toy images."""
    from lare2lib.detectors.registry import DETECTOR_KINDS
    from lare2lib.detectors.train import TrainConfig, fit
    from lare2lib.models.tiny_detectors import ToyDetector, ToyImageDataset

    registered = "toy" in DETECTOR_KINDS
    DETECTOR_KINDS["toy"] = "lare2lib.models.tiny_detectors:ToyDetector"  # as tests/test_train.py does
    try:
        torch.manual_seed(0)
        model = ToyDetector()
        result = fit(model, ToyImageDataset(12, 12, seed=1), ToyImageDataset(6, 6, seed=2),
                     TrainConfig(**TRAIN), out_dir, progress=progress)
    finally:
        if not registered:
            del DETECTOR_KINDS["toy"]
    return model, result


KILLED_TRAINING = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from lare2lib.models import tiny_detectors as tiny
    from lare2lib.detectors import train
    import test_kill

    count = [0]

    def kill_on(n):
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    if {where!r} == "step":  # inside the 5th training forward: step 5 of 9, epoch 2
        forward = tiny.ToyDetector.forward

        def killing_forward(self, batch):
            if self.training:
                kill_on({kill_at})
            return forward(self, batch)

        tiny.ToyDetector.forward = killing_forward
    else:  # "publish": as a finished checkpoint folder is moved into place
        replace = os.replace

        def killing_replace(src, dst):
            if str(src).endswith(".staging"):
                kill_on({kill_at})
            return replace(src, dst)

        os.replace = killing_replace
    test_kill.train_toy({out!r})
""")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed child's count: same kernels, same sums
    try:
        model, result = train_toy(tmp_path_factory.mktemp("uninterrupted") / "run")
    finally:
        torch.set_num_threads(threads)
    return {k: v.clone() for k, v in model.state_dict().items()}, result


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("where, kill_at", [("step", 5), ("publish", 2)])
def test_sigkill_mid_training_then_rerun_matches_an_uninterrupted_run(tmp_path, uninterrupted,
                                                                      where, kill_at):
    from safetensors.torch import load_file

    from lare2lib.models import tiny_detectors as tiny

    out = tmp_path / "run"
    run_killed(KILLED_TRAINING.format(tests=TESTS, where=where, kill_at=kill_at, out=str(out)))

    state = json.loads((out / "state.json").read_text())  # a checkpoint survived, readable
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert load_file(str(out / state["checkpoint"] / name))
    assert not state["finished"] and state["global_step"] == 3

    forwards = [0]
    forward = tiny.ToyDetector.forward

    def counting_forward(self, batch):
        forwards[0] += self.training
        return forward(self, batch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tiny.ToyDetector.forward = counting_forward
        model, result = train_toy(out)
    finally:
        tiny.ToyDetector.forward = forward
        torch.set_num_threads(threads)

    weights, clean = uninterrupted
    assert result.resumed_from == 3 and forwards[0] == clean.steps - 3  # 3 steps not redone
    assert result.history == clean.history
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert not list(out.glob(".*staging")) and len(list(out.glob("ckpt-*"))) == 1
