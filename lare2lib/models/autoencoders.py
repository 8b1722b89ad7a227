"""Autoencoders of every family (KL, VQ, TAEF2): loading, and encoding/decoding latents."""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from torch import nn

from lare2lib.models.devices import freeze, place, resolve_device, resolve_dtype
from lare2lib.models.hub import ConfigLoader, from_pretrained, model_not_available
from lare2lib.models.mini_manifest import check_mini_exists, verify_mini_manifest
from lare2lib.models.refs import ModelRef, parse_ref

__all__ = ["AutoencoderKind", "load_autoencoder", "autoencoder_class", "is_vq", "is_taef2",
           "encode_latents", "decode_latents"]

AutoencoderKind = Literal["auto", "kl", "vq", "taef2"]


def load_autoencoder(
    ref: str | os.PathLike[str],
    kind: AutoencoderKind = "auto",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
) -> nn.Module:
    """An inference-ready autoencoder: ``AutoencoderKL``, ``VQModel`` or :class:`~lare2lib.models.taef2.TAEF2`.

    ``kind="auto"`` reads the class from the folder's ``config.json`` (``_class_name``), so
    ``kandinsky-community/kandinsky-2-1:movq`` (a ``VQModel`` with spatial norm) needs no hint;
    a folder holding ``taef2_encoder.pth`` is TAEF2. A pipeline folder without a subfolder
    resolves to its ``vae/``.
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    parsed = parse_ref(ref)
    if parsed.kind == "mini":
        check_mini_exists(parsed, "autoencoder")
        verify_mini_manifest([parsed.path])
    if kind == "taef2" or (parsed.kind != "hub" and (parsed.path / "taef2_encoder.pth").is_file()):
        from lare2lib.models.taef2 import TAEF2

        if parsed.kind == "hub":
            raise model_not_available(parsed, "autoencoder", "TAEF2 loads from a local folder only")
        return freeze(place(TAEF2.from_folder(parsed.path), device, dtype))
    subfolder = _vae_subfolder(parsed)
    cls = autoencoder_class(parsed, kind, subfolder)
    return freeze(place(from_pretrained(cls, parsed, "autoencoder", subfolder), device, dtype))


def _vae_subfolder(ref: ModelRef) -> str | None:
    if ref.kind == "hub":
        return None
    return "vae" if (ref.path / "model_index.json").is_file() else None


def autoencoder_class(
    ref: ModelRef, kind: AutoencoderKind, subfolder: str | None, role: str = "autoencoder"
) -> Any:
    from diffusers import AutoencoderKL, VQModel

    classes = {"kl": AutoencoderKL, "vq": VQModel}
    if kind != "auto":
        if kind not in classes:
            raise ValueError(f"unknown autoencoder kind {kind!r}; valid: auto, kl, vq, taef2")
        return classes[kind]
    config = from_pretrained(ConfigLoader(AutoencoderKL), ref, role, subfolder)
    name = config.get("_class_name", "AutoencoderKL")
    by_name = {"AutoencoderKL": AutoencoderKL, "VQModel": VQModel}
    if name not in by_name:
        raise ValueError(f"{ref.text!r} holds a {name}; load_autoencoder handles {sorted(by_name)}")
    return by_name[name]


def is_vq(vae: nn.Module) -> bool:
    """Is ``vae`` a diffusers ``VQModel`` (quantised latents) rather than a KL autoencoder?"""
    from diffusers import VQModel

    return isinstance(vae, VQModel)


def is_taef2(vae: nn.Module) -> bool:
    """Is ``vae`` the tiny FLUX.2 autoencoder (TAEF2: deterministic encoder, no scaling factor)?"""
    from lare2lib.models.taef2 import TAEF2

    return isinstance(vae, TAEF2)


def encode_latents(
    vae: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
) -> torch.Tensor:
    """Images in [-1, 1], ``(B, 3, H, W)`` → unscaled latents ``(B, C, H/f, W/f)``.

    * ``AutoencoderKL``: a posterior sample (``sample=True``, as LaRE and AEROBLADE do) drawn
      with ``generator``, else the posterior mean.
    * ``VQModel``: ``vae.encode(x).latents`` is the *pre-quantisation* latent (a VQ model has
      no ``latent_dist``); AEROBLADE decodes it with ``force_not_quantize=True``.
    * TAEF2: deterministic; its own [0, 1] convention is handled here.

    The latent scaling factor is *not* applied: LaRE multiplies by ``scaling_factor`` before
    noising, AEROBLADE reconstructs without it.
    """
    if is_taef2(vae):
        return vae.encode((x + 1) / 2)
    encoded = vae.encode(x)
    if is_vq(vae):
        return encoded.latents
    posterior = encoded.latent_dist
    return posterior.sample(generator=generator) if sample else posterior.mode()


def decode_latents(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Unscaled latents → images in about [-1, 1] (not clamped); VQ skips quantisation."""
    if is_taef2(vae):
        return vae.decode(z) * 2 - 1
    if is_vq(vae):
        return vae.decode(z, force_not_quantize=True).sample
    return vae.decode(z).sample
