"""The mini world's reference models: autoencoders and latent diffusion models trained here.

Causal structure, as in the papers' world but small enough for two CPU cores:

    real photo crops ──► KL autoencoder ──► latents ──► class-conditional latent UNet ──► DDIM samples
                    └──► VQ autoencoder ──► latents ──► a second latent UNet          ──► DDIM samples

Everything is built with diffusers' own classes (``AutoencoderKL``, ``VQModel``,
``UNet2DConditionModel``, ``DDPMScheduler``/``DDIMScheduler``) so the same LaRE, DIRE and
AEROBLADE code runs on these models and on Stable Diffusion.

Training is deterministic from the seed: each step's batch, noise and timesteps come from a
generator seeded by (seed, model, step), so a run killed and resumed from its last checkpoint
continues exactly as an uninterrupted one would. Training runs through :func:`main`
(``python -m lare2lib.world.recipes``), which is what ``RETRAIN=True`` in notebook 00 launches; the
results are committed under ``lare2lib/weights/mini`` (see :mod:`lare2lib.worldstore`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, VQModel
from safetensors.torch import load_file
from tqdm.auto import tqdm

from lare2lib.data.imagesets import ImageSet, atomic_save, to_model_range, to_uint8
from lare2lib.detectors.train import flatten_optimizer, restore_optimizer
from lare2lib.models.conditioning import ClassPromptEncoder
from lare2lib.models.loaders import encode_latents, sd_training_scheduler
from lare2lib.world.quality import psnr_db

__all__ = [
    "AutoencoderRecipe",
    "UNetRecipe",
    "WorldRecipe",
    "RECIPES",
    "GeneratorSpec",
    "GENERATORS",
    "sd_training_scheduler",
    "build_autoencoder",
    "train_autoencoder",
    "decode_latents",
    "reconstruct",
    "latent_scaling_factor",
    "build_unet",
    "train_unet",
    "sample_images",
    "single_step_loss",
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
        kl_ae=AutoencoderRecipe(kind="kl"),
        # MoVQ's spatial norm hard-codes 32 groups, so every VQ width is a multiple of 32.
        vq_ae=AutoencoderRecipe(kind="vq", block_out_channels=(32, 96, 96)),
        unet=UNetRecipe(),
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


# -- autoencoders -------------------------------------------------------------------------


def build_autoencoder(recipe: AutoencoderRecipe, sample_size: int) -> AutoencoderKL | VQModel:
    levels = len(recipe.block_out_channels)
    common = dict(
        in_channels=3, out_channels=3, latent_channels=recipe.latent_channels,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=recipe.block_out_channels, layers_per_block=recipe.layers_per_block,
        norm_num_groups=recipe.norm_num_groups, sample_size=sample_size, mid_block_add_attention=False,
    )
    if recipe.kind == "kl":
        return AutoencoderKL(**common)
    if recipe.kind == "vq":
        # MoVQ (Kandinsky) = VQGAN whose decoder norms are modulated by the quantised latent.
        return VQModel(**common, num_vq_embeddings=recipe.num_vq_embeddings,
                       vq_embed_dim=recipe.latent_channels, norm_type="spatial")
    raise ValueError(f"unknown autoencoder kind '{recipe.kind}'; valid: 'kl', 'vq'")


def decode_latents(ae: AutoencoderKL | VQModel, z: torch.Tensor) -> torch.Tensor:
    """Decode as the generator does: a VQ decoder *quantises* the latent first.

    (AEROBLADE decodes VQ latents with ``force_not_quantize=True`` instead; that is
    :func:`lare2lib.models.loaders.decode_latents`, used for reconstruction distances.)
    """
    return ae.decode(z).sample


def _random_patches(pixels: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``size``² patches (with random horizontal flips) in [-1, 1]."""
    n, _, h, w = pixels.shape
    index = torch.randint(0, n, (count,), generator=generator)
    top = torch.randint(0, h - size + 1, (count,), generator=generator)
    left = torch.randint(0, w - size + 1, (count,), generator=generator)
    flip = torch.rand(count, generator=generator) < 0.5
    patches = torch.stack([pixels[i, :, y:y + size, x:x + size] for i, y, x in zip(index, top, left)])
    patches = torch.where(flip[:, None, None, None], patches.flip(-1), patches)
    return to_model_range(patches)


