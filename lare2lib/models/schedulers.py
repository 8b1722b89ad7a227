"""Noise schedulers: SD's training schedule, and any diffusers scheduler config as a DDPM one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lare2lib.models.hub import ConfigLoader, from_pretrained
from lare2lib.models.refs import parse_ref

__all__ = ["sd_training_scheduler", "load_scheduler"]


def sd_training_scheduler() -> Any:
    """The DDPM schedule Stable Diffusion v1/v2 were trained with.

    ``scaled_linear`` betas from 0.00085 to 0.012 over 1000 steps (linear in sqrt(beta)),
    epsilon prediction. SD's repos ship a PNDM/DDIM *sampling* scheduler with these same
    training constants; LaRE only needs ``add_noise`` and ``alphas_cumprod``, which depend on
    the constants alone.
    """
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
        steps_offset=1,
    )


def load_scheduler(ref: str | os.PathLike[str], subfolder: str | None = None) -> Any:
    """A :class:`~diffusers.DDPMScheduler` from a scheduler folder, a pipeline folder or hub id.

    Any diffusers scheduler config (SD ships PNDM) is converted: the training constants
    (betas, timesteps, prediction type) carry over, sampling-only keys are ignored.
    """
    from diffusers import DDPMScheduler

    parsed = parse_ref(ref)
    if subfolder is None and parsed.kind != "hub":
        subfolder = _scheduler_subfolder(parsed.path)
    if subfolder is None and parsed.kind == "hub" and parsed.subfolder is None:
        subfolder = "scheduler"
    config = from_pretrained(ConfigLoader(DDPMScheduler), parsed, "scheduler", subfolder)
    return DDPMScheduler.from_config(config)


def _scheduler_subfolder(folder: Path) -> str | None:
    if (folder / "scheduler_config.json").is_file():
        return None
    if (folder / "ldm.json").is_file():
        return json.loads((folder / "ldm.json").read_text())["scheduler"]
    return "scheduler"
