"""Evasion of the project's detectors: white-box PGD, artifact removal, and the scores they need.

Three ways an adversary who holds a generated image can try to make a detector call it real:

* **post-processing** (JPEG, resizing, blur, noise): :mod:`lare2lib.data.perturb`, applied to both
  classes; this module only scores the results (:mod:`lare2lib.studies.nb06_evasion`);
* **artifact removal**: pass the generated image through a *different* autoencoder than the one
  that decoded it (:func:`reencode_through`), or through a simple denoiser (:func:`denoise`),
  hoping to replace the generator's decoder trace by another one or to wash it out;
* **white-box PGD** (:func:`pgd_attack`): L∞-bounded gradient descent on the detector's own
  fake score, through its whole preprocessing, ending in an 8-bit image as a saved file would
  be; :func:`psnr` measures what the perturbation costs.

PGD needs each detector's score as a differentiable function of the pixels. The detectors'
``score_images`` run under ``torch.inference_mode`` (no gradients), so this module rebuilds the
same computation with gradients, from the detectors' public pieces:
:func:`differentiable_score` returns ``f(x01) -> score (B,)`` for ``x01`` a float batch in
[0, 1] of fixed images (their ids fix every random draw). On 8-bit inputs it equals the
detector's ``score_images`` (tests check it):

* reconstruction classifier (:class:`lare2lib.detectors.recon_classifier.ReconClassifier`): **the crop
  ``score_images(tries=1)`` takes** (drawn from (seed, image id), the same for every PGD step),
  normalisation, network, sigmoid. A detector scored with several random crops would call for
  expectation over crops; we attack and score the 1-try view;
* EGRE (:class:`lare2lib.detectors.egre.EgreDetector`): LaRE recomputed with gradients through the VAE
  encoder and the UNet at the **fixed** posterior sample and noise draws of each image id (the
  numbers :class:`lare2lib.signals.lare.LareExtractor` draws), the centre crop and its map window,
  the head, softmax;
* mean-LaRE (:class:`MeanLare`): the same LaRE map, score = −mean;
* AEROBLADE (:class:`lare2lib.detectors.aeroblade`'s detector, wrapped by :func:`aeroblade_score`):
  reconstruction through each autoencoder at its fixed posterior sample, the distance, −min.

``logit=True`` returns an unbounded monotone version of the score (the log-odds for the
trained detectors): PGD follows the sign of the gradient, and a saturated sigmoid has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lare2lib.core.rng import image_generator

__all__ = [
    "ScoreFn",
    "PGD_STREAM",
    "to_unit",
    "to_uint8",
    "quantise_within",
    "pgd_attack",
    "attack_images",
    "psnr",
    "MeanLare",
    "Aeroblade",
    "aeroblade_score",
    "classifier_crop_offsets",
    "classifier_score",
    "lare_maps_with_grad",
    "egre_score",
    "mean_lare_score",
    "differentiable_score",
    "median_filter",
    "blur_unsharp",
    "DENOISERS",
    "denoise",
    "reencode_through",
    "cross_family_autoencoder",
]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""``f(x01)``: float ``(B, 3, H, W)`` in [0, 1] → fake score ``(B,)`` (higher = more fake)."""

PGD_STREAM = "pgd-start"
""":mod:`lare2lib.core.rng` stream of PGD's random start (independent of every other draw)."""


# -- pixels ------------------------------------------------------------------------------------


