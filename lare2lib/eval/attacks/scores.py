"""Each detector's fake score as a differentiable function of the pixels, for PGD.

The detectors' ``score_images`` run under ``torch.inference_mode`` (no gradients), so this
module rebuilds the same computation with gradients, from the detectors' public pieces:
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
* AEROBLADE (:mod:`lare2lib.eval.attacks.aeroblade_scorer`): reconstruction through each
  autoencoder at its fixed posterior sample, the distance, −min.

``logit=True`` returns an unbounded monotone version of the score (the log-odds for the
trained detectors): PGD follows the sign of the gradient, and a saturated sigmoid has none.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lare2lib.core.rng import image_generator
from lare2lib.eval.attacks.aeroblade_scorer import aeroblade_score
from lare2lib.eval.attacks.pixels import ScoreFn
from lare2lib.signals.prompts import extractor_prompts

__all__ = [
    "classifier_crop_offsets",
    "classifier_score",
    "lare_maps_with_grad",
    "egre_score",
    "MeanLare",
    "mean_lare_score",
    "differentiable_score",
]


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


def lare_maps_with_grad(extractor, x01: torch.Tensor, image_ids: Sequence[str],
                        class_names: Sequence[str | None] | None = None,
                        policy: str = "class") -> torch.Tensor:
    """``(B, C, h, w)`` LaRE maps of ``x01`` with gradients, at the extractor's fixed draws.

    The pieces :class:`lare2lib.signals.lare.LareExtractor` runs under ``inference_mode``
    (``latents``: posterior sample per id; ``error_at``: the K noise draws per id, one UNet
    call), here in autograd mode; the prompt embeddings are constants.
    """
    pixels = _squash(x01, extractor.image_size).to(extractor.device, extractor.dtype)
    prompts = extractor_prompts(extractor, class_names, policy, len(image_ids))
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
        components: The reference LDM (:class:`lare2lib.models.ldm.LDMComponents`).
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

