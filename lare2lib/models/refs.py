"""Model references: the one string that names a model's weights, as the profiles hold them.

A reference (:class:`~lare2lib.core.profiles.ModelsConfig`) is one of:

* a local folder or file: ``/data/sd15`` (diffusers pipeline layout), ``./my_vae`` (one model);
* a hub id, optionally with a subfolder after a colon: ``stable-diffusion-v1-5/stable-diffusion-v1-5``,
  ``stabilityai/stable-diffusion-2-1:vae``, ``kandinsky-community/kandinsky-2-1:movq``;
* ``mini:<name>``: the committed mini world, ``paths.weights_dir()/"mini"/<name>``
  (built by notebook 00, hash-checked against ``mini/manifest.json``:
  :mod:`lare2lib.models.mini_manifest`).

How each kind is fetched, and the one error message when it cannot be, is :mod:`lare2lib.models.hub`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lare2lib.core import paths

__all__ = ["MINI_PREFIX", "ROLES", "ModelNotAvailableError", "ModelRef", "mini_root", "parse_ref"]

MINI_PREFIX = "mini:"


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

_PIPELINE_FOLDER = "a local folder saved with save_pretrained (diffusers layout)"


ROLES: dict[str, tuple[str, str, str]] = {
    "ldm": (
        "LaRE reference LDM (VAE, UNet, text encoder + tokenizer, scheduler)",
        "models.ldm",
        _PIPELINE_FOLDER,
    ),
    "autoencoder": (
        "autoencoder (KL or VQ) for reconstructions",
        "models.recon_autoencoder / models.aeroblade_autoencoders",
        _PIPELINE_FOLDER,
    ),
    "scheduler": ("noise scheduler of the reference LDM", "models.ldm", _PIPELINE_FOLDER),
    "classifier": (
        "timm classifier backbone",
        "models.recon_classifiers / models.egre_backbone",
        "a local .safetensors state dict (or a timm folder with config.json + model.safetensors)",
    ),
}
"""Role key → (what the model is for, the profile field naming it, the local form it accepts)."""


class ModelNotAvailableError(RuntimeError):
    """Weights that are neither on this machine nor reachable; the message says how to get them."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference."""

    kind: Literal["local", "hub", "mini"]
    """``local`` (a path on disk), ``hub`` (a Hugging Face repo id) or ``mini`` (committed weights)."""
    location: str
    """The folder/file path (``local``, ``mini``) or the repo id (``hub``)."""
    subfolder: str | None = None
    """Hub subfolder (``vae``, ``movq``); ``None`` for the repo root and for local paths."""
    text: str = ""
    """The reference as the user wrote it, for messages."""

    @property
    def path(self) -> Path:
        if self.kind == "hub":
            raise ValueError(f"{self.text!r} is a hub id, not a local path")
        return Path(self.location)


def mini_root() -> Path:
    """Folder of the committed mini-world weights (``lare2lib/weights/mini``)."""
    return paths.weights_dir() / "mini"


def parse_ref(ref: str | os.PathLike[str]) -> ModelRef:
    """Classify a model reference; an existing path always wins over the other readings."""
    text = os.fspath(ref)
    if text.startswith(MINI_PREFIX):
        name = text[len(MINI_PREFIX) :].strip("/")
        return ModelRef("mini", str(mini_root() / name), None, text)
    if Path(text).expanduser().exists():
        return ModelRef("local", str(Path(text).expanduser().resolve()), None, text)
    repo_id, _, subfolder = text.partition(":")
    if _HUB_ID.match(repo_id) and not text.startswith((".", "/", "~")):
        return ModelRef("hub", repo_id, subfolder or None, text)
    raise ModelNotAvailableError(
        f"model reference {text!r} is not an existing local path, not a hub id "
        "('org/name' or 'org/name:subfolder') and not 'mini:<name>'; check the spelling or "
        "the profile's models field"
    )