def _cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _autoencoder_loss(ae, x: torch.Tensor, recipe: AutoencoderRecipe, generator: torch.Generator) -> torch.Tensor:
    if recipe.kind == "vq":
        reconstruction, commit_loss = ae(x, return_dict=False)
        return F.l1_loss(reconstruction, x) + F.mse_loss(reconstruction, x) + commit_loss.mean()
    posterior = ae.encode(x).latent_dist
    reconstruction = ae.decode(posterior.sample(generator=generator)).sample
    kl = posterior.kl().mean() / x[0].numel()
    return F.l1_loss(reconstruction, x) + F.mse_loss(reconstruction, x) + recipe.kl_weight * kl


def seeded_latents(ae, x: torch.Tensor, ids: list[str], seed: int, stream: str) -> torch.Tensor:
    """Unscaled latents of a batch; KL posterior noise drawn per image from (seed, stream, id).

    Batched encode, per-image randomness: the result does not depend on batch composition.
    VQ latents are deterministic (pre-quantisation).
    """
    if isinstance(ae, VQModel):
        return ae.encode(x).latents
    posterior = ae.encode(x).latent_dist
    noise = torch.stack([torch.randn(posterior.mean.shape[1:], generator=step_generator(seed, stream, i))
                         for i in ids])
    return posterior.mean + posterior.std * noise


@torch.no_grad()
def reconstruct(ae, pixels: torch.Tensor, seed: int, ids: list[str], batch_size: int = 64,
                progress: bool = False) -> torch.Tensor:
    """uint8 images → encode (posterior sample seeded per image id) → decode → uint8 (rounded)."""
    out = []
    for start in tqdm(range(0, len(pixels), batch_size), disable=not progress, desc="reconstruct"):
        x = to_model_range(pixels[start:start + batch_size])
        z = seeded_latents(ae, x, ids[start:start + batch_size], seed, "recon")
        out.append(to_uint8(decode_latents(ae, z)))
    return torch.cat(out)


