"""Notebook 06's three experiments: post-processing sweeps, artifact removal, white-box PGD.

:func:`postprocess_sweep`, :func:`artifact_removal` and :func:`pgd_sweep` score the attacked
images with a :class:`~lare2lib.studies.nb06_suite.Suite` against the clean thresholds;
:func:`crop_transfer` asks whether the classifier's PGD perturbation survives other crops.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.eval import attacks, metrics
from lare2lib.studies.nb06_suite import FPR, Suite, detection, detection_table, pooled

__all__ = ["postprocess_sweep", "artifact_removal", "pgd_sweep", "crop_transfer"]


def postprocess_sweep(suite: Suite, reals: ImageSet, fakes: ImageSet, grid: Mapping[str, Sequence[float]],
                      thresholds: Mapping[str, float], *, seed: int = 0,
                      progress: bool = False) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``perturbation → level → detector → {tpr, auc, fpr}``, both classes post-processed
    identically (:func:`lare2lib.data.perturb.perturb_set`), thresholds from the clean reals."""
    from tqdm.auto import tqdm

    from lare2lib.data.perturb import grid as make_grid
    from lare2lib.data.perturb import perturb_set

    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for perturbation in tqdm(make_grid(grid), desc="post-processing", disable=not progress):
        real = suite.score(perturb_set(reals, perturbation, seed))
        fake = suite.score(perturb_set(fakes, perturbation, seed))
        row = detection_table(suite, thresholds, real, fake)
        table.setdefault(perturbation.kind, {})[f"{perturbation.level:g}"] = row
    return table


def _removal_sets(world, fakes: Mapping[str, ImageSet], seed: int) -> dict[str, dict[str, ImageSet]]:
    """attack → generator → attacked images (the generated images only; reals stay clean)."""
    from lare2lib.core import paths
    from lare2lib.models.autoencoders import load_autoencoder

    def derived(images: ImageSet, pixels: torch.Tensor, attack: str) -> ImageSet:
        return ImageSet(f"{images.name}+{attack}", pixels, images.class_index.clone(), list(images.ids),
                        {**images.meta, "attack": attack})

    attacked: dict[str, dict[str, ImageSet]] = {"cross_family_ae": {}, "median3": {}, "blur_unsharp": {}}
    taef2 = paths.taef2_dir()
    if taef2 is not None:
        attacked["taef2"] = {}
        taef2_ae = load_autoencoder(str(taef2), kind="taef2")
    for name, images in fakes.items():
        other = world.cross_family_autoencoder(name)
        attacked["cross_family_ae"][name] = derived(images, attacks.reencode_through(
            world.autoencoder(other), images.pixels, images.ids, seed=seed), f"ae:{other}")
        for method in ("median3", "blur_unsharp"):
            attacked[method][name] = derived(images, attacks.denoise(images.pixels, method), method)
        if taef2 is not None:
            attacked["taef2"][name] = derived(images, attacks.reencode_through(
                taef2_ae, images.pixels, images.ids, seed=seed), "ae:taef2")
    return attacked


def artifact_removal(suite: Suite, world, reals_scores: Mapping[str, np.ndarray],
                     fakes: Mapping[str, ImageSet], thresholds: Mapping[str, float], *, seed: int = 0,
                     progress: bool = False) -> tuple[dict[str, Any], dict[str, float]]:
    """``(attack → detector → {tpr, auc}, attack → mean PSNR dB)``: the generated images of
    every generator re-encoded by the autoencoder of the other family (``kl_ae`` ↔ ``vq_ae``),
    by TAEF2 when its weights are present, or denoised; scored against the clean reals.
    ``"none"`` is the clean reference."""
    from tqdm.auto import tqdm

    clean = pooled(fakes)
    table = {"none": detection_table(suite, thresholds, reals_scores, suite.score(clean))}
    cost: dict[str, float] = {"none": float("inf")}
    for attack, sets in tqdm(_removal_sets(world, fakes, seed).items(), desc="artifact removal",
                             disable=not progress):
        attacked = pooled(sets)
        table[attack] = detection_table(suite, thresholds, reals_scores, suite.score(attacked))
        cost[attack] = float(attacks.psnr(clean.pixels, attacked.pixels).mean())
    return table, cost


def pgd_sweep(suite: Suite, fakes: ImageSet, reals_scores: Mapping[str, np.ndarray],
              thresholds: Mapping[str, float], budgets: Sequence[float], *, steps: int, seed: int = 0,
              batch_size: int = 16, progress: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(detector → ε (in /255, as text) → {tpr, auc, psnr}, detector → ε → adversarial uint8
    images)``. Each detector is attacked through its own differentiable score (log-odds for
    the trained ones), then the saved 8-bit images are scored by its own pipeline."""
    from tqdm.auto import tqdm

    table: dict[str, dict[str, dict[str, float]]] = {}
    examples: dict[str, dict[str, torch.Tensor]] = {}
    names = suite.names(fakes)
    jobs = [(name, eps) for name in suite.detectors for eps in budgets]
    for name, eps in tqdm(jobs, desc="PGD", disable=not progress):
        detector = suite.detectors[name]

        def make(ids, classes, detector=detector):
            return attacks.differentiable_score(detector, ids, classes, seed=suite.seed, logit=True)

        started = time.perf_counter()
        adversarial = attacks.attack_images(make, fakes.pixels, fakes.ids, eps / 255, steps,
                                            class_names=names, seed=seed, batch_size=batch_size)
        attacked = ImageSet(f"{fakes.name}+pgd{eps:g}", adversarial, fakes.class_index.clone(),
                            list(fakes.ids), {})
        alone = Suite({name: detector}, suite.class_names, suite.seed, suite.batch_size)
        scores = alone.score(attacked)[name]
        row = detection(thresholds[name], reals_scores[name], scores)
        quality = attacks.psnr(fakes.pixels, adversarial)
        finite = torch.isfinite(quality)
        row["psnr"] = float(quality[finite].mean()) if finite.any() else float("inf")
        row["seconds"] = time.perf_counter() - started
        table.setdefault(name, {})[f"{eps:g}"] = row
        examples.setdefault(name, {})[f"{eps:g}"] = adversarial
    return table, examples


def crop_transfer(classifier, reals: ImageSet, fakes: ImageSet, attacked: Mapping[str, torch.Tensor], *,
                  tries: int = 10, seed: int = 0, batch_size: int = 120) -> dict[str, dict[str, float]]:
    """Does a PGD perturbation made on the classifier's 1-try crop survive ``tries`` random crops?

    ``attacked``: ε → adversarial images of ``fakes`` (from :func:`pgd_sweep`). The threshold is
    re-set at :data:`FPR` on the clean reals scored the same way (mean of ``tries`` crops).
    """
    def score(pixels: torch.Tensor, ids: Sequence[str]) -> np.ndarray:
        scores = classifier.score_images(list(pixels), list(ids), seed=seed, tries=tries,
                                         batch_size=batch_size)
        return attacks.as_numpy(scores).astype(np.float64)

    real = score(reals.pixels, reals.ids)
    threshold = metrics.threshold_at_fpr(real, FPR)
    return {eps: detection(threshold, real, score(images, fakes.ids)) for eps, images in attacked.items()}
