"""Every detector kind behind one registry, one file format and one scoring call.

A detector is an ``nn.Module`` class with

* ``kind``: a class attribute naming it in :data:`DETECTOR_KINDS`;
* ``config``: the JSON-able keyword arguments it was built from (``Cls(**config)`` rebuilds it);
* ``forward(batch) -> logits``: the :mod:`lare2lib.detectors.train` contract;
* ``score_images(images, image_ids, *, seed=0, tries=1, batch_size=32, progress=False,
  class_names=None)``: P(fake) for decoded 8-bit RGB images of any size (``uint8 (3, H, W)``
  tensors), doing the kind's whole preprocessing itself (EGRE computes LaRE with the reference
  LDM named in its config, prompted with ``class_names`` when its policy is ``class``; a
  reconstruction classifier takes ``tries`` random crops and ignores the class names).
  ``lare2 predict`` and ``lare2 evaluate`` call nothing else, so a new kind needs no new
  command.

A checkpoint is a safetensors state dict whose metadata holds ``kind``, ``config`` (JSON) and
the library version; :func:`load_detector` rebuilds the class from them and loads the weights
with ``strict=True``. Nothing is unpickled.

Kinds are imported lazily (``"module:Class"``), so listing them costs no torch import of the
others, and a broken kind fails alone with a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lare2lib import __version__

__all__ = [
    "DETECTOR_KINDS",
    "DetectorError",
    "detector_class",
    "build_detector",
    "save_detector",
    "load_detector",
    "read_detector_metadata",
    "add_train_arguments",
    "train_command",
]

DETECTOR_KINDS: dict[str, str] = {
    "egre": "lare2lib.detectors.egre:EgreDetector",
    "classifier": "lare2lib.detectors.recon_classifier:ReconClassifier",
}
"""kind → ``"module:Class"``; the module also holds ``add_train_arguments`` / ``train_command``."""

FORMAT = "lare2-detector-v1"
"""Value of the ``format`` metadata key of every detector checkpoint."""


class DetectorError(ValueError):
    """An unknown kind, a file that is not a detector checkpoint, or weights that do not fit."""


def _import(kind: str) -> tuple[Any, str]:
    if kind not in DETECTOR_KINDS:
        raise DetectorError(f"unknown detector kind '{kind}'; valid kinds: {sorted(DETECTOR_KINDS)}")
    module_name, _, attribute = DETECTOR_KINDS[kind].partition(":")
    try:
        return importlib.import_module(module_name), attribute
    except ImportError as exc:
        raise DetectorError(f"detector kind '{kind}' is unavailable: cannot import {module_name} ({exc})") from exc


def detector_class(kind: str) -> type[nn.Module]:
    module, attribute = _import(kind)
    return getattr(module, attribute)


def build_detector(kind: str, **config: Any) -> nn.Module:
    """A fresh detector of ``kind`` from its config (the weights its config names, if any)."""
    return detector_class(kind)(**config)


def save_detector(model: nn.Module, path: str | os.PathLike[str],
                  metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict and what rebuilds it (kind, config) as one safetensors file."""
    from lare2lib.data.imagesets import atomic_save

    kind = getattr(model, "kind", None)
    config = getattr(model, "config", None)
    if kind not in DETECTOR_KINDS or not isinstance(config, dict):
        raise DetectorError(f"{type(model).__name__} is not a registered detector (needs kind and config)")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update({"format": FORMAT, "kind": kind, "config": json.dumps(config, sort_keys=True),
                 "lare2lib_version": __version__})
    path = Path(path)
    atomic_save(state, path, meta)
    return path


def read_detector_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a detector checkpoint, ``config`` decoded (no tensor is read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"no detector checkpoint at {path}")
    if path.suffix != ".safetensors":
        raise DetectorError(
            f"{path}: detector checkpoints are .safetensors files written by lare2lib; pickled "
            "checkpoints (e.g. the original releases' .pth) are not loaded here, see lare2lib.models.unsafe"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise DetectorError(f"{path} is not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise DetectorError(f"{path} is not a lare2 detector checkpoint (no format={FORMAT} metadata)")
    meta["config"] = json.loads(meta["config"])
    return meta


def load_detector(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the detector a checkpoint describes and load its weights strictly, in eval mode."""
    from safetensors.torch import load_file

    meta = read_detector_metadata(path)
    config = dict(meta["config"])
    if "pretrained" in config:
        config["pretrained"] = False  # the checkpoint carries every weight: no second load
    model = build_detector(meta["kind"], **config)
    model.config = meta["config"]  # what the file says, including the original `pretrained`
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise DetectorError(f"{path}: weights do not fit a {meta['kind']} detector of its config ({exc})") from exc
    return model.to(device).eval()


# -- `lare2 train KIND ...` -------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """One sub-command per detector kind, each with the kind module's own arguments."""
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind in DETECTOR_KINDS:
        try:
            module, _ = _import(kind)
        except DetectorError as error:  # one broken kind must not take the others down
            kinds.add_parser(kind, help=f"(unavailable: {error})")
            continue
        summary = (module.__doc__ or kind).strip().splitlines()[0]
        module.add_train_arguments(kinds.add_parser(kind, help=summary, description=summary))
    return parser


def train_command(args: argparse.Namespace) -> int:
    module, _ = _import(args.kind)  # raises the unavailability reason for a broken kind
    return int(module.train_command(args) or 0)
