"""A latent diffusion model's parts (VAE, UNet, conditioning, scheduler), from SD or the mini world."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lare2lib.models.autoencoders import autoencoder_class, load_autoencoder
from lare2lib.models.devices import freeze, place, resolve_device, resolve_dtype
from lare2lib.models.hub import from_pretrained, model_not_available
from lare2lib.models.mini_manifest import check_mini_exists, verify_mini_manifest
from lare2lib.models.refs import ModelRef, parse_ref
from lare2lib.models.schedulers import load_scheduler

__all__ = ["LDMComponents", "load_ldm"]


@dataclass
class LDMComponents:
    """What LaRE needs from a latent diffusion model, whichever world it comes from.

    Stable Diffusion (diffusers pipeline layout) fills ``text_encoder`` and ``tokenizer``; the
    mini world fills ``prompt_encoder`` (:class:`~lare2lib.models.conditioning.ClassPromptEncoder`).
    :meth:`encode_prompts` hides the difference.
    """

    name: str
    """The reference the components were loaded from."""
    vae: nn.Module
    """``AutoencoderKL`` or ``VQModel`` (see :func:`encode_latents` for the difference)."""
    unet: nn.Module
    """``UNet2DConditionModel`` predicting epsilon."""
    scheduler: Any
    """``DDPMScheduler`` with the training noise schedule (only ``add_noise``/``alphas_cumprod`` matter)."""
    text_encoder: nn.Module | None = None
    """SD: ``CLIPTextModel``; its ``last_hidden_state`` conditions the UNet."""
    tokenizer: Any = None
    """SD: ``CLIPTokenizer``."""
    prompt_encoder: nn.Module | None = None
    """Mini world: learned class-prompt embeddings."""
    class_names: tuple[str, ...] = field(default=())
    """Classes the mini UNet knows (empty for SD, which takes free text)."""

    # -- model facts ---------------------------------------------------------------------
    @property
    def scaling_factor(self) -> float:
        """Multiplier from VAE latents to the unit-variance latents the UNet was trained on.

        Rombach et al. scale the first-stage latents by ``1/std`` measured on a training batch
        so that diffusion runs at unit variance; for SD1.x's VAE that is 0.18215 (SD2.x the
        same, SDXL 0.13025). It is stored in ``vae.config.scaling_factor``.
        """
        return float(self.vae.config.scaling_factor)

    @property
    def vae_scale_factor(self) -> int:
        """Pixel-to-latent downsampling: one ×2 per encoder block but the last (SD: 8)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def sample_size(self) -> int:
        """Pixel side the UNet was trained at (its latent ``sample_size`` × the VAE factor; SD1.5: 512)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- conditioning --------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts → ``encoder_hidden_states`` ``(B, L, D)`` on the UNet's device and dtype.

        Each distinct prompt is encoded once (LaRE's batches repeat a handful of class prompts).
        SD: CLIP tokens padded to ``tokenizer.model_max_length`` (77) as the SD pipeline does,
        ``last_hidden_state`` of the text encoder.
        """
        unique = list(dict.fromkeys(prompts))
        if self.prompt_encoder is not None:
            states = self.prompt_encoder.encode_prompts(unique)
        elif self.text_encoder is not None and self.tokenizer is not None:
            states = self._encode_clip(unique)
        else:
            raise RuntimeError(f"{self.name}: no text encoder or prompt encoder was loaded")
        index = torch.tensor([unique.index(p) for p in prompts], device=states.device)
        return states[index].to(self.device, self.dtype)

    def _encode_clip(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        input_ids = tokens.input_ids.to(self.text_encoder.device)
        return self.text_encoder(input_ids).last_hidden_state

    # -- placement -----------------------------------------------------------------------
    def modules(self) -> Iterator[nn.Module]:
        for module in (self.vae, self.unet, self.text_encoder, self.prompt_encoder):
            if module is not None:
                yield module

    def to(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
    ) -> "LDMComponents":
        """Move every module (in place) and return self; half precision is refused on CPU."""
        device = resolve_device(device) if device is not None else self.device
        dtype = resolve_dtype(dtype, device) if dtype is not None else None
        for module in self.modules():
            place(module, device, dtype)
        return self

    def eval(self) -> "LDMComponents":
        """Eval mode and frozen parameters for every module (loaders already do this)."""
        for module in self.modules():
            freeze(module)
        return self


def load_ldm(
    ref: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
) -> LDMComponents:
    """VAE, UNet, conditioning and DDPM scheduler of an LDM, inference-ready.

    ``ref`` is a diffusers pipeline folder or hub id (Stable Diffusion: ``vae/ unet/
    text_encoder/ tokenizer/ scheduler/ model_index.json``) or a mini-world folder
    (``ldm.json`` naming its parts; ``mini:kl_ldm``).
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    parsed = parse_ref(ref)
    if parsed.kind == "mini":
        check_mini_exists(parsed, "ldm")
    if parsed.kind != "hub" and (parsed.path / "ldm.json").is_file():
        components = _load_mini_ldm(parsed)
    else:
        components = _load_sd_ldm(parsed)
    return components.to(device, dtype).eval()


def _load_sd_ldm(ref: ModelRef) -> LDMComponents:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if ref.kind == "local" and not (ref.path / "model_index.json").is_file():
        raise model_not_available(
            ref,
            "ldm",
            "neither model_index.json (diffusers pipeline) nor ldm.json (mini world) found",
        )
    vae_class = autoencoder_class(ref, "auto", "vae", role="ldm")
    return LDMComponents(
        name=ref.text,
        vae=from_pretrained(vae_class, ref, "ldm", "vae"),
        unet=from_pretrained(UNet2DConditionModel, ref, "ldm", "unet"),
        scheduler=load_scheduler(ref.text, "scheduler"),
        text_encoder=from_pretrained(CLIPTextModel, ref, "ldm", "text_encoder"),
        tokenizer=from_pretrained(CLIPTokenizer, ref, "ldm", "tokenizer"),
    )


def _load_mini_ldm(ref: ModelRef) -> LDMComponents:
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from lare2lib.models.conditioning import ClassPromptEncoder

    folder = ref.path
    parts = json.loads((folder / "ldm.json").read_text())
    missing = {"vae", "unet", "prompt_encoder", "scheduler"} - set(parts)
    if missing:
        raise ValueError(
            f"{folder / 'ldm.json'} lacks {sorted(missing)}; it must name vae, unet, prompt_encoder, scheduler"
        )
    part_dirs = {role: (folder / rel).resolve() for role, rel in parts.items()}
    verify_mini_manifest(list(part_dirs.values()))
    vae = load_autoencoder(part_dirs["vae"])
    prompt_encoder = ClassPromptEncoder.from_pretrained(str(part_dirs["prompt_encoder"]))
    return LDMComponents(
        name=ref.text,
        vae=vae,
        unet=UNet2DConditionModel.from_pretrained(str(part_dirs["unet"]), torch_dtype=torch.float32),
        scheduler=DDPMScheduler.from_pretrained(str(part_dirs["scheduler"])),
        prompt_encoder=prompt_encoder,
        class_names=prompt_encoder.class_names,
    )