def to_unit(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` (or a list of equal-size ``(3, H, W)``) → float32 in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        images = torch.stack(list(images))
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.float() / 255.0


def to_uint8(x01: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] → uint8, rounded (exact for values already on the 8-bit grid)."""
    return (x01.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)


def quantise_within(x01: torch.Tensor, clean01: torch.Tensor, eps: float) -> torch.Tensor:
    """Round ``x01`` to the 8-bit grid, staying within ``eps`` (L∞) of ``clean01`` and in [0, 1].

    For an 8-bit ``clean01`` and a budget of whole 8-bit steps the rounding never leaves the
    budget anyway; the clamp covers fractional budgets (it rounds towards the clean image).
    """
    levels = (x01.detach() * 255.0).round()
    low = torch.ceil((clean01 - eps) * 255.0 - 1e-4).clamp_min(0)
    high = torch.floor((clean01 + eps) * 255.0 + 1e-4).clamp_max(255)
    return torch.minimum(torch.maximum(levels, low), high) / 255.0


# -- PGD ---------------------------------------------------------------------------------------


def _random_start(shape: torch.Size, eps: float, seed: int,
                  image_ids: Sequence[str] | None) -> torch.Tensor:
    """Uniform noise in [-eps, eps]: per (seed, image id) when ids are given, else one draw."""
    if image_ids is None:
        generator = torch.Generator().manual_seed(int(seed))
        return (torch.rand(tuple(shape), generator=generator) * 2 - 1) * eps
    if len(image_ids) != shape[0]:
        raise ValueError(f"{shape[0]} images but {len(image_ids)} ids")
    rows = [torch.rand(tuple(shape[1:]), generator=image_generator(seed, i, PGD_STREAM))
            for i in image_ids]
    return (torch.stack(rows) * 2 - 1) * eps


def pgd_attack(score_fn: ScoreFn, images01: torch.Tensor, eps: float, steps: int,
               step_size: float | None = None, seed: int = 0, *,
               image_ids: Sequence[str] | None = None, keep_best: bool = True) -> torch.Tensor:
    """L∞ PGD with a random start that **lowers** ``score_fn`` (the attacker wants "real").

    Args:
        score_fn: ``f(x01) -> (B,)`` fake score, differentiable in ``x01``; rows independent.
        images01: Clean images, float ``(B, 3, H, W)`` in [0, 1] (8-bit values).
        eps: L∞ budget in [0, 1] units (``4 / 255``: four 8-bit steps); 0 returns the input.
        steps: Signed-gradient steps after the random start.
        step_size: Per step; default ``2.5 · eps / steps`` (Madry et al.).
        seed: Seed of the random start (per image from ``image_ids`` when given, so a batch
            split differently starts each image from the same point).
        keep_best: Return, per image, the iterate with the lowest score seen (the score is
            computed at every step anyway); False: the last iterate.

    Returns:
        Adversarial images, float in [0, 1] **on the 8-bit grid**, each within ``eps`` of its
        clean image (:func:`quantise_within`): what a saved PNG would hold.
    """
    if eps < 0 or steps < 0:
        raise ValueError(f"eps and steps must be non-negative, got eps={eps}, steps={steps}")
    clean = images01.detach().float()
    if eps == 0 or steps == 0:
        return clean.clone()
    step_size = 2.5 * eps / steps if step_size is None else float(step_size)
    delta = _random_start(clean.shape, eps, seed, image_ids).to(clean.device)
    x = (clean + delta).clamp(0, 1)
    best, best_score = x.clone(), torch.full((len(x),), math.inf, device=clean.device)
    for step in range(steps + 1):
        x.requires_grad_(True)
        with torch.enable_grad():
            score = score_fn(x).reshape(-1)
            gradient = torch.autograd.grad(score.sum(), x)[0] if step < steps else None
        with torch.no_grad():
            better = score.detach() < best_score
            best[better], best_score[better] = x.detach()[better], score.detach()[better]
            if gradient is None:
                break
            x = x.detach() - step_size * gradient.sign()
            x = torch.minimum(torch.maximum(x, clean - eps), clean + eps).clamp(0, 1)
    final = best if keep_best else x.detach()
    return quantise_within(final, clean, eps)


def attack_images(make_score: Callable[[Sequence[str], Sequence[Any]], ScoreFn],
                  images: torch.Tensor, image_ids: Sequence[str], eps: float, steps: int, *,
                  class_names: Sequence[Any] | None = None, step_size: float | None = None,
                  seed: int = 0, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """PGD on a uint8 set in batches; ``make_score(ids, class_names)`` builds each batch's
    :data:`ScoreFn` (the ids fix its random draws). Returns uint8 adversarial images."""
    from tqdm.auto import tqdm

    names = list(class_names) if class_names is not None else [None] * len(image_ids)
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"PGD ε={eps * 255:g}/255",
                      disable=not progress, leave=False):
        chunk = slice(start, start + batch_size)
        ids = list(image_ids[chunk])
        score_fn = make_score(ids, names[chunk])
        adversarial = pgd_attack(score_fn, to_unit(images[chunk]), eps, steps, step_size, seed,
                                 image_ids=ids)
        out.append(to_uint8(adversarial))
    return torch.cat(out) if out else images[:0].clone()


def psnr(clean: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of a perturbation, peak 255 (:func:`lare2lib.world.quality.psnr_db`).

    Takes uint8 images or floats in [0, 1] (both arguments the same kind); identical images
    give ``inf``, not the 100 dB floor of a clamped MSE.
    """
    from lare2lib.world.quality import psnr_db

    if clean.dtype != changed.dtype or clean.shape != changed.shape:
        raise ValueError(f"psnr needs two batches of one dtype and shape, got {clean.dtype} "
                         f"{tuple(clean.shape)} and {changed.dtype} {tuple(changed.shape)}")
    scale = 1.0 if clean.dtype == torch.uint8 else 255.0
    a, b = clean.float() * scale, changed.float() * scale
    values = psnr_db(a, b)
    identical = (a - b).flatten(1).abs().amax(dim=1) == 0
    return torch.where(identical, torch.full_like(values, math.inf), values)


# -- differentiable scores ---------------------------------------------------------------------


def classifier_crop_offsets(detector, image_hw: tuple[int, int], image_ids: Sequence[str],
                            seed: int = 0) -> list[tuple[int, int]]:
    """``(top, left)`` of the crop ``ReconClassifier.score_images(tries=1)`` takes per image.

    The first draw of the image's own generator (seed, id, :data:`aerecon.CROP_STREAM`), as
    :func:`lare2lib.data.transforms.random_crop` draws it: top first, then left.
    """
    from lare2lib.detectors.recon_classifier import CROP_STREAM

    height, width = image_hw
    crop = detector.crop_size
    if height < crop or width < crop:
        raise ValueError(f"{height}x{width} images are smaller than the {crop}px crop: the "
                         "differentiable path does not pad; attack images at least the crop")
    offsets = []
    for image_id in image_ids:
        generator = image_generator(seed, image_id, CROP_STREAM)
        top = int(torch.randint(0, height - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - crop + 1, (1,), generator=generator))
        offsets.append((top, left))
    return offsets


def _stack_crops(x: torch.Tensor, offsets: Sequence[tuple[int, int]], crop: int) -> torch.Tensor:
    return torch.stack([image[:, top:top + crop, left:left + crop]
                        for image, (top, left) in zip(x, offsets)])


def classifier_score(detector, image_ids: Sequence[str], *, seed: int = 0, centre: bool = False,
                     logit: bool = False) -> ScoreFn:
    """Differentiable P(fake) of a reconstruction classifier on fixed crops.

    ``centre=False``: the 1-try crop of ``score_images(tries=1, seed=seed)``; True: the centre
    crop (``tries=0``). Dropout and batch norm are in eval mode, as in ``score_images``.
    """
    detector.eval()
    crop = detector.crop_size

    def score(x01: torch.Tensor) -> torch.Tensor:
        height, width = x01.shape[-2:]
        if centre:
            offsets = [((height - crop) // 2, (width - crop) // 2)] * len(x01)
        else:
            offsets = classifier_crop_offsets(detector, (height, width), image_ids, seed)
        x = _stack_crops(x01, offsets, crop).to(detector.mean.device)
        logits = detector.model((x - detector.mean) / detector.std).reshape(-1)
        return logits if logit else torch.sigmoid(logits)

    return score


def _squash(x01: torch.Tensor, size: int) -> torch.Tensor:
    """[0, 1] → LaRE's input in [-1, 1] at ``size`` (bicubic; exact when already that size)."""
    if tuple(x01.shape[-2:]) != (size, size):  # PIL's bicubic and torch's differ slightly here
        x01 = F.interpolate(x01, size=(size, size), mode="bicubic", align_corners=False,
                            antialias=True)
    return x01 * 2.0 - 1.0


def _prompts(extractor, class_names: Sequence[str | None] | None, policy: str,
             count: int) -> list[str]:
    from lare2lib.signals.lare import prompt_for

    known = tuple(getattr(extractor.components, "class_names", ()) or ())
    names = list(class_names) if class_names is not None else [None] * count
    return [prompt_for(policy, name, known) for name in names]


def lare_maps_with_grad(extractor, x01: torch.Tensor, image_ids: Sequence[str],
                        class_names: Sequence[str | None] | None = None,
                        policy: str = "class") -> torch.Tensor:
    """``(B, C, h, w)`` LaRE maps of ``x01`` with gradients, at the extractor's fixed draws.

    The pieces :class:`lare2lib.signals.lare.LareExtractor` runs under ``inference_mode``
    (``latents``: posterior sample per id; ``error_at``: the K noise draws per id, one UNet
    call), here in autograd mode; the prompt embeddings are constants.
    """
    pixels = _squash(x01, extractor.image_size).to(extractor.device, extractor.dtype)
    prompts = _prompts(extractor, class_names, policy, len(image_ids))
    embeddings = extractor.embed(prompts, extractor.device, extractor.dtype)
    z0 = extractor.latents(pixels, list(image_ids))
    config = extractor.config
    return extractor.error_at(z0, list(image_ids), embeddings, config.timestep, config.ensemble)


def egre_score(detector, image_ids: Sequence[str], class_names: Sequence[str | None] | None = None,
               *, seed: int = 0, logit: bool = False) -> ScoreFn:
    """Differentiable P(fake) of an EGRE detector: LaRE with gradients, centre crop, head.

    The centre crop and its map window are those of ``score_images(tries=1)``; the map comes
    from ``detector.map_extractor(seed)`` (the reference LDM in its config, or the one given
    to ``use_reference``). Only ``feature="lare"`` is supported (DIRE's 2×20 DDIM steps would
    need gradients through 40 UNet passes).
    """
    from lare2lib.detectors.egre_data import crop_map, crop_offsets, map_cell, window_side

    if detector.config["feature"] != "lare":
        raise ValueError("the differentiable EGRE score covers LaRE-guided detectors only")
    detector.eval()
    extractor = detector.map_extractor(seed)
    config = detector.config
    crop, lare_size = config["crop_size"], config["lare"]["image_size"]
    mean = torch.tensor(detector.input_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(detector.input_std, dtype=torch.float32).view(1, 3, 1, 1)

    def score(x01: torch.Tensor) -> torch.Tensor:
        maps = lare_maps_with_grad(extractor, x01, image_ids, class_names, config["lare"]["prompt"])
        size, map_hw = tuple(x01.shape[-2:]), tuple(maps.shape[-2:])
        if min(size) < crop:
            raise ValueError(f"{size} images are smaller than the {crop}px crop (no padding here)")
        side = window_side(crop, map_hw[0], lare_size)
        offsets = [crop_offsets(i, size, crop, seed=seed, step=map_cell(size, map_hw),
                                centre=True)[0] for i in image_ids]
        device = next(detector.parameters()).device
        pixels = ((_stack_crops(x01, offsets, crop) - mean.to(x01.device)) / std.to(x01.device))
        windows = torch.stack([crop_map(m, o, crop, size, side, config["aligned"])
                               for m, o in zip(maps, offsets)])
        logits = detector({"image": pixels.to(device), "lare": windows.to(device)}).float()
        return logits[:, 1] - logits[:, 0] if logit else logits.softmax(dim=1)[:, 1]

    return score


class MeanLare:
    """The bare LaRE score, −mean of the map (notebook 01's detector), no training.

    Args:
        components: The reference LDM (:class:`lare2lib.models.loaders.LDMComponents`).
        config: LaRE settings (timestep, ensemble, image size, prompt policy).
        seed: Seed of the per-image posterior sample and noise draws.
    """

    kind = "mean_lare"

    def __init__(self, components, config, seed: int = 0):
        from lare2lib.signals.lare import LareExtractor

        self.extractor = LareExtractor(components, config, seed=seed)
        self.config, self.seed = config, seed

    def maps(self, images: Sequence[torch.Tensor], image_ids: Sequence[str],
             class_names: Sequence[str | None] | None = None, batch_size: int = 64) -> torch.Tensor:
        """``(N, C, h, w)`` LaRE maps of uint8 images of any size (squashed as LaRE does)."""
        from lare2lib.detectors.egre_data import maps_of_images

        names = list(class_names) if class_names is not None else [None] * len(images)
        return torch.cat([maps_of_images(self.extractor, images[s:s + batch_size],
                                         image_ids[s:s + batch_size], names[s:s + batch_size],
                                         self.config.prompt)
                          for s in range(0, len(images), batch_size)])

    def score_images(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], *,
                     class_names: Sequence[str | None] | None = None,
                     batch_size: int = 64) -> torch.Tensor:
        """−mean LaRE per image ``(N,)`` (higher = more likely generated)."""
        return -self.maps(images, image_ids, class_names, batch_size).mean(dim=(1, 2, 3))


def mean_lare_score(scorer: MeanLare, image_ids: Sequence[str],
                    class_names: Sequence[str | None] | None = None) -> ScoreFn:
    """Differentiable −mean LaRE at the scorer's fixed per-image draws."""

    def score(x01: torch.Tensor) -> torch.Tensor:
        maps = lare_maps_with_grad(scorer.extractor, x01, image_ids, class_names,
                                   scorer.config.prompt)
        return -maps.mean(dim=(1, 2, 3))

    return score


def differentiable_score(detector, image_ids: Sequence[str],
                         class_names: Sequence[str | None] | None = None, *, seed: int = 0,
                         logit: bool = False) -> ScoreFn:
    """The :data:`ScoreFn` of any detector of this study, for the images ``image_ids``.

    Dispatches on the detector: ``classifier`` and ``egre`` kinds (P(fake), or the log-odds
    with ``logit``), :class:`MeanLare` (−mean LaRE; ``seed`` is the scorer's own) and an
    AEROBLADE detector (−min distance). ``class_names`` fill EGRE's and LaRE's class prompts.
    """
    kind = getattr(detector, "kind", None)
    if kind == "classifier":
        return classifier_score(detector, image_ids, seed=seed, logit=logit)
    if kind == "egre":
        return egre_score(detector, image_ids, class_names, seed=seed, logit=logit)
    if kind == "mean_lare":
        return mean_lare_score(detector, image_ids, class_names)
    if kind == "aeroblade":
        return aeroblade_score(detector, image_ids)
    raise TypeError(f"no differentiable score for {type(detector).__name__} (kind {kind!r})")


class Aeroblade:
    """AEROBLADE as one scorer: −min over ``autoencoders`` of ``distance(x, AE(x))``.

    Reconstruction and distance are :func:`lare2lib.detectors.aeroblade.aeroblade`'s (posterior sample
    per (seed, id), VQ latents decoded unquantised, 8-bit by truncation).

    Args:
        autoencoders: name → autoencoder (the world's ``kl_ae`` and ``vq_ae`` in mini).
        distance: A :mod:`lare2lib.detectors.aeroblade` distance (mini: ``BackboneDistance``).
        seed: Seed of the posterior samples.
    """

    kind = "aeroblade"

    def __init__(self, autoencoders: dict[str, torch.nn.Module], distance: torch.nn.Module,
                 seed: int = 0):
        self.autoencoders, self.distance, self.seed = dict(autoencoders), distance, seed

    def score_images(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], *,
                     batch_size: int = 32, **_: Any) -> torch.Tensor:
        """−min distance per image ``(N,)`` (higher = more likely generated)."""
        from lare2lib.detectors.aeroblade import aeroblade

        result = aeroblade(images, image_ids, self.autoencoders, {"d": self.distance},
                           seed=self.seed, batch_size=batch_size)["d"]
        return torch.from_numpy(result.scores)


def _truncate_straight_through(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output in [-1, 1] → [0, 1] truncated to 8 bits as the release does; the
    gradient passes straight through the truncation (its own derivative is zero)."""
    unit = (decoded.clamp(-1, 1) + 1) / 2
    return unit + ((unit * 255).floor() / 255 - unit).detach()


def _distance_with_grad(distance: torch.nn.Module, x01: torch.Tensor,
                        recon01: torch.Tensor) -> torch.Tensor:
    """The distance's value with gradients (``BackboneDistance.forward`` is inference-only:
    its features are taken through the public ``features`` method, same formula)."""
    from lare2lib.detectors.aeroblade import BackboneDistance

    if not isinstance(distance, BackboneDistance):
        return distance(x01, recon01)

    def unit(features: torch.Tensor) -> torch.Tensor:  # lpips.normalize_tensor
        return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)

    a, b = unit(distance.features(x01)), unit(distance.features(recon01))
    return (a - b).pow(2).sum(dim=1).mean(dim=(1, 2))


def aeroblade_score(detector: Aeroblade, image_ids: Sequence[str]) -> ScoreFn:
    """Differentiable −min distance: each reconstruction at the image's fixed posterior sample."""
    from lare2lib.detectors.recon_classifier import decode_reconstruction, encode_for_reconstruction

    def score(x01: torch.Tensor) -> torch.Tensor:
        columns = []
        for ae in detector.autoencoders.values():
            parameter = next(ae.parameters())
            pixels = (x01 * 2 - 1).to(parameter.device, parameter.dtype)
            latents = encode_for_reconstruction(ae, pixels, list(image_ids), detector.seed)
            recon = _truncate_straight_through(decode_reconstruction(ae, latents, quantize=False).float())
            columns.append(_distance_with_grad(detector.distance, x01, recon.to(x01.device)))
        return -torch.stack(columns, dim=1).min(dim=1).values

    return score


# -- artifact removal --------------------------------------------------------------------------


def median_filter(image: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Per-channel median over ``size × size`` windows (reflected borders), uint8 in and out."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median window must be odd and positive, got {size}")
    radius = size // 2
    x = F.pad(image.float()[None], (radius,) * 4, mode="reflect")     # (1, 3, H+2r, W+2r)
    windows = x.unfold(2, size, 1).unfold(3, size, 1)                  # (1, 3, H, W, s, s)
    return windows.flatten(-2).median(dim=-1).values[0].round().to(torch.uint8)


def blur_unsharp(image: torch.Tensor, sigma: float = 1.0, amount: float = 0.6) -> torch.Tensor:
    """Gaussian blur (σ, :func:`lare2lib.data.perturb.blur`), then an unsharp mask of the same σ:
    the finest frequencies (where decoder traces live) go, edges are sharpened back."""
    from lare2lib.data.perturb import blur

    smooth = blur(image, sigma).float()
    sharpened = smooth + amount * (smooth - blur(smooth.round().to(torch.uint8), sigma).float())
    return sharpened.round().clamp(0, 255).to(torch.uint8)


DENOISERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "median3": median_filter,
    "blur_unsharp": blur_unsharp,
}
"""Simple denoisers of the artifact-removal attack: name → uint8 (3, H, W) → uint8."""


def denoise(images: Sequence[torch.Tensor] | torch.Tensor, method: str) -> torch.Tensor:
    """Every image through one of :data:`DENOISERS`; returns a uint8 batch."""
    if method not in DENOISERS:
        raise ValueError(f"unknown denoiser {method!r}; valid: {sorted(DENOISERS)}")
    return torch.stack([DENOISERS[method](image) for image in images])


def reencode_through(autoencoder, images: torch.Tensor, image_ids: Sequence[str], *,
                     seed: int = 0, batch_size: int = 32) -> torch.Tensor:
    """Generated images re-encoded and decoded by ``autoencoder`` (uint8 batch, same size).

    :func:`lare2lib.detectors.recon_classifier.reconstruct_images`: KL posterior sample per (seed, id), VQ
    quantised as its own generator decodes, rounded to 8 bits. Sides must be multiples of the
    autoencoder's downsampling (world images are).
    """
    from lare2lib.detectors.recon_classifier import reconstruct_images

    cut, recon = reconstruct_images(autoencoder, images, list(image_ids), seed=seed,
                                    batch_size=batch_size)
    if any(a.shape != b.shape for a, b in zip(images, cut)):
        raise ValueError("image sides are not multiples of the autoencoder's downsampling")
    return torch.stack(recon)


def cross_family_autoencoder(generator_autoencoder: str) -> str:
    """The world autoencoder of the *other* family: ``kl_ae`` → ``vq_ae`` and back."""
    other = {"kl_ae": "vq_ae", "vq_ae": "kl_ae"}
    if generator_autoencoder not in other:
        raise ValueError(f"no cross-family autoencoder for {generator_autoencoder!r}; "
                         f"valid: {sorted(other)}")
    return other[generator_autoencoder]


def _as_numpy(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    return scores.detach().cpu().numpy() if torch.is_tensor(scores) else np.asarray(scores)
