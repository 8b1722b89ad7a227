"""Offline-first loaders for every model role: LDM components, autoencoders, schedulers.

A *model reference* is one string, as the profiles hold them (:class:`~lare2lib.core.profiles.ModelsConfig`):

* a local folder or file: ``/data/sd15`` (diffusers pipeline layout), ``./my_vae`` (one model);
* a hub id, optionally with a subfolder after a colon: ``stable-diffusion-v1-5/stable-diffusion-v1-5``,
  ``stabilityai/stable-diffusion-2-1:vae``, ``kandinsky-community/kandinsky-2-1:movq``;
* ``mini:<name>``: the committed mini world, ``paths.weights_dir()/"mini"/<name>``
  (built by notebook 00, hash-checked against ``mini/manifest.json``).

Local folders are used as they are. A hub id is looked up in the local Hugging Face cache first
and fetched only when the hub is reachable and ``HF_HUB_OFFLINE`` is not set. When neither
works, the loaders raise :class:`ModelNotAvailableError` with one message that names the model,
its role and how to provide it; the hub library's traceback is never what the user sees.

Classifier backbones (timm) live in :mod:`lare2lib.models.backbones`; they share
:class:`ModelNotAvailableError` and :func:`model_not_available` from here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lare2lib.core import paths

__all__ = [
    "ModelNotAvailableError",
    "ModelRef",
    "parse_ref",
    "model_not_available",
    "hub_offline",
    "resolve_device",
    "resolve_dtype",
    "LDMComponents",
    "load_ldm",
    "load_autoencoder",
    "load_scheduler",
    "sd_training_scheduler",
    "encode_latents",
    "decode_latents",
    "verify_mini_manifest",
    "ROLES",
]

MINI_PREFIX = "mini:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

_PIPELINE_FOLDER = "a local folder saved with save_pretrained (diffusers layout)"
ROLES: dict[str, tuple[str, str, str]] = {
    "ldm": (
        "LaRE reference LDM (VAE, UNet, text encoder + tokenizer, scheduler)",
        "models.ldm",
        _PIPELINE_FOLDER,
    ),
    "autoencoder": (
        "autoencoder (KL or VQ) for reconstructions",
        "models.recon_autoencoder / models.aeroblade_autoencoders",
        _PIPELINE_FOLDER,
    ),
    "scheduler": ("noise scheduler of the reference LDM", "models.ldm", _PIPELINE_FOLDER),
    "classifier": (
        "timm classifier backbone",
        "models.recon_classifiers / models.egre_backbone",
        "a local .safetensors state dict (or a timm folder with config.json + model.safetensors)",
    ),
}
"""Role key → (what the model is for, the profile field naming it, the local form it accepts)."""


class ModelNotAvailableError(RuntimeError):
    """Weights that are neither on this machine nor reachable; the message says how to get them."""


# -- references ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference."""

    kind: Literal["local", "hub", "mini"]
    """``local`` (a path on disk), ``hub`` (a Hugging Face repo id) or ``mini`` (committed weights)."""
    location: str
    """The folder/file path (``local``, ``mini``) or the repo id (``hub``)."""
    subfolder: str | None = None
    """Hub subfolder (``vae``, ``movq``); ``None`` for the repo root and for local paths."""
    text: str = ""
    """The reference as the user wrote it, for messages."""

    @property
    def path(self) -> Path:
        if self.kind == "hub":
            raise ValueError(f"{self.text!r} is a hub id, not a local path")
        return Path(self.location)


def mini_root() -> Path:
    """Folder of the committed mini-world weights (``lare2lib/weights/mini``)."""
    return paths.weights_dir() / "mini"


