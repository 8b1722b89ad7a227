"""LaRE: latent reconstruction error, as the released code computes it, but batched.

For each image (METHODS.md §1)::

    x   = whole image squashed to S×S (bicubic), scaled to [-1, 1]          (3, S, S)
    z0  = vae.encode(x).latent_dist.sample() * scaling_factor               (C, S/f, S/f)
    for k in 1..K (one latent sample shared by all draws):
        eps_k = N(0, I)
        z_t   = scheduler.add_noise(z0, eps_k, t) = sqrt(ᾱ_t) z0 + sqrt(1 - ᾱ_t) eps_k
        e_k   = (unet(z_t, t, prompt_embedding).sample - eps_k) ** 2
    LaRE = mean_k e_k → float32 (C, S/f, S/f); no pooling

with S = 256, t = 200, K = 4 and SD v1.5 (``f = 8``, ``C = 4``) in the paper. The released
loop runs one image at a time and re-embeds the prompt for every image; here a batch of B
images becomes a single UNet call on B·K latents, each distinct prompt is embedded once, and
every random number comes from a per-image stream (:mod:`lare2lib.rng`), so a map does not
depend on batch size, order or process count. :func:`reference_lare_per_image` keeps the
original per-image loop for the equivalence test and the speed comparison.

VQ autoencoders (``VQModel``) have no posterior: their latent is the deterministic
pre-quantisation encoder output (``encode(x).latents``), times the configured scaling factor.

The extraction driver (:func:`extract_to_store`) and the ``lare2 extract`` command live here
too; the DIRE-style baseline in :mod:`lare2lib.dire` plugs into the same driver.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from lare2lib.profiles import LareConfig
from lare2lib.rng import LARE_NOISE_STREAM, POSTERIOR_STREAM, image_generator, randn_per_image

__all__ = [
    "PROMPT_POLICIES",
    "prompt_for",
    "pixels_from_image",
    "scaled_latents",
    "latent_shape",
    "PromptEmbedder",
    "Extractor",
    "LareExtractor",
    "single_step_loss",
    "reference_lare_per_image",
    "precision_error",
    "ExtractionSummary",
    "make_extractor",
    "extraction_config",
    "extract_to_store",
    "add_extract_arguments",
    "extract_command",
]

PROMPT_POLICIES = ("class", "photo", "empty")
"""``class``: "a photo of a {class}" (LaRE on ImageNet-class data), falling back to "a photo"
for images without a known class; ``photo``: "a photo"; ``empty``: "" (class-free data)."""

HALF_DTYPES = (torch.float16, torch.bfloat16)


# -- inputs -------------------------------------------------------------------------------
def prompt_for(policy: str, class_name: str | None, known_classes: Sequence[str] = ()) -> str:
    """The LaRE prompt of one image under ``policy`` (see :data:`PROMPT_POLICIES`).

    ``known_classes`` is the model's class vocabulary (empty = any name, as with CLIP); a class
    outside it falls back to "a photo" rather than failing.
    """
    from lare2lib.conditioning import class_prompt

    if policy == "empty":
        return ""
    if policy == "photo":
        return "a photo"
    if policy != "class":
        raise ValueError(f"unknown prompt policy {policy!r}; valid: {list(PROMPT_POLICIES)}")
    known = {name.lower() for name in known_classes}
    if not class_name or (known and class_name.lower() not in known):
        return "a photo"
    return class_prompt(class_name)


def pixels_from_image(image, size: int) -> torch.Tensor:
    """A PIL image → ``(3, size, size)`` float32 in [-1, 1]: the whole image squashed
    (aspect ratio not kept, nothing cropped) with bicubic resampling, as the release does."""
    from PIL import Image

    resized = image.convert("RGB").resize((size, size), Image.BICUBIC)
    array = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def latent_shape(vae, image_size: int) -> tuple[int, int, int]:
    """``(C, S/f, S/f)`` of an SD-style VAE: one 2× downsampling per block but the last."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if image_size % factor:
        raise ValueError(f"image_size {image_size} is not a multiple of the VAE's "
                         f"downsampling factor {factor}")
    channels = vae.config.latent_channels
    side = image_size // factor
    return (channels, side, side)


