"""Tiny random-weight models of the real architectures, saved the way real weights are.

The ``full`` profile's code path (Stable Diffusion's pipeline folder, Kandinsky's MoVQ, timm
backbones) is tested offline with these: the same classes and folder layouts, widths small
enough that building, saving and loading take well under a second. Every builder is
deterministic from ``seed`` and leaves the global RNG untouched.

* :func:`make_tiny_sd`: diffusers pipeline layout (``vae/ unet/ text_encoder/ tokenizer/
  scheduler/ model_index.json``), with a CLIP tokenizer written here (no download).
* :func:`make_tiny_vq`: a ``VQModel`` folder (``spatial_norm=True``: Kandinsky's MoVQ flavour).
* :func:`make_tiny_mini_ldm`: the committed mini-world layout, with ``manifest.json``.
* :func:`tiny_ldm_components`: an in-memory SD-shaped LDM (KL or VQ autoencoder, cross-attention
  UNet, SD's DDPM schedule, class prompts) for extraction tests and benchmarks; its widths come
  from a :class:`TinyLDMSpec` (:data:`BENCH_TINY_LDM`: the larger one the benchmarks use).
* :data:`TINY_TIMM_KWARGS` / :func:`tiny_classifier_kwargs`: small widths for timm backbones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lare2lib.models.tiny_clip import TINY_TEXT_DIM, tiny_text_encoder, write_tiny_clip_tokenizer

__all__ = [
    "make_tiny_sd",
    "make_tiny_kl",
    "make_tiny_vq",
    "make_tiny_mini_ldm",
    "TINY_CLASS_NAMES",
    "TinyLDMSpec",
    "BENCH_TINY_LDM",
    "tiny_ldm_components",
    "write_manifest",
]

@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG for a block and restore the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- autoencoders -----------------------------------------------------------------------------


def _autoencoder_kwargs(
    widths: tuple[int, ...], norm_groups: int, sample_size: int
) -> dict[str, Any]:
    """SD-style autoencoder geometry: one block per width, 2× downsampling between blocks (n
    blocks give f = 2^(n-1)), 4 latent channels."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(widths),
        up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=widths,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=norm_groups,
        sample_size=sample_size,
    )


def _tiny_kl(sample_size: int = 32) -> Any:
    from diffusers import AutoencoderKL

    # Four encoder blocks → 8× downsampling and 4 latent channels, exactly SD's geometry.
    return AutoencoderKL(
        **_autoencoder_kwargs((8, 8, 16, 16), 8, sample_size), scaling_factor=0.18215
    )


def _tiny_vq(sample_size: int = 32, spatial_norm: bool = True) -> Any:
    from diffusers import VQModel

    # Kandinsky 2.1's MoVQ is a VQModel with norm_type="spatial" (decoder norms conditioned on
    # the quantised latent) and 4 latent channels at 8×. SpatialNorm hard-codes 32 groups, so
    # its widths cannot go below 32.
    width = (32, 32, 32, 32) if spatial_norm else (8, 8, 16, 16)
    return VQModel(
        **_autoencoder_kwargs(width, min(width), sample_size),
        num_vq_embeddings=64,
        vq_embed_dim=4,
        norm_type="spatial" if spatial_norm else "group",
    )


def make_tiny_kl(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """A tiny ``AutoencoderKL`` (SD geometry: 8×, 4 channels) saved to ``path``."""
    with _seeded(seed):
        _tiny_kl().save_pretrained(path)
    return Path(path)


def make_tiny_vq(path: str | os.PathLike[str], seed: int = 0, spatial_norm: bool = True) -> Path:
    """A tiny ``VQModel`` saved to ``path`` (MoVQ-style spatial norm unless ``spatial_norm=False``)."""
    with _seeded(seed):
        _tiny_vq(spatial_norm=spatial_norm).save_pretrained(path)
    return Path(path)


# -- UNet and schedulers ----------------------------------------------------------------------


def _tiny_unet(
    cross_attention_dim: int,
    sample_size: int = 4,
    widths: tuple[int, ...] = (16, 32),
    norm_groups: int = 8,
    head_dim: int = 4,
) -> Any:
    """SD-style conditional UNet: cross-attention at every level but the lowest."""
    from diffusers import UNet2DConditionModel

    levels = len(widths)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=widths,
        norm_num_groups=norm_groups,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=head_dim,
    )


def _sd_pndm_scheduler() -> Any:
    """SD v1.5's shipped ``scheduler/``: PNDM with the training constants (loaders convert it)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )


# -- pipelines --------------------------------------------------------------------------------


def make_tiny_sd(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """A tiny Stable Diffusion pipeline folder with SD v1.5's layout and component classes."""
    import diffusers

    path = Path(path)
    tokenizer_dir = write_tiny_clip_tokenizer(path / "tokenizer")
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text())
    with _seeded(seed):
        _tiny_kl().save_pretrained(path / "vae")
        _tiny_unet(TINY_TEXT_DIM).save_pretrained(path / "unet")
        text_encoder = tiny_text_encoder(
            len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"]
        )
        text_encoder.save_pretrained(path / "text_encoder")
    _sd_pndm_scheduler().save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": diffusers.__version__,
                "vae": ["diffusers", "AutoencoderKL"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "safety_checker": [None, None],
                "feature_extractor": [None, None],
            },
            indent=2,
        )
    )
    return path


