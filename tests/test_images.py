"""lare2lib.data.images and lare2lib.data.imagenet: every bad-input case, ids, manifests, GenImage, transforms."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm's ImageNet metadata must never reach for the hub

import dataclasses
import functools
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from badinput import make_bad_corpus, simulate_unreadable
from PIL import Image, ImageFile

from lare2lib.data import imagenet, images, manifests, transforms
from lare2lib.data.datasets import RecordDataset, collate_skip_bad, iter_good_batches
from lare2lib.data.images import BadImageError, DecodeReport
from lare2lib.data.manifests import ImageRecord, ManifestError


def _corpus_keys() -> dict[str, str]:
    """Corpus entries by kind, known at collection time so every entry is its own test."""
    with tempfile.TemporaryDirectory() as folder:
        return {key: outcome.kind for key, outcome in make_bad_corpus(Path(folder) / "data").items()}


CORPUS_KINDS = _corpus_keys()
IMAGE_KEYS = sorted(key for key, kind in CORPUS_KINDS.items() if kind == "image")
MANIFEST_KEYS = sorted(key for key, kind in CORPUS_KINDS.items() if kind == "manifest")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus, with its mode-000 file unreadable to lare2lib even when running as root."""
    root = tmp_path_factory.mktemp("corpus") / "data"
    expected = make_bad_corpus(root)
    with pytest.MonkeyPatch.context() as patch:
        yield root, simulate_unreadable(patch, root, expected)


@pytest.fixture(scope="module")
def scanned(corpus):
    root, _ = corpus
    report = DecodeReport()
    records = manifests.scan_folder(root, label=0, source="corpus", report=report)
    return records, report


def _skip_if_unproducible(outcome):
    if outcome.skip_reason:
        pytest.skip(outcome.skip_reason)


# ---------------------------------------------------------------- the bad-input corpus


def test_every_corpus_file_has_an_expected_outcome(corpus):
    root, expected = corpus
    on_disk = {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file() or path.is_symlink()}
    assert on_disk <= set(expected), "files without an expected outcome"
    assert {key for key, outcome in expected.items() if not outcome.skip_reason} <= on_disk
    assert {outcome.reason for outcome in expected.values()} >= {
        "empty", "truncated", "not_an_image", "too_large", "unreadable", "escapes_root"
    }  # fmt: skip


@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_load_image_outcome(corpus, key):
    root, expected = corpus
    outcome = expected[key]
    _skip_if_unproducible(outcome)
    if outcome.reason is not None:
        with pytest.raises(BadImageError) as caught:
            images.decode_image(root / key)
        assert caught.value.reason == outcome.reason
        assert caught.value.path == str(root / key)
        return
    decoded = images.decode_image(root / key)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == outcome.size
    assert set(outcome.notes) <= set(decoded.notes), decoded.notes
    pixels = np.asarray(decoded.image).astype(int)
    assert np.abs(pixels - outcome.pixels).max() <= outcome.tolerance


@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_scan_folder_outcome(corpus, scanned, key):
    _, expected = corpus
    outcome = expected[key]
    _skip_if_unproducible(outcome)
    records, report = scanned
    listed = {record.image_id: record for record in records}
    reported = {Path(failure.path).name: failure.reason for failure in report.failures}
    if outcome.scan_reason is None:
        assert key in listed
        if outcome.size is not None:
            assert (listed[key].width, listed[key].height) == outcome.size
    else:
        assert key not in listed
        assert reported[Path(key).name] == outcome.scan_reason


@pytest.mark.parametrize("key", MANIFEST_KEYS)
def test_manifest_outcome(corpus, key):
    root, expected = corpus
    outcome = expected[key]
    if outcome.reason is None:
        records = manifests.read_manifest(root / key, root=root)
        assert all(record.path.is_relative_to(root.resolve()) for record in records)
        return
    with pytest.raises(ManifestError, match=rf"line {outcome.line}\b.*outside the data root"):
        manifests.read_manifest(root / key, root=root)