def train_autoencoder(recipe: AutoencoderRecipe, train: ImageSet, val: ImageSet, workdir: Path,
                      seed: int, progress: bool = True) -> tuple[AutoencoderKL | VQModel, list[dict]]:
    """Train (or resume) one autoencoder; returns the model and its log of validation PSNR."""
    torch.manual_seed(seed)
    ae = build_autoencoder(recipe, train.pixels.shape[-1])
    optimizer = torch.optim.Adam(ae.parameters(), lr=recipe.lr)
    start, log = _resume(workdir, ae, optimizer)
    val_subset = val.subset(slice(0, 128))
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, disable=not progress,
               desc=f"{recipe.kind} autoencoder")
    for step in bar:
        generator = step_generator(seed, recipe.kind, "ae", step)
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, recipe.steps, recipe.lr, warmup=100)
        ae.train()
        x = _random_patches(train.pixels, recipe.batch_size, recipe.patch_size, generator)
        loss = _autoencoder_loss(ae, x, recipe, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % recipe.eval_every == 0 or step + 1 == recipe.steps:
            ae.eval()
            rec = reconstruct(ae, val_subset.pixels, seed, val_subset.ids)
            val_psnr = psnr_db(rec, val_subset.pixels).mean().item()
            log.append({"step": step + 1, "train_loss": loss.item(), "val_psnr_db": val_psnr,
                        "time": time.time()})
            bar.set_postfix(loss=f"{loss.item():.4f}", val_psnr=f"{val_psnr:.2f}")
            _checkpoint(workdir, ae, optimizer, step + 1, log)
    ae.eval().requires_grad_(False)
    return ae, log


@torch.no_grad()
def latent_scaling_factor(ae, pixels: torch.Tensor, batch_size: int = 128) -> float:
    """1 / std of the training latents, so the diffusion model sees unit-variance inputs.

    This is where SD's 0.18215 comes from (1 / std of its VAE's latents on its data).
    """
    latents = torch.cat([encode_latents(ae, to_model_range(pixels[i:i + batch_size]), sample=False)
                         for i in range(0, len(pixels), batch_size)])
    return float(1.0 / latents.std())


# -- training checkpoints (safetensors: model, optimizer, EMA, step, log) ------------------


def _checkpoint(workdir: Path, model: torch.nn.Module, optimizer, step: int, log: list[dict],
                extra: dict[str, torch.nn.Module] | None = None) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for prefix, module in (extra or {}).items():
        tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    tensors.update(flatten_optimizer(optimizer)[0])
    atomic_save(tensors, Path(workdir) / "checkpoint.safetensors",
                {"step": str(step), "log": json.dumps(log)})


def _resume(workdir: Path, model: torch.nn.Module, optimizer,
            extra: dict[str, torch.nn.Module] | None = None) -> tuple[int, list[dict]]:
    path = Path(workdir) / "checkpoint.safetensors"
    if not path.is_file():
        return 0, []
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for prefix, module in (extra or {}).items():
        n = len(prefix) + 1
        module.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
    restore_optimizer(optimizer, {k: v for k, v in tensors.items() if k.startswith("opt.")})
    return int(metadata["step"]), json.loads(metadata["log"])


# -- latent UNet --------------------------------------------------------------------------


def build_unet(recipe: UNetRecipe, latent_size: int, latent_channels: int) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
        block_out_channels=recipe.block_out_channels, layers_per_block=recipe.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(recipe.block_out_channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(recipe.block_out_channels) - 1) + ("UpBlock2D",),
        cross_attention_dim=recipe.cross_attention_dim, attention_head_dim=recipe.attention_head_dim,
        norm_num_groups=min(32, recipe.block_out_channels[0]),
    )


