"""Notebook 04's figures: the matrix heatmaps, TPR intervals, residual spectra and the artifact gallery."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lare2lib.studies.nb04_matrix import matrix_frame
from lare2lib.studies.nb04_spectra import radial_profile

__all__ = ["matrix_figure", "tpr_interval_figure", "spectra_figure", "artifact_gallery"]


def matrix_figure(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  metrics: Sequence[tuple[str, str]] = (("auc", "ROC AUC"), ("tpr@0.1%", "TPR at 0.1 % FPR")),
                  row_label: str = "trained on (real vs recon of)", col_label: str = "tested on (real vs)"):
    """Annotated heatmaps, one per metric, rows = training set, columns = test set, scale 0–1."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    frames = [matrix_frame(matrix, key) for key, _ in metrics]
    columns = frames[0].shape[1]
    fig, axes = plt.subplots(1, len(frames), figsize=(1.0 + 1.05 * columns * len(frames), 0.7 + 0.7 * len(frames[0])),
                             squeeze=False)
    for ax, frame, (_, title) in zip(axes[0], frames, metrics):
        sns.heatmap(frame.astype(float), ax=ax, vmin=0.0, vmax=1.0, annot=True, fmt=".2f", cmap="viridis",
                    cbar=False, square=False, linewidths=0.5)
        ax.set_title(title)
        ax.set_xlabel(col_label)
        ax.set_ylabel(row_label)
        ax.tick_params(axis="x", rotation=30)
        ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def tpr_interval_figure(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]], key: str = "tpr@0.1%",
                        label: str = "TPR at 0.1 % FPR"):
    """Points with their bootstrap intervals: one group per test set, one colour per training set."""
    import matplotlib.pyplot as plt

    rows = list(matrix)
    tests = list(next(iter(matrix.values())))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(tests), 3.2))
    width = 0.8 / max(1, len(rows))
    for r, ae in enumerate(rows):
        x = np.arange(len(tests)) + (r - (len(rows) - 1) / 2) * width
        values = np.array([matrix[ae][t][key] for t in tests])
        ci = np.array([matrix[ae][t].get(f"{key}_ci", [v, v]) for t, v in zip(tests, values)])
        ax.errorbar(x, values, yerr=[values - ci[:, 0], ci[:, 1] - values], fmt="o", capsize=3,
                    label=ae, color=f"C{r}")
    ax.set_xticks(np.arange(len(tests)), tests, rotation=30, ha="right")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(label)
    ax.legend(title="trained on", fontsize="small", loc="best")
    fig.tight_layout()
    return fig



def _show_spectrum(ax, spectrum: torch.Tensor, title: str, vmin: float, vmax: float, cmap: str = "magma"):
    height, width = spectrum.shape
    extent = (-0.5, 0.5 - 1 / width, 0.5 - 1 / height, -0.5)
    image = ax.imshow(spectrum.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, extent=extent)
    ax.set_title(title, fontsize="small")
    ax.grid(False)
    ax.set_xticks([-0.5, 0, 0.5])
    ax.set_yticks([-0.5, 0, 0.5])
    ax.tick_params(labelsize="x-small")
    return image


def spectra_figure(residual: Mapping[str, torch.Tensor], highpass_sets: Mapping[str, torch.Tensor],
                   real: str = "real"):
    """Row 1: ``recon − real`` spectra per autoencoder (one colour scale), then their radial profiles.
    Row 2: the high-pass spectrum of the reals, then each generated set's *minus* the reals' (dB)."""
    import matplotlib.pyplot as plt

    columns = max(len(residual) + 1, len(highpass_sets))
    fig, axes = plt.subplots(2, columns, figsize=(2.9 * columns, 5.6), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.set_visible(False)
    vmin, vmax = np.percentile(torch.stack(list(residual.values())).numpy(), [1, 99.5])
    for k, (ae, spectrum) in enumerate(residual.items()):
        axes[0, k].set_visible(True)
        image = _show_spectrum(axes[0, k], spectrum, f"{ae}: recon − real", vmin, vmax)
    fig.colorbar(image, ax=axes[0, len(residual) - 1], shrink=0.8, label="log |FFT|")
    profile_ax = axes[0, len(residual)]
    profile_ax.set_visible(True)
    for k, (ae, spectrum) in enumerate(residual.items()):
        freq, values = radial_profile(spectrum)
        profile_ax.plot(freq, values, label=ae, color=f"C{k}")
    profile_ax.set_xlabel("cycles / pixel")
    profile_ax.set_ylabel("mean log |FFT|")
    profile_ax.set_title("radial profile", fontsize="small")
    profile_ax.legend(fontsize="x-small")
    base = highpass_sets[real]
    axes[1, 0].set_visible(True)
    _show_spectrum(axes[1, 0], base, f"{real}: high-pass", *np.percentile(base.numpy(), [1, 99.5]))
    differences = {name: (s - base) * 20 / math.log(10) for name, s in highpass_sets.items() if name != real}
    if differences:
        limit = float(np.percentile(torch.stack(list(differences.values())).abs().numpy(), 99))
        for k, (name, diff) in enumerate(differences.items(), start=1):
            axes[1, k].set_visible(True)
            image = _show_spectrum(axes[1, k], diff, f"{name} − {real}", -limit, limit, cmap="RdBu_r")
        fig.colorbar(image, ax=axes[1, len(differences)], shrink=0.8, label="high-pass, dB")
    return fig


def artifact_gallery(real: torch.Tensor, recons: Mapping[str, torch.Tensor], count: int = 2, gain: float = 8.0,
                     seed: int = 0):
    """``count`` held-out images: the real, then per autoencoder its reconstruction and
    ``gain × |recon − real|`` (what the detector has to find, made visible)."""
    import matplotlib.pyplot as plt

    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(real), generator=generator)[:count].tolist()
    columns = 1 + 2 * len(recons)
    fig, axes = plt.subplots(len(picked), columns, figsize=(1.6 * columns, 1.7 * len(picked)), squeeze=False)
    for row, index in enumerate(picked):
        panels = [("real", real[index])]
        for ae, recon in recons.items():
            residual = (recon[index].float() - real[index].float()).abs().mul(gain).clamp(0, 255)
            panels += [(ae, recon[index]), (f"{ae}: |Δ|×{gain:g}", residual.to(torch.uint8))]
        for ax, (title, image) in zip(axes[row], panels):
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize="x-small")
    fig.tight_layout()
    return fig

