"""Offline-first fetching of a model reference, and the one message when weights are missing.

Local folders are used as they are. A hub id is looked up in the local Hugging Face cache first
and fetched only when the hub is reachable and ``HF_HUB_OFFLINE`` is not set. When neither
works, :func:`from_pretrained` raises :class:`~lare2lib.models.refs.ModelNotAvailableError`
with one message (:func:`model_not_available`) that names the model, its role and how to
provide it; the hub library's traceback is never what the user sees. Classifier backbones
(:mod:`lare2lib.models.backbones`) share that message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lare2lib.models.refs import ROLES, ModelNotAvailableError, ModelRef, parse_ref

__all__ = ["model_not_available", "hub_offline", "from_pretrained", "ConfigLoader"]


_LDM_FILES = ("model_index.json", "vae/*", "unet/*", "text_encoder/*", "tokenizer/*", "scheduler/*")
"""What LaRE needs from an SD repo (the repos also hold multi-GB single-file checkpoints)."""


def _download_command(ref: ModelRef, role: str) -> str:
    if ref.subfolder:
        patterns: tuple[str, ...] = (f"{ref.subfolder}/*",)
    else:
        patterns = _LDM_FILES if role == "ldm" else ()
    include = " --include " + " ".join(f'"{p}"' for p in patterns) if patterns else ""
    return f"hf download {ref.location}{include}"


def model_not_available(ref: ModelRef | str, role: str, reason: str = "") -> ModelNotAvailableError:
    """Build the single message for weights that cannot be loaded (raise it ``from None``)."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    purpose, profile_field, local_form = ROLES.get(
        role, (role, "the profile's models field", "a local folder")
    )
    if ref.kind == "mini":
        return ModelNotAvailableError(
            f"mini-world weights {ref.text!r} ({purpose}) are missing: no folder {ref.location}. "
            "Notebook 00 builds them: run `lare2 run 00` (or the notebook with RETRAIN=True), "
            f"or point {profile_field} at a local folder."
        )
    if ref.kind == "local":
        return ModelNotAvailableError(
            f"{purpose}: local path {ref.location} cannot be loaded{': ' + reason if reason else ''}. "
            f"Pass {local_form} (or a hub id) through {profile_field}."
        )
    offline = hub_offline()
    where = (
        "the hub is offline (HF_HUB_OFFLINE=1) and the model is not in the local Hugging Face cache"
        if offline
        else f"it could not be fetched from the hub{' (' + reason + ')' if reason else ''}"
    )
    return ModelNotAvailableError(
        f"model {ref.text!r} ({purpose}) is not available: {where}.\n"
        "Provide it in one of these ways:\n"
        f"  1. on a machine with network: `{_download_command(ref, role)}` (older huggingface_hub: "
        f"`huggingface-cli download ...`), then copy the Hugging Face cache "
        "(~/.cache/huggingface/hub or $HF_HOME) to this machine;\n"
        f"  2. or pass {local_form} instead of the hub id, "
        f"e.g. profile override {profile_field.split(' / ')[0]}=/path/to/local/copy."
    )


def hub_offline() -> bool:
    """True when Hugging Face downloads are disabled (``HF_HUB_OFFLINE``, read now, not at import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") in (
        "1",
        "ON",
        "YES",
        "TRUE",
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the hub could not give us this file" (not bugs in our code)."""
    from huggingface_hub import errors

    return (
        OSError,
        errors.HfHubHTTPError,
        errors.HFValidationError,
        errors.LocalEntryNotFoundError,
    )


def from_pretrained(
    cls: Any, ref: ModelRef, role: str, subfolder: str | None = None, **kwargs: Any
) -> Any:
    """``cls.from_pretrained`` for a local folder or a hub id: cache first, network if allowed.

    ``subfolder`` is joined to the reference's own subfolder (``org/name:vae`` + ``None``).
    Hub failures become :class:`ModelNotAvailableError`; the hub's traceback is dropped.
    """
    if ref.kind != "hub":
        folder = Path(ref.location, subfolder) if subfolder else Path(ref.location)
        if not folder.exists():
            raise model_not_available(ref, role, f"no {subfolder or 'model'} folder at {folder}")
        return cls.from_pretrained(str(folder), **kwargs)
    sub = "/".join(s for s in (ref.subfolder, subfolder) if s) or None
    hub_kwargs = {"subfolder": sub} if sub else {}
    try:
        return cls.from_pretrained(ref.location, local_files_only=True, **hub_kwargs, **kwargs)
    except _hub_errors():
        if hub_offline():
            raise model_not_available(ref, role) from None
    try:
        return cls.from_pretrained(ref.location, **hub_kwargs, **kwargs)
    except _hub_errors() as err:
        reason = (
            f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
            if str(err)
            else type(err).__name__
        )
        raise model_not_available(ref, role, reason) from None


class ConfigLoader:
    """Adapter so config-only loads go through :func:`from_pretrained` like models do."""

    def __init__(self, cls: Any):
        self.cls = cls

    def from_pretrained(self, location: str, **kwargs: Any) -> dict[str, Any]:
        return self.cls.load_config(location, **kwargs)
