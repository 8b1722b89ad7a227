"""DIRE-style baseline: DDIM inversion + reconstruction on the tiny LDMs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_lare import CONFIG, IDS, IMAGE_SIZE, PROMPTS, batch, random_images

from lare2lib.signals.dire import DireExtractor
from lare2lib.signals.lare import LareExtractor


@pytest.mark.parametrize(("space", "shape"), [
    ("pixel", (3, IMAGE_SIZE, IMAGE_SIZE)),
    ("latent", (4, IMAGE_SIZE // 2, IMAGE_SIZE // 2)),
])
def test_maps_are_finite_with_the_space_shape(tiny_ldm, space, shape):
    extractor = DireExtractor(tiny_ldm, CONFIG, steps=2, space=space)
    maps = extractor(batch(random_images(3)), IDS[:3], PROMPTS[:3])
    assert maps.shape == (3, *shape) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.max() > 0
    if space == "pixel":
        assert maps.max() <= 1.0  # |x - x̂| in [0, 1] pixel units
    assert extractor.network_passes == 4 == extractor.unet_calls


def test_default_is_40_batched_network_passes(tiny_kl_ldm):
    ldm = tiny_kl_ldm
    calls = []
    hook = ldm.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    extractor = DireExtractor(ldm, CONFIG)
    try:
        maps = extractor(batch(random_images(2)), IDS[:2], PROMPTS[:2])
    finally:
        hook.remove()
    assert torch.isfinite(maps).all()
    assert extractor.network_passes == 40 == len(calls) == extractor.unet_calls
    assert set(calls) == {2}  # both images go through each step together


def test_maps_do_not_depend_on_batch_composition(tiny_kl_ldm):
    ldm = tiny_kl_ldm
    extractor = DireExtractor(ldm, CONFIG, steps=3, space="latent", seed=2)
    pixels = batch(random_images(4))
    together = extractor(pixels, IDS[:4], PROMPTS[:4])
    alone = torch.cat([extractor(pixels[i:i + 1], IDS[i:i + 1], PROMPTS[i:i + 1])
                       for i in range(4)])
    # 8 chained UNet passes amplify fp32 round-off of the batched convolutions a little
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_inversion_starts_from_the_same_latent_as_lare(tiny_kl_ldm):
    """Same seed → same posterior sample: latent DIRE with 0 reconstruction error would be 0."""
    ldm = tiny_kl_ldm
    pixels = batch(random_images(2))
    dire = DireExtractor(ldm, CONFIG, steps=2, space="latent", seed=9)
    lare_latents = LareExtractor(ldm, CONFIG, seed=9).latents(pixels, IDS[:2])
    seen = []
    dire.reconstruct = lambda z0, embeddings: seen.append(z0) or z0
    assert dire(pixels, IDS[:2], PROMPTS[:2]).abs().max() == 0
    torch.testing.assert_close(seen[0], lare_latents)


def test_unknown_space_is_named(tiny_kl_ldm):
    with pytest.raises(ValueError, match="pixel.*latent"):
        DireExtractor(tiny_kl_ldm, CONFIG, space="pixels")


class _NoNoise(torch.nn.Module):
    """A UNet that predicts zero noise: DDIM then only rescales x0, linearly unless it clips."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # device and dtype come from a parameter

    def forward(self, latents, t, encoder_hidden_states=None):
        return type("Out", (), {"sample": torch.zeros_like(latents)})()


def test_clip_sample_stays_off_on_a_default_scheduler_config(tiny_kl_ldm):
    """diffusers drops config keys that were only defaults: clip_sample must survive anyway."""
    from diffusers import DDPMScheduler

    default = DDPMScheduler()  # every key a default, clip_sample (True) among them
    assert "clip_sample" in default.config["_use_default_values"]
    ldm = dataclasses.replace(tiny_kl_ldm, scheduler=default, unet=_NoNoise())
    z0 = 3.0 * torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # |x0| > 1
    embeddings = torch.zeros(2, 1, 1)
    plain = DireExtractor(ldm, CONFIG, steps=4, space="latent")
    assert plain.sampler.config.clip_sample is False and plain.inverter.config.clip_sample is False
    # Without clipping the zero-noise DDIM round trip is linear in z0; clipping x0 at 1 is not.
    once, twice = plain.reconstruct(z0, embeddings), plain.reconstruct(2 * z0, embeddings)
    torch.testing.assert_close(twice, 2 * once)
    clipped = DireExtractor(ldm, CONFIG, steps=4, space="latent", clip_sample=True)
    assert clipped.config_dict()["clip_sample"] and not plain.config_dict()["clip_sample"]
    assert not torch.allclose(clipped.reconstruct(2 * z0, embeddings), 2 * clipped.reconstruct(z0, embeddings))


