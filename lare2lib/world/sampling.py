"""Sampling the mini world's LDMs, the single-step LaRE loss and the premise probe.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from lare2lib.data.imagesets import ImageSet, to_model_range, to_uint8
from lare2lib.eval.metrics import auc_interval
from lare2lib.models.conditioning import ClassPromptEncoder
from lare2lib.models.schedulers import sd_training_scheduler
from lare2lib.world.recipes import GeneratorSpec, UNetRecipe, step_generator
from lare2lib.world.autoencoder_training import decode_latents, seeded_latents

__all__ = [
    "sample_images",
    "single_step_loss",
    "premise_check",
]


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


@torch.no_grad()
def premise_check(ae, unet, prompts, scaling_factor: float, heldout: ImageSet, recipe: UNetRecipe,
                  seed: int, timestep: int = 200, realism=None) -> dict:
    """Does the model assign its own samples a lower t=200 loss than held-out real crops?

    LaRE's premise. Returns the mean loss of each, the gap (real − generated; positive = the
    premise holds) and the AUC of "lower loss ⇒ generated" with its 95 % bootstrap interval
    (``auc_low``, ``auc_high``). ``realism`` (a :class:`lare2lib.world.quality.KIDReference`)
    adds the KID of the same samples and its real floor, so fit and realism are logged together.
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
    auc = auc_interval(-real_loss, -fake_loss, seed=seed)
    out = {"real_loss": float(real_loss.mean()), "generated_loss": float(fake_loss.mean()),
           "gap": float(real_loss.mean() - fake_loss.mean()), "auc": auc["auc"],
           "auc_low": auc["low"], "auc_high": auc["high"], "samples": n}
    return out | (realism(fake_pixels) if realism is not None else {})
