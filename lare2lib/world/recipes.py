"""The mini world's training recipes (autoencoders, latent UNets, generators) and the step seeding.

Causal structure, as in the papers' world but small enough for two CPU cores:

    real photo crops ──► KL autoencoder ──► latents ──► class-conditional latent UNet ──► DDIM samples
                    └──► VQ autoencoder ──► latents ──► a second latent UNet          ──► DDIM samples

Everything is built with diffusers' own classes (``AutoencoderKL``, ``VQModel``,
``UNet2DConditionModel``, ``DDPMScheduler``/``DDIMScheduler``) so the same LaRE, DIRE and
AEROBLADE code runs on these models and on Stable Diffusion.

Training is deterministic from the seed: each step's batch, noise and timesteps come from a
generator seeded by (seed, model, step), so a run killed and resumed from its last checkpoint
continues exactly as an uninterrupted one would. Training runs through :func:`lare2lib.world.retrain.main`
(``python -m lare2lib.world.retrain``), which is what ``RETRAIN=True`` in notebook 00 launches; the
results are committed under ``lare2lib/weights/mini`` (see :mod:`lare2lib.world.weights`).

The trainings live in :mod:`lare2lib.world.autoencoder_training` and
:mod:`lare2lib.world.unet_training` (shared checkpoints: :mod:`lare2lib.world.training_state`);
sampling, the single-step loss and the premise probe in :mod:`lare2lib.world.sampling`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

__all__ = [
    "AutoencoderRecipe",
    "UNetRecipe",
    "WorldRecipe",
    "RECIPES",
    "GeneratorSpec",
    "GENERATORS",
    "generator_specs",
    "step_generator",
]


# -- recipes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoencoderRecipe:
    """How one mini autoencoder is built and trained."""

    kind: str
    """``kl`` (``AutoencoderKL``, SD's family) or ``vq`` (``VQModel`` with MoVQ's spatial norm)."""
    block_out_channels: tuple[int, ...] = (48, 96, 96)
    """Widths per resolution level; three levels give 4× downsampling (64 px → 16×16 latents)."""
    layers_per_block: int = 1
    latent_channels: int = 4
    """SD's latent width; with f=4 a 64 px crop becomes 4×16×16 (12× fewer numbers)."""
    num_vq_embeddings: int = 256
    """Codebook size of the VQ model (Kandinsky's MoVQ: 16384; small data needs far fewer)."""
    norm_num_groups: int = 16
    patch_size: int = 32
    """The autoencoders have no attention, so they train on random patches (4× cheaper than
    whole 64 px crops) and apply exactly the same at any size."""
    batch_size: int = 32
    steps: int = 3500
    lr: float = 1e-3
    kl_weight: float = 1e-6
    """SD's KL weight: a near-deterministic encoder with a slightly regularised latent."""
    eval_every: int = 250


@dataclass(frozen=True)
class UNetRecipe:
    """How one class-conditional latent UNet is built and trained (SD's objective and schedule)."""

    block_out_channels: tuple[int, ...] = (32, 64, 96)
    layers_per_block: int = 1
    cross_attention_dim: int = 64
    """Width of the prompt embedding the UNet cross-attends to (CLIP-L: 768)."""
    prompt_tokens: int = 4
    """Tokens per prompt embedding (CLIP: 77)."""
    attention_head_dim: int = 8
    batch_size: int = 64
    steps: int = 4000
    lr: float = 5e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    """The EMA weights are the ones sampled from and committed (as in SD and ADM)."""
    class_dropout: float = 0.1
    """Share of steps trained with the null prompt, for classifier-free guidance."""
    eval_every: int = 500
    premise_steps: tuple[int, ...] = (250, 500, 1000, 2000, 3000, 4000)
    """Checkpoints at which the premise (generated loss < held-out real loss at t=200) is measured."""
    premise_samples: int = 64
    premise_sampling_steps: int = 25


@dataclass(frozen=True)
class WorldRecipe:
    kl_ae: AutoencoderRecipe
    vq_ae: AutoencoderRecipe
    unet: UNetRecipe


RECIPES: dict[str, WorldRecipe] = {
    "mini": WorldRecipe(
        # 2000 steps (about 35 min on one thread) leave one session room for the UNets as well.
        kl_ae=AutoencoderRecipe(kind="kl", steps=2000),
        # MoVQ's spatial norm hard-codes 32 groups, so every VQ width is a multiple of 32.
        vq_ae=AutoencoderRecipe(kind="vq", block_out_channels=(32, 96, 96), steps=2000),
        # v2 (issue 14): 4x the parameters of v1's (32, 64, 96) UNet, whose premise probe flattened
        # at AUC 0.22 with 4000 annealed steps. 2000 steps (2.3 s/step on one thread,
        # bench/bench_world_unet.py) is what one session's core affords after the autoencoders.
        unet=UNetRecipe(block_out_channels=(64, 128, 192), cross_attention_dim=128, steps=2000, lr=3e-4,
                        premise_steps=(500, 1000, 1500, 2000), premise_samples=256),
    ),
    "smoke": WorldRecipe(
        kl_ae=AutoencoderRecipe(kind="kl", block_out_channels=(8, 16, 16), norm_num_groups=4,
                                patch_size=16, batch_size=8, steps=6, eval_every=3),
        vq_ae=AutoencoderRecipe(kind="vq", block_out_channels=(32, 32, 32), norm_num_groups=4,
                                num_vq_embeddings=32, patch_size=16, batch_size=8, steps=6, eval_every=3),
        unet=UNetRecipe(block_out_channels=(16, 32, 32), cross_attention_dim=16, attention_head_dim=4,
                        batch_size=8, steps=6, warmup_steps=2, eval_every=3, premise_steps=(3, 6),
                        premise_samples=4, premise_sampling_steps=3),
    ),
}


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator of the mini world: a trained LDM plus a sampler setting."""

    name: str
    ldm: str
    """Which LDM folder (``kl_ldm`` or ``vq_ldm``)."""
    steps: int
    """DDIM steps."""
    eta: float
    """DDIM eta (0 deterministic, 1 as stochastic as DDPM)."""
    guidance: float
    """Classifier-free guidance scale (1 = none)."""


def generator_specs(ddim_steps: int, guidance: float) -> list[GeneratorSpec]:
    """The three generators of cross-generator tests.

    ``kl_ldm`` and ``vq_ldm`` differ in their autoencoder (SD-like KL vs MoVQ-like VQ);
    ``kl_ldm_fast`` is the KL model with a different sampler (a fifth of the DDIM
    steps, at least 2 — 25 // 5 = 5 in mini; eta = 1, stochastic; no guidance): same decoder, different sample statistics, as SD samplers differ in the wild.
    """
    return [
        GeneratorSpec("kl_ldm", "kl_ldm", ddim_steps, 0.0, guidance),
        GeneratorSpec("vq_ldm", "vq_ldm", ddim_steps, 0.0, guidance),
        GeneratorSpec("kl_ldm_fast", "kl_ldm", max(2, ddim_steps // 5), 1.0, 1.0),
    ]


GENERATORS = ("kl_ldm", "vq_ldm", "kl_ldm_fast")


def step_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator determined by (seed, keys): a step's randomness survives resumption."""
    digest = hashlib.sha256(":".join(map(str, (seed, *keys))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