def test_permission_error_is_reported_as_unreadable(tmp_path, monkeypatch):
    """The no_permission corpus entry cannot fail as root; exercise the same path by injection."""
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", denied, raising=False)
    with pytest.raises(BadImageError) as caught:
        images.load_image(path)
    assert caught.value.reason == "unreadable"


@pytest.mark.parametrize(("name", "reason"), [("missing.png", "missing"), ("folder.png", "unreadable")])
def test_missing_file_and_directory(tmp_path, name, reason):
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(BadImageError) as caught:
        images.load_image(tmp_path / name)
    assert caught.value.reason == reason


def test_truncation_detected_even_when_pillow_is_told_to_pad(corpus, monkeypatch):
    root, _ = corpus
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(BadImageError, match="truncated"):
        images.load_image(root / "truncated.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it


def test_max_pixels_is_checked_per_call_not_through_pillow_globals(corpus):
    root, _ = corpus
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImageError, match="max_pixels=100") as caught:
        images.load_image(root / "control.png", max_pixels=100)
    assert caught.value.reason == "too_large"
    assert images.load_image(root / "control.png", max_pixels=40 * 30).size == (40, 30)
    assert before == Image.MAX_IMAGE_PIXELS


def test_bad_image_error_rejects_unknown_reason():
    with pytest.raises(ValueError, match="unknown reason"):
        BadImageError("x.png", "weird", "")


# ---------------------------------------------------------------- ids, reports, manifests


def test_duplicate_stems_get_distinct_ids(scanned):
    records, _ = scanned
    ids = [record.image_id for record in records]
    assert len(ids) == len(set(ids))
    assert {"dup/a/image.png", "dup/b/image.png"} <= set(ids)
    assert ids == sorted(ids)


def test_scan_without_report_warns_about_skipped_files(corpus):
    root, _ = corpus
    with pytest.warns(UserWarning, match="unusable files skipped"):
        manifests.scan_folder(root)


def test_scan_non_recursive_and_data_root(corpus):
    root, _ = corpus
    records = manifests.scan_folder(root / "dup" / "a", data_root=root, label=1, source="x")
    assert [(r.image_id, r.label, r.source) for r in records] == [("dup/a/image.png", 1, "x")]
    top_level = manifests.scan_folder(root, recursive=False, report=DecodeReport())
    assert not any("/" in record.image_id for record in top_level)


def test_report_counts_and_files(scanned, tmp_path):
    _, report = scanned
    assert report.counts["too_large"] == 2 and report.counts["escapes_root"] == 1
    payload = json.loads(report.write(tmp_path / "report.json").read_text())
    assert payload["n_failed"] == report.n_failed and payload["counts"] == dict(sorted(report.counts.items()))
    rows = report.write(tmp_path / "report.csv").read_text().splitlines()
    assert rows[0] == "path,image_id,status,reason,message" and len(rows) == 1 + report.n_failed
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        report.write(tmp_path / "report.txt")


def _sample_records(root: Path) -> list[ImageRecord]:
    return [
        ImageRecord("dup/a/image.png", root / "dup/a/image.png", 0, "real", "tench", 8, 8),
        ImageRecord("dup/b/image.png", root / "dup/b/image.png", 1, "sdv4", None, 8, 8),
        ImageRecord("control.png", root / "control.png", None, None, 'a, b "quoted"', 40, 30),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_round_trip_and_hash(corpus, tmp_path, suffix):
    root, _ = corpus
    records = _sample_records(root.resolve())
    path = manifests.write_manifest(records, root / f"manifests/round_trip{suffix}", root=root)
    assert manifests.read_manifest(path, root=root) == records
    assert manifests.manifest_hash(records) == manifests.manifest_hash(list(reversed(records)))
    moved = [dataclasses.replace(record, path=tmp_path / record.image_id) for record in records]
    assert manifests.manifest_hash(moved) == manifests.manifest_hash(records)  # location-independent
    relabelled = [dataclasses.replace(records[0], label=1), *records[1:]]
    assert manifests.manifest_hash(relabelled) != manifests.manifest_hash(records)
    os.remove(path)


def test_manifest_hash_is_pinned():
    """Feature stores key on this hash: changing its definition must be a deliberate, visible act."""
    record = ImageRecord("a/b.png", Path("/x/a/b.png"), 1, "s", "tench", 2, 3)
    assert manifests.manifest_hash([record]) == "3ecd8c1f100de3062aff65d85c587ca6d60ad56a4d27ccd8a2b9441ecdd4edf5"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("path,label\nx.png,0\nx.png,1\n", r"line 3: image_id 'x.png' already used at .*line 2"),
        ("path,label\nx.png,2\n", r"line 2: label must be 0 \(real\), 1 \(generated\) or empty"),
        ("path,label\n,0\n", r"line 2: empty path"),
        ("file\nx.png\n", r"no 'path' column"),
    ],
)
def test_manifest_errors_name_the_line(tmp_path, body, message):
    (tmp_path / "m.csv").write_text(body)
    with pytest.raises(ManifestError, match=message):
        manifests.read_manifest(tmp_path / "m.csv")


