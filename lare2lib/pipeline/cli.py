"""The ``lare2`` command (also ``python -m lare2lib``): batch entry points to the pipeline.

Each subcommand lives in the module of its pipeline stage and is registered in
:data:`COMMANDS` as ``name: ("module:add_arguments", "module:main", help)``. Only the module of
the command being run is imported, so ``lare2 --help`` answers instantly without importing
torch, and a stage whose module is missing or broken fails with one clear line instead of
breaking every other command.

Mistakes in the input (an unknown command, profile, notebook or parameter) end with one line
naming what is wrong and what is valid, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from lare2lib import __version__
from lare2lib.core.exit_codes import FAILURE, OK, USAGE_ERROR

__all__ = ["COMMANDS", "CommandUnavailable", "build_parser", "main"]

COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "lare2lib.pipeline.run_command:add_run_arguments",
        "lare2lib.pipeline.run_command:run_command",
        "run the notebooks in numeric order through papermill (skips unchanged ones)",
    ),
    "extract": (
        "lare2lib.signals.extract:add_extract_arguments",
        "lare2lib.signals.extract:extract_command",
        "extract LaRE / DIRE feature maps for a folder of images into a feature store",
    ),
    "train": (
        "lare2lib.detectors.registry:add_train_arguments",
        "lare2lib.detectors.registry:train_command",
        "train a detector (one sub-command per kind: egre, classifier)",
    ),
    "evaluate": (
        "lare2lib.detectors.predict:add_evaluate_arguments",
        "lare2lib.detectors.predict:evaluate_command",
        "score a detector checkpoint on the world's test sets or folders (metrics JSON)",
    ),
    "predict": (
        "lare2lib.detectors.predict:add_predict_arguments",
        "lare2lib.detectors.predict:predict_command",
        "score image files, folders or manifests with a detector checkpoint (CSV)",
    ),
    "env": (
        "lare2lib.core.environment:add_env_arguments",
        "lare2lib.core.environment:env_command",
        "print versions, devices and which weights a profile needs (JSON)",
    ),
}
"""Subcommands: name → (argument builder, command function, one-line help)."""

_USER_ERROR_TYPES = (
    "lare2lib.core.profiles:ProfileError",
    "lare2lib.pipeline.runner:RunnerError",
    "lare2lib.detectors.registry:DetectorError",
    "lare2lib.detectors.predict:NoImagesError",
    "lare2lib.detectors.train:TrainingError",
)
"""Exceptions that mean "bad input": reported as one line with exit code 2, no traceback."""


class CommandUnavailable(RuntimeError):
    """A registered command whose module cannot be imported."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage block) naming the valid choices."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _load(reference: str) -> Callable[..., Any]:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandUnavailable(f"cannot import {module_name} ({exc})") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise CommandUnavailable(f"{module_name} has no {attribute}") from exc


def build_parser(prog: str = "lare2", command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s arguments are loaded (the others need not be importable)."""
    parser = _Parser(
        prog=prog,
        description="Latent reconstruction error (LaRE², EGRE) and autoencoder-reconstruction "
        "detectors of diffusion-generated images: batch commands.",
    )
    parser.add_argument("--version", action="version", version=f"lare2lib {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, _, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _load(add_arguments)(subparser)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first word (the top level has no valued options)."""
    words = [word for word in argv if not word.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def main(argv: Sequence[str] | None = None, prog: str = "lare2") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    try:
        parser = build_parser(prog, command)
        args = parser.parse_args(argv)
        return int(_load(COMMANDS[args.command][1])(args) or OK)
    except CommandUnavailable as exc:
        print(f"{prog} {command}: command unavailable: {exc}", file=sys.stderr)
        return FAILURE
    except Exception as exc:
        if not isinstance(exc, _user_error_types()):
            raise
        print(f"{prog} {command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


def _user_error_types() -> tuple[type[BaseException], ...]:
    types = []
    for reference in _USER_ERROR_TYPES:
        try:
            types.append(_load(reference))
        except CommandUnavailable:
            continue
    return tuple(types)


if __name__ == "__main__":
    sys.exit(main())
