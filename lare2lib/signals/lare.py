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
every random number comes from a per-image stream (:mod:`lare2lib.core.rng`), so a map does not
depend on batch size, order or process count. :func:`reference_lare_per_image` keeps the
original per-image loop for the equivalence test and the speed comparison.

VQ autoencoders (``VQModel``) have no posterior: their latent is the deterministic
pre-quantisation encoder output (``encode(x).latents``), times the configured scaling factor.

The extraction driver (:func:`lare2lib.signals.extract.extract_to_store`) and the ``lare2 extract``
command live in :mod:`lare2lib.signals.extract` (their names stay importable from here); the DIRE-style
baseline in :mod:`lare2lib.signals.dire` plugs into the same driver.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from lare2lib.core.profiles import LareConfig
from lare2lib.core.rng import LARE_NOISE_STREAM, POSTERIOR_STREAM, image_generator, randn_per_image
from lare2lib.signals.prompts import PROMPT_POLICIES, check_prompts_by_label, prompt_for  # noqa: F401 (re-exported)

__all__ = [
    "PROMPT_POLICIES",
    "prompt_for",
    "check_prompts_by_label",
    "pixels_from_image",
    "scaled_latents",
    "latent_shape",
    "PromptEmbedder",
    "Extractor",
    "LareExtractor",
    "single_step_loss",
    "reference_lare_per_image",
    "precision_error",
]


HALF_DTYPES = (torch.float16, torch.bfloat16)


# -- inputs -------------------------------------------------------------------------------
RESIZE_POLICIES = ("squash", "center_crop")
"""How an image becomes ``size × size``: ``squash`` (the whole image, aspect ratio not kept,
bicubic: the released LaRE); ``center_crop`` (short side to ``size``, bilinear, then the centre
square: torchvision's ``Resize(size)`` + ``CenterCrop(size)``, the released DIRE)."""


def pixels_from_image(image, size: int, resize: str = "squash") -> torch.Tensor:
    """A PIL image → ``(3, size, size)`` float32 in [-1, 1] by the ``resize`` policy
    (:data:`RESIZE_POLICIES`; default: squashed, as the released LaRE does)."""
    from PIL import Image

    image = image.convert("RGB")
    if resize == "squash":
        resized = image.resize((size, size), Image.BICUBIC)
    elif resize == "center_crop":
        width, height = image.size
        scale = size / min(width, height)
        # torchvision's Resize(int): the long side is truncated, not rounded
        new = (size, int(height * scale)) if width <= height else (int(width * scale), size)
        image = image.resize(new, Image.BILINEAR)
        left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
        resized = image.crop((left, top, left + size, top + size))
    else:
        raise ValueError(f"unknown resize policy {resize!r}; valid: {list(RESIZE_POLICIES)}")
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


def model_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of ``module``'s first parameter (where its inputs must go)."""
    parameter = next(module.parameters())
    return parameter.device, parameter.dtype


def check_precision(device: torch.device, dtype: torch.dtype) -> None:
    """Refuse half precision on the CPU (fp16 convolutions there are slow or unsupported)."""
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
        self.article = config.article  # how callers write this extractor's class prompts
        self.resize = "squash"  # how callers bring images to image_size (pixels_from_image)
        self.file_decoding = {"exif": config.exif_orientation, "alpha": config.alpha}  # how callers read files
        self.device, self.dtype = model_device_dtype(components.unet)
        check_precision(self.device, self.dtype)
        self.embed = PromptEmbedder(components.encode_prompts)
        self.unet_calls = 0

    def feature_shape(self) -> tuple[int, ...]:
        return latent_shape(self.components.vae, self.image_size)

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "posterior": self.posterior,
                "dtype": str(self.dtype).removeprefix("torch."),
                "timestep": self.config.timestep, "ensemble": self.config.ensemble,
                "image_size": self.image_size, **self.file_decoding}

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
        return self.draw_errors(z0, image_ids, embeddings, timestep, ensemble).mean(dim=1)

    def draw_errors(self, z0: torch.Tensor, image_ids: Sequence[str], embeddings: torch.Tensor,
                    timestep: int, ensemble: int) -> torch.Tensor:
        """``(B, K, C, h, w)``: the squared error of each of the K draws before averaging
        (notebook 01 studies how the map's noise falls with K)."""
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
        return error.unflatten(0, (batch, ensemble))

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor, image_ids: Sequence[str],
                 prompts: Sequence[str]) -> torch.Tensor:
        """``(B, 3, S, S)`` pixels in [-1, 1] → ``(B, C, S/f, S/f)`` float32 LaRE maps."""
        check_batch(pixels, image_ids, prompts, self.image_size)
        z0 = self.latents(pixels, image_ids)
        embeddings = self.embed(prompts, self.device, self.dtype)
        return self.error_at(z0, image_ids, embeddings, self.config.timestep,
                             self.config.ensemble)


def check_batch(pixels: torch.Tensor, image_ids: Sequence[str], prompts: Sequence[str],
                image_size: int) -> None:
    """Raise unless ``pixels`` is ``(len(image_ids), 3, image_size, image_size)`` with one prompt per image."""
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
    check_batch(pixels, image_ids, prompts, extractor.image_size)
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
    device, dtype = model_device_dtype(unet)
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

    device, _ = model_device_dtype(components.unet)
    check_precision(device, dtype)
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
