"""A tiny stand-in for the ``full`` profile's world: every model it names, with random weights of
the real architecture classes at small width, in the Hugging Face hub cache layout; and a
GenImage-layout folder of a few images per subset.

Tests point ``HF_HOME`` at :attr:`TinyFullWorld.hf_home` (before any HF import, with
``HF_HUB_OFFLINE=1``) and run the notebooks with ``PROFILE="full"`` on it: the code paths a GPU
user runs on Stable Diffusion and GenImage, offline, in seconds.

* Diffusers models (the SD v1.5 pipeline, the SD VAEs, Kandinsky's MoVQ): the tiny components of
  :mod:`lare2lib.models.tiny` (SD-shaped UNet / KL VAE / CLIP text encoder and tokenizer, a
  MoVQ-shaped ``VQModel``) under ``models--<org>--<name>/snapshots/<rev>/`` with ``refs/main``.
* timm backbones: ``models--timm--<name>`` with timm's ``config.json`` (its ``model_args`` hold
  the small widths, which :func:`lare2lib.models.backbones.create_classifier` applies as timm's
  own ``hf-hub:`` loader does) and ``model.safetensors``. Architectures timm cannot shrink by
  keyword (the CLIP ResNet's ByobNet config, EfficientNetV2-B0) are written at full size.
* GenImage: the eight subsets' folder names of the official download, ``{train,val}/{ai,nature}``,
  reals ``n<wnid>_<k>.JPEG`` (train) and ``ILSVRC2012_val_<k>.JPEG`` (val), fakes
  ``<class>_<gen>_<k>.png``, and ``anns/filename_to_folder.json`` giving the val reals' classes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GENIMAGE_SUBSETS", "TINY_FULL_CLASSES", "TinyFullWorld", "make_tiny_full_world",
           "hub_snapshot"]

REVISION = "0" * 40
"""The commit hash every tiny snapshot is filed under (``refs/main`` points at it)."""

GENIMAGE_SUBSETS: dict[str, str] = {
    "sdv4": "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4",
    "sdv5": "stable_diffusion_v_1_5/imagenet_ai_0424_sdv5",
    "midjourney": "Midjourney/imagenet_midjourney",
    "adm": "ADM/imagenet_ai_0508_adm",
    "glide": "glide/imagenet_glide",
    "wukong": "wukong/imagenet_ai_0424_wukong",
    "vqdm": "VQDM/imagenet_ai_0419_vqdm",
    "biggan": "BigGAN/imagenet_ai_0419_biggan",
}
"""Generator tag (as in the fakes' file names) → subset folder of the official download."""

TINY_FULL_CLASSES: tuple[int, ...] = (0, 1, 207)
"""ImageNet-1k indices of the fixture's images: tench, goldfish, golden retriever."""


@dataclass(frozen=True)
class TinyFullWorld:
    """Where :func:`make_tiny_full_world` wrote things."""

    hf_home: Path
    """Set ``HF_HOME`` to this (the hub cache is ``hf_home/hub``)."""
    genimage_root: Path
    """The GenImage root (``<subset folders>/{train,val}/{ai,nature}``)."""
    val_classes: Path
    """``anns/filename_to_folder.json``: ``ILSVRC2012_val_*`` file name → class folder (wnid)."""

    def environment(self) -> dict[str, str]:
        """What a process needs in its environment to read this world offline."""
        return {"HF_HOME": str(self.hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def hub_snapshot(hf_home: str | os.PathLike[str], repo: str) -> Path:
    """``hf_home/hub/models--org--name/snapshots/<rev>`` (created, with ``refs/main``)."""
    cache = Path(hf_home) / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = cache / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (cache / "refs").mkdir(exist_ok=True)
    (cache / "refs" / "main").write_text(REVISION)
    return snapshot


# -- models -----------------------------------------------------------------------------------


def _write_hub_model(hf_home: Path, ref, seed: int) -> None:
    """One hub :class:`~lare2lib.models.refs.ModelRef` of the full profile, as a tiny model."""
    from lare2lib.models.tiny import make_tiny_kl, make_tiny_sd, make_tiny_vq

    snapshot, subfolder = hub_snapshot(hf_home, ref.location), ref.subfolder
    if not subfolder:
        make_tiny_sd(snapshot, seed=seed)  # the LDM: a whole SD v1.5-layout pipeline
    elif subfolder == "movq":
        make_tiny_vq(snapshot / subfolder, seed=seed)
    else:
        make_tiny_kl(snapshot / subfolder, seed=seed)


def _write_timm_model(hf_home: Path, name: str, seed: int) -> None:
    """timm's hub layout for ``name``: ``config.json`` (with the small widths) + weights."""
    import timm
    import torch
    from safetensors.torch import save_file

    from lare2lib.models.tiny_detectors import tiny_classifier_kwargs

    cfg = timm.models.get_pretrained_cfg(name)
    model_args = tiny_classifier_kwargs(name)
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=cfg.num_classes, **model_args)
    snapshot = hub_snapshot(hf_home, cfg.hf_hub_id or f"timm/{name}")
    architecture, _, tag = name.partition(".")
    config = {"architecture": architecture, "num_classes": cfg.num_classes,
              "num_features": int(model.num_features), "model_args": model_args,
              "pretrained_cfg": {**{k: v for k, v in cfg.to_dict().items()
                                    if isinstance(v, (int, float, str, list, tuple, type(None)))},
                                 "tag": tag}}
    (snapshot / "config.json").write_text(json.dumps(config, indent=2, default=list))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))


