"""The training-resolution study (notebook 05): level sets from the shipped photo corpus, caching,
split by photo, the large test images, the matrix and LaRE's squash resize.

A small subset of the shipped photo corpus (every split) is the source;
tiny random-weight models stand in for the world's autoencoder, classifier and LDM.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lare2lib.core.profiles import LareConfig
from lare2lib.detectors.train import TrainConfig
from lare2lib.models.autoencoders import load_autoencoder
from lare2lib.models.tiny import make_tiny_kl, tiny_ldm_components
from lare2lib.studies import nb04_matrix
from lare2lib.studies import nb05_figures as F
from lare2lib.studies import nb05_lare_resize as LR
from lare2lib.studies import nb05_levels as L
from lare2lib.studies import nb05_resolution as R

SMALL = L.ResolutionConfig(window=16, levels=("48", L.NATIVE), train_windows=12, val_windows=4, test_windows=8,
                           large_window=64, large_photos=2, large_windows=4, lare_sides=(16, 32), lare_windows=4)
LEARNER = nb04_matrix.FamilyConfig(backbone="resnet10t", pretrained=False, crop_size=16, bootstrap=20)


@pytest.fixture(scope="module")
def photos():
    found = L.world_photos(max_photos=8)
    if not {"train", "val", "test"} <= {p.split for p in found}:
        raise AssertionError("find_photos(max_photos=8) must keep every split")
    return found


@pytest.fixture(scope="module")
def tiny_kl(tmp_path_factory):
    return load_autoencoder(make_tiny_kl(tmp_path_factory.mktemp("kl") / "vae"))


@pytest.fixture(scope="module")
def data(photos, tiny_kl, tmp_path_factory):
    return L.ResolutionData(photos, tiny_kl, tmp_path_factory.mktemp("res"), SMALL, seed=0, ae_key="tiny")


def test_cut_windows_are_inside_and_reproducible():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    first = L.cut_windows(image, 16, 5, torch.Generator().manual_seed(1))
    again = L.cut_windows(image, 16, 5, torch.Generator().manual_seed(1))
    assert len(first) == 5 and all(w.shape == (3, 16, 16) and w.dtype == torch.uint8 for w in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    array = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    # every window is a crop of the image (found at some position)
    for window in first:
        hits = [(t, l) for t in range(15) for l in range(35) if torch.equal(array[:, t:t + 16, l:l + 16], window)]
        assert hits
    assert L.cut_windows(image, 31, 3, torch.Generator()) == []


def test_level_image_downscales_never_upscales(photos):
    photo = min(photos, key=lambda p: min(p.width, p.height))
    small = L.level_image(photo, "48")
    assert min(small.size) == 48
    native = L.level_image(photo, L.NATIVE)
    assert native.size == (photo.width, photo.height)
    huge = L.level_image(photo, str(10 * max(photo.width, photo.height)))
    assert huge.size == (photo.width, photo.height)


@pytest.mark.slow
def test_level_sets_are_split_by_photo_and_cached(data, photos, tiny_kl):
    by_split = {}
    for split in ("train", "val", "test"):
        real = data.real("48", split)
        recon = data.recon("48", split)
        assert real.pixels.shape[1:] == (3, 16, 16)
        assert recon.pixels.shape == real.pixels.shape
        assert recon.ids == [f"{i}@recon" for i in real.ids]
        by_split[split] = {i.split("@")[0] for i in real.ids}
        assert by_split[split] <= {p.photo_id for p in photos if p.split == split}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
    assert len(data.real("48", "train")) >= SMALL.train_windows
    # a second instance reads the cached files, and they hold the same pixels
    again = L.ResolutionData(photos, tiny_kl, data.folder.parent, SMALL, seed=0, ae_key="tiny")
    assert again.folder == data.folder
    assert torch.equal(again.recon("48", "test").pixels, data.recon("48", "test").pixels)
    other = L.ResolutionData(photos, tiny_kl, data.folder.parent, SMALL, seed=1, ae_key="tiny")
    assert other.folder != data.folder
    info = data.level_info()
    assert info[L.NATIVE] == {"mean_downscale": 1.0, "photos_unscaled": len(photos)}
    assert info["48"]["mean_downscale"] > 4 and info["48"]["photos_unscaled"] == 0


def test_native_windows_keep_the_photos_pixels(data):
    real = data.real(L.NATIVE, "test")
    photo_id, rest = real.ids[0].split("@")
    photo = next(p for p in data.photos if p.photo_id == photo_id)
    array = torch.from_numpy(np.asarray(L.level_image(photo, L.NATIVE)).copy()).permute(2, 0, 1)
    window = real.pixels[0]
    unfolded = array.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, H-15, W-15, 16, 16)
    matches = (unfolded == window[:, None, None]).all(dim=(0, 3, 4))
    assert matches.any()


def test_large_images_come_from_the_largest_test_photos(data):
    real, recon = data.large()
    largest = data.largest_test_photos()
    assert len(largest) == min(2, len(largest)) and largest
    assert largest == sorted(largest, key=lambda p: -p.width * p.height)
    assert real.pixels.shape[1:] == (3, 64, 64) and recon.pixels.shape == real.pixels.shape
    assert {i.split("@")[0] for i in real.ids} <= {p.photo_id for p in largest}


@pytest.mark.slow
def test_resolution_matrix_covers_levels_large_and_generators(data, tmp_path):
    generators = {"toy": (data.real("48", "test"), data.recon("48", "test"))}
    printed = []
    result = R.run_resolution_matrix(data, tmp_path, LEARNER, TrainConfig(epochs=1, batch_size=8, max_steps=2),
                                     generators=generators, large_tries=(1, 2), progress=False,
                                     on_row=lambda level, row: printed.append(level))
    assert printed == ["48", L.NATIVE]
    assert list(result["matrix"]["48"]) == ["48", L.NATIVE, "native_64"]
    assert set(result["large"][L.NATIVE]) == {"1_tries", "2_tries"}
    assert result["matrix"]["48"]["native_64"] == result["large"]["48"]["1_tries"]
    assert set(result["generators"]["48"]) == {"toy"}
    cells = R.resolution_cells(result["matrix"])
    assert set(cells[L.NATIVE]["48"]) == {"auc", "tpr@0.1%"}
    assert all(0.0 <= c["auc"] <= 1.0 for row in cells.values() for c in row.values())


def test_lare_study_squash_equals_native_at_the_lare_size(data):
    components = tiny_ldm_components("kl")
    config = LareConfig(image_size=16, batch_size=4)
    class_names = tuple(components.class_names) * 5  # every photo class index maps to a name
    study = LR.lare_resize_study(components, data, class_names, config, bootstrap=20, seed=0)
    assert set(study["squash"]) == {16, 32} and set(study["native"]) == {16, 32}
    # at the LaRE input size nothing is resized: both variants compute the same maps
    assert study["squash"][16]["auc"] == pytest.approx(study["native"][16]["auc"])
    assert 0.0 <= study["squash"][32]["auc"] <= 1.0
    capped = LR.lare_resize_study(components, data, class_names, config, native_max_side=16, bootstrap=20)
    assert set(capped["native"]) == {16}


def test_folder_photos_split_by_hash(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(30):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"p{k}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="1 unusable"):
        found = L.folder_photos(tmp_path, val_fraction=0.2, test_fraction=0.3)
    assert len(found) == 30
    assert {p.split for p in found} == {"train", "val", "test"}
    with pytest.warns(UserWarning):
        assert [p.split for p in found] == [p.split for p in L.folder_photos(tmp_path, 0.2, 0.3)]
    assert all((p.width, p.height) == (24, 20) for p in found)


def test_figures(data):
    import matplotlib

    matplotlib.use("Agg")
    cell = {"auc": 0.8, "tpr@0.1%": 0.1, "tpr@0.1%_ci": [0.0, 0.3]}
    assert len(F.matrix_figure({"48": {"48": cell, "native": cell}}).axes) == 2
    study = {"squash": {16: {"auc": 0.6, "low": 0.5, "high": 0.7}, 32: {"auc": 0.5, "low": 0.4, "high": 0.6}},
             "native": {16: {"auc": 0.6, "low": 0.5, "high": 0.7}}}
    assert len(F.lare_resize_figure(study, 16).axes) == 1
    assert len(F.level_gallery(data, count=2).axes) == len(SMALL.levels) * 4
