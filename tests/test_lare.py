"""LaRE extraction on tiny random Stable-Diffusion-shaped models (KL and VQ autoencoders).

The batched extractor must reproduce the released per-image algorithm number for number, and
its maps must depend only on (seed, image id), not on batch size or order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from lare2lib.core.profiles import LareConfig
from lare2lib.core.rng import LARE_NOISE_STREAM, POSTERIOR_STREAM, image_generator, randn_per_image
from lare2lib.data.store import FeatureStore
from lare2lib.models.tiny import TINY_CLASS_NAMES, TinyLDMSpec, tiny_ldm_components
from lare2lib.signals import extract, lare
from lare2lib.signals.extract import extract_to_store
from lare2lib.signals.lare import (
    LareExtractor,
    pixels_from_image,
    precision_error,
    prompt_for,
    reference_lare_per_image,
    single_step_loss,
)

CLASSES = TINY_CLASS_NAMES
IMAGE_SIZE = TinyLDMSpec().image_size
CONFIG = LareConfig(timestep=200, ensemble=3, image_size=IMAGE_SIZE, prompt="class", batch_size=4)
TIGHT = {"rtol": 1e-5, "atol": 1e-6}
"""fp32 tolerance for batched vs per-image: only summation order differs between them."""


def random_images(count: int, seed: int = 0) -> list[Image.Image]:
    """Random RGB images of varied sizes (squashing must handle any aspect ratio)."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 24), (32, 32), (17, 50), (64, 48)]
    return [Image.fromarray(rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8))
            for i in range(count)]


def batch(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([pixels_from_image(image, IMAGE_SIZE) for image in images])


IDS = [f"folder{i % 2}/img{i}.png" for i in range(8)]
PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo", "",
           "a photo of a cat", "a photo of an apple", "a photo of a dog", "a photo"]


def test_batched_matches_released_per_image_loop(tiny_ldm):
    images = random_images(4)
    maps = LareExtractor(tiny_ldm, CONFIG, seed=3)(batch(images), IDS[:4], PROMPTS[:4])
    for row, (image, image_id, prompt) in enumerate(zip(images, IDS, PROMPTS)):
        expected = reference_lare_per_image(tiny_ldm, image, image_id, prompt, CONFIG, seed=3)
        torch.testing.assert_close(maps[row], expected, **TIGHT)


def test_map_is_float32_with_latent_shape(tiny_ldm):
    maps = LareExtractor(tiny_ldm, CONFIG)(batch(random_images(2)), IDS[:2], PROMPTS[:2])
    assert maps.dtype == torch.float32
    assert maps.shape == (2, 4, IMAGE_SIZE // 2, IMAGE_SIZE // 2)
    assert torch.isfinite(maps).all() and (maps >= 0).all()


@pytest.mark.slow
def test_batch_size_one_and_eight_give_the_same_maps(tiny_kl_ldm):
    pixels = batch(random_images(8))
    extractor = LareExtractor(tiny_kl_ldm, CONFIG, seed=1)
    together = extractor(pixels, IDS, PROMPTS)
    alone = torch.cat([extractor(pixels[i:i + 1], IDS[i:i + 1], PROMPTS[i:i + 1])
                       for i in range(8)])
    torch.testing.assert_close(together, alone, **TIGHT)


def test_maps_follow_their_image_under_permutation(tiny_kl_ldm):
    pixels = batch(random_images(6))
    extractor = LareExtractor(tiny_kl_ldm, CONFIG, seed=1)
    maps = extractor(pixels, IDS[:6], PROMPTS[:6])
    order = [4, 2, 0, 5, 1, 3]
    shuffled = extractor(pixels[order], [IDS[i] for i in order], [PROMPTS[i] for i in order])
    torch.testing.assert_close(shuffled, maps[order], **TIGHT)


def test_maps_depend_on_seed_and_image_id(tiny_kl_ldm):
    pixels = batch(random_images(1) * 2)  # the same image under two ids
    first = LareExtractor(tiny_kl_ldm, CONFIG, seed=0)(pixels, ["a.png", "b.png"], ["", ""])
    again = LareExtractor(tiny_kl_ldm, CONFIG, seed=0)(pixels, ["a.png", "b.png"], ["", ""])
    other = LareExtractor(tiny_kl_ldm, CONFIG, seed=1)(pixels, ["a.png", "b.png"], ["", ""])
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)
    assert not torch.allclose(first[0], first[1])


