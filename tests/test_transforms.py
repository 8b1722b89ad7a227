"""Pixel transforms (lare2lib.data.transforms) checked against numpy/PIL written out here."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lare2lib.data import transforms as T
from lare2lib.data.images import BadImageError


def rgb(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_to_tensor_and_model_range():
    image = rgb(3, 5)
    tensor = T.to_tensor(image)
    assert tensor.shape == (3, 3, 5) and tensor.dtype == torch.float32
    np.testing.assert_array_equal((tensor * 255).round().byte().permute(1, 2, 0).numpy(), np.asarray(image))
    assert T.to_model_range(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="expects an RGB image"):
        T.to_tensor(image.convert("L"))


def test_squash_ignores_the_aspect_ratio():
    assert T.squash_resize(rgb(30, 90), 16).size == (16, 16)
    assert T.squash_resize(rgb(30, 90), (8, 24)).size == (24, 8)


def test_cut_to_multiple_keeps_the_centre_pixels():
    image = rgb(21, 35)
    cut = T.cut_to_multiple(image, 8)
    assert cut.size == (32, 16)
    np.testing.assert_array_equal(np.asarray(cut), np.asarray(image)[2:18, 1:33])
    with pytest.raises(BadImageError):
        T.cut_to_multiple(rgb(5, 40), 8)


def test_center_crop_and_the_small_image_policies():
    image = rgb(10, 12)
    np.testing.assert_array_equal(np.asarray(T.center_crop(image, 4)), np.asarray(image)[3:7, 4:8])
    padded = np.asarray(T.center_crop(rgb(4, 4), 6, pad_mode="reflect"))
    expected = np.pad(np.asarray(rgb(4, 4)), ((1, 1), (1, 1), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(padded, expected)
    assert T.center_crop(rgb(4, 6), 8, pad_mode="resize_up").size == (8, 8)
    with pytest.raises(BadImageError):
        T.center_crop(rgb(4, 4), 8, pad_mode="skip")
    with pytest.raises(ValueError, match="pad_mode"):
        T.center_crop(rgb(4, 4), 8, pad_mode="zoom")


def test_random_crop_is_seeded_and_inside_the_image():
    image = rgb(20, 20)
    crops = [np.asarray(T.random_crop(image, 5, torch.Generator().manual_seed(3))) for _ in range(2)]
    np.testing.assert_array_equal(crops[0], crops[1])
    array = np.asarray(image)
    windows = [array[i:i + 5, j:j + 5] for i in range(16) for j in range(16)]
    assert any(np.array_equal(crops[0], window) for window in windows)


def test_reencode_png_is_lossless_and_jpeg_matches_pil():
    image = rgb(16, 16)
    np.testing.assert_array_equal(np.asarray(T.reencode(image, "png")), np.asarray(image))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70, subsampling="4:2:0")
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(T.reencode(image, "jpeg", 70)), expected)
    with pytest.raises(ValueError, match="fmt"):
        T.reencode(image, "webp")


@pytest.mark.parametrize("quality", [30, 75, 96])
def test_jpeg_quality_estimate_reads_the_quality_back(quality, tmp_path):
    path = tmp_path / "a.jpg"
    rgb(16, 16).save(path, quality=quality)
    assert T.jpeg_quality_estimate(path) == quality
    rgb(8, 8).save(tmp_path / "b.png")
    assert T.jpeg_quality_estimate(tmp_path / "b.png") is None
