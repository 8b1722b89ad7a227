"""`lare2 predict` / `lare2 evaluate` on a toy detector: every input gets a row, bad files a reason."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from badinput import make_bad_corpus
from PIL import Image

from lare2lib.detectors import registry
from lare2lib.models.tiny_detectors import ToyDetector
from lare2lib.pipeline import cli


@pytest.fixture(autouse=True)
def _toy_kind(monkeypatch):
    monkeypatch.setitem(registry.DETECTOR_KINDS, "toy", "lare2lib.models.tiny_detectors:ToyDetector")


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return registry.save_detector(ToyDetector(logits=2), tmp_path / "toy.safetensors")


def _images(folder, count, brightness, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        size = (20 + 3 * k, 17 + k)  # mixed sizes
        array = np.clip(rng.normal(brightness, 30, (*size[::-1], 3)), 0, 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"{k:03d}.png")
    return folder


def _call(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_save_and_load_detector_is_bit_exact_and_strict(tmp_path, checkpoint):
    model = registry.load_detector(checkpoint)
    torch.manual_seed(0)
    original = ToyDetector(logits=2)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))
    assert not model.training and model.config == original.config
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(checkpoint), framework="pt") as handle:
        meta = handle.metadata()
    state = load_file(str(checkpoint))
    state.pop("head.bias")
    save_file(state, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(registry.DetectorError, match="do not fit"):
        registry.load_detector(tmp_path / "broken.safetensors")


@pytest.mark.parametrize("name,content,match", [
    ("weights.pth", b"\x80\x04pickle", "pickled"),
    ("junk.safetensors", b"not a safetensors file", "not a readable"),
])
def test_non_detector_files_are_refused(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(registry.DetectorError, match=match):
        registry.load_detector(tmp_path / name)


def test_unknown_kind_is_refused():
    with pytest.raises(registry.DetectorError, match="valid kinds"):
        registry.build_detector("nope")


def test_predict_scores_a_folder_with_bad_files(tmp_path, checkpoint, capsys):
    corpus = tmp_path / "corpus"
    expected = {k: v for k, v in make_bad_corpus(corpus).items() if v.kind == "image"}
    out = tmp_path / "scores.csv"
    code, _, err = _call(["predict", str(corpus), "--detector", str(checkpoint), "--out", str(out),
                          "--no-progress"], capsys)
    assert code == 0, err
    rows = {row["image_id"]: row for row in csv.DictReader(out.open())}
    for image_id, outcome in expected.items():
        if outcome.skip_reason:
            continue
        row = rows[image_id]
        if outcome.reason is None and outcome.scan_reason is None:
            assert row["status"] == "ok" and 0.0 <= float(row["score"]) <= 1.0, row
            assert row["label"] in ("real", "fake")
        else:
            assert row["status"].startswith("bad:") and row["score"] == "", row
            assert image_id in err
    assert f"{sum(r['score'] == '' for r in rows.values())} bad" in err


def test_predict_accepts_files_and_prints_csv(tmp_path, checkpoint, capsys):
    folder = _images(tmp_path / "imgs", 3, 128)
    code, out, _ = _call(["predict", str(folder / "000.png"), str(folder / "001.png"),
                          "--detector", str(checkpoint), "--no-progress"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "image_id,path,score,label,status" and len(lines) == 3


def test_predict_missing_input_and_missing_checkpoint(tmp_path, checkpoint, capsys):
    with pytest.raises(FileNotFoundError):
        cli.main(["predict", str(tmp_path / "nope"), "--detector", str(checkpoint)])
    code, _, err = _call(["predict", str(tmp_path), "--detector", str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "no detector checkpoint" in err


def test_predict_on_a_folder_without_images_fails_with_a_message(tmp_path, checkpoint, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    out = tmp_path / "scores.csv"
    code, _, err = _call(["predict", str(empty), "--detector", str(checkpoint), "--out", str(out)], capsys)
    assert code == 2 and "no images found" in err and not out.exists()


def test_evaluate_folders_writes_metrics(tmp_path, checkpoint, capsys):
    real = _images(tmp_path / "real", 6, 60)
    fake = _images(tmp_path / "fake", 5, 200, seed=1)
    out = tmp_path / "metrics.json"
    code, _, err = _call(["evaluate", "--detector", str(checkpoint), "--real", str(real),
                          "--fake", f"bright={fake}", "--bootstrap", "20", "--out", str(out),
                          "--no-progress"], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["kind"] == "toy"
    table = result["metrics"]
    assert set(table) == {"bright", "mean"}
    assert table["bright"]["n_real"] == 6 and table["bright"]["n_fake"] == 5
    assert len(table["bright"]["auc_ci"]) == 2


def test_class_names_reach_the_detector(tmp_path, checkpoint, monkeypatch):
    """`--class-from imagenet` reads GenImage-style names; every kind receives ``class_names``."""
    folder = tmp_path / "genimage"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("000_sdv4_00020.png", "n01440764_10026.JPEG"):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / name, format="PNG")
    seen = {}
    original = ToyDetector.score_images

    def spy(self, images, image_ids, **kwargs):
        seen.update(zip(image_ids, kwargs["class_names"]))
        return original(self, images, image_ids, **kwargs)

    monkeypatch.setattr(ToyDetector, "score_images", spy)
    assert cli.main(["predict", str(folder), "--detector", str(checkpoint), "--no-progress",
                     "--class-from", "imagenet", "--out", str(tmp_path / "s.csv")]) == 0
    assert seen["000_sdv4_00020.png"] == seen["n01440764_10026.JPEG"] == "tench"
    seen.clear()
    assert cli.main(["predict", str(folder), "--detector", str(checkpoint), "--no-progress",
                     "--out", str(tmp_path / "s.csv")]) == 0
    assert set(seen.values()) == {None}
    seen.clear()
    assert cli.main(["evaluate", "--detector", str(checkpoint), "--real", str(folder), "--fake",
                     f"same={folder}", "--class-from", "imagenet", "--bootstrap", "5",
                     "--out", str(tmp_path / "m.json"), "--no-progress"]) == 0
    assert set(seen.values()) == {"tench"}


# -- training-free detectors: no checkpoint -----------------------------------------------------


def test_predict_with_aeroblade_needs_no_checkpoint_and_leaves_labels_to_a_threshold(tmp_path, capsys):
    folder = _images(tmp_path / "mixed", 3, 120)
    out = tmp_path / "scores.csv"
    code, _, err = _call(["predict", str(folder), "--detector", "aeroblade", "--autoencoders", "mini:kl_ae",
                          "--distance", "pixel", "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and all(r["status"] == "ok" and r["label"] == "" for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert all(s <= 0 for s in scores)  # −min distance
    code, _, _ = _call(["predict", str(folder), "--detector", "aeroblade", "--autoencoders", "mini:kl_ae",
                        "--distance", "pixel", "--threshold", str(np.median(scores)), "--out", str(out),
                        "--no-progress"], capsys)
    assert code == 0 and {r["label"] for r in csv.DictReader(out.open())} == {"real", "fake"}


def test_predict_with_mean_lare_and_evaluate_with_aeroblade(tmp_path, capsys):
    real = _images(tmp_path / "real", 4, 60)
    fake = _images(tmp_path / "fake", 3, 200, seed=1)
    code, text, err = _call(["predict", str(real), "--detector", "mean-lare", "--ldm", "mini:kl_ldm",
                             "--no-progress"], capsys)
    assert code == 0, err
    assert len(list(csv.DictReader(text.splitlines()))) == 4 and "mean-lare" in err
    out = tmp_path / "metrics.json"
    code, _, err = _call(["evaluate", "--detector", "aeroblade", "--autoencoders", "mini:kl_ae,mini:vq_ae",
                          "--distance", "pixel", "--real", str(real), "--fake", f"bright={fake}",
                          "--bootstrap", "10", "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["kind"] == "aeroblade" and result["metrics"]["bright"]["n_fake"] == 3


def test_a_misspelt_training_free_detector_is_named(tmp_path, capsys):
    folder = _images(tmp_path / "x", 1, 100)
    code, _, err = _call(["predict", str(folder), "--detector", "aeroblad"], capsys)
    assert code == 2 and "not a training-free detector (aeroblade, mean-lare)" in err