def test_write_manifest_refuses_records_outside_root(tmp_path):
    record = ImageRecord("x.png", tmp_path.parent / "x.png")
    with pytest.raises(ManifestError, match="outside the data root"):
        manifests.write_manifest([record], tmp_path / "m.csv")


# ---------------------------------------------------------------- GenImage and ImageNet


def _fake_genimage(root: Path) -> None:
    files = {
        "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/train/ai/000_sdv4_00020.png": (1, 2, 3),
        "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/train/nature/n01440764_10026.JPEG": (4, 5, 6),
        "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/val/ai/017_sdv4_00001.png": (1, 2, 3),
        "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/val/nature/ILSVRC2012_val_00000008.JPEG": (4, 5, 6),
        "glide/val/ai/GLIDE_1000_200_00_017_glide_00086.png": (1, 1, 1),
        "glide/val/nature/n02123045_1.JPEG": (2, 2, 2),
        "notes/train/readme/x.png": (0, 0, 0),  # right depth, wrong shape: not a subset
    }
    for relative, colour in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), colour).save(root / relative, format="PNG")


def test_discover_genimage_by_folder_shape(tmp_path):
    _fake_genimage(tmp_path)
    found = manifests.discover_genimage(tmp_path)
    assert sorted(found) == ["glide", "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4"]
    assert sorted(found["glide"]) == ["val"]
    assert found["glide"]["val"]["ai"] == (tmp_path / "glide/val/ai").resolve()
    assert list(manifests.discover_genimage(tmp_path / "glide")) == ["glide"]  # root is a subset


def test_genimage_records_labels_ids_and_classes(tmp_path):
    _fake_genimage(tmp_path)
    subset = "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4"
    train = manifests.genimage_records(tmp_path, subset, "train")
    assert [(r.image_id, r.label, r.class_name, r.source) for r in train] == [
        (f"{subset}/train/ai/000_sdv4_00020.png", 1, "tench", subset),
        (f"{subset}/train/nature/n01440764_10026.JPEG", 0, "tench", subset),
    ]
    val = manifests.genimage_records(tmp_path, subset, "val")
    assert [r.class_name for r in val] == ["jay", None]
    glide = manifests.genimage_records(tmp_path, "glide", "val", include_inferred_classes=False)
    assert [r.class_name for r in glide] == [None, "tabby"]
    with pytest.raises(ValueError, match="found"):
        manifests.genimage_records(tmp_path, "glide", "train")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("n01440764_10026.JPEG", "tench"),
        ("n02123045_77.JPEG", "tabby"),
        ("ILSVRC2012_val_00000008.JPEG", None),
        ("000_sdv4_00020.png", "tench"),
        ("0_adm_153.PNG", "tench"),
        ("0_wukong_image128.png", "tench"),
        ("112_midjourney_2.png", "conch"),
        ("GLIDE_1000_200_00_017_glide_00086.png", "jay"),
        ("VQDM_1000_200_00_017_vqdm_00020.png", "jay"),
        ("2023_holiday_1.jpg", None),  # not a class index
        ("n99999999_1.JPEG", None),  # not an ImageNet-1k wnid
        ("photo.jpg", None),
    ],
)
def test_class_name_from_filename(filename, expected):
    assert imagenet.class_name_from_filename(filename) == expected


