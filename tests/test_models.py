"""Offline-first model loading: hub ids fail clearly, local folders of the same architecture load.

Every model here is a tiny random-weight model of the real architecture (lare2lib.models.tiny),
written to a temporary folder in the real layout and read back through the public loaders.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import

import json
from pathlib import Path

import pytest
import torch

from lare2lib.core import paths
from lare2lib.models import tiny
from lare2lib.models.autoencoders import decode_latents, encode_latents, load_autoencoder
from lare2lib.models.devices import resolve_device, resolve_dtype
from lare2lib.models.hub import model_not_available
from lare2lib.models.ldm import load_ldm
from lare2lib.models.refs import ModelNotAvailableError, parse_ref
from lare2lib.models.schedulers import load_scheduler, sd_training_scheduler

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    return tiny.make_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture()
def mini_root(tmp_path, monkeypatch) -> Path:
    """A mini world (KL and VQ LDMs sharing their autoencoders) where ``mini:`` refs point."""
    monkeypatch.setattr(paths, "weights_dir", lambda: tmp_path / "weights")
    root = tmp_path / "weights" / "mini"
    tiny.make_tiny_mini_ldm(root, "kl_ldm")
    tiny.make_tiny_mini_ldm(root, "vq_ldm", vq=True)
    return root


# -- hub ids offline --------------------------------------------------------------------------

HUB_CASES = [
    (load_ldm, SD15, "LDM", "models.ldm"),
    (
        load_autoencoder,
        "stabilityai/stable-diffusion-2-1:vae",
        "autoencoder",
        "models.recon_autoencoder",
    ),
    (
        load_autoencoder,
        "kandinsky-community/kandinsky-2-1:movq",
        "autoencoder",
        "models.recon_autoencoder",
    ),
    (load_scheduler, SD15, "scheduler", "models.ldm"),
]


@pytest.mark.parametrize(
    ("loader", "ref", "role", "field"), HUB_CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_hub_id_offline_gives_one_clear_message(loader, ref, role, field):
    with pytest.raises(ModelNotAvailableError) as info:
        loader(ref)
    message = str(info.value)
    repo = ref.split(":")[0]
    assert ref in message and role in message
    assert f"hf download {repo}" in message and field in message and "offline" in message
    if ":" in ref:
        assert f'--include "{ref.split(":")[1]}/*"' in message
    for hub_noise in (
        "Traceback",
        "site-packages",
        "huggingface_hub.",
        "does not appear to have",
        "connect to",
    ):
        assert hub_noise not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_ldm_download_command_names_only_the_needed_folders():
    message = str(model_not_available(SD15, "ldm"))
    for part in (
        "unet/*",
        "vae/*",
        "text_encoder/*",
        "tokenizer/*",
        "scheduler/*",
        "model_index.json",
    ):
        assert part in message


@pytest.mark.parametrize(
    ("ref", "kind", "location", "subfolder"),
    [
        (SD15, "hub", SD15, None),
        ("stabilityai/stable-diffusion-2-1:vae", "hub", "stabilityai/stable-diffusion-2-1", "vae"),
        ("mini:kl_ldm", "mini", None, None),
    ],
)
def test_parse_ref(ref, kind, location, subfolder):
    parsed = parse_ref(ref)
    assert (parsed.kind, parsed.subfolder) == (kind, subfolder)
    assert parsed.location == (location or str(paths.weights_dir() / "mini" / "kl_ldm"))


def test_parse_ref_prefers_an_existing_path_and_rejects_nonsense(tmp_path):
    assert parse_ref(tmp_path).kind == "local"
    with pytest.raises(ModelNotAvailableError, match="not an existing local path"):
        parse_ref("no such model")


# -- the same architecture from a local folder, through the same calls ------------------------


def test_sd_folder_loads_inference_ready(tiny_sd):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    ldm = load_ldm(tiny_sd)
    assert isinstance(ldm.vae, AutoencoderKL) and isinstance(ldm.unet, UNet2DConditionModel)
    assert ldm.class_names == ()
    for module in ldm.modules():
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert (ldm.scaling_factor, ldm.vae_scale_factor, ldm.latent_channels) == (0.18215, 8, 4)
    assert ldm.sample_size == ldm.unet.config.sample_size * 8


def test_sd_scheduler_is_the_training_ddpm_even_when_the_folder_ships_pndm(tiny_sd):
    from diffusers import DDPMScheduler

    assert (
        json.loads((tiny_sd / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
        == "PNDMScheduler"
    )
    scheduler = load_ldm(tiny_sd).scheduler
    reference = sd_training_scheduler()
    assert isinstance(scheduler, DDPMScheduler)
    assert (
        scheduler.config.prediction_type == "epsilon"
        and scheduler.config.num_train_timesteps == 1000
    )
    torch.testing.assert_close(scheduler.alphas_cumprod, reference.alphas_cumprod)
    assert scheduler.betas[0].item() == pytest.approx(0.00085) and scheduler.betas[
        -1
    ].item() == pytest.approx(0.012)


def test_sd_encode_prompts_pads_to_max_length_and_deduplicates(tiny_sd):
    ldm = load_ldm(tiny_sd)
    states = ldm.encode_prompts(["a photo of a cat", "", "a photo of a cat", "a photo"])
    assert states.shape == (4, ldm.tokenizer.model_max_length, ldm.text_encoder.config.hidden_size)
    assert states.shape[1] == 77
    torch.testing.assert_close(states[0], states[2], rtol=0, atol=0)
    assert not torch.allclose(states[0], states[1])
    alone = ldm.encode_prompts(["a photo"])
    torch.testing.assert_close(states[3:], alone)


def test_sd_components_run_one_noise_prediction(tiny_sd):
    ldm = load_ldm(tiny_sd)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    latents = (
        encode_latents(ldm.vae, pixels, torch.Generator().manual_seed(0))
        * ldm.scaling_factor
    )
    assert latents.shape == (
        2,
        ldm.latent_channels,
        32 // ldm.vae_scale_factor,
        32 // ldm.vae_scale_factor,
    )
    noise = ldm.unet(
        latents, torch.tensor([200, 200]), encoder_hidden_states=ldm.encode_prompts(["", "a photo"])
    ).sample
    assert noise.shape == latents.shape


@pytest.mark.parametrize("subfolder", ["vae", None])
def test_autoencoder_from_pipeline_or_model_folder(tiny_sd, subfolder):
    from diffusers import AutoencoderKL

    folder = tiny_sd / subfolder if subfolder else tiny_sd
    vae = load_autoencoder(folder)
    assert isinstance(vae, AutoencoderKL) and not vae.training


def test_movq_folder_is_a_vq_model_decoded_without_quantisation(tmp_path):
    from diffusers import VQModel

    vq = load_autoencoder(tiny.make_tiny_vq(tmp_path / "movq"))
    assert isinstance(vq, VQModel) and vq.config.norm_type == "spatial"
    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        latents = encode_latents(vq, pixels)
        torch.testing.assert_close(latents, vq.encode(pixels).latents)
        unquantised = decode_latents(vq, latents)
        quantised = vq.decode(latents).sample
    assert unquantised.shape == pixels.shape
    assert not torch.allclose(unquantised, quantised), (
        "decode_latents must skip the codebook (force_not_quantize)"
    )


def test_kl_latents_are_seeded_posterior_samples(tiny_sd):
    vae = load_autoencoder(tiny_sd)
    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        first = encode_latents(vae, pixels, torch.Generator().manual_seed(1))
        again = encode_latents(vae, pixels, torch.Generator().manual_seed(1))
        mean = encode_latents(vae, pixels, sample=False)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, mean)


def test_explicit_kind_and_bad_kind(tiny_sd):
    from diffusers import AutoencoderKL

    assert isinstance(load_autoencoder(tiny_sd / "vae", kind="kl"), AutoencoderKL)
    with pytest.raises(ValueError, match="valid: auto, kl, vq, taef2"):
        load_autoencoder(tiny_sd / "vae", kind="gan")


def test_local_folder_that_is_not_an_ldm(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="model_index.json"):
        load_ldm(tmp_path)


# -- the mini world ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "vae_class"), [("kl_ldm", "AutoencoderKL"), ("vq_ldm", "VQModel")]
)
def test_mini_ldm_loads_and_encodes_class_prompts(mini_root, name, vae_class):
    ldm = load_ldm(f"mini:{name}")
    assert type(ldm.vae).__name__ == vae_class
    assert ldm.class_names == ("cat", "coffee", "rocket")
    states = ldm.encode_prompts(["a photo of a cat", "a photo", "a photo of a rocket"])
    assert states.shape == (3, 4, ldm.unet.config.cross_attention_dim)
    assert ldm.scheduler.config.beta_schedule == "scaled_linear"


def test_mini_ldm_shares_its_autoencoder_folder(mini_root):
    ldm = load_ldm("mini:kl_ldm")
    shared = load_autoencoder("mini:kl_ae")
    for key, tensor in shared.state_dict().items():
        torch.testing.assert_close(ldm.vae.state_dict()[key], tensor, rtol=0, atol=0)


def test_manifest_mismatch_is_detected(mini_root):
    weights = next((mini_root / "kl_ldm" / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="kl_ldm/unet/.*manifest says"):
        load_ldm("mini:kl_ldm")
    load_ldm("mini:vq_ldm")  # untouched parts still load


def test_manifest_missing_file_is_detected(mini_root):
    next((mini_root / "kl_ae").glob("*.safetensors")).unlink()
    with pytest.raises(ValueError, match="listed in .*manifest.json but missing"):
        load_autoencoder("mini:kl_ae")


def test_missing_mini_folder_says_notebook_00_builds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "weights_dir", lambda: tmp_path)
    with pytest.raises(ModelNotAvailableError, match=r"lare2 run 00.*RETRAIN=True"):
        load_ldm("mini:kl_ldm")


# -- devices and precision --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", torch.float16])
def test_half_precision_is_refused_on_cpu(dtype):
    with pytest.raises(ValueError, match="use dtype='float32' on CPU"):
        resolve_dtype(dtype, "cpu")


@pytest.mark.parametrize("dtype", ["float64", "fp16", torch.int8])
def test_unknown_dtype_lists_valid_ones(dtype):
    with pytest.raises(ValueError, match=r"bfloat16.*float16.*float32"):
        resolve_dtype(dtype, "cpu")


def test_resolve_device_and_dtype():
    assert resolve_dtype("float32", "cpu") is torch.float32
    assert resolve_device("cpu") == torch.device("cpu")
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device("auto").type == expected


def test_components_refuse_half_on_cpu(tiny_sd):
    ldm = load_ldm(tiny_sd)
    with pytest.raises(ValueError, match="float32"):
        ldm.to("cpu", torch.float16)
    with pytest.raises(ValueError, match="float32"):
        load_ldm(tiny_sd, dtype="bfloat16")


# -- Stable Diffusion v1.5's architecture, random weights (bench at the paper's size) ----------


def test_sd15_architecture_has_the_released_parameter_counts():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lare2lib.models import sd_architecture as sd

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        built = {"unet": UNet2DConditionModel(**sd.SD15_UNET), "vae": AutoencoderKL(**sd.SD_VAE),
                 "text_encoder": CLIPTextModel(CLIPTextConfig(**sd.CLIP_L_TEXT))}
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in built.items()}
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480} == sd.SD15_PARAMETERS


def test_sd15_random_components_assemble_an_ldm_that_lare_runs_on(monkeypatch):
    """The assembly, on the same code path with the configs shrunk (the real size is 4.3 GB)."""
    from lare2lib.core.profiles import LareConfig
    from lare2lib.models import sd_architecture as sd
    from lare2lib.signals.lare import LareExtractor

    monkeypatch.setattr(sd, "SD15_UNET", {**sd.SD15_UNET, "block_out_channels": [32, 64], "norm_num_groups": 8,
                                          "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                                          "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                                          "cross_attention_dim": 32, "attention_head_dim": 2, "layers_per_block": 1})
    monkeypatch.setattr(sd, "SD_VAE", {**sd.SD_VAE, "block_out_channels": [32, 32], "norm_num_groups": 8,
                                       "down_block_types": ["DownEncoderBlock2D"] * 2,
                                       "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1})
    monkeypatch.setattr(sd, "CLIP_L_TEXT", {**sd.CLIP_L_TEXT, "hidden_size": 32, "intermediate_size": 37,
                                            "num_hidden_layers": 1, "num_attention_heads": 2, "projection_dim": 32})
    ldm = sd.sd15_random_components(seed=1)
    assert ldm.scaling_factor == 0.18215 and ldm.vae_scale_factor == 2
    maps = LareExtractor(ldm, LareConfig(image_size=32, ensemble=2))(torch.zeros(1, 3, 32, 32), ["x"], ["a photo"])
    assert maps.shape == (1, 4, 16, 16) and torch.isfinite(maps).all()
    again = sd.sd15_random_components(seed=1)
    assert torch.equal(next(again.unet.parameters()), next(ldm.unet.parameters()))  # seeded
