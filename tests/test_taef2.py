"""TAEF2 re-implementation: shapes always; with the real weights (when present beside the
project), a strict load and a reconstruction quality that random weights cannot reach."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import

import numpy as np
import pytest
import torch

from lare2lib.core import paths
from lare2lib.models import autoencoders
from lare2lib.models.taef2 import TAEF2

PHOTO_SIDE = 192
"""Centre crops of this side keep the real-weight test to a couple of seconds on CPU."""
MIN_PSNR_DB = 25.0
"""The README measures ~30 dB on full photos; random weights give ~5 dB."""

needs_weights = pytest.mark.skipif(
    paths.taef2_dir() is None,
    reason="TAEF2 weights not on this machine (paths.taef2_dir() is None)",
)


def _photos() -> torch.Tensor:
    """Four package photos as centre crops in [0, 1], ``(4, 3, PHOTO_SIDE, PHOTO_SIDE)``."""
    from skimage import data
    from sklearn.datasets import load_sample_image

    arrays = [data.astronaut(), data.chelsea(), data.coffee(), load_sample_image("china.jpg")]
    crops = []
    for array in arrays:
        top, left = (array.shape[0] - PHOTO_SIDE) // 2, (array.shape[1] - PHOTO_SIDE) // 2
        crops.append(
            np.ascontiguousarray(array[top : top + PHOTO_SIDE, left : left + PHOTO_SIDE, :3])
        )
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse)


def test_shapes_and_output_range_with_random_weights():
    model = TAEF2().eval()
    pixels = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        latents = model.encode(pixels)
        images = model.decode(latents)
    assert latents.shape == (2, 32, 6, 8)
    assert images.shape == pixels.shape and images.min() >= 0 and images.max() <= 1


def test_each_half_has_the_published_parameter_count():
    model = TAEF2()
    for half in (model.encoder, model.decoder):
        assert sum(p.numel() for p in half.parameters()) == pytest.approx(1.34e6, rel=0.01)


@needs_weights
def test_real_weights_load_strictly_and_reconstruct_photos():
    model = TAEF2.from_folder(paths.taef2_dir())
    pixels = _photos()
    with torch.no_grad():
        psnr = _psnr(model(pixels), pixels)
    assert psnr.mean() > MIN_PSNR_DB, f"PSNR per photo: {psnr.tolist()}"


@needs_weights
def test_loader_recognises_the_folder_and_keeps_the_diffusers_convention():
    vae = autoencoders.load_autoencoder(paths.taef2_dir())
    assert isinstance(vae, TAEF2) and not vae.training
    pixels = _photos()[:1]
    with torch.no_grad():
        latents = autoencoders.encode_latents(vae, pixels * 2 - 1)
        images = (autoencoders.decode_latents(vae, latents) + 1) / 2
    assert latents.shape == (1, 32, PHOTO_SIDE // 8, PHOTO_SIDE // 8)
    assert _psnr(images, pixels).item() > MIN_PSNR_DB


def test_missing_weights_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="taef2_encoder.pth"):
        TAEF2.from_folder(tmp_path)
