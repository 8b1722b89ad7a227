"""``lare2 extract`` end to end: a real folder with every kind of awkward file, real weights
folders, the command line's own entry point.

Two model folders go through the same command:

* ``tiny_sd``: random weights in Stable Diffusion v1.5's pipeline layout (CLIP tokenizer and
  text encoder, PNDM scheduler config) with ``--profile full``: the GPU profile's code path
  (256 px input, 8× VAE) on a CPU in seconds;
* ``smoke_world``: the smoke mini world's ``kl_ldm`` folder (``ldm.json`` layout, class
  prompts), retrained in seconds by :func:`lare2lib.world.retrain.retrain_world`.

Each run must finish, store a map for every readable image and none for the others, name every
bad file with its reason in the printed summary and in the store report, and a rerun must
compute nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from badinput import make_bad_corpus, simulate_unreadable
from PIL import Image

from lare2lib.data.store import FeatureStore
from lare2lib.pipeline.cli import main as lare2

GOOD = {"good/cat/wide.png": (96, 40), "good/cat/tall.png": (30, 70),
        "good/coffee/square.jpg": (64, 64), "good/coffee/large.png": (300, 200)}
"""Ordinary images of assorted sizes (squashing must handle any aspect ratio) → size."""


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Iterator[tuple[Path, set[str], dict[str, str], set[str]]]:
    """The bad-input corpus plus a few good images: (folder, good ids, bad id → reason, ids
    this machine cannot make bad, e.g. animated WebP without WebP support: not asserted).
    The mode-000 file is made unreadable to lare2lib even as root, for the whole module."""
    root = tmp_path_factory.mktemp("extract-e2e") / "images"
    with pytest.MonkeyPatch.context() as patch:  # the mode-000 file: unreadable even as root
        corpus = simulate_unreadable(patch, root, make_bad_corpus(root))
        yield _folder(root, corpus)


def _folder(root: Path, corpus) -> tuple[Path, set[str], dict[str, str], set[str]]:
    rng = np.random.default_rng(0)
    for name, (width, height) in GOOD.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    images = {key: outcome for key, outcome in corpus.items()
              if outcome.kind == "image" and outcome.skip_reason is None}
    bad = {key: outcome.scan_reason or outcome.reason for key, outcome in images.items()
           if outcome.scan_reason or outcome.reason}
    good = {key for key in images if key not in bad} | set(GOOD)
    undetermined = {key for key, outcome in corpus.items() if outcome.skip_reason}
    return root, good, bad, undetermined


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from lare2lib.models.tiny import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd15")


@pytest.fixture(scope="module")
def smoke_world_ldm() -> Path:
    """The smoke world's ``kl_ldm`` folder (trained into the session's temporary data dir)."""
    from lare2lib.core.profiles import get_profile
    from lare2lib.world.retrain import retrain_world
    from lare2lib.world.weights import weights_root

    profile = get_profile("smoke")
    retrain_world(profile, progress=False)
    return weights_root(profile.world.recipe) / "kl_ldm"


MODELS = {
    "tiny_sd": ("tiny_sd", "full", (4, 32, 32)),       # 256 px, SD's 8× VAE
    "smoke_world": ("smoke_world_ldm", "smoke", None),  # 32 px, the world's own VAE
}


def run_extract(capsys, *args: str) -> str:
    assert lare2(["extract", *args]) == 0
    return capsys.readouterr().out


def _shard_digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.glob("shard-*.safetensors"))}


@pytest.mark.parametrize("model", list(MODELS))
def test_extract_names_bad_files_and_a_rerun_computes_nothing(model, image_folder, request,
                                                              tmp_path, capsys):
    fixture, profile, feature_shape = MODELS[model]
    model_folder = request.getfixturevalue(fixture)
    root, good, bad, undetermined = image_folder
    store_dir = tmp_path / "store"
    command = ["--images", str(root), "--out", str(store_dir), "--model", str(model_folder),
               "--profile", profile, "--device", "cpu", "--ensemble", "2", "--batch-size", "4",
               "--num-workers", "0"]

    output = run_extract(capsys, *command)

    store = FeatureStore.open_read_only(store_dir)
    stored = set(store.ids())
    reported = {key: value.split(":")[0] for key, value in store.report["bad"].items()}
    assert stored - undetermined == good
    assert {key: reason for key, reason in reported.items() if key not in undetermined} == bad
    assert f"extracted {len(stored)} image(s)" in output and f"{len(reported)} bad" in output
    for image_id, reason in bad.items():
        assert f"bad: {image_id}: {reason}" in output, f"{image_id} not reported as {reason}"
    maps = store.get(sorted(stored))
    assert maps.isfinite().all() and (maps >= 0).all() and maps.abs().sum(dim=(1, 2, 3)).min() > 0
    if feature_shape:
        assert tuple(maps.shape[1:]) == feature_shape
    assert store.config["model"] == str(model_folder) and store.config["ensemble"] == 2
    shards = _shard_digests(store_dir)

    rerun = run_extract(capsys, *command)

    assert "extracted 0 image(s)" in rerun and f"{len(stored)} already in the store" in rerun
    assert f"{len(reported)} bad" in rerun  # still named, still without a map
    assert _shard_digests(store_dir) == shards  # nothing rewritten, nothing recomputed


def test_dire_baseline_runs_from_the_command_line(tiny_sd, tmp_path, capsys):
    """The DIRE-style baseline through the same command and store (2 + 2 DDIM steps)."""
    root = tmp_path / "images"
    root.mkdir()
    for index in range(3):
        Image.new("RGB", (40 + 8 * index, 32), (40 * index, 90, 200)).save(root / f"{index}.png")
    output = run_extract(capsys, "--method", "dire", "--dire-steps", "2", "--images", str(root),
                         "--out", str(tmp_path / "store"), "--model", str(tiny_sd), "--profile",
                         "full", "--device", "cpu", "--batch-size", "2", "--num-workers", "0")
    assert "extracted 3 image(s)" in output and "0 bad" in output
    store = FeatureStore.open_read_only(tmp_path / "store")
    assert store.config["method"] == "dire" and store.config["steps"] == 2
    assert tuple(store.get(["0.png"]).shape) == (1, 3, 256, 256)  # pixel-space |x - x̂|


@pytest.mark.parametrize("manifest", ["escape_dotdot.csv", "escape_absolute.csv",
                                      "escape_symlink.csv"])
def test_a_manifest_escaping_its_root_is_refused_in_one_line(manifest, image_folder, tmp_path,
                                                             capsys):
    """Refused before any model or store is touched: exit code 2, one line naming the entry."""
    root, *_ = image_folder
    code = lare2(["extract", "--images", str(root / "manifests" / manifest), "--root", str(root),
                  "--out", str(tmp_path / "store"), "--profile", "smoke", "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert error.startswith("lare2 extract: manifest:") and "outside the data root" in error
    assert not (tmp_path / "store").exists()