def test_imagenet_lookup():
    assert [imagenet.class_name(i) for i in range(3)] == ["tench", "goldfish", "great white shark"]
    assert imagenet.class_name("n01440764") == "tench" and imagenet.class_name(999) == "toilet tissue"
    assert imagenet.wnid_to_index("n01440764") == 0 and imagenet.index_to_wnid(999).startswith("n")
    with pytest.raises(IndexError):
        imagenet.index_to_wnid(1000)
    with pytest.raises(KeyError, match="not an ImageNet-1k wnid"):
        imagenet.class_name("n99999999")


# ---------------------------------------------------------------- transforms


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_to_tensor_and_model_range():
    image = Image.fromarray(np.array([[[0, 128, 255]]], np.uint8))
    pixels = transforms.to_tensor(image)
    assert pixels.shape == (3, 1, 1) and pixels.dtype == torch.float32
    assert torch.allclose(pixels.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))
    assert torch.allclose(transforms.to_model_range(pixels).flatten(), torch.tensor([-1.0, 256 / 255 - 1, 1.0]), atol=1e-6)
    with pytest.raises(ValueError, match="RGB"):
        transforms.to_tensor(image.convert("L"))


def test_squash_resize_keeps_whole_image():
    image = Image.new("RGB", (300, 100), (10, 20, 30))
    assert transforms.squash_resize(image, 256).size == (256, 256)
    assert transforms.squash_resize(image, (32, 64)).size == (64, 32)  # (height, width)
    assert np.asarray(transforms.squash_resize(image, 16)).reshape(-1, 3).tolist()[0] == [10, 20, 30]


def test_cut_to_multiple_is_centred():
    image = _noise(37, 21)
    cut = transforms.cut_to_multiple(image, 8)
    assert cut.size == (32, 16)
    np.testing.assert_array_equal(np.asarray(cut), np.asarray(image)[2:18, 2:34])
    with pytest.raises(BadImageError, match="too_small"):
        transforms.cut_to_multiple(_noise(5, 40), 8)


def test_small_image_reflect_pads_centred_mirror():
    row = np.array([[[1] * 3, [2] * 3, [3] * 3]], np.uint8).repeat(3, 0)  # 3x3, columns 1,2,3
    padded = np.asarray(transforms.center_crop(Image.fromarray(row), 5, pad_mode="reflect"))
    assert padded.shape == (5, 5, 3)
    assert padded[0, :, 0].tolist() == [2, 1, 2, 3, 2]  # reflect-101, as albumentations' PadIfNeeded


@pytest.mark.parametrize(
    "crop", [transforms.center_crop, functools.partial(transforms.random_crop, generator=torch.Generator().manual_seed(0))]
)
def test_small_image_policies(crop):
    small = _noise(20, 12)
    assert crop(small, 32, pad_mode="reflect").size == (32, 32)
    assert crop(small, 32, pad_mode="resize_up").size == (32, 32)
    with pytest.raises(BadImageError) as caught:
        crop(small, 32, pad_mode="skip")
    assert caught.value.reason == "too_small"
    with pytest.raises(ValueError, match="pad_mode"):
        crop(small, 32, pad_mode="zeros")
    assert crop(_noise(40, 40), 32, pad_mode="skip").size == (32, 32)


def test_random_crop_is_reproducible_from_its_generator():
    image = _noise(64, 64)

    def crop(seed):
        return np.asarray(transforms.random_crop(image, 16, torch.Generator().manual_seed(seed)))

    np.testing.assert_array_equal(crop(1), crop(1))
    assert any(not np.array_equal(crop(1), crop(seed)) for seed in range(2, 6))