def make_tiny_mini_ldm(
    root: str | os.PathLike[str],
    name: str = "kl_ldm",
    vq: bool = False,
    class_names: tuple[str, ...] = ("cat", "coffee", "rocket"),
    seed: int = 0,
) -> Path:
    """The mini-world layout under ``root`` (the ``weights/mini`` folder); returns ``root/name``.

    Writes ``root/kl_ae`` (or ``vq_ae``) if absent and shares it through ``ldm.json``
    (``"vae": "../kl_ae"``), the LDM's ``unet/``, ``prompt_encoder/``, ``scheduler/``, and
    (re)writes ``root/manifest.json`` with the sha256 of every file under ``root``.
    """
    from lare2lib.models.conditioning import ClassPromptEncoder
    from lare2lib.models.schedulers import sd_training_scheduler

    root = Path(root)
    ae_name = "vq_ae" if vq else "kl_ae"
    if not (root / ae_name).is_dir():
        (make_tiny_vq if vq else make_tiny_kl)(
            root / ae_name, seed=seed, **({"spatial_norm": False} if vq else {})
        )
    folder = root / name
    with _seeded(seed + 1):
        ClassPromptEncoder(class_names=tuple(class_names), dim=16, seq_len=4).save_pretrained(
            folder / "prompt_encoder"
        )
        _tiny_unet(cross_attention_dim=16).save_pretrained(folder / "unet")
    sd_training_scheduler().save_pretrained(folder / "scheduler")
    (folder / "ldm.json").write_text(
        json.dumps(
            {
                "vae": f"../{ae_name}",
                "unet": "unet",
                "prompt_encoder": "prompt_encoder",
                "scheduler": "scheduler",
            },
            indent=2,
        )
    )
    write_manifest(root)
    return folder


def write_manifest(root: str | os.PathLike[str]) -> Path:
    """``root/manifest.json`` with ``files: {relative path: sha256}`` of every file under ``root``."""
    root = Path(root)
    files = {
        file.relative_to(root).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(root.rglob("*"))
        if file.is_file() and file.name != "manifest.json"
    }
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"files": files}, indent=2, sort_keys=True))
    return manifest


# -- in-memory LDMs --------------------------------------------------------------------------

TINY_CLASS_NAMES = ("cat", "dog", "apple")
"""Classes of :func:`tiny_ldm_components`' prompt encoder ("apple" exercises "a photo of an")."""


@dataclass(frozen=True)
class TinyLDMSpec:
    """Geometry of :func:`tiny_ldm_components`; the defaults build in well under a second."""

    image_size: int = 32
    """Input side S; the UNet's sample size is S / f."""
    vae_widths: tuple[int, ...] = (8, 16)
    """Autoencoder block widths; n blocks give f = 2^(n-1) (SD: 4 blocks, f = 8)."""
    unet_widths: tuple[int, ...] = (16, 32)
    """UNet block widths; every level but the lowest has cross-attention, as in SD."""
    prompt_dim: int = 16
    """Prompt embedding width = the UNet's ``cross_attention_dim``."""
    norm_groups: int = 4
    """GroupNorm groups of both networks (must divide every width)."""
    head_dim: int = 4
    """UNet attention head width."""
    class_names: tuple[str, ...] = TINY_CLASS_NAMES
    """Vocabulary of the learned class prompts."""


BENCH_TINY_LDM = TinyLDMSpec(
    image_size=64,
    vae_widths=(32, 64, 64),
    unet_widths=(32, 64, 64),
    prompt_dim=32,
    norm_groups=8,
    head_dim=8,
    class_names=("cat", "dog"),
)
"""A wider, three-level LDM (f = 4) for speed measurements, where the UNet must dominate."""


def tiny_ldm_components(kind: str = "kl", seed: int = 0, spec: TinyLDMSpec = TinyLDMSpec()) -> Any:
    """An SD-shaped :class:`lare2lib.models.ldm.LDMComponents` with random weights, in eval mode.

    ``kind`` ``"kl"``: ``AutoencoderKL`` (a posterior to sample); ``"vq"``: ``VQModel`` (a
    deterministic pre-quantisation latent). 4 latent channels, SD's DDPM schedule
    (``scaled_linear`` 0.00085 → 0.012 over 1000 steps) and a :class:`ClassPromptEncoder`.
    Deterministic from ``seed``; the caller's RNG state is left untouched.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, VQModel

    from lare2lib.models.conditioning import ClassPromptEncoder
    from lare2lib.models.ldm import LDMComponents

    if kind not in ("kl", "vq"):
        raise ValueError(f"unknown autoencoder kind {kind!r}; valid: ['kl', 'vq']")
    autoencoder = _autoencoder_kwargs(spec.vae_widths, spec.norm_groups, spec.image_size)
    with _seeded(seed):
        if kind == "kl":
            vae = AutoencoderKL(**autoencoder)
        else:
            vae = VQModel(**autoencoder, num_vq_embeddings=16, vq_embed_dim=4)
        unet = _tiny_unet(
            spec.prompt_dim,
            sample_size=spec.image_size // 2 ** (len(spec.vae_widths) - 1),
            widths=spec.unet_widths,
            norm_groups=spec.norm_groups,
            head_dim=spec.head_dim,
        )
        # SD's training schedule without steps_offset: DIRE's DDIM timesteps follow the config.
        scheduler = DDPMScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
        )
        prompts = ClassPromptEncoder(class_names=spec.class_names, dim=spec.prompt_dim, seq_len=4)
    components = LDMComponents(
        name=f"tiny-{kind}",
        vae=vae,
        unet=unet,
        scheduler=scheduler,
        prompt_encoder=prompts,
        class_names=spec.class_names,
    )
    return components.eval()
