"""Training the mini world's class-conditional latent UNets (EMA weights, held-out loss).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel, VQModel
from tqdm.auto import tqdm

from lare2lib.data.imagesets import ImageSet, to_model_range
from lare2lib.models.conditioning import ClassPromptEncoder
from lare2lib.models.schedulers import sd_training_scheduler
from lare2lib.world.quality import KIDReference
from lare2lib.world.recipes import UNetRecipe, step_generator
from lare2lib.world.sampling import premise_check
from lare2lib.world.training_state import cosine_lr, resume_checkpoint, save_checkpoint

__all__ = [
    "build_unet",
    "train_unet",
]


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
    held-out denoising loss and the training compute so far (``step_seconds``, summed over
    resumed runs), and at ``premise_steps`` the premise and the KID of the same samples (see
    :func:`premise_check`): fit and realism against compute.
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
    start, log = resume_checkpoint(workdir, unet, optimizer, extra={"prompts": prompts, "ema_unet": ema.shadow["unet"],
                                                          "ema_prompts": ema.shadow["prompts"]})
    val_table = _latent_table(ae, val.subset(slice(0, 256)))
    realism = _realism_reference(train, val, seed)
    # Training compute so far, summed over resumed runs; evaluation time is left out.
    step_seconds = log[-1].get("step_seconds", 0.0) if log else 0.0
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, disable=not progress, desc=name)
    for step in bar:
        step_started = time.perf_counter()
        generator = step_generator(seed, name, "unet", step)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, recipe.steps, recipe.lr, recipe.warmup_steps)
        unet.train()
        loss = _denoising_loss(unet, prompts, scheduler, table, scaling_factor, recipe, generator)
        apply_gradients(loss, optimizer, params)
        ema.update(modules, step)
        step_seconds += time.perf_counter() - step_started
        done = step + 1
        if done % recipe.eval_every == 0 or done in recipe.premise_steps or done == recipe.steps:
            entry = {"step": done, "train_loss": loss.item(), "time": time.time(), "step_seconds": step_seconds,
                     "val_loss": _heldout_loss(ema.shadow["unet"], ema.shadow["prompts"], scheduler,
                                               val_table, scaling_factor, seed)}
            if done in recipe.premise_steps or done == recipe.steps:
                entry["premise"] = premise_check(ae, ema.shadow["unet"], ema.shadow["prompts"], scaling_factor,
                                                 val, recipe, seed, realism=realism)
            log.append(entry)
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{entry['val_loss']:.4f}")
            save_checkpoint(workdir, unet, optimizer, done, log,
                        extra={"prompts": prompts, "ema_unet": ema.shadow["unet"],
                               "ema_prompts": ema.shadow["prompts"]})
    return ema.shadow["unet"], ema.shadow["prompts"], log


def apply_gradients(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list, max_norm: float = 1.0) -> None:
    """One optimiser update from ``loss``: backward, gradient-norm clip at ``max_norm``, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()


def _realism_reference(train: ImageSet, val: ImageSet, seed: int, floor_size: int = 1024) -> KIDReference:
    """KID against the held-out crops; the floor is a fixed subset of training crops (other photos)."""
    floor = torch.randperm(len(train), generator=step_generator(seed, "kid-floor"))[:floor_size]
    return KIDReference(val.pixels, train.pixels[floor], seed=seed)


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
