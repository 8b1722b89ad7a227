"""White-box PGD: L∞-bounded signed-gradient descent on a detector's own fake score.

The attack follows :data:`~lare2lib.eval.attacks.pixels.ScoreFn` (a differentiable score of
fixed images, :mod:`lare2lib.eval.attacks.scores`) from a random start in the L∞ ball and ends
in an 8-bit image within the budget, as a saved file would be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lare2lib.core.rng import image_generator
from lare2lib.eval.attacks.pixels import ScoreFn, quantise_within, to_uint8, to_unit

__all__ = ["PGD_STREAM", "pgd_attack", "attack_images"]

PGD_STREAM = "pgd-start"
""":mod:`lare2lib.core.rng` stream of PGD's random start (independent of every other draw)."""


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
