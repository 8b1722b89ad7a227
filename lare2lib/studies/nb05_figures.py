"""Notebook 05's figures: the resolution matrix, LaRE's resize curve and the level gallery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lare2lib.studies.nb05_levels import ResolutionData

__all__ = ["matrix_figure", "lare_resize_figure", "level_gallery"]


def matrix_figure(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]]):
    """Annotated AUC and TPR@0.1% heatmaps: rows = training level, columns = test level."""
    from lare2lib.studies.nb04_figures import matrix_figure as heatmaps

    return heatmaps(matrix, row_label="trained at", col_label="tested at")


def lare_resize_figure(study: Mapping[str, Mapping[int, Mapping[str, float]]], lare_size: int):
    """AUC against the input side, with intervals: the released squash and the native-size map."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for k, (name, label) in enumerate((("squash", f"squashed to {lare_size} px (released)"),
                                       ("native", "native size (no resize)"))):
        rows = study.get(name, {})
        if not rows:
            continue
        sides = sorted(rows)
        auc = np.array([rows[s]["auc"] for s in sides])
        low = np.array([rows[s]["low"] for s in sides])
        high = np.array([rows[s]["high"] for s in sides])
        x = np.array(sides, dtype=float) * 2 ** (0.04 * (2 * k - 1))  # side by side, not on top
        ax.errorbar(x, auc, yerr=[auc - low, high - auc], fmt="o-", capsize=3, label=label, color=f"C{k}")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.axvline(lare_size, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    all_sides = sorted({side for rows in study.values() for side in rows})
    ax.set_xticks(all_sides, [str(side) for side in all_sides])
    ax.minorticks_off()
    ax.set_xlabel("input image side (px)")
    ax.set_ylabel("AUC, recon vs real (−mean LaRE)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def level_gallery(data: ResolutionData, split: str = "test", count: int = 3, seed: int = 0):
    """``count`` windows per level (rows) with their reconstructions: what each level looks like."""
    import matplotlib.pyplot as plt

    levels = list(data.config.levels)
    fig, axes = plt.subplots(len(levels), 2 * count, figsize=(1.5 * 2 * count, 1.6 * len(levels)), squeeze=False)
    for row, level in enumerate(levels):
        real, recon = data.real(level, split), data.recon(level, split)
        picked = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:count].tolist()
        for k, index in enumerate(picked):
            for j, (image, title) in enumerate(((real.pixels[index], "real"), (recon.pixels[index], "recon"))):
                ax = axes[row, 2 * k + j]
                ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize="x-small")
                if k == 0 and j == 0:
                    ax.set_ylabel(f"level {level}", fontsize="small")
    fig.tight_layout()
    return fig