def test_posterior_sample_not_mean_is_encoded(tiny_kl_ldm):
    """The latent equals ``latent_dist.sample(generator) * 0.18215``-style scaling, by hand."""
    images = random_images(2)
    extractor = LareExtractor(tiny_kl_ldm, CONFIG, seed=5)
    latents = extractor.latents(batch(images), IDS[:2])
    for row, image in enumerate(images):
        with torch.no_grad():
            posterior = tiny_kl_ldm.vae.encode(batch([image])).latent_dist
        noise = torch.randn((4, 16, 16), generator=image_generator(5, IDS[row], POSTERIOR_STREAM))
        by_hand = (posterior.mean[0] + posterior.std[0] * noise) * tiny_kl_ldm.scaling_factor
        torch.testing.assert_close(latents[row], by_hand, **TIGHT)
        assert not torch.allclose(latents[row], posterior.mean[0] * tiny_kl_ldm.scaling_factor,
                                  atol=1e-3)
    mean_maps = LareExtractor(tiny_kl_ldm, CONFIG, seed=5, posterior="mean")(
        batch(images), IDS[:2], PROMPTS[:2])
    assert not torch.allclose(mean_maps, extractor(batch(images), IDS[:2], PROMPTS[:2]))


def test_ensemble_draws_share_one_latent(tiny_kl_ldm):
    """Undo add_noise on every UNet input: all K draws of an image come from the same z0."""
    inputs = []
    hook = tiny_kl_ldm.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    extractor = LareExtractor(tiny_kl_ldm, CONFIG, seed=2)
    try:
        extractor(batch(random_images(2)), IDS[:2], PROMPTS[:2])
    finally:
        hook.remove()
    (z_t,) = inputs
    k = CONFIG.ensemble
    alpha_bar = tiny_kl_ldm.scheduler.alphas_cumprod[CONFIG.timestep]
    eps = randn_per_image((k, 4, 16, 16), 2, IDS[:2], LARE_NOISE_STREAM).flatten(0, 1)
    z0 = ((z_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()).unflatten(0, (2, k))
    latents = extractor.latents(batch(random_images(2)), IDS[:2])
    for draw in range(k):
        torch.testing.assert_close(z0[:, draw], latents, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(eps[0], eps[1])  # the draws themselves differ


def test_each_distinct_prompt_is_embedded_once(tiny_kl_ldm):
    calls = []
    original = tiny_kl_ldm.encode_prompts

    class Counting:
        def __getattr__(self, name):
            return getattr(tiny_kl_ldm, name)

        def encode_prompts(self, prompts):
            calls.append(list(prompts))
            return original(prompts)

    extractor = LareExtractor(Counting(), CONFIG)
    extractor(batch(random_images(8)), IDS, PROMPTS)
    assert len(calls) == 1 and sorted(calls[0]) == sorted(set(PROMPTS))
    extractor(batch(random_images(8)), [f"x{i}" for i in range(8)], PROMPTS)
    assert len(calls) == 1  # no new prompt, no new text-encoder call


@pytest.mark.parametrize(("policy", "class_name", "expected"), [
    ("class", "cat", "a photo of a cat"),
    ("class", "apple", "a photo of a apple"),  # the release's literal article
    ("class", "zebra", "a photo"),          # unknown to the model: fall back
    ("class", None, "a photo"),
    ("photo", "cat", "a photo"),
    ("empty", "cat", ""),
])
def test_prompt_policies(policy, class_name, expected):
    assert prompt_for(policy, class_name, CLASSES) == expected


def test_grammatical_article_is_a_flag():
    assert prompt_for("class", "apple", CLASSES, article="grammatical") == "a photo of an apple"
    assert prompt_for("class", "cat", CLASSES, article="grammatical") == "a photo of a cat"
    with pytest.raises(ValueError, match="grammatical"):
        prompt_for("class", "apple", CLASSES, article="an")


def test_prompt_policy_typo_names_the_valid_ones():
    with pytest.raises(ValueError, match="class.*photo.*empty"):
        prompt_for("classes", "cat")


def test_single_step_loss_matches_lare_at_the_same_timestep(tiny_kl_ldm):
    pixels = batch(random_images(3))
    curve = single_step_loss(tiny_kl_ldm, pixels, IDS[:3], PROMPTS[:3], [50, 200, 600], ensemble=2,
                             seed=4)
    assert curve.shape == (3, 3)
    config = dataclasses.replace(CONFIG, ensemble=2)
    maps = LareExtractor(tiny_kl_ldm, config, seed=4)(pixels, IDS[:3], PROMPTS[:3])
    torch.testing.assert_close(curve[:, 1], maps.mean(dim=(1, 2, 3)), **TIGHT)


def test_half_precision_is_refused_on_cpu(tiny_kl_ldm):
    with pytest.raises(ValueError, match="only supported on GPU"):
        precision_error(tiny_kl_ldm, batch(random_images(1)), IDS[:1], PROMPTS[:1], CONFIG,
                        dtype=torch.float16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="half precision needs a GPU")
def test_half_precision_error_is_small_on_gpu():
    ldm = tiny_ldm_components("kl").to("cuda")
    error = precision_error(ldm, batch(random_images(2)), IDS[:2], PROMPTS[:2], CONFIG,
                            dtype=torch.bfloat16)
    assert error["relative_l2"] < 0.1


def test_bad_batch_is_rejected_with_the_expected_shape(tiny_kl_ldm):
    with pytest.raises(ValueError, match=r"expected pixels of shape \(2, 3, 32, 32\)"):
        LareExtractor(tiny_kl_ldm, CONFIG)(torch.zeros(2, 3, 64, 64), IDS[:2], PROMPTS[:2])


# -- the driver ---------------------------------------------------------------------------
def write_folder(root, count: int, bad: dict[str, bytes]):
    """``count`` PNGs under two class folders plus ``bad`` files (name → raw bytes)."""
    records = []
    for i, image in enumerate(random_images(count)):
        class_name = CLASSES[i % 2]
        path = root / class_name / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        records.append((f"{class_name}/img{i}.png", str(path), class_name))
    for name, content in bad.items():
        path = root / name
        path.write_bytes(content)
        records.append((name, str(path), None))
    return records


def test_extract_to_store_reports_bad_images_and_resumes(tiny_kl_ldm, tmp_path):
    bad = {"empty.png": b"", "text.jpg": b"not an image at all", "trunc.png": b"\x89PNG\r\n\x1a\n"}
    records = write_folder(tmp_path / "images", 5, bad)
    store = FeatureStore(tmp_path / "store", {"test": 1}, shard_size=2)
    summary = extract_to_store("lare", tiny_kl_ldm, records, store, CONFIG, seed=0, batch_size=3,
                               progress=False)
    assert summary.done == 5 and summary.skipped_finished == 0
    assert sorted(summary.bad) == sorted(bad)
    assert sorted(store.ids()) == sorted(r[0] for r in records[:5])
    assert sorted(store.report["bad"]) == sorted(bad)
    assert all(name not in store for name in bad)  # no zero map for a bad image

    extractor = LareExtractor(tiny_kl_ldm, CONFIG, seed=0)
    images = [Image.open(r[1]) for r in records[:5]]
    prompts = [prompt_for("class", r[2], CLASSES) for r in records[:5]]
    expected = extractor(batch(images), [r[0] for r in records[:5]], prompts)
    torch.testing.assert_close(store.get([r[0] for r in records[:5]]), expected, **TIGHT)

    reopened = FeatureStore(tmp_path / "store", {"test": 1}, shard_size=2)
    again = extract_to_store(extractor, tiny_kl_ldm, records, reopened, CONFIG, batch_size=3,
                             progress=False)
    assert again.done == 0 and again.skipped_finished == 5
    assert extractor.unet_calls == 1  # only the `expected` batch above: nothing recomputed


def extract_arguments(*argv: str):
    import argparse

    return extract.add_extract_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_driver_names_live_only_in_extract():
    """No re-export shim: the driver names are imported from lare2lib.signals.extract."""
    for name in extract.__all__:
        assert not hasattr(lare, name)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_extract_command_refuses_half_precision_on_cpu_before_loading(dtype, tmp_path,
                                                                      monkeypatch, capsys):
    import lare2lib.models.ldm as models

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded despite an impossible precision")

    monkeypatch.setattr(models, "load_ldm", must_not_load)
    args = extract_arguments("--images", str(tmp_path), "--out", str(tmp_path / "store"),
                             "--device", "cpu", "--dtype", dtype)
    assert extract.extract_command(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("lare2 extract: error:") and "float32" in error and dtype in error
    assert not (tmp_path / "store").exists()


def test_extract_command_end_to_end(tiny_kl_ldm, tmp_path, monkeypatch, capsys):
    """A real folder scan: unopenable files are dropped by the scan, a truncated PNG fails in
    the decoder; both are named in the summary and the report, and get no feature."""
    import io

    import lare2lib.models.ldm as models

    png = io.BytesIO()
    random_images(1)[0].resize((64, 64)).save(png, format="PNG")
    bad = {"empty.png": b"", "notes.jpg": b"plain text", "cut.png": png.getvalue()[:200]}
    write_folder(tmp_path / "images", 3, bad)
    monkeypatch.setattr(models, "load_ldm", lambda ref, device, dtype: tiny_kl_ldm)
    args = extract_arguments("--images", str(tmp_path / "images"), "--out", str(tmp_path / "store"),
                             "--profile", "smoke", "--ensemble", "2", "--num-workers", "0",
                             "--device", "cpu")
    assert extract.extract_command(args) == 0
    output = capsys.readouterr().out
    assert "extracted 3 image(s)" in output and "3 bad" in output
    store = FeatureStore.open_read_only(tmp_path / "store")
    assert sorted(store.report["bad"]) == sorted(bad)
    assert len(store) == 3 and store.config["ensemble"] == 2
    assert store.config["model"] == "mini:kl_ldm"


def test_lare_reads_files_as_the_release_does_unless_corrected(tmp_path):
    """The released LaRE reads ``Image.open(path).convert("RGB")``: no EXIF orientation, alpha
    dropped. Both corrections are flags of LareConfig (exif_orientation, alpha)."""
    from PIL import ImageOps

    from lare2lib.signals.extract import _Item, _PixelDataset

    rng = np.random.default_rng(0)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated by 90°
    Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)).save(rotated, exif=exif.tobytes())
    transparent = tmp_path / "transparent.png"
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba[:16, :, 3] = 0  # half the image transparent, storing random colours
    Image.fromarray(rgba, "RGBA").save(transparent)

    def read(path, config):
        extractor_decode = {"exif": config.exif_orientation, "alpha": config.alpha}
        return _PixelDataset([_Item(path.name, str(path), None)], IMAGE_SIZE, "squash", extractor_decode)[0][1]

    for path in (rotated, transparent):
        with Image.open(path) as image:
            release = pixels_from_image(image.convert("RGB"), IMAGE_SIZE)
        assert torch.equal(read(path, LareConfig()), release)
    corrected = LareConfig(exif_orientation=True, alpha="composite")
    with Image.open(rotated) as image:
        upright = pixels_from_image(ImageOps.exif_transpose(image).convert("RGB"), IMAGE_SIZE)
    assert torch.equal(read(rotated, corrected), upright)
    on_white = read(transparent, corrected)
    assert on_white[:, : IMAGE_SIZE // 4].min() > 0.99  # the transparent top is white
