"""DIRE-style baseline on the LaRE reference model: invert with DDIM, reconstruct, compare.

DIRE (METHODS.md §5) runs a pixel-space ADM: 20 DDIM inversion steps take the image to noise,
20 DDIM sampling steps bring it back, and the feature is ``|x - x̂|``: 40 network passes per
image against LaRE's single (batched) pass. To compare their *cost* and their signal on the
same model, this module runs the same recipe in the latent space of the LaRE LDM::

    z0  = encode(x) * scaling_factor        (same posterior sample as LaRE for the same seed)
    z_T = DDIM-inverse(z0)                  ``steps`` UNet passes, t: 0 → T
    ẑ0  = DDIM(z_T)                         ``steps`` UNet passes, t: T → 0 (eta = 0)
    space="pixel":  |x - decode(ẑ0)| in [0, 1] pixel units, (3, S, S)
    space="latent": |z0 - ẑ0| in scaled latent units, (C, S/f, S/f)

Both directions use the LDM's own noise schedule, with the release's step alignment by default
(:data:`DIRE_TIMINGS`: guided-diffusion's ``ddim_reverse_sample``; diffusers' inverse scheduler
behind ``timing="diffusers"``), conditioned on the same prompt embeddings as LaRE, with
``clip_sample`` off by default: clipping ``x0`` to [-1, 1] is right for ADM's pixels (the
release's ``clip_denoised=True``) but truncates latents. It is passed to ``from_config`` as a
keyword, not written into the config dict: diffusers drops config keys listed in
``_use_default_values`` (a key that was only a default when the config was saved), so a dict
edit of ``clip_sample`` is silently ignored on a default config and the class default (``True``)
comes back. In pixel mode ``x̂`` also carries the autoencoder's own reconstruction error
(the decoder never reproduces ``x`` exactly): that is part of what a DIRE on an LDM measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lare2lib.core.profiles import LareConfig
from lare2lib.core.rng import POSTERIOR_STREAM, randn_per_image
from lare2lib.signals.lare import (
    RESIZE_POLICIES,
    PromptEmbedder,
    check_batch,
    check_precision,
    model_device_dtype,
    latent_shape,
    scaled_latents,
)

__all__ = ["DIRE_SPACES", "DIRE_TIMINGS", "DireExtractor", "respaced_timesteps"]

DIRE_SPACES = ("pixel", "latent")

DIRE_TIMINGS = ("guided_diffusion", "diffusers")
"""Which noise level each DDIM step moves between.

