"""Notebook 03's figures: the training pairs, the training curves, ROC curves, AEROBLADE's
distances and attribution, and the interactive crop explorer. (The detection and robustness
summary figures are notebook 07's, :mod:`lare2lib.studies.nb07_recon`.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors.recon_classifier import ReconClassifier
from lare2lib.eval import metrics as M
from lare2lib.studies.nb03_baselines import attribution_table
from lare2lib.studies.nb03_scoring import roc_points

__all__ = ["pairs_figure", "history_figure", "roc_figure", "aeroblade_figure", "crops_figure", "explorer"]


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


def crops_figure(model: ReconClassifier, image: torch.Tensor, image_id: str, *, tries: int, seed: int):
    """The ``tries`` inference crops of one uint8 ``(3, H, W)`` image, each titled with its P(fake)."""
    import matplotlib.pyplot as plt

    crops = model.crops(image, image_id, tries, seed)
    probabilities = model.crop_probabilities([image], [image_id], tries=tries, seed=seed)[0]
    fig, axes = plt.subplots(1, len(crops), figsize=(1.4 * len(crops), 1.8))
    for ax, crop, p in zip(axes, crops, probabilities):
        ax.imshow(crop.permute(1, 2, 0).numpy())
        ax.set_title(f"{p:.2f}", fontsize=8)
        ax.axis("off")
    return fig


def explorer(model: ReconClassifier, sets: Mapping[str, ImageSet], *, tries: int,
             seed: int) -> Callable[[str, int], None]:
    """``show(set_name, index)`` for ``ipywidgets.interact``: draws :func:`crops_figure` of that image."""
    def show(set_name: str, index: int) -> None:
        import matplotlib.pyplot as plt

        images = sets[set_name]
        crops_figure(model, images.pixels[index], images.ids[index], tries=tries, seed=seed)
        plt.show()

    return show