def parse_ref(ref: str | os.PathLike[str]) -> ModelRef:
    """Classify a model reference; an existing path always wins over the other readings."""
    text = os.fspath(ref)
    if text.startswith(MINI_PREFIX):
        name = text[len(MINI_PREFIX) :].strip("/")
        return ModelRef("mini", str(mini_root() / name), None, text)
    if Path(text).expanduser().exists():
        return ModelRef("local", str(Path(text).expanduser().resolve()), None, text)
    repo_id, _, subfolder = text.partition(":")
    if _HUB_ID.match(repo_id) and not text.startswith((".", "/", "~")):
        return ModelRef("hub", repo_id, subfolder or None, text)
    raise ModelNotAvailableError(
        f"model reference {text!r} is not an existing local path, not a hub id "
        "('org/name' or 'org/name:subfolder') and not 'mini:<name>'; check the spelling or "
        "the profile's models field"
    )


# -- the one error message --------------------------------------------------------------------


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


def _from_pretrained(
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


# -- devices and precision --------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA if present, else Apple MPS, else CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """A precision name or dtype → ``torch.dtype``; half precision is refused on CPU.

    CPU kernels for fp16/bf16 convolutions are slow or missing, and LaRE's maps are squared
    errors of small differences that half precision rounds away (the released fp16 path
    crashes): on CPU only ``float32`` is allowed.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {sorted(_DTYPES)}")
        dtype = _DTYPES[dtype]
    if dtype not in _DTYPES.values():
        raise ValueError(f"unsupported dtype {dtype}; valid: {sorted(_DTYPES)}")
    if resolve_device(device).type == "cpu" and dtype != torch.float32:
        raise ValueError(
            f"dtype {dtype} on CPU is not supported: use dtype='float32' on CPU, "
            "or bfloat16/float16 on a GPU (device='cuda')"
        )
    return dtype


def _place(module: nn.Module, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """Move ``module``; cast only when the dtype changes (diffusers warns on every cast)."""
    module.to(device=device)
    current = next(module.parameters(), torch.empty(0)).dtype
    if dtype is not None and dtype != current:
        module.to(dtype=dtype)
    return module


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


# -- schedulers -------------------------------------------------------------------------------


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
    config = _from_pretrained(_ConfigLoader(DDPMScheduler), parsed, "scheduler", subfolder)
    return DDPMScheduler.from_config(config)


def _scheduler_subfolder(folder: Path) -> str | None:
    if (folder / "scheduler_config.json").is_file():
        return None
    if (folder / "ldm.json").is_file():
        return json.loads((folder / "ldm.json").read_text())["scheduler"]
    return "scheduler"


class _ConfigLoader:
    """Adapter so config-only loads go through :func:`_from_pretrained` like models do."""

    def __init__(self, cls: Any):
        self.cls = cls

    def from_pretrained(self, location: str, **kwargs: Any) -> dict[str, Any]:
        return self.cls.load_config(location, **kwargs)


# -- autoencoders -----------------------------------------------------------------------------

AutoencoderKind = Literal["auto", "kl", "vq", "taef2"]


def load_autoencoder(
    ref: str | os.PathLike[str],
    kind: AutoencoderKind = "auto",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
) -> nn.Module:
    """An inference-ready autoencoder: ``AutoencoderKL``, ``VQModel`` or :class:`~lare2lib.models.taef2.TAEF2`.

    ``kind="auto"`` reads the class from the folder's ``config.json`` (``_class_name``), so
    ``kandinsky-community/kandinsky-2-1:movq`` (a ``VQModel`` with spatial norm) needs no hint;
    a folder holding ``taef2_encoder.pth`` is TAEF2. A pipeline folder without a subfolder
    resolves to its ``vae/``.
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    parsed = parse_ref(ref)
    if parsed.kind == "mini":
        _check_mini_exists(parsed, "autoencoder")
        verify_mini_manifest([parsed.path])
    if kind == "taef2" or (parsed.kind != "hub" and (parsed.path / "taef2_encoder.pth").is_file()):
        from lare2lib.models.taef2 import TAEF2

        if parsed.kind == "hub":
            raise model_not_available(parsed, "autoencoder", "TAEF2 loads from a local folder only")
        return _freeze(_place(TAEF2.from_folder(parsed.path), device, dtype))
    subfolder = _vae_subfolder(parsed)
    cls = _autoencoder_class(parsed, kind, subfolder)
    return _freeze(_place(_from_pretrained(cls, parsed, "autoencoder", subfolder), device, dtype))


def _vae_subfolder(ref: ModelRef) -> str | None:
    if ref.kind == "hub":
        return None
    return "vae" if (ref.path / "model_index.json").is_file() else None


def _autoencoder_class(
    ref: ModelRef, kind: AutoencoderKind, subfolder: str | None, role: str = "autoencoder"
) -> Any:
    from diffusers import AutoencoderKL, VQModel

    classes = {"kl": AutoencoderKL, "vq": VQModel}
    if kind != "auto":
        if kind not in classes:
            raise ValueError(f"unknown autoencoder kind {kind!r}; valid: auto, kl, vq, taef2")
        return classes[kind]
    config = _from_pretrained(_ConfigLoader(AutoencoderKL), ref, role, subfolder)
    name = config.get("_class_name", "AutoencoderKL")
    by_name = {"AutoencoderKL": AutoencoderKL, "VQModel": VQModel}
    if name not in by_name:
        raise ValueError(f"{ref.text!r} holds a {name}; load_autoencoder handles {sorted(by_name)}")
    return by_name[name]


def is_vq(vae: nn.Module) -> bool:
    """Is ``vae`` a diffusers ``VQModel`` (quantised latents) rather than a KL autoencoder?"""
    from diffusers import VQModel

    return isinstance(vae, VQModel)


def is_taef2(vae: nn.Module) -> bool:
    """Is ``vae`` the tiny FLUX.2 autoencoder (TAEF2: deterministic encoder, no scaling factor)?"""
    from lare2lib.models.taef2 import TAEF2

    return isinstance(vae, TAEF2)


def encode_latents(
    vae: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
) -> torch.Tensor:
    """Images in [-1, 1], ``(B, 3, H, W)`` → unscaled latents ``(B, C, H/f, W/f)``.

    * ``AutoencoderKL``: a posterior sample (``sample=True``, as LaRE and AEROBLADE do) drawn
      with ``generator``, else the posterior mean.
    * ``VQModel``: ``vae.encode(x).latents`` is the *pre-quantisation* latent (a VQ model has
      no ``latent_dist``); AEROBLADE decodes it with ``force_not_quantize=True``.
    * TAEF2: deterministic; its own [0, 1] convention is handled here.

    The latent scaling factor is *not* applied: LaRE multiplies by ``scaling_factor`` before
    noising, AEROBLADE reconstructs without it.
    """
    if is_taef2(vae):
        return vae.encode((x + 1) / 2)
    encoded = vae.encode(x)
    if is_vq(vae):
        return encoded.latents
    posterior = encoded.latent_dist
    return posterior.sample(generator=generator) if sample else posterior.mode()


def decode_latents(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Unscaled latents → images in about [-1, 1] (not clamped); VQ skips quantisation."""
    if is_taef2(vae):
        return vae.decode(z) * 2 - 1
    if is_vq(vae):
        return vae.decode(z, force_not_quantize=True).sample
    return vae.decode(z).sample


# -- LDM components ---------------------------------------------------------------------------


@dataclass
class LDMComponents:
    """What LaRE needs from a latent diffusion model, whichever world it comes from.

    Stable Diffusion (diffusers pipeline layout) fills ``text_encoder`` and ``tokenizer``; the
    mini world fills ``prompt_encoder`` (:class:`~lare2lib.models.conditioning.ClassPromptEncoder`).
    :meth:`encode_prompts` hides the difference.
    """

    name: str
    """The reference the components were loaded from."""
    vae: nn.Module
    """``AutoencoderKL`` or ``VQModel`` (see :func:`encode_latents` for the difference)."""
    unet: nn.Module
    """``UNet2DConditionModel`` predicting epsilon."""
    scheduler: Any
    """``DDPMScheduler`` with the training noise schedule (only ``add_noise``/``alphas_cumprod`` matter)."""
    text_encoder: nn.Module | None = None
    """SD: ``CLIPTextModel``; its ``last_hidden_state`` conditions the UNet."""
    tokenizer: Any = None
    """SD: ``CLIPTokenizer``."""
    prompt_encoder: nn.Module | None = None
    """Mini world: learned class-prompt embeddings."""
    class_names: tuple[str, ...] = field(default=())
    """Classes the mini UNet knows (empty for SD, which takes free text)."""

    # -- model facts ---------------------------------------------------------------------
    @property
    def scaling_factor(self) -> float:
        """Multiplier from VAE latents to the unit-variance latents the UNet was trained on.

        Rombach et al. scale the first-stage latents by ``1/std`` measured on a training batch
        so that diffusion runs at unit variance; for SD1.x's VAE that is 0.18215 (SD2.x the
        same, SDXL 0.13025). It is stored in ``vae.config.scaling_factor``.
        """
        return float(self.vae.config.scaling_factor)

    @property
    def vae_scale_factor(self) -> int:
        """Pixel-to-latent downsampling: one ×2 per encoder block but the last (SD: 8)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def sample_size(self) -> int:
        """Pixel side the UNet was trained at (its latent ``sample_size`` × the VAE factor; SD1.5: 512)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- conditioning --------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts → ``encoder_hidden_states`` ``(B, L, D)`` on the UNet's device and dtype.

        Each distinct prompt is encoded once (LaRE's batches repeat a handful of class prompts).
        SD: CLIP tokens padded to ``tokenizer.model_max_length`` (77) as the SD pipeline does,
        ``last_hidden_state`` of the text encoder.
        """
        unique = list(dict.fromkeys(prompts))
        if self.prompt_encoder is not None:
            states = self.prompt_encoder.encode_prompts(unique)
        elif self.text_encoder is not None and self.tokenizer is not None:
            states = self._encode_clip(unique)
        else:
            raise RuntimeError(f"{self.name}: no text encoder or prompt encoder was loaded")
        index = torch.tensor([unique.index(p) for p in prompts], device=states.device)
        return states[index].to(self.device, self.dtype)

    def _encode_clip(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        input_ids = tokens.input_ids.to(self.text_encoder.device)
        return self.text_encoder(input_ids).last_hidden_state

    # -- placement -----------------------------------------------------------------------
    def modules(self) -> Iterator[nn.Module]:
        for module in (self.vae, self.unet, self.text_encoder, self.prompt_encoder):
            if module is not None:
                yield module

    def to(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
    ) -> "LDMComponents":
        """Move every module (in place) and return self; half precision is refused on CPU."""
        device = resolve_device(device) if device is not None else self.device
        dtype = resolve_dtype(dtype, device) if dtype is not None else None
        for module in self.modules():
            _place(module, device, dtype)
        return self

    def eval(self) -> "LDMComponents":
        """Eval mode and frozen parameters for every module (loaders already do this)."""
        for module in self.modules():
            _freeze(module)
        return self


def load_ldm(
    ref: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
) -> LDMComponents:
    """VAE, UNet, conditioning and DDPM scheduler of an LDM, inference-ready.

    ``ref`` is a diffusers pipeline folder or hub id (Stable Diffusion: ``vae/ unet/
    text_encoder/ tokenizer/ scheduler/ model_index.json``) or a mini-world folder
    (``ldm.json`` naming its parts; ``mini:kl_ldm``).
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    parsed = parse_ref(ref)
    if parsed.kind == "mini":
        _check_mini_exists(parsed, "ldm")
    if parsed.kind != "hub" and (parsed.path / "ldm.json").is_file():
        components = _load_mini_ldm(parsed)
    else:
        components = _load_sd_ldm(parsed)
    return components.to(device, dtype).eval()


def _load_sd_ldm(ref: ModelRef) -> LDMComponents:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if ref.kind == "local" and not (ref.path / "model_index.json").is_file():
        raise model_not_available(
            ref,
            "ldm",
            "neither model_index.json (diffusers pipeline) nor ldm.json (mini world) found",
        )
    vae_class = _autoencoder_class(ref, "auto", "vae", role="ldm")
    return LDMComponents(
        name=ref.text,
        vae=_from_pretrained(vae_class, ref, "ldm", "vae"),
        unet=_from_pretrained(UNet2DConditionModel, ref, "ldm", "unet"),
        scheduler=load_scheduler(ref.text, "scheduler"),
        text_encoder=_from_pretrained(CLIPTextModel, ref, "ldm", "text_encoder"),
        tokenizer=_from_pretrained(CLIPTokenizer, ref, "ldm", "tokenizer"),
    )


def _load_mini_ldm(ref: ModelRef) -> LDMComponents:
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from lare2lib.models.conditioning import ClassPromptEncoder

    folder = ref.path
    parts = json.loads((folder / "ldm.json").read_text())
    missing = {"vae", "unet", "prompt_encoder", "scheduler"} - set(parts)
    if missing:
        raise ValueError(
            f"{folder / 'ldm.json'} lacks {sorted(missing)}; it must name vae, unet, prompt_encoder, scheduler"
        )
    part_dirs = {role: (folder / rel).resolve() for role, rel in parts.items()}
    verify_mini_manifest(list(part_dirs.values()))
    vae = load_autoencoder(part_dirs["vae"])
    prompt_encoder = ClassPromptEncoder.from_pretrained(str(part_dirs["prompt_encoder"]))
    return LDMComponents(
        name=ref.text,
        vae=vae,
        unet=UNet2DConditionModel.from_pretrained(str(part_dirs["unet"])),
        scheduler=DDPMScheduler.from_pretrained(str(part_dirs["scheduler"])),
        prompt_encoder=prompt_encoder,
        class_names=prompt_encoder.class_names,
    )


# -- mini-world integrity ---------------------------------------------------------------------


def _check_mini_exists(ref: ModelRef, role: str) -> None:
    if not ref.path.is_dir():
        raise model_not_available(ref, role)


def verify_mini_manifest(folders: Sequence[Path], root: Path | None = None) -> None:
    """Check the sha256 of every manifest entry under ``folders`` (no manifest: nothing to check).

    ``manifest.json`` at the mini root maps ``files: {relative path: sha256}``. A listed
    file that is missing or differs raises ``ValueError`` naming it: weights that do not match
    what notebook 00 recorded must not silently produce numbers.
    """
    root = (root or mini_root()).resolve()
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return
    files: dict[str, str] = json.loads(manifest_path.read_text()).get("files", {})
    prefixes = [_relative_prefix(Path(f).resolve(), root) for f in folders]
    for relpath, expected in sorted(files.items()):
        if not any(
            p is not None and (p == "" or relpath == p or relpath.startswith(p + "/"))
            for p in prefixes
        ):
            continue
        file = root / relpath
        if not file.is_file():
            raise ValueError(
                f"mini weights: {file} is listed in {manifest_path} but missing; rerun notebook 00 (RETRAIN=True)"
            )
        actual = _sha256(str(file), *_stat_key(file))
        if actual != expected:
            raise ValueError(
                f"mini weights: sha256 of {relpath} is {actual[:12]}…, manifest says {expected[:12]}… "
                f"({manifest_path}); the file was changed or corrupted: restore it from git "
                "or rebuild with notebook 00 (RETRAIN=True)"
            )


def _relative_prefix(folder: Path, root: Path) -> str | None:
    with contextlib.suppress(ValueError):
        rel = folder.relative_to(root).as_posix()
        return "" if rel == "." else rel
    return None


def _stat_key(file: Path) -> tuple[int, int]:
    stat = file.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=256)
def _sha256(file: str, mtime_ns: int, size: int) -> str:
    """sha256 of a file, cached per (path, mtime, size) so repeated loads do not rehash."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