``guided_diffusion`` (the released DIRE: ``ddim_reverse_sample_loop`` then ``ddim_sample_loop``
on the ``ddimN`` respacing): timesteps ``0, s, 2s, …`` (stride s = T / N); inversion step i
predicts ε at ``t_i`` and moves from ᾱ(t_i) to ᾱ(t_{i+1}), the last one to ᾱ = 0; sampling
step i moves from ᾱ(t_i) to ᾱ(t_{i-1}), the last to ᾱ = 1; x̂0 is clipped first when
``clip_sample`` and ε re-derived from it. ``diffusers``: ``DDIMInverseScheduler`` (step at t
goes from ᾱ(t − s) to ᾱ(t), starting at ᾱ = 1) then ``DDIMScheduler``, one step later."""


def respaced_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """guided-diffusion's ``space_timesteps(T, "ddim<steps>")``: the stride giving exactly
    ``steps`` timesteps ``range(0, T, stride)``."""
    for stride in range(1, num_train_timesteps):
        if len(range(0, num_train_timesteps, stride)) == steps:
            return list(range(0, num_train_timesteps, stride))
    raise ValueError(f"cannot respace {num_train_timesteps} timesteps into exactly {steps} DDIM steps")


class DireExtractor:
    """DDIM inversion + reconstruction error maps, batched and seeded per image.

    Args:
        components: The same duck-typed LDM as :class:`lare2lib.signals.lare.LareExtractor`.
        config: Only ``image_size`` is used (timestep and ensemble are LaRE's).
        seed: Root seed of the posterior sample (the only randomness: DDIM with eta = 0 is
            deterministic).
        steps: DDIM steps each way (DIRE: 20), so ``network_passes = 2 * steps``.
        space: ``"pixel"`` (decode, as DIRE) or ``"latent"`` (skip the decoder).
        clip_sample: Clip each step's predicted ``x0`` to [-1, 1] (ADM's pixel-space DIRE does;
            off for latents, whose range is wider).
        resize: How callers bring images to ``image_size`` (:data:`~lare2lib.signals.lare.RESIZE_POLICIES`):
            ``center_crop`` (default, the released DIRE: short side, then the centre square) or
            ``squash`` (as LaRE).
        timing: :data:`DIRE_TIMINGS`: ``guided_diffusion`` (default, the release's step
            alignment) or ``diffusers`` (diffusers' inverse scheduler, one step later).
    """

    method = "dire"

    def __init__(self, components, config: LareConfig = LareConfig(), *, seed: int = 0,
                 steps: int = 20, space: str = "pixel", clip_sample: bool = False,
                 resize: str = "center_crop", timing: str = "guided_diffusion"):
        from diffusers import DDIMInverseScheduler, DDIMScheduler

        if space not in DIRE_SPACES:
            raise ValueError(f"unknown DIRE space {space!r}; valid: {list(DIRE_SPACES)}")
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"unknown resize policy {resize!r}; valid: {list(RESIZE_POLICIES)}")
        if timing not in DIRE_TIMINGS:
            raise ValueError(f"unknown DIRE timing {timing!r}; valid: {list(DIRE_TIMINGS)}")
        self.resize, self.timing = resize, timing
        self.file_decoding = {"exif": config.exif_orientation, "alpha": config.alpha}  # how callers read files
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.components = components
        self.image_size = config.image_size
        self.article = config.article  # how callers write this extractor's class prompts
        self.seed = seed
        self.steps = steps
        self.space = space
        self.device, self.dtype = model_device_dtype(components.unet)
        check_precision(self.device, self.dtype)
        self.clip_sample = clip_sample
        config = components.scheduler.config
        self.sampler = DDIMScheduler.from_config(config, clip_sample=clip_sample)
        self.inverter = DDIMInverseScheduler.from_config(config, clip_sample=clip_sample)
        if timing == "guided_diffusion" and self.sampler.config.prediction_type != "epsilon":
            raise ValueError(f"timing='guided_diffusion' needs an ε-prediction UNet, this one predicts "
                             f"{self.sampler.config.prediction_type!r}; use timing='diffusers'")
        self.embed = PromptEmbedder(components.encode_prompts)
        self.unet_calls = 0

    @property
    def network_passes(self) -> int:
        """UNet passes per image: ``steps`` to invert plus ``steps`` to reconstruct."""
        return 2 * self.steps

    def feature_shape(self) -> tuple[int, ...]:
        if self.space == "pixel":
            return (3, self.image_size, self.image_size)
        return latent_shape(self.components.vae, self.image_size)

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "steps": self.steps,
                "space": self.space, "clip_sample": self.clip_sample, "resize": self.resize,
                "timing": self.timing,
                **self.file_decoding, "dtype": str(self.dtype).removeprefix("torch."),
                "image_size": self.image_size}

    def _denoise(self, scheduler, latents: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        scheduler.set_timesteps(self.steps, device=self.device)
        for t in scheduler.timesteps:
            latents = scheduler.step(self._eps(latents, t, embeddings), t, latents).prev_sample
        return latents

    def _eps(self, latents: torch.Tensor, t: int, embeddings: torch.Tensor) -> torch.Tensor:
        self.unet_calls += 1
        timestep = torch.as_tensor(t, device=self.device)
        return self.components.unet(latents.to(self.dtype), timestep,
                                    encoder_hidden_states=embeddings).sample.float()

    def _guided_diffusion_step(self, x: torch.Tensor, eps: torch.Tensor, alpha: float,
                               alpha_to: float) -> torch.Tensor:
        """One DDIM move (η = 0) from ᾱ = ``alpha`` to ``alpha_to``, x̂0 clipped first if asked."""
        x0 = (x - (1 - alpha) ** 0.5 * eps) / alpha ** 0.5
        if self.clip_sample:
            x0 = x0.clamp(-1, 1)
            eps = (x - alpha ** 0.5 * x0) / (1 - alpha) ** 0.5
        return alpha_to ** 0.5 * x0 + (1 - alpha_to) ** 0.5 * eps

    def _guided_diffusion_round_trip(self, z0: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        times = respaced_timesteps(self.sampler.config.num_train_timesteps, self.steps)
        alphas = [float(self.sampler.alphas_cumprod[t]) for t in times]
        following, preceding = alphas[1:] + [0.0], [1.0] + alphas[:-1]
        x = z0.float()
        for i, t in enumerate(times):  # invert: ᾱ(t_i) → ᾱ(t_{i+1})
            x = self._guided_diffusion_step(x, self._eps(x, t, embeddings), alphas[i], following[i])
        for i in reversed(range(len(times))):  # sample: ᾱ(t_i) → ᾱ(t_{i-1})
            x = self._guided_diffusion_step(x, self._eps(x, times[i], embeddings), alphas[i], preceding[i])
        return x

    def reconstruct(self, z0: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """``z0`` → DDIM-inverted noise → DDIM reconstruction ``ẑ0`` (float32), with the
        extractor's :data:`DIRE_TIMINGS` alignment."""
        if self.timing == "guided_diffusion":
            return self._guided_diffusion_round_trip(z0, embeddings)
        noise = self._denoise(self.inverter, z0, embeddings)
        return self._denoise(self.sampler, noise, embeddings)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → pixels in [-1, 1] (VQ latents are quantised by the decoder)."""
        vae = self.components.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        unscaled = latents / self.components.scaling_factor + shift
        return vae.decode(unscaled.to(self.dtype)).sample.float().clamp(-1, 1)

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor, image_ids: Sequence[str],
                 prompts: Sequence[str]) -> torch.Tensor:
        """``(B, 3, S, S)`` pixels in [-1, 1] → ``(B, *feature_shape)`` float32 |error|."""
        check_batch(pixels, image_ids, prompts, self.image_size)
        vae = self.components.vae
        # the same posterior sample as LaRE's for this seed (unused by VQ autoencoders)
        noise = randn_per_image(latent_shape(vae, self.image_size), self.seed, image_ids,
                                POSTERIOR_STREAM, device=self.device)
        pixels = pixels.to(self.device, torch.float32)
        z0 = scaled_latents(vae, pixels.to(self.dtype), self.components.scaling_factor, noise)
        embeddings = self.embed(prompts, self.device, self.dtype)
        z_hat = self.reconstruct(z0, embeddings)
        if self.space == "latent":
            return (z0 - z_hat).abs()
        return (pixels - self.decode(z_hat)).abs() / 2  # [-1, 1] → [0, 1] units