def scaled_latents(vae, pixels: torch.Tensor, scaling_factor: float,
                   posterior_noise: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled latents ``(z - shift) * scaling_factor`` of ``pixels`` (B, 3, S, S), float32.

    KL VAE: ``z = mean + std * posterior_noise`` (what ``latent_dist.sample(generator)``
    computes, with the noise drawn per image by the caller); ``posterior_noise=None`` takes the
    posterior mean instead. VQ VAE: the pre-quantisation latent (no noise). ``shift`` is the
    config's ``shift_factor`` (SD3/FLUX VAEs), 0 for SD.
    """
    encoded = vae.encode(pixels)
    if hasattr(encoded, "latent_dist"):
        posterior = encoded.latent_dist
        latents = posterior.mean.float()
        if posterior_noise is not None:
            latents = latents + posterior.std.float() * posterior_noise.float()
    else:
        latents = encoded.latents.float()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * scaling_factor


class PromptEmbedder:
    """Embeds prompts through ``components.encode_prompts``, each distinct string once.

    The released loop calls the text encoder once per image; a batch usually repeats a handful
    of prompts, and GenImage has at most 1000. Embeddings are kept (least recently used first
    out) up to ``max_entries`` prompts: ~240 KB each for CLIP-L's 77×768 in fp32.
    """

    def __init__(self, encode_prompts: Callable[[list[str]], torch.Tensor],
                 max_entries: int = 1024):
        self.encode_prompts = encode_prompts
        self.max_entries = max_entries
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, prompts: Sequence[str], device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
        """``(len(prompts), L, D)`` embeddings; new prompts are embedded in one call."""
        new = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if new:
            for prompt, embedding in zip(new, self.encode_prompts(new)):
                self._cache[prompt] = embedding
        rows = []
        for prompt in prompts:
            self._cache.move_to_end(prompt)
            rows.append(self._cache[prompt])
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return torch.stack(rows).to(device=device, dtype=dtype)


def _model_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(module.parameters())
    return parameter.device, parameter.dtype


def _check_precision(device: torch.device, dtype: torch.dtype) -> None:
    if dtype in HALF_DTYPES and device.type == "cpu":
        raise ValueError(f"{dtype} extraction is only supported on GPU (the released fp16 path "
                         "also crashes); use float32 on CPU")


def _training_target(scheduler, z0: torch.Tensor, eps: torch.Tensor,
                     timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet was trained to predict: ``eps`` (SD v1.5) or the velocity (v-models)."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return scheduler.get_velocity(z0, eps, timesteps)
    raise ValueError(f"LaRE needs an epsilon or v-prediction UNet, got prediction_type={kind!r}")


# -- extraction ---------------------------------------------------------------------------
class Extractor(Protocol):
    """What :func:`extract_to_store` drives: pixels in, one feature map per image out."""

    method: str
    image_size: int

    def feature_shape(self) -> tuple[int, ...]: ...

    def config_dict(self) -> dict[str, Any]: ...

    def __call__(self, pixels: torch.Tensor, image_ids: Sequence[str],
                 prompts: Sequence[str]) -> torch.Tensor: ...


class LareExtractor:
    """Batched LaRE maps from an LDM's ``vae``, ``unet``, ``scheduler`` and prompt encoder.

    Args:
        components: Duck-typed LDM (``vae``, ``unet``, ``scheduler``, ``encode_prompts``,
            ``scaling_factor``, ``class_names``), already on its device and dtype.
        config: Timestep, ensemble size K and input size (``LareConfig``).
        seed: Root seed; an image's randomness depends only on (seed, image id).
        posterior: ``"sample"`` (released code) or ``"mean"`` (deterministic ablation).
    """

    method = "lare"

    def __init__(self, components, config: LareConfig = LareConfig(), *, seed: int = 0,
                 posterior: str = "sample"):
        if posterior not in ("sample", "mean"):
            raise ValueError(f"posterior must be 'sample' or 'mean', got {posterior!r}")
        self.components = components
        self.config = config
        self.seed = seed
        self.posterior = posterior
        self.image_size = config.image_size
        self.device, self.dtype = _model_device_dtype(components.unet)
        _check_precision(self.device, self.dtype)
        self.embed = PromptEmbedder(components.encode_prompts)
        self.unet_calls = 0

    def feature_shape(self) -> tuple[int, ...]:
        return latent_shape(self.components.vae, self.image_size)

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "posterior": self.posterior,
                "dtype": str(self.dtype).removeprefix("torch."),
                "timestep": self.config.timestep, "ensemble": self.config.ensemble,
                "image_size": self.image_size}

    def latents(self, pixels: torch.Tensor, image_ids: Sequence[str]) -> torch.Tensor:
        """``(B, C, h, w)`` float32 scaled latents, the posterior noise drawn per image."""
        noise = None
        if self.posterior == "sample":
            noise = randn_per_image(self.feature_shape(), self.seed, image_ids, POSTERIOR_STREAM,
                                    device=self.device)
        pixels = pixels.to(self.device, self.dtype)
        return scaled_latents(self.components.vae, pixels, self.components.scaling_factor, noise)

    def error_at(self, z0: torch.Tensor, image_ids: Sequence[str], embeddings: torch.Tensor,
                 timestep: int, ensemble: int) -> torch.Tensor:
        """``(B, C, h, w)`` squared noise-prediction error at one ``timestep``, averaged over
        ``ensemble`` draws, all B·K noisy latents in one UNet call."""
        batch, shape = z0.shape[0], tuple(z0.shape[1:])
        eps = randn_per_image((ensemble, *shape), self.seed, image_ids, LARE_NOISE_STREAM,
                              device=self.device).flatten(0, 1)
        z0_draws = z0.repeat_interleave(ensemble, dim=0)
        timesteps = torch.full((batch * ensemble,), timestep, dtype=torch.long, device=self.device)
        z_t = self.components.scheduler.add_noise(z0_draws, eps, timesteps)
        prediction = self.components.unet(
            z_t.to(self.dtype), timesteps,
            encoder_hidden_states=embeddings.repeat_interleave(ensemble, dim=0),
        ).sample
        self.unet_calls += 1
        target = _training_target(self.components.scheduler, z0_draws, eps, timesteps)
        error = (prediction.float() - target).pow(2)
        return error.unflatten(0, (batch, ensemble)).mean(dim=1)

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor, image_ids: Sequence[str],
                 prompts: Sequence[str]) -> torch.Tensor:
        """``(B, 3, S, S)`` pixels in [-1, 1] → ``(B, C, S/f, S/f)`` float32 LaRE maps."""
        _check_batch(pixels, image_ids, prompts, self.image_size)
        z0 = self.latents(pixels, image_ids)
        embeddings = self.embed(prompts, self.device, self.dtype)
        return self.error_at(z0, image_ids, embeddings, self.config.timestep,
                             self.config.ensemble)


def _check_batch(pixels: torch.Tensor, image_ids: Sequence[str], prompts: Sequence[str],
                 image_size: int) -> None:
    expected = (len(image_ids), 3, image_size, image_size)
    if tuple(pixels.shape) != expected or len(prompts) != len(image_ids):
        raise ValueError(f"expected pixels of shape {expected} and {len(image_ids)} prompts, got "
                         f"{tuple(pixels.shape)} and {len(prompts)} prompts")
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("image ids must be unique within a batch (they seed the noise)")


@torch.inference_mode()
def single_step_loss(components, pixels: torch.Tensor, image_ids: Sequence[str],
                     prompts: Sequence[str], timesteps: Sequence[int], *, ensemble: int = 1,
                     seed: int = 0) -> torch.Tensor:
    """``(B, len(timesteps))`` mean single-step loss per image at each t (paper Fig. 1b).

    One latent sample per image is shared by every t (as LaRE shares it across draws), so the
    curve reflects the noise level, not a new encoding; the noise draws are the same at each t.
    """
    extractor = LareExtractor(components, LareConfig(image_size=pixels.shape[-1]), seed=seed)
    _check_batch(pixels, image_ids, prompts, extractor.image_size)
    z0 = extractor.latents(pixels, image_ids)
    embeddings = extractor.embed(prompts, extractor.device, extractor.dtype)
    columns = [extractor.error_at(z0, image_ids, embeddings, int(t), ensemble).mean(dim=(1, 2, 3))
               for t in timesteps]
    return torch.stack(columns, dim=1)


@torch.inference_mode()
def reference_lare_per_image(components, image, image_id: str, prompt: str,
                             config: LareConfig = LareConfig(), *, seed: int = 0) -> torch.Tensor:
    """One image, written plainly after the released loop (text embedded per image).

    Used by the equivalence test and as the "per-image loop" of the speed comparison. Draws
    the same per-image random numbers as :class:`LareExtractor`, through diffusers' own
    ``latent_dist.sample(generator)``.
    """
    vae, unet, scheduler = components.vae, components.unet, components.scheduler
    device, dtype = _model_device_dtype(unet)
    x = pixels_from_image(image, config.image_size)[None].to(device, dtype)
    encoded = vae.encode(x)
    if hasattr(encoded, "latent_dist"):
        posterior = image_generator(seed, image_id, POSTERIOR_STREAM)
        latent = encoded.latent_dist.sample(generator=posterior)
    else:
        latent = encoded.latents
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    z0 = ((latent.float() - shift) * components.scaling_factor).repeat(config.ensemble, 1, 1, 1)
    text_embedding = components.encode_prompts([prompt]).to(device, dtype)
    noise = image_generator(seed, image_id, LARE_NOISE_STREAM)
    eps = torch.randn(z0.shape, generator=noise).to(device)
    t = torch.full((config.ensemble,), config.timestep, dtype=torch.long, device=device)
    noisy = scheduler.add_noise(z0, eps, t)
    eps_pred = unet(noisy.to(dtype), t,
                    encoder_hidden_states=text_embedding.repeat(config.ensemble, 1, 1)).sample
    target = _training_target(scheduler, z0, eps, t)
    return ((eps_pred.float() - target) ** 2).mean(dim=0)


def precision_error(components, pixels: torch.Tensor, image_ids: Sequence[str],
                    prompts: Sequence[str], config: LareConfig = LareConfig(), *,
                    dtype: torch.dtype = torch.float16, seed: int = 0) -> dict[str, float]:
    """Error of ``dtype`` LaRE maps against float32 on one batch (GPU only for half types).

    ``components`` must be float32; half copies of the VAE and UNet are made for the
    comparison. Returns max and mean absolute error and the relative L2 error
    ``||half - fp32|| / ||fp32||``.
    """
    import copy
    from types import SimpleNamespace

    device, _ = _model_device_dtype(components.unet)
    _check_precision(device, dtype)
    reference = LareExtractor(components, config, seed=seed)(pixels, image_ids, prompts)
    half = SimpleNamespace(
        vae=copy.deepcopy(components.vae).to(dtype), unet=copy.deepcopy(components.unet).to(dtype),
        scheduler=components.scheduler, encode_prompts=components.encode_prompts,
        scaling_factor=components.scaling_factor, class_names=components.class_names)
    approx = LareExtractor(half, config, seed=seed)(pixels, image_ids, prompts)
    difference = (approx - reference).abs()
    return {"dtype": str(dtype).removeprefix("torch."),
            "max_abs": float(difference.max()), "mean_abs": float(difference.mean()),
            "relative_l2": float(difference.norm() / reference.norm().clamp_min(1e-12))}


# -- the driver ---------------------------------------------------------------------------
@dataclass
class ExtractionSummary:
    """How an extraction run went."""

    done: int = 0
    """Images whose feature was computed and stored in this run."""
    skipped_finished: int = 0
    """Images already in the store (a resumed run does not recompute them)."""
    bad: dict[str, str] = field(default_factory=dict)
    """Unreadable images → reason; they get no feature and are listed in the store report."""
    seconds: float = 0.0
    """Wall time of this run, loading included."""

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"extracted {self.done} image(s) in {self.seconds:.1f} s "
                 f"({self.images_per_second:.2f} images/s); {self.skipped_finished} already "
                 f"in the store; {len(self.bad)} bad"]
        lines += [f"  bad: {image_id}: {reason}" for image_id, reason in sorted(self.bad.items())]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Item:
    image_id: str
    source: str | Callable[[], Any]
    """A file path, or a function returning a PIL image (in-memory sets; num_workers=0)."""
    class_name: str | None


def _as_item(record) -> _Item:
    if isinstance(record, (tuple, list)):
        source = record[1] if callable(record[1]) else str(record[1])
        return _Item(str(record[0]), source, record[2] if len(record) > 2 else None)
    return _Item(record.image_id, str(record.path), getattr(record, "class_name", None))


def _load_rgb(source: str | Callable[[], Any]):
    """8-bit RGB PIL image: :func:`lare2lib.images.load_image` converts grey, palette, CMYK,
    16-bit, alpha and animated files and raises ``BadImageError`` for the rest."""
    if callable(source):
        return source().convert("RGB")
    from lare2lib.images import load_image

    return load_image(source)


class _PixelDataset(torch.utils.data.Dataset):
    """Decodes and squashes images in DataLoader workers; failures become reasons, not crashes."""

    def __init__(self, items: Sequence[_Item], image_size: int):
        self.items = list(items)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            return index, pixels_from_image(_load_rgb(self.items[index].source), self.image_size)
        except Exception as error:  # any decoder failure is a reportable bad image
            return index, _failure_reason(error)


def _failure_reason(error: Exception) -> str:
    """``"<reason code>: <detail>"`` for :class:`lare2lib.images.BadImageError`, else the
    exception type and message."""
    if hasattr(error, "reason") and hasattr(error, "message"):
        return f"{error.reason}: {error.message}"
    return f"{type(error).__name__}: {error}"


def _collate(batch):
    good = [(index, pixels) for index, pixels in batch if isinstance(pixels, torch.Tensor)]
    bad = [(index, reason) for index, reason in batch if isinstance(reason, str)]
    pixels = torch.stack([p for _, p in good]) if good else None
    return [index for index, _ in good], pixels, bad


def make_extractor(method: str, components, config: LareConfig = LareConfig(), *, seed: int = 0,
                   **options) -> Extractor:
    """``"lare"`` → :class:`LareExtractor`; ``"dire"`` → :class:`lare2lib.dire.DireExtractor`."""
    if method == "lare":
        return LareExtractor(components, config, seed=seed, **options)
    if method == "dire":
        from lare2lib.dire import DireExtractor

        return DireExtractor(components, config, seed=seed, **options)
    raise ValueError(f"unknown extraction method {method!r}; valid: ['lare', 'dire']")


def extraction_config(extractor: Extractor, model: str, prompt_policy: str) -> dict[str, Any]:
    """What a store's features depend on (batch size, device and workers do not)."""
    return {**extractor.config_dict(), "model": model, "prompt": prompt_policy}


def extract_to_store(method: str | Extractor, components, records, store,
                     config: LareConfig = LareConfig(), seed: int = 0,
                     batch_size: int | None = None, device: str | None = None,
                     num_workers: int = 0, *,
                     prompt: str | None = None, bad: dict[str, str] | None = None,
                     progress: bool = True) -> ExtractionSummary:
    """Extract features for ``records`` into ``store``, skipping ids already there.

    ``records`` are ``ImageRecord``-like objects (``image_id``, ``path``, ``class_name``) or
    ``(image_id, path[, class_name])`` tuples. Images are decoded by a DataLoader
    (``num_workers`` processes) while the model computes; a failed decode is recorded in the
    store report and gets no feature; ``bad`` adds failures found earlier (e.g. files whose
    header :func:`lare2lib.images.scan_folder` could not read). ``device`` is only checked
    against the components (they are moved by their loader). Rows are flushed to the store
    before returning.
    """
    started = time.perf_counter()
    extractor = method if not isinstance(method, str) else make_extractor(
        method, components, config, seed=seed)
    if device is not None and torch.device(device).type != extractor.device.type:
        raise ValueError(f"components are on {extractor.device}, extraction asked for {device}")
    policy = prompt or config.prompt
    known_classes = tuple(getattr(components, "class_names", ()) or ())
    items = [_as_item(record) for record in records]
    todo = store.missing([item.image_id for item in items])
    todo_set = set(todo)
    pending = [item for item in items if item.image_id in todo_set]
    summary = ExtractionSummary(skipped_finished=len(items) - len(pending))
    for image_id, reason in (bad or {}).items():
        store.mark_bad(image_id, reason)
        summary.bad[image_id] = reason
    loader = torch.utils.data.DataLoader(
        _PixelDataset(pending, extractor.image_size), batch_size=batch_size or config.batch_size,
        num_workers=num_workers, collate_fn=_collate, pin_memory=extractor.device.type == "cuda")
    from lare2lib.store import manifest_hash
    from tqdm.auto import tqdm

    manifest = manifest_hash(item.image_id for item in items)
    with tqdm(total=len(pending), desc=f"{extractor.method} features", unit="img",
              disable=not progress) as bar:
        for indices, pixels, bad in loader:
            for index, reason in bad:
                store.mark_bad(pending[index].image_id, reason)
                summary.bad[pending[index].image_id] = reason
            if indices:
                batch = [pending[i] for i in indices]
                prompts = [prompt_for(policy, item.class_name, known_classes) for item in batch]
                ids = [item.image_id for item in batch]
                store.append(ids, extractor(pixels, ids, prompts).cpu(), manifest=manifest)
                summary.done += len(batch)
            bar.update(len(indices) + len(bad))
    store.flush()
    summary.seconds = time.perf_counter() - started
    return summary


# -- command line -------------------------------------------------------------------------
def add_extract_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``lare2 extract``; unset ones default to the profile's values."""
    parser.add_argument("--method", choices=("lare", "dire"), default="lare",
                        help="LaRE (1 UNet pass per draw) or the DIRE-style baseline (2×20 passes)")
    parser.add_argument("--images", required=True,
                        help="an image folder (scanned recursively) or a manifest file")
    parser.add_argument("--out", required=True, help="feature store folder (resumed if present)")
    parser.add_argument("--profile", default="mini", help="profile for the defaults (mini|smoke|full)")
    parser.add_argument("--model", help="LDM reference (default: the profile's models.ldm)")
    parser.add_argument("--t", type=int, dest="timestep", help="LaRE timestep (default 200)")
    parser.add_argument("--ensemble", type=int, help="noise draws per image (default 4)")
    parser.add_argument("--batch-size", type=int, help="images per batch")
    parser.add_argument("--seed", type=int, help="root seed (default: the profile's)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the profile's)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                        help="inference precision (half types on GPU only)")
    parser.add_argument("--prompt", choices=PROMPT_POLICIES, help="prompt policy (default class)")
    parser.add_argument("--class-from", choices=("none", "imagenet"), default="none",
                        help="class names of a scanned folder: none, or ImageNet ids in file "
                             "names (GenImage); a manifest's class_name column always counts")
    parser.add_argument("--store-dtype", choices=("float32", "float16"), default="float32",
                        help="on-disk precision of the maps")
    parser.add_argument("--num-workers", type=int, default=2, help="image decoding processes")
    parser.add_argument("--dire-steps", type=int, default=20,
                        help="DDIM inversion steps = reconstruction steps (DIRE only)")
    parser.add_argument("--dire-space", choices=("pixel", "latent"), default="pixel",
                        help="where the DIRE error |x - x̂| is taken")
    return parser


def _resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _read_records(images: str, class_from: str = "none") -> tuple[list, dict[str, str]]:
    """Records of a folder or manifest, and ``{image_id: reason}`` of files a folder scan
    could not even open (they are reported like images that fail to decode)."""
    from lare2lib import images as image_io

    source = Path(images)
    if source.is_file():
        return image_io.read_manifest(source), {}
    if not source.is_dir():
        raise FileNotFoundError(f"--images {images!r} is neither a folder nor a manifest file")
    class_name_fn = None
    if class_from == "imagenet":
        from lare2lib.imagenet import class_name_from_filename as class_name_fn
    report = image_io.DecodeReport()
    records = image_io.scan_folder(source, report=report, class_name_fn=class_name_fn)
    bad = {failure.image_id or failure.path: f"{failure.reason}: {failure.message}"
           for failure in report.failures}
    return records, bad


def extract_command(args: argparse.Namespace) -> int:
    """``lare2 extract``: build the extractor and store from ``args``, run, print a summary."""
    from lare2lib.models import load_ldm
    from lare2lib.profiles import get_profile
    from lare2lib.store import FeatureStore

    profile = get_profile(args.profile, seed=args.seed)
    overrides = {"timestep": args.timestep, "ensemble": args.ensemble,
                 "batch_size": args.batch_size, "prompt": args.prompt}
    config = dataclasses.replace(profile.lare, **{k: v for k, v in overrides.items()
                                                  if v is not None})
    model = args.model or profile.models.ldm
    device = _resolve_device(args.device or profile.device)
    dtype = getattr(torch, args.dtype or profile.dtype)
    components = load_ldm(model, device=device, dtype=dtype)
    options = ({"steps": args.dire_steps, "space": args.dire_space}
               if args.method == "dire" else {})
    extractor = make_extractor(args.method, components, config, seed=profile.seed, **options)
    records, unreadable = _read_records(args.images, args.class_from)
    store = FeatureStore(args.out, extraction_config(extractor, model, config.prompt),
                         dtype=args.store_dtype)
    print(f"{args.method} on {len(records)} image(s) with {model} (seed {profile.seed}, "
          f"device {device}) → {args.out}")
    summary = extract_to_store(extractor, components, records, store, config,
                               seed=profile.seed, batch_size=config.batch_size,
                               num_workers=args.num_workers, bad=unreadable)
    print(summary)
    return 0
