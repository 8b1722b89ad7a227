"""Two CPU processes (gloo) against one: extraction, training and evaluation.

One launch of ``python -m torch.distributed.run --standalone --nproc_per_node 2`` runs the
pipeline a multi-GPU user runs with ``accelerate launch --multi_gpu``: ``lare2 extract`` (each
process extracts every other image into its own store writer), then :func:`lare2lib.detectors.train.fit`
on the stored maps (DDP, each batch split over the two processes) and
:func:`lare2lib.detectors.train.predict` (gathered). The same steps run in this process alone, and the
results must agree:

* LaRE maps: **identical** (every random number comes from (seed, image id); both runs use one
  thread per process, and the batch kernels do not depend on which images share a batch);
* trained weights and scores: within 1e-5. DDP averages the two half-batch gradients, which is
  the full-batch mean gradient up to float summation order (~1e-7 relative); Adam and a few
  steps carry that to ~1e-6 at most. The model has no dropout or batch norm, whose random
  masks and batch statistics would differ legitimately between one batch and two halves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TESTS = str(Path(__file__).parent)
N_PER_CLASS = 8
TRAIN_PER_CLASS = 6
BAD = {"fake/empty.png": b"", "real/notes.jpg": b"not an image\n"}


class MapClassifier(torch.nn.Module):
    """A linear-ReLU-linear head on the flattened LaRE map: no dropout, no batch norm."""

    def __init__(self, features: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, 16),
                                       torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["lare"])[:, 0]


class MapDataset(torch.utils.data.Dataset):
    def __init__(self, maps: torch.Tensor, labels: list[int]):
        self.maps, self.labels = maps, torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"lare": self.maps[index], "label": self.labels[index]}


def train_on_maps(store_dir: str, out_dir: str) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Train on the stored maps of ``real/*`` (0) and ``fake/*`` (1); score all of them."""
    from lare2lib.data.store import FeatureStore
    from lare2lib.detectors.train import TrainConfig, fit, predict

    store = FeatureStore.open_read_only(store_dir)
    ids = sorted(store.ids())
    by_class = [[i for i in ids if i.startswith(prefix)] for prefix in ("real/", "fake/")]
    train_ids = by_class[0][:TRAIN_PER_CLASS] + by_class[1][:TRAIN_PER_CLASS]
    val_ids = by_class[0][TRAIN_PER_CLASS:] + by_class[1][TRAIN_PER_CLASS:]

    def dataset(subset):
        return MapDataset(store.get(subset), [int(i.startswith("fake/")) for i in subset])

    torch.manual_seed(0)
    model = MapClassifier(int(np.prod(store.feature_shape)))
    config = TrainConfig(epochs=3, batch_size=4, lr=1e-3, early_stopping=0, eval_batch_size=4)
    fit(model, dataset(train_ids), dataset(val_ids), config, out_dir, progress=False)
    scores, _ = predict(model, dataset(ids), batch_size=4, progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, scores


WORKER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from safetensors.torch import save_file
    from lare2lib.pipeline.cli import main
    from lare2lib.detectors.train import get_accelerator
    import test_distributed

    assert main({extract!r}) == 0
    print("extracted; training", flush=True)
    weights, scores = test_distributed.train_on_maps({store!r}, {train_dir!r})
    print("trained and scored", flush=True)
    accelerator = get_accelerator()
    assert accelerator.num_processes == 2, accelerator.state
    if accelerator.is_main_process:
        save_file(weights, {weights_file!r})
        with open({scores_file!r}, "w") as handle:
            json.dump(scores.tolist(), handle)
    accelerator.wait_for_everyone()
    accelerator.state.destroy_process_group()  # a clean gloo shutdown, no exit-time teardown
""")


def launch_two_processes(script: str, timeout: float) -> tuple[int, str, str]:
    """``torch.distributed.run`` of ``python -c script`` on 2 CPU processes, in its own process
    group so that a timeout ends the launcher and both workers."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "--no-python", sys.executable, "-c", script]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"2-process run still going after {timeout} s:\n{stdout[-3000:]}\n"
                    f"{stderr[-5000:]}")
    return process.returncode, stdout, stderr


def _images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label, brightness in (("real", 0), ("fake", 60)):
        for i in range(N_PER_CLASS):
            height, width = rng.integers(24, 48, size=2)
            pixels = rng.integers(0, 196, (height, width, 3)) + brightness
            path = root / label / f"{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(path)
    for name, content in BAD.items():
        (root / name).write_bytes(content)


def _extract_args(images: Path, model: Path, store: Path) -> list[str]:
    return ["extract", "--images", str(images), "--out", str(store), "--model", str(model),
            "--profile", "smoke", "--device", "cpu", "--batch-size", "4", "--num-workers", "0",
            "--ensemble", "2"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # two interpreters importing torch + diffusers on a shared machine
def test_two_processes_match_one(tmp_path, capsys):
    from safetensors.torch import load_file

    from lare2lib.data.store import FeatureStore
    from lare2lib.models.tiny import make_tiny_mini_ldm
    from lare2lib.pipeline.cli import main

    images, two = tmp_path / "images", tmp_path / "two"
    _images(images)
    model = make_tiny_mini_ldm(tmp_path / "weights" / "mini")
    two.mkdir()
    script = WORKER.format(tests=TESTS, extract=_extract_args(images, model, two / "store"),
                           store=str(two / "store"), train_dir=str(two / "train"),
                           weights_file=str(two / "weights.safetensors"),
                           scores_file=str(two / "scores.json"))
    code, stdout, stderr = launch_two_processes(script, timeout=600)
    assert code == 0, stdout[-3000:] + stderr[-5000:]
    assert "[process 0/2]" in stdout and "[process 1/2]" in stdout
    assert "from 2 processes, 2 bad" in stdout

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each launched process (OMP_NUM_THREADS=1)
    try:
        assert main(_extract_args(images, model, tmp_path / "one" / "store")) == 0
        weights, scores = train_on_maps(str(tmp_path / "one" / "store"),
                                        str(tmp_path / "one" / "train"))
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()

    one_store = FeatureStore.open_read_only(tmp_path / "one" / "store")
    two_store = FeatureStore.open_read_only(two / "store")
    ids = sorted(one_store.ids())
    assert len(ids) == 2 * N_PER_CLASS and sorted(two_store.ids()) == ids
    reports = {path.name: json.loads(path.read_text())["bad"] for path in
               (two / "store").glob("report*.json")}
    assert {name: len(bad) for name, bad in reports.items()} == {
        "report.json": 2, "report-rank1.json": 0}  # the scan's bad files: once, by process 0
    assert two_store.report["bad"] == one_store.report["bad"] and len(one_store.report["bad"]) == 2
    assert {path.stem.split("-")[1] for path in two_store.shard_files()} == {"00000", "rank1"}
    assert torch.equal(two_store.get(ids), one_store.get(ids))  # identical maps

    two_weights = load_file(str(two / "weights.safetensors"))
    for name, value in weights.items():
        torch.testing.assert_close(two_weights[name], value, rtol=0, atol=1e-5)
    torch.manual_seed(0)
    initial = MapClassifier(int(np.prod(one_store.feature_shape))).state_dict()
    assert (two_weights["net.1.weight"] - initial["net.1.weight"]).abs().max() > 1e-4  # trained
    two_scores = np.array(json.loads((two / "scores.json").read_text()))
    assert two_scores.shape == scores.shape == (len(ids),)  # gathered, padding dropped
    np.testing.assert_allclose(two_scores, scores, rtol=0, atol=1e-5)