def test_dire_input_is_the_released_resize_and_centre_crop(tiny_kl_ldm, tmp_path):
    """Short side to the size, then the centre square (torchvision's Resize + CenterCrop, as the
    released DIRE); LaRE keeps squashing the whole image."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    from lare2lib.signals.extract import _PixelDataset, _Item
    from lare2lib.signals.lare import pixels_from_image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8))
    release = transforms.Compose([transforms.Resize(IMAGE_SIZE), transforms.CenterCrop(IMAGE_SIZE),
                                  transforms.PILToTensor()])(image).float() / 127.5 - 1.0
    ours = pixels_from_image(image, IMAGE_SIZE, resize="center_crop")
    torch.testing.assert_close(ours, release, rtol=0, atol=1e-6)
    dire = DireExtractor(tiny_kl_ldm, CONFIG, steps=1)
    assert dire.resize == "center_crop" and dire.config_dict()["resize"] == "center_crop"
    path = tmp_path / "wide.png"
    image.save(path)
    _, pixels = _PixelDataset([_Item("wide", str(path), None)], IMAGE_SIZE, dire.resize)[0]
    torch.testing.assert_close(pixels, release, rtol=0, atol=1e-6)
    assert not torch.allclose(pixels_from_image(image, IMAGE_SIZE), release)  # squash differs
    with pytest.raises(ValueError, match="squash.*center_crop"):
        DireExtractor(tiny_kl_ldm, CONFIG, resize="crop")


def _release_round_trip(unet, alphas_cumprod, z0, embeddings, steps, clip):
    """guided-diffusion's ddim_reverse_sample_loop then ddim_sample_loop (η = 0) on the
    "ddim<steps>" respacing, written out from the released code (respace.py, gaussian_diffusion.py)."""
    T = len(alphas_cumprod)
    stride = next(s for s in range(1, T) if len(range(0, T, s)) == steps)
    use = list(range(0, T, stride))
    ab = torch.tensor([float(alphas_cumprod[t]) for t in use], dtype=torch.float64)
    ab_next = torch.cat([ab[1:], torch.zeros(1, dtype=torch.float64)])
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])

    def pred_xstart(x, i):
        eps = unet(x.float(), torch.tensor(use[i]), encoder_hidden_states=embeddings).sample.double()
        x0 = (1 / ab[i]).sqrt() * x - (1 / ab[i] - 1).sqrt() * eps   # _predict_xstart_from_eps
        x0 = x0.clamp(-1, 1) if clip else x0
        return x0, ((1 / ab[i]).sqrt() * x - x0) / (1 / ab[i] - 1).sqrt()  # _predict_eps_from_xstart

    x = z0.double()
    for i in range(steps):
        x0, eps = pred_xstart(x, i)
        x = x0 * ab_next[i].sqrt() + (1 - ab_next[i]).sqrt() * eps
    for i in reversed(range(steps)):
        x0, eps = pred_xstart(x, i)
        x = x0 * ab_prev[i].sqrt() + (1 - ab_prev[i]).sqrt() * eps
    return x.float()


@pytest.mark.parametrize("clip", [False, True])
def test_default_timing_is_the_released_ddim_reverse_sample_loop(tiny_kl_ldm, clip):
    ldm = tiny_kl_ldm
    z0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    embeddings = ldm.encode_prompts(PROMPTS[:2])
    dire = DireExtractor(ldm, CONFIG, steps=4, space="latent", clip_sample=clip)
    assert dire.timing == "guided_diffusion" and dire.config_dict()["timing"] == "guided_diffusion"
    with torch.inference_mode():
        ours = dire.reconstruct(z0, embeddings)
        release = _release_round_trip(ldm.unet, ldm.scheduler.alphas_cumprod, z0, embeddings, 4, clip)
        shifted = DireExtractor(ldm, CONFIG, steps=4, space="latent", clip_sample=clip,
                                timing="diffusers").reconstruct(z0, embeddings)
    torch.testing.assert_close(ours, release, rtol=1e-4, atol=1e-4)
    assert (shifted - release).abs().max() > 1e-3  # diffusers' alignment is a different loop


def test_respacing_and_unknown_timing():
    from lare2lib.signals.dire import respaced_timesteps

    assert respaced_timesteps(1000, 20) == list(range(0, 1000, 50))
    assert respaced_timesteps(1000, 3) == [0, 334, 668]
    with pytest.raises(ValueError, match="guided_diffusion.*diffusers"):
        DireExtractor.__new__(DireExtractor).__init__(None, CONFIG, timing="adm")
