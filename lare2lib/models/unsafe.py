"""Opt-in loading of pickled checkpoints from outside the project (e.g. the released detectors).

Everything this project writes and reads is safetensors, JSON, CSV or parquet. The original
releases are pickles: LaRE's ``.pth`` checkpoints, and Vesnin et al.'s detectors are whole
pickled modules (loaded with ``torch.load(weights_only=False)``). Unpickling runs whatever
code the file's author put in it, with your permissions, the moment it is loaded: a pickle
from a stranger is a program from a stranger.

:func:`load_pickled_detector` therefore tries, in this order:

1. ``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which builds only
   tensors, numbers, strings and containers and refuses any other class or function. A plain
   state dict (or a dict holding one) loads this way, safely, with no opt-in;
2. only with ``allow_pickle=True``: the full unpickler, with an :class:`UnsafePickleWarning`.
   Without it the file is refused, and the error names the class the file asked for.

Either way the result is a plain ``{name: tensor}`` state dict, and
:func:`convert_pickled_detector` writes it as safetensors (with the source's sha256 in the
metadata), so the pickle has to be trusted once, never again. ``python -m lare2lib.models.unsafe SRC
OUT [--allow-pickle]`` does the same from a shell.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "PICKLE_RISK",
    "UnsafeCheckpointError",
    "UnsafePickleWarning",
    "load_pickled_detector",
    "convert_pickled_detector",
    "add_convert_arguments",
    "convert_command",
]

PICKLE_RISK = (
    "unpickling executes code chosen by whoever made the file (with your permissions, at load "
    "time); only allow it for a file from a source you trust, then keep the safetensors copy")

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")
"""Keys under which training scripts commonly nest the state dict of a checkpoint."""


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that can only be loaded by running arbitrary pickled code, refused."""


class UnsafePickleWarning(UserWarning):
    """A checkpoint was loaded with the full (code-executing) unpickler, as the caller allowed."""


def _load(path: Path, allow_pickle: bool) -> tuple[Any, str]:
    """(object, how it was loaded: ``"weights_only"`` or ``"pickle"``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), "weights_only"
    except pickle.UnpicklingError as error:
        refused = str(error).strip().splitlines()
        detail = next((line for line in refused if "GLOBAL" in line or "global" in line),
                      refused[0] if refused else "")
        if not allow_pickle:
            raise UnsafeCheckpointError(
                f"{path} is not a plain state dict: loading it needs the full unpickler "
                f"({detail.strip()}). Refused: {PICKLE_RISK}. If you trust its source, pass "
                "allow_pickle=True (command line: --allow-pickle) to convert it to "
                "safetensors once.") from None
    warnings.warn(f"loading {path} with the full unpickler (allow_pickle=True): {PICKLE_RISK}",
                  UnsafePickleWarning, stacklevel=4)
    return torch.load(path, map_location="cpu", weights_only=False), "pickle"


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a module, a state dict, or a checkpoint dict nesting one."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        if obj and all(torch.is_tensor(value) for value in obj.values()):
            return {str(k): v for k, v in obj.items()}
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], (Mapping, torch.nn.Module)):
                return _state_dict_of(obj[key], path)
    found = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
    raise UnsafeCheckpointError(f"{path}: no state dict found (top level: {found}); expected a "
                                f"module, a name → tensor dict, or one under {STATE_DICT_KEYS}")


def _load_state(path: Path, allow_pickle: bool, strip_prefix: str
                ) -> tuple[dict[str, torch.Tensor], str]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    obj, how = _load(path, allow_pickle)
    state = _state_dict_of(obj, path)
    if strip_prefix and state and all(name.startswith(strip_prefix) for name in state):
        state = {name[len(strip_prefix):]: value for name, value in state.items()}
    return {name: value.detach().cpu().contiguous().clone() for name, value in state.items()}, how


def load_pickled_detector(path: str | os.PathLike, *, allow_pickle: bool = False,
                          strip_prefix: str = "module.") -> dict[str, torch.Tensor]:
    """The state dict of a pickled checkpoint (``.pth``/``.pt``/``.bin``), on the CPU.

    Loaded with PyTorch's restricted unpickler when that suffices; otherwise refused with
    :class:`UnsafeCheckpointError` unless ``allow_pickle=True`` (then loaded in full, with an
    :class:`UnsafePickleWarning`). ``strip_prefix`` is removed from every name when all have
    it (``nn.DataParallel`` saves ``module.``-prefixed names).
    """
    return _load_state(Path(path), allow_pickle, strip_prefix)[0]


def convert_pickled_detector(path: str | os.PathLike, out: str | os.PathLike, *,
                             allow_pickle: bool = False, strip_prefix: str = "module.") -> Path:
    """Convert a pickled checkpoint into a safetensors state dict at ``out`` (atomically).

    The metadata records the source file name, its sha256 and how it was loaded
    (``weights_only`` or ``pickle``), so a converted file says where it came from.
    """
    from safetensors.torch import save_file

    path, out = Path(path), Path(out)
    state, how = _load_state(path, allow_pickle, strip_prefix)
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"source": path.name, "source_sha256": digest,
                                         "loaded_with": how})
    os.replace(tmp, out)
    return out


# -- command line -------------------------------------------------------------------------
def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("source", help="pickled checkpoint (.pth, .pt, .bin)")
    parser.add_argument("out", help="safetensors file to write")
    parser.add_argument("--allow-pickle", action="store_true",
                        help=f"allow the full unpickler if needed: {PICKLE_RISK}")
    return parser


def convert_command(args: argparse.Namespace) -> int:
    try:
        out = convert_pickled_detector(args.source, args.out, allow_pickle=args.allow_pickle)
    except (UnsafeCheckpointError, FileNotFoundError) as error:
        print(f"convert: refused: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(convert_command(add_convert_arguments(
        argparse.ArgumentParser(prog="python -m lare2lib.models.unsafe",
                                description=__doc__.split("\n\n")[0])).parse_args()))
