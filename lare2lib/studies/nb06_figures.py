"""Notebook 06's figures: the post-processing sweeps, artifact removal, PGD curves and examples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.studies.nb06_suite import DETECTOR_LABELS, FPR

__all__ = ["IDENTITY_LEVEL", "postprocess_figure", "removal_figure", "pgd_figure", "pgd_examples_figure"]

IDENTITY_LEVEL: dict[str, float] = {"jpeg": 100, "resize": 1.0, "crop": 1.0, "blur": 0.0, "noise": 0.0}
"""Where the clean images sit on each perturbation's axis in the figures (JPEG: drawn at 100)."""


def _colour(name: str) -> str:
    return f"C{list(DETECTOR_LABELS).index(name)}" if name in DETECTOR_LABELS else "k"


def postprocess_figure(sweep: Mapping[str, Any], clean: Mapping[str, Mapping[str, float]]):
    """Rows TPR (at the clean-real 5 % FPR threshold) and AUC; one column per perturbation;
    the clean value drawn at the perturbation's identity level."""
    import matplotlib.pyplot as plt

    kinds = list(sweep)
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.3 * len(kinds), 5.6), sharey="row", squeeze=False)
    for column, kind in enumerate(kinds):
        levels = sorted(sweep[kind], key=float)
        x = [IDENTITY_LEVEL[kind]] + [float(v) for v in levels]
        for row, metric in enumerate(("tpr", "auc")):
            ax = axes[row, column]
            for name in clean:
                y = [clean[name][metric]] + [sweep[kind][v][name][metric] for v in levels]
                order = np.argsort(x)
                ax.plot(np.asarray(x)[order], np.asarray(y)[order], marker="o", ms=3, lw=1.3,
                        color=_colour(name), label=DETECTOR_LABELS.get(name, name))
            ax.axhline(FPR if metric == "tpr" else 0.5, color="grey", lw=0.8, ls=":")
            ax.set(ylim=(-0.02, 1.02), xlabel=f"{kind} level" + (" (quality)" if kind == "jpeg" else ""),
                   ylabel="detection rate (TPR)" if metric == "tpr" else "AUC")
            if kind == "jpeg":
                ax.invert_xaxis()
        axes[0, column].set_title(kind)
    axes[1, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def removal_figure(table: Mapping[str, Mapping[str, Mapping[str, float]]], cost: Mapping[str, float]):
    """Grouped bars: detection rate and AUC of the generated images after each removal attack."""
    import matplotlib.pyplot as plt

    attack_names = list(table)
    detectors = list(next(iter(table.values())))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(detectors)
    for ax, metric in zip(axes, ("tpr", "auc")):
        for k, name in enumerate(detectors):
            ax.bar(np.arange(len(attack_names)) + (k - (len(detectors) - 1) / 2) * width,
                   [table[a][name][metric] for a in attack_names], width, color=_colour(name),
                   label=DETECTOR_LABELS.get(name, name))
        ax.axhline(FPR if metric == "tpr" else 0.5, color="grey", lw=0.8, ls=":")
        labels = [a if not np.isfinite(cost[a]) else f"{a}\n{cost[a]:.1f} dB" for a in attack_names]
        ax.set_xticks(range(len(attack_names)), labels, fontsize=8)
        ax.set(ylim=(0, 1.02), ylabel="detection rate (TPR)" if metric == "tpr" else "AUC")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def pgd_figure(table: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Detection rate and AUC against the PGD budget, PSNR of the perturbation on a second axis."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric in zip(axes, ("tpr", "auc")):
        twin = ax.twinx()
        for name, curve in table.items():
            eps = sorted(curve, key=float)
            x = [float(e) for e in eps]
            ax.plot(x, [curve[e][metric] for e in eps], marker="o", ms=4, lw=1.5, color=_colour(name),
                    label=DETECTOR_LABELS.get(name, name))
            attacked = [(float(e), curve[e]["psnr"]) for e in eps if float(e) > 0]
            twin.plot(*zip(*attacked), ls="--", lw=0.9, marker="x", ms=3, color=_colour(name), alpha=0.6)
        ax.axhline(FPR if metric == "tpr" else 0.5, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="PGD budget ε (×1/255, L∞)", ylim=(-0.02, 1.02),
               ylabel="detection rate (TPR)" if metric == "tpr" else "AUC")
        twin.set_ylabel("PSNR of the perturbation (dB, dashed)")
        twin.grid(False)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def pgd_examples_figure(clean: ImageSet, examples: Mapping[str, torch.Tensor], eps: float, count: int = 3):
    """Per detector: clean image, its adversarial version at budget ``eps`` (``examples``:
    detector → adversarial images), the perturbation amplified ×(127/ε) around mid-grey."""
    import matplotlib.pyplot as plt

    names = list(examples)
    fig, axes = plt.subplots(len(names), 3 * count, figsize=(4.5 * count, 1.6 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        for k in range(min(count, len(clean))):
            delta = examples[name][k].int() - clean.pixels[k].int()
            shown = (delta.float() * 127 / max(eps, 1) + 128).clamp(0, 255).to(torch.uint8)
            panels = ((clean.pixels[k], "clean"), (examples[name][k], f"ε={eps:g}"),
                      (shown, "perturbation"))
            for j, (image, title) in enumerate(panels):
                ax = axes[row, 3 * k + j]
                ax.imshow(image.permute(1, 2, 0).numpy())
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_title(title, fontsize=7)
        axes[row, 0].set_ylabel(DETECTOR_LABELS.get(name, name), fontsize=8)
    fig.tight_layout()
    return fig
