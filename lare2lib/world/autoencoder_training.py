"""Training the mini world's autoencoders (KL and VQ) and the helpers that use them.

Deterministic from the seed: each step's patches and noise come from
:func:`lare2lib.world.recipes.step_generator`, so a killed run resumes exactly.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, VQModel
from tqdm.auto import tqdm

from lare2lib.data.imagesets import ImageSet, to_model_range, to_uint8
from lare2lib.models.autoencoders import encode_latents
from lare2lib.world.quality import psnr_db
from lare2lib.world.recipes import AutoencoderRecipe, step_generator
from lare2lib.world.training_state import cosine_lr, resume_checkpoint, save_checkpoint

__all__ = [
    "build_autoencoder",
    "decode_latents",
    "seeded_latents",
    "reconstruct",
    "train_autoencoder",
    "latent_scaling_factor",
]


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
    :func:`lare2lib.models.autoencoders.decode_latents`, used for reconstruction distances.)
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
                         for i in ids])  # drawn on the CPU: the same numbers on every device
    return posterior.mean + posterior.std * noise.to(posterior.mean.device, posterior.mean.dtype)


@torch.no_grad()
def reconstruct(ae, pixels: torch.Tensor, seed: int, ids: list[str], batch_size: int = 64,
                progress: bool = False) -> torch.Tensor:
    """uint8 images → encode (posterior sample seeded per image id) → decode → uint8 (rounded),
    on the autoencoder's device and dtype; the result is on the CPU."""
    weight = next(ae.parameters())
    out = []
    for start in tqdm(range(0, len(pixels), batch_size), disable=not progress, desc="reconstruct"):
        x = to_model_range(pixels[start:start + batch_size]).to(weight.device, weight.dtype)
        z = seeded_latents(ae, x, ids[start:start + batch_size], seed, "recon")
        out.append(to_uint8(decode_latents(ae, z).float()).cpu())
    return torch.cat(out)


def train_autoencoder(recipe: AutoencoderRecipe, train: ImageSet, val: ImageSet, workdir: Path,
                      seed: int, progress: bool = True) -> tuple[AutoencoderKL | VQModel, list[dict]]:
    """Train (or resume) one autoencoder; returns the model and its log of validation PSNR."""
    torch.manual_seed(seed)
    ae = build_autoencoder(recipe, train.pixels.shape[-1])
    optimizer = torch.optim.Adam(ae.parameters(), lr=recipe.lr)
    start, log = resume_checkpoint(workdir, ae, optimizer)
    val_subset = val.subset(slice(0, 128))
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, disable=not progress,
               desc=f"{recipe.kind} autoencoder")
    for step in bar:
        generator = step_generator(seed, recipe.kind, "ae", step)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, recipe.steps, recipe.lr, warmup=100)
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
            save_checkpoint(workdir, ae, optimizer, step + 1, log)
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
