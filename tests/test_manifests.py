"""Folders, manifests and GenImage discovery (lare2lib.data.manifests) on tiny files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lare2lib.data.images import DecodeReport
from lare2lib.data.manifests import (
    ManifestError,
    discover_genimage,
    genimage_records,
    manifest_hash,
    read_manifest,
    scan_folder,
    write_manifest,
)


def save(path, width=8, height=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    save(tmp_path / "b.png", 8, 6)
    save(tmp_path / "sub" / "a.jpg", 5, 7)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_scan_lists_images_sorted_with_sizes_and_reports_bad_files(folder):
    report = DecodeReport()
    records = scan_folder(folder, label=0, source="real", report=report)
    assert [r.image_id for r in records] == ["b.png", "sub/a.jpg"]
    assert [(r.width, r.height) for r in records] == [(8, 6), (5, 7)]
    assert report.n_failed == 1  # the empty file; the .txt is not an image extension
    assert [r.image_id for r in scan_folder(folder, recursive=False, report=DecodeReport())] == ["b.png"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_round_trip_keeps_every_field(folder, suffix):
    records = scan_folder(folder, label=1, source="gen", report=DecodeReport(),
                          class_name_fn=lambda name: name[0])
    path = write_manifest(records, folder / f"manifest{suffix}")
    assert read_manifest(path) == records
    assert manifest_hash(read_manifest(path)) == manifest_hash(reversed(records))


def test_the_hash_ignores_absolute_paths_but_not_labels(folder, tmp_path_factory):
    records = scan_folder(folder, label=0, report=DecodeReport())
    moved = tmp_path_factory.mktemp("moved")
    for record in records:
        save(moved / record.image_id, record.width, record.height)
    assert manifest_hash(scan_folder(moved, label=0, report=DecodeReport())) == manifest_hash(records)
    assert manifest_hash(scan_folder(moved, label=1, report=DecodeReport())) != manifest_hash(records)


@pytest.mark.parametrize(("rows", "message"), [
    ("image_id,label\nx,0\n", "no 'path' column"),
    ("path,label\nb.png,2\n", "label must be 0"),
    ("path,label\nb.png,zero\n", "must be an integer"),
    ("path\nb.png\nb.png\n", "already used"),
    ("path\n../outside.png\n", "outside the data root"),
    ("path\n\n,\n", "empty path"),
])
def test_bad_manifests_name_the_line_and_the_fix(folder, rows, message):
    path = folder / "bad.csv"
    path.write_text(rows)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_genimage_subsets_are_found_by_shape_with_labels_and_classes(tmp_path):
    root = tmp_path / "GenImage"
    subset = root / "stable_diffusion_v_1_4" / "imagenet_ai_0419_sdv4"
    save(subset / "val" / "nature" / "ILSVRC2012_val_00000001.JPEG")
    save(subset / "val" / "ai" / "001_sdv4_00007.png")
    found = discover_genimage(root)
    assert list(found) == ["stable_diffusion_v_1_4/imagenet_ai_0419_sdv4"]
    records = genimage_records(root, "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4", "val",
                               report=DecodeReport())
    assert [(r.label, r.source) for r in records] == [(1, "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4")] * 1 + \
        [(0, "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4")]
    assert records[0].class_name is not None  # "001_…" names ImageNet class 1
    with pytest.raises(ValueError, match="no GenImage"):
        genimage_records(root, "midjourney", "val")


def test_genimage_val_reals_get_their_class_from_the_release_mapping(tmp_path):
    import json

    from lare2lib.data.imagenet import class_name, load_val_classes
    from lare2lib.signals.lare import check_prompts_by_label, prompt_for

    root = tmp_path / "GenImage"
    subset = "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4"
    save(root / subset / "val" / "nature" / "ILSVRC2012_val_00000001.JPEG")
    save(root / subset / "val" / "nature" / "ILSVRC2012_val_00000002.JPEG")
    save(root / subset / "val" / "ai" / "001_sdv4_00007.png")
    unmapped = genimage_records(root, subset, "val")
    prompts = [prompt_for("class", r.class_name) for r in unmapped]
    with pytest.raises(ValueError, match="differ by label.*filename_to_folder.json"):
        check_prompts_by_label(prompts, [r.label for r in unmapped])  # only the fake is classed

    # the release's anns/filename_to_folder.json: file name → class folder (a wnid)
    mapping = tmp_path / "filename_to_folder.json"
    mapping.write_text(json.dumps({"ILSVRC2012_val_00000001.JPEG": "n01751748",
                                   "ILSVRC2012_val_00000002.JPEG": "n09193705"}))
    records = {r.image_id.rsplit("/", 1)[-1]: r for r in genimage_records(root, subset, "val", val_classes=mapping)}
    assert records["ILSVRC2012_val_00000001.JPEG"].class_name == class_name("n01751748") == "sea snake"
    assert records["ILSVRC2012_val_00000002.JPEG"].class_name == class_name("n09193705")
    check_prompts_by_label([prompt_for("class", r.class_name) for r in records.values()],
                           [r.label for r in records.values()])  # both classes classed: accepted
    # Kaggle's LOC_val_solution.csv gives the same classes
    solution = tmp_path / "LOC_val_solution.csv"
    solution.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01751748 1 2 3 4 \n"
                        "ILSVRC2012_val_00000002,n09193705 5 6 7 8 n09193705 1 1 2 2\n")
    assert load_val_classes(solution) == load_val_classes(mapping)
    mapping.write_text(json.dumps({"ILSVRC2012_val_00000001.JPEG": "n99999999"}))
    with pytest.raises(ValueError, match="not an ImageNet-1k class"):
        load_val_classes(mapping)


def test_prompt_check_accepts_class_free_and_unlabelled_sets():
    from lare2lib.signals.lare import check_prompts_by_label

    check_prompts_by_label(["a photo", "a photo"], [0, 1])
    check_prompts_by_label(["a photo of a cat", "a photo"], [None, None])
    check_prompts_by_label(["a photo of a cat", "a photo", "a photo of a dog"], [0, 0, 1])  # mixed, both classed