# -- GenImage ----------------------------------------------------------------------------------


def _picture(rng: np.random.Generator, height: int, width: int, smooth: bool) -> np.ndarray:
    """A smooth colour field plus texture: decodable, varied, nothing like a real class."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phase = rng.uniform(0, 2 * np.pi, 3)
    base = np.stack([np.sin(6 * x + 4 * y * (k + 1) + phase[k]) for k in range(3)], -1)
    noise = rng.normal(0, 0.05 if smooth else 0.25, (height, width, 3))
    return np.clip((base * 0.4 + 0.5 + noise) * 255, 0, 255).astype(np.uint8)


def _fake_name(tag: str, index: int, number: int) -> str:
    """GenImage's fake file names: ``GLIDE_1000_…`` for GLIDE and VQDM, else ``<class>_<gen>_<n>``."""
    if tag in ("glide", "vqdm"):
        return f"{tag.upper()}_1000_200_00_{index:03d}_{tag}_{number:05d}.png"
    return f"{index:03d}_{tag}_{number:05d}.png"


def _write_genimage(root: Path, per_class: int, seed: int) -> Path:
    """The eight subsets; returns the ``filename_to_folder.json`` of the val reals."""
    from PIL import Image

    from lare2lib.data.imagenet import index_to_wnid

    rng = np.random.default_rng(seed)
    val_folders: dict[str, str] = {}
    counter = 0
    for tag, folder in GENIMAGE_SUBSETS.items():
        for split in ("train", "val"):
            for label in ("nature", "ai"):
                (root / folder / split / label).mkdir(parents=True, exist_ok=True)
            for index in TINY_FULL_CLASSES:
                wnid = index_to_wnid(index)
                for k in range(per_class):
                    counter += 1
                    if split == "train":
                        real_name = f"{wnid}_{counter}.JPEG"
                    else:
                        real_name = f"ILSVRC2012_val_{counter:08d}.JPEG"
                        val_folders[real_name] = wnid
                    # ImageNet-like JPEGs of mixed sizes; fakes square PNGs (the full profile's
                    # 224 px crops and 256 px windows fit in both)
                    size = (int(rng.integers(256, 385)), int(rng.integers(256, 385)))
                    Image.fromarray(_picture(rng, *size, smooth=False)).save(
                        root / folder / split / "nature" / real_name, quality=90)
                    Image.fromarray(_picture(rng, 256, 256, smooth=True)).save(
                        root / folder / split / "ai" / _fake_name(tag, index, counter))
    (root / "anns").mkdir(exist_ok=True)
    mapping = root / "anns" / "filename_to_folder.json"
    mapping.write_text(json.dumps(val_folders, indent=1, sort_keys=True))
    return mapping


def make_tiny_full_world(root: str | os.PathLike[str], *, per_class: int = 1, seed: int = 0) -> TinyFullWorld:
    """Write every model of the ``full`` profile (tiny) and a GenImage-layout folder under ``root``.

    ``per_class`` images of each of :data:`TINY_FULL_CLASSES` per subset, split and label (the
    default: 3 reals and 3 fakes per subset and split, 96 images). Idempotent per ``root``.
    """
    from lare2lib.core.profiles import get_profile
    from lare2lib.models.refs import parse_ref

    root = Path(root)
    hf_home = root / "hf_home"
    models = get_profile("full").models
    hub = [models.ldm, models.recon_autoencoder, *models.aeroblade_autoencoders]
    timm_names = [models.egre_backbone, *models.recon_classifiers]
    for offset, reference in enumerate(dict.fromkeys(hub)):
        ref = parse_ref(reference)
        if ref.kind != "hub":
            raise ValueError(f"the full profile's {reference!r} is not a hub id")
        _write_hub_model(hf_home, ref, seed + offset)
    for offset, name in enumerate(timm_names):
        _write_timm_model(hf_home, name, seed + 100 + offset)
    genimage_root = root / "genimage"
    val_classes = _write_genimage(genimage_root, per_class, seed)
    return TinyFullWorld(hf_home, genimage_root, val_classes)