@dataclass
class _LatentTable:
    """Posterior statistics of every training crop and its mirror image (flip augmentation)."""

    mean: torch.Tensor
    std: torch.Tensor
    class_index: torch.Tensor

    def sample(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(self.mean[index].shape, generator=generator)
        return self.mean[index] + self.std[index] * noise


@torch.no_grad()
def _latent_table(ae, images: ImageSet, batch_size: int = 128) -> _LatentTable:
    means, stds = [], []
    for pixels in (images.pixels, images.pixels.flip(-1)):
        for start in range(0, len(pixels), batch_size):
            x = to_model_range(pixels[start:start + batch_size])
            if isinstance(ae, VQModel):
                z = ae.encode(x).latents
                means.append(z)
                stds.append(torch.zeros_like(z))
            else:
                posterior = ae.encode(x).latent_dist
                means.append(posterior.mean)
                stds.append(posterior.std)
    return _LatentTable(torch.cat(means), torch.cat(stds), images.class_index.repeat(2))


class _EMA:
    def __init__(self, modules: dict[str, torch.nn.Module], decay: float):
        import copy

        self.decay = decay
        self.shadow = {name: copy.deepcopy(m).eval().requires_grad_(False) for name, m in modules.items()}

    @torch.no_grad()
    def update(self, modules: dict[str, torch.nn.Module], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # warm-up: early averages forget faster
        for name, module in modules.items():
            for ema_p, p in zip(self.shadow[name].parameters(), module.parameters()):
                ema_p.lerp_(p, 1 - decay)


def train_unet(recipe: UNetRecipe, ae, scaling_factor: float, train: ImageSet, val: ImageSet,
               class_names: tuple[str, ...], workdir: Path, seed: int, name: str,
               progress: bool = True) -> tuple[UNet2DConditionModel, ClassPromptEncoder, list[dict]]:
    """Train (or resume) a class-conditional latent UNet with SD's objective.

    Returns the EMA UNet and prompt encoder plus a log holding, every ``eval_every`` steps, the
    held-out denoising loss and, at ``premise_steps``, the premise measurement (see
    :func:`premise_check`).
    """
    torch.manual_seed(seed)
    table = _latent_table(ae, train)
    latent_size, channels = table.mean.shape[-1], table.mean.shape[1]
    unet = build_unet(recipe, latent_size, channels)
    prompts = ClassPromptEncoder(class_names=tuple(class_names), dim=recipe.cross_attention_dim,
                                 seq_len=recipe.prompt_tokens)
    modules = {"unet": unet, "prompts": prompts}
    ema = _EMA(modules, recipe.ema_decay)
    scheduler = sd_training_scheduler()
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    start, log = _resume(workdir, unet, optimizer, extra={"prompts": prompts, "ema_unet": ema.shadow["unet"],
                                                          "ema_prompts": ema.shadow["prompts"]})
    val_table = _latent_table(ae, val.subset(slice(0, 256)))
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, disable=not progress, desc=name)
    for step in bar:
        generator = step_generator(seed, name, "unet", step)
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, recipe.steps, recipe.lr, recipe.warmup_steps)
        unet.train()
        loss = _denoising_loss(unet, prompts, scheduler, table, scaling_factor, recipe, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update(modules, step)
        done = step + 1
        if done % recipe.eval_every == 0 or done in recipe.premise_steps or done == recipe.steps:
            entry = {"step": done, "train_loss": loss.item(), "time": time.time(),
                     "val_loss": _heldout_loss(ema.shadow["unet"], ema.shadow["prompts"], scheduler,
                                               val_table, scaling_factor, seed)}
            if done in recipe.premise_steps or done == recipe.steps:
                entry["premise"] = premise_check(ae, ema.shadow["unet"], ema.shadow["prompts"], scaling_factor,
                                                 val, recipe, seed)
            log.append(entry)
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{entry['val_loss']:.4f}")
            _checkpoint(workdir, unet, optimizer, done, log,
                        extra={"prompts": prompts, "ema_unet": ema.shadow["unet"],
                               "ema_prompts": ema.shadow["prompts"]})
    return ema.shadow["unet"], ema.shadow["prompts"], log


def _denoising_loss(unet, prompts, scheduler, table: _LatentTable, scaling_factor: float,
                    recipe: UNetRecipe, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(0, len(table.mean), (recipe.batch_size,), generator=generator)
    z0 = table.sample(index, generator) * scaling_factor
    noise = torch.randn(z0.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(z0),), generator=generator)
    drop = torch.rand(len(z0), generator=generator) < recipe.class_dropout
    class_token = torch.where(drop, 0, table.class_index[index] + 1)  # 0 = null prompt
    prediction = unet(scheduler.add_noise(z0, noise, t), t, prompts(class_token)).sample
    return F.mse_loss(prediction, noise)


@torch.no_grad()
def _heldout_loss(unet, prompts, scheduler, table: _LatentTable, scaling_factor: float, seed: int) -> float:
    """Denoising loss on held-out crops with fixed noise and timesteps (comparable across steps)."""
    generator = step_generator(seed, "heldout")
    n = len(table.mean)
    z0 = table.sample(torch.arange(n), generator) * scaling_factor
    noise = torch.randn(z0.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator)
    prediction = unet(scheduler.add_noise(z0, noise, t), t, prompts(table.class_index + 1)).sample
    return F.mse_loss(prediction, noise).item()


# -- sampling and the premise -------------------------------------------------------------


@torch.no_grad()
def sample_images(ae, unet, prompts: ClassPromptEncoder, scaling_factor: float, class_index: torch.Tensor,
                  spec: GeneratorSpec, seed: int, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """DDIM samples decoded to uint8 ``(N, 3, H, W)``; sample k's noise depends on (seed, spec, k) only."""
    scheduler = DDIMScheduler.from_config(sd_training_scheduler().config)
    scheduler.set_timesteps(spec.steps)
    channels, size = unet.config.in_channels, unet.config.sample_size
    out = []
    for start in tqdm(range(0, len(class_index), batch_size), disable=not progress, desc=f"sample {spec.name}"):
        classes = class_index[start:start + batch_size]
        gens = [step_generator(seed, "sample", spec.name, start + i) for i in range(len(classes))]
        z = torch.stack([torch.randn((channels, size, size), generator=g) for g in gens])
        cond = prompts(classes + 1)
        uncond = prompts(torch.zeros_like(classes))
        for t in scheduler.timesteps:
            if spec.guidance != 1.0:
                eps_u, eps_c = unet(torch.cat([z, z]), t, torch.cat([uncond, cond])).sample.chunk(2)
                eps = eps_u + spec.guidance * (eps_c - eps_u)
            else:
                eps = unet(z, t, cond).sample
            noise = torch.stack([torch.randn((channels, size, size), generator=g) for g in gens]) if spec.eta else None
            z = scheduler.step(eps, t, z, eta=spec.eta, variance_noise=noise).prev_sample
        out.append(to_uint8(decode_latents(ae, z / scaling_factor)))
    return torch.cat(out)


@torch.no_grad()
def single_step_loss(ae, unet, prompts: ClassPromptEncoder, scaling_factor: float, pixels: torch.Tensor,
                     class_index: torch.Tensor, ids: list[str], timestep: int = 200, draws: int = 4,
                     seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Mean single-step noise-prediction error per image at ``timestep`` (LaRE's quantity, pooled).

    ``(N,)`` float: posterior sample (seeded by image id), K noise draws, squared error averaged
    over draws, channels and positions. Conditioning is the image's class prompt.
    """
    scheduler = sd_training_scheduler()
    losses = []
    for start in range(0, len(pixels), batch_size):
        x = to_model_range(pixels[start:start + batch_size])
        batch_ids = ids[start:start + batch_size]
        z0 = seeded_latents(ae, x, batch_ids, seed, "lare")
        gens = [step_generator(seed, "lare-noise", i) for i in batch_ids]
        z0 = z0 * scaling_factor
        eps = torch.stack([torch.randn((draws, *z0.shape[1:]), generator=g) for g in gens])  # (B,K,C,h,w)
        zk = z0[:, None].expand_as(eps).reshape(-1, *z0.shape[1:])
        t = torch.full((len(zk),), timestep, dtype=torch.long)
        cond = prompts(class_index[start:start + batch_size] + 1).repeat_interleave(draws, 0)
        pred = unet(scheduler.add_noise(zk, eps.reshape(zk.shape), t), t, cond).sample
        losses.append((pred.reshape(eps.shape) - eps).pow(2).mean(dim=(1, 2, 3, 4)))
    return torch.cat(losses)


def _auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    diff = positives[:, None] - negatives[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


@torch.no_grad()
def premise_check(ae, unet, prompts, scaling_factor: float, heldout: ImageSet, recipe: UNetRecipe,
                  seed: int, timestep: int = 200) -> dict:
    """Does the model assign its own samples a lower t=200 loss than held-out real crops?

    LaRE's premise. Returns the mean loss of each, the gap (real − generated; positive = the
    premise holds) and the AUC of "lower loss ⇒ generated".
    """
    n = min(recipe.premise_samples, len(heldout))
    reals = heldout.subset(torch.randperm(len(heldout), generator=step_generator(seed, "premise"))[:n])
    spec = GeneratorSpec("premise", "", recipe.premise_sampling_steps, 0.0, 2.0)
    fake_pixels = sample_images(ae, unet, prompts, scaling_factor, reals.class_index, spec, seed)
    fake_ids = [f"premise/{k}" for k in range(n)]
    real_loss = single_step_loss(ae, unet, prompts, scaling_factor, reals.pixels, reals.class_index,
                                 reals.ids, timestep, seed=seed).numpy()
    fake_loss = single_step_loss(ae, unet, prompts, scaling_factor, fake_pixels, reals.class_index,
                                 fake_ids, timestep, seed=seed).numpy()
    return {"real_loss": float(real_loss.mean()), "generated_loss": float(fake_loss.mean()),
            "gap": float(real_loss.mean() - fake_loss.mean()), "auc": _auc(-real_loss, -fake_loss)}