def test_reencode_depends_on_pixels_only(corpus, tmp_path):
    """A real JPEG and the same pixels saved as PNG (a 'fake') come out of reencode identical."""
    root, _ = corpus
    real = images.load_image(root / "control.jpg")
    real.save(tmp_path / "fake.png")
    fake = images.load_image(tmp_path / "fake.png")
    for fmt in ("jpeg", "png"):
        np.testing.assert_array_equal(np.asarray(transforms.reencode(real, fmt)), np.asarray(transforms.reencode(fake, fmt)))
    np.testing.assert_array_equal(np.asarray(transforms.reencode(fake, "png")), np.asarray(fake))  # lossless
    noisy = _noise(32, 32)
    assert not np.array_equal(np.asarray(transforms.reencode(noisy, "jpeg", quality=50)), np.asarray(noisy))
    with pytest.raises(ValueError, match="'png' or 'jpeg'"):
        transforms.reencode(noisy, "webp")


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 96, 100])
def test_jpeg_quality_estimate(tmp_path, quality):
    _noise(16, 16).save(tmp_path / "q.jpg", quality=quality)
    assert transforms.jpeg_quality_estimate(tmp_path / "q.jpg") == quality
    _noise(16, 16).save(tmp_path / "q.png")
    assert transforms.jpeg_quality_estimate(tmp_path / "q.png") is None


# ---------------------------------------------------------------- dataset


def _resize_to_tensor(image: Image.Image) -> torch.Tensor:
    return transforms.to_tensor(transforms.squash_resize(image, 8))


def _strict_crop_to_tensor(image: Image.Image) -> torch.Tensor:
    return transforms.to_tensor(transforms.center_crop(image, 24, pad_mode="skip"))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_reports_bad_files_from_workers(corpus, num_workers):
    root, expected = corpus
    keys = sorted(k for k, o in expected.items() if o.kind == "image" and not o.skip_reason)
    report = DecodeReport()
    dataset = RecordDataset([ImageRecord(k, root / k) for k in keys], _resize_to_tensor, report)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=num_workers, collate_fn=collate_skip_bad)
    seen = []
    for batch in iter_good_batches(loader):
        assert batch["pixel_values"].shape == (len(batch["image_id"]), 3, 8, 8)
        assert [keys[i] for i in batch["index"].tolist()] == batch["image_id"]
        seen += batch["image_id"]
    assert sorted(seen) == [k for k in keys if expected[k].loads]
    assert report.counts == Counter(expected[k].reason for k in keys if not expected[k].loads)
    assert {f.image_id for f in report.failures} == {k for k in keys if not expected[k].loads}
    assert report.note_counts["animated"] == sum("animated" in expected[k].notes for k in keys)
    assert report.n_ok == len(seen)


def test_transform_refusals_are_reported_not_raised(corpus):
    root, _ = corpus
    records = [
        ImageRecord("control.png", root / "control.png"),
        ImageRecord("dup/a/image.png", root / "dup/a/image.png"),
    ]
    dataset = RecordDataset(records, _strict_crop_to_tensor)
    batch = collate_skip_bad([dataset[0], dataset[1]])
    assert batch["image_id"] == ["control.png"] and batch["pixel_values"].shape == (1, 3, 24, 24)
    assert [(item["image_id"], item["error"]) for item in batch["bad"]] == [("dup/a/image.png", "too_small")]
    all_bad = collate_skip_bad([dataset[1]])
    assert all_bad["pixel_values"] is None and all_bad["index"].numel() == 0
    report = DecodeReport()
    assert list(iter_good_batches([all_bad], report)) == [] and report.counts == {"too_small": 1}


# ---------------------------------------------------------------- module layout


@pytest.mark.parametrize("module_name", ["lare2lib.data.manifests", "lare2lib.data.transforms", "lare2lib.data.datasets"])
def test_split_modules_are_not_re_exported_from_images(module_name):
    """No re-export shim: each name is imported from the module that defines it."""
    import importlib

    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert not hasattr(images, name), name


def test_decoding_and_manifests_do_not_import_torch():
    """Scanning a folder or reading a manifest must not pay for torch (a multi-second import)."""
    import subprocess
    import sys

    code = "import sys, lare2lib.data.images, lare2lib.data.manifests; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
