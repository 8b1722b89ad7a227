"""The world's committed weights: where they live, their hash check, and loading them.

Committed (``lare2lib/weights/<recipe>/``, small, hash-checked)::

    manifest.json                 files → sha256, recipes, seed, steps, data hash, quality, logs
    kl_ae/  vq_ae/                diffusers ``save_pretrained`` folders (safetensors)
    kl_ldm/ vq_ldm/               ldm.json + unet/ + prompt_encoder/ + scheduler/

Smoke-test weights live in the git-ignored data folder instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, VQModel

from lare2lib.core import paths
from lare2lib.models.conditioning import ClassPromptEncoder
from lare2lib.models.autoencoders import load_autoencoder as load_any_autoencoder
from lare2lib.models.devices import freeze

__all__ = ["AE_NAMES", "LDM_AE", "cross_family_autoencoder", "WeightsError", "weights_root", "verify_weights", "record_quality",
           "load_autoencoder", "load_ldm_parts", "world_ldm", "sha256_file"]

AE_NAMES = {"kl_ae": "kl_ae", "vq_ae": "vq_ae"}
"""The world's autoencoders (name → weights folder)."""
LDM_AE = {"kl_ldm": "kl_ae", "vq_ldm": "vq_ae"}
"""The world's latent diffusion models → the autoencoder each one's UNet was trained in."""


def cross_family_autoencoder(generator_autoencoder: str) -> str:
    """The world autoencoder of the *other* family: ``kl_ae`` → ``vq_ae`` and back."""
    other = {"kl_ae": "vq_ae", "vq_ae": "kl_ae"}
    if generator_autoencoder not in other:
        raise ValueError(f"no cross-family autoencoder for {generator_autoencoder!r}; "
                         f"valid: {sorted(other)}")
    return other[generator_autoencoder]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_root(recipe: str) -> Path:
    """Committed weights for ``mini``; smoke-test weights live in the (git-ignored) data folder."""
    if recipe == "mini":
        return paths.weights_dir() / "mini"
    return paths.data_dir() / "weights" / recipe


def record_quality(recipe: str, quality: dict) -> None:
    """Store measured quality numbers in the manifest (not hashed: the weights do not change)."""
    path = weights_root(recipe) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["quality"] = quality
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class WeightsError(RuntimeError):
    """Committed mini weights missing or not matching their manifest."""


def verify_weights(recipe: str = "mini") -> dict:
    """Check every committed file against the manifest's sha256; return the manifest."""
    root = weights_root(recipe)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise WeightsError(f"no mini-world weights at {root}: run notebook 00 with RETRAIN=True "
                           f"(or `lare2 run 00 -p RETRAIN=True`) to train them")
    manifest = json.loads(manifest_path.read_text())
    bad = [rel for rel, digest in manifest["files"].items()
           if not (root / rel).is_file() or sha256_file(root / rel) != digest]
    if bad:
        raise WeightsError(f"mini-world weights at {root} do not match manifest.json: {bad}. "
                           f"Restore them with `git checkout -- {root}` or retrain (RETRAIN=True).")
    return manifest


def load_autoencoder(name: str, recipe: str = "mini") -> AutoencoderKL | VQModel:
    return load_any_autoencoder(str(weights_root(recipe) / name))


def load_ldm_parts(name: str, recipe: str = "mini") -> tuple:
    """(autoencoder, EMA UNet, prompt encoder, scaling factor) of a committed mini LDM."""
    folder = weights_root(recipe) / name
    spec = json.loads((folder / "ldm.json").read_text())
    ae = load_any_autoencoder(str((folder / spec["vae"]).resolve()))
    # stored in float16 (retrain.UNET_STORAGE_DTYPE), computed in float32
    unet = UNet2DConditionModel.from_pretrained(str(folder / spec["unet"]), local_files_only=True,
                                                torch_dtype=torch.float32)
    prompts = ClassPromptEncoder.from_pretrained(str(folder / spec["prompt_encoder"]), local_files_only=True)
    for module in (unet, prompts):
        freeze(module)
    return ae, unet, prompts, float(ae.config.scaling_factor)


def world_ldm(world, name: str):
    """:class:`lare2lib.models.ldm.LDMComponents` of one of the world's LDMs, loaded from its
    folder (``mini``: the committed, hash-checked weights; ``smoke``: the tiny retrained ones).
    A world that brings its own (:class:`lare2lib.world.genimage.GenImageWorld`: the hub's Stable
    Diffusion) loads it itself."""
    from lare2lib.models.ldm import load_ldm

    if hasattr(world, "load_reference"):
        return world.load_reference(name)
    return load_ldm(str(weights_root(world.profile.world.recipe) / name))
