"""Notebook 01's figures: LaRE maps, the loss over t, the AUC of mean LaRE, K, and cost.

Each function takes what :mod:`lare2lib.studies.nb01_lare` computes and returns a matplotlib
figure, so the notebook's cells stay import → call → show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lare2lib.core.plotting import colour_of, show_image, show_map
from lare2lib.core.profiles import LareConfig
from lare2lib.data.imagesets import ImageSet
from lare2lib.signals.set_maps import lare_maps

__all__ = ["findings", "auc_figure", "cost_figure", "ensemble_figure", "map_gallery", "single_map_figure",
           "timestep_figure", "timestep_panels"]


def map_gallery(examples: Mapping[str, tuple[ImageSet, torch.Tensor]], per_set: int = 2,
                quantile: float = 0.99):
    """Rows: ``per_set`` images of each set; columns: image, each latent channel, channel mean.

    All channel maps share one colour scale and all mean maps another (both clipped at the
    ``quantile`` of the shown values), so brighter means larger error in every panel.
    """
    import matplotlib.pyplot as plt

    shown = {name: (images, maps[:per_set]) for name, (images, maps) in examples.items()}
    channels = next(iter(shown.values()))[1].shape[1]
    every = torch.cat([maps for _, maps in shown.values()])
    vmax_channel = float(torch.quantile(every.flatten(), quantile))
    vmax_mean = float(torch.quantile(every.mean(1).flatten(), quantile))
    rows = sum(len(maps) for _, maps in shown.values())
    fig, axes = plt.subplots(rows, channels + 2, figsize=(1.45 * (channels + 2), 1.5 * rows),
                             squeeze=False)
    row = 0
    for name, (images, maps) in shown.items():
        for index, error_map in enumerate(maps):
            show_image(axes[row, 0], images.pixels[index], f"{name} #{index}")
            for channel in range(channels):
                show_map(axes[row, channel + 1], error_map[channel], vmax_channel,
                         f"ch {channel}" if row == 0 else "")
            handle = show_map(axes[row, -1], error_map.mean(0), vmax_mean,
                              f"mean {float(error_map.mean()):.3g}")
            row += 1
    fig.colorbar(handle, ax=axes[:, -1], shrink=0.5, pad=0.08, label="channel mean")
    return fig


def single_map_figure(components, images: ImageSet, index: int, class_names: Sequence[str],
                      config: LareConfig, *, seed: int = 0):
    """One image and its LaRE map (each channel, then the mean) at ``config``'s t and K: the
    interactive explorer's view. Colour scales are per panel (the explorer compares shapes)."""
    import matplotlib.pyplot as plt

    one = images.subset([index % len(images)])
    error_map = lare_maps(components, one, class_names, config, seed=seed)[0]
    fig, axes = plt.subplots(1, error_map.shape[0] + 2, figsize=(1.8 * (error_map.shape[0] + 2), 2))
    show_image(axes[0], one.pixels[0], f"{images.name} #{index % len(images)}")
    for channel, ax in enumerate(axes[1:-1]):
        show_map(ax, error_map[channel], float(error_map[channel].max()), f"ch {channel}")
    show_map(axes[-1], error_map.mean(0), float(error_map.mean(0).max()),
             f"mean {float(error_map.mean()):.3g}")
    fig.suptitle(f"t = {config.timestep}, K = {config.ensemble}", fontsize=9)
    fig.tight_layout()
    return fig


def timestep_panels(common: pd.DataFrame, own: pd.DataFrame, reference: str, own_generator: str | None,
                    marked_t: int = 200):
    """Loss over t scored by the common ``reference`` (left), and ``own_generator``'s samples by
    their own LDM (right; only where the world has a second LDM)."""
    import matplotlib.pyplot as plt

    panels = 2 if own_generator is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.9), sharey=True, squeeze=False)
    timestep_figure(common, f"{reference} (common reference)", marked_t, ax=axes[0, 0])
    if own_generator is not None:
        timestep_figure(own, f"{own_generator} (its own samples)", marked_t, ax=axes[0, 1])
    fig.tight_layout()
    return fig


def timestep_figure(summary: pd.DataFrame, reference: str, marked_t: int = 200, ax=None):
    """Mean single-step loss vs t per set, ±1 standard error, the LaRE timestep marked."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, group in summary.groupby("set", sort=False):
        colour = colour_of(name)
        ax.plot(group["t"], group["mean"], marker="o", ms=3, label=name, color=colour,
                ls="-" if name == "real" else "--")
        ax.fill_between(group["t"], group["mean"] - group["sem"], group["mean"] + group["sem"],
                        color=colour, alpha=0.2)
    ax.axvline(marked_t, color="grey", lw=1, ls=":")
    if summary["mean"].max() > 10 * summary["mean"].min():  # the loss spans decades over t
        ax.set_yscale("log")
    ax.set(xlabel="timestep t", ylabel="mean single-step loss", title=f"scored by {reference}")
    ax.legend(fontsize=8)
    return fig or ax.figure


def auc_figure(scores: Mapping[str, np.ndarray], table: pd.DataFrame, real: str = "real"):
    """Left: distribution of mean LaRE per set (log axis). Right: AUC with its interval."""
    import matplotlib.pyplot as plt

    fig, (ax_dist, ax_auc) = plt.subplots(1, 2, figsize=(10, 3.6),
                                          gridspec_kw={"width_ratios": [3, 2]})
    logs = {name: np.log10(np.clip(np.asarray(v, float), 1e-12, None))
            for name, v in scores.items()}
    bins = np.histogram_bin_edges(np.concatenate(list(logs.values())), bins=40)
    for name, values in logs.items():
        ax_dist.hist(values, bins=bins, histtype="step", lw=1.8 if name == real else 1.2,
                     density=True, color=colour_of(name), label=f"{name} (n={len(values)})")
    ax_dist.set(xlabel="log10 mean LaRE (squared noise-prediction error)",
                ylabel="density", title="Mean LaRE per image")
    ax_dist.legend(fontsize=8)
    names = list(table.index)
    for row, (name, entry) in enumerate(table.iterrows()):
        interval = [[entry["auc"] - entry["low"]], [entry["high"] - entry["auc"]]]
        ax_auc.errorbar(entry["auc"], row, xerr=interval, fmt="o", capsize=4,
                        color=colour_of(name))
    ax_auc.axvline(0.5, color="grey", lw=1, ls=":")
    ax_auc.set_yticks(range(len(names)), names)
    ax_auc.set(xlim=(0, 1), xlabel="AUC (lower LaRE ⇒ generated)",
               title=f"vs held-out {real}, {int(table['level'].iloc[0] * 100)} % bootstrap")
    fig.tight_layout()
    return fig


def ensemble_figure(study: pd.DataFrame, example: torch.Tensor, ks: Sequence[int],
                    title: str = ""):
    """Top: one image's mean map for each K (draws 1..K). Bottom: reproducibility and AUC vs K.

    ``example`` is ``(D, C, h, w)`` per-draw errors of one image.
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 5.8))
    grid = fig.add_gridspec(2, max(len(ks), 2), height_ratios=[1, 1.3])
    vmax = float(torch.quantile(example[:1].mean(1).flatten(), 0.99))
    for column, k in enumerate(ks):
        show_map(fig.add_subplot(grid[0, column]), example[:k].mean(dim=(0, 1)), vmax, f"K = {k}")
    half = max(len(ks), 2) // 2
    ax_noise = fig.add_subplot(grid[1, :half])
    ax_auc = fig.add_subplot(grid[1, half:])
    panels = ((ax_noise, "split_half_corr", "split-half correlation", "How reproducible is a K-draw map?"),
              (ax_auc, "auc", "AUC of mean LaRE", "Separation vs K"))
    for ax, column, ylabel, panel_title in panels:
        for name, group in study.dropna(subset=[column]).groupby("set", sort=False):
            ax.plot(group["K"], group[column], marker="o", label=name, color=colour_of(name))
        ax.set_xscale("log", base=2)
        ax.set(xlabel="ensemble size K", ylabel=ylabel, title=panel_title)
        ax.set_xticks(list(ks), [str(k) for k in ks], minor=False)
        ax.minorticks_off()
        ax.legend(fontsize=8)
    ax_auc.axhline(0.5, color="grey", lw=1, ls=":")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def cost_figure(report):
    """Images/s of each variant of a :class:`lare2lib.studies.nb01_cost.CostReport` (log axis), with
    the three ratios that matter
    (LaRE vs DIRE, batched vs per-image, extraction vs the bare network passes)."""
    import matplotlib.pyplot as plt

    table = report.table()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(table.index, table["images/s"], color="C0")
    for y, value in enumerate(table["images/s"]):
        ax.text(value, y, f" {value:.1f}", va="center", fontsize=8)
    ratios = report.ratios()
    ax.set(xscale="log", xlabel="images per second (best of repeats)",
           title=(f"LaRE/DIRE {ratios['lare_vs_dire_speedup']:.1f}×  ·  batched/per-image "
                  f"{ratios['batched_vs_per_image_speedup']:.1f}×  ·  extraction/bare "
                  f"{ratios['extraction_vs_bare_ratio']:.2f}"))
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def findings(auc, gap, study, ratios: Mapping[str, float], timestep: int) -> str:
    """Notebook 01's answer as Markdown, every number read from this run's tables.

    ``auc``: :func:`~lare2lib.studies.nb01_lare.auc_table`; ``gap``: :func:`~lare2lib.studies.
    nb01_lare.curve_gap` (rows t, columns sets); ``study``: :func:`~lare2lib.studies.nb01_lare.
    ensemble_study`; ``ratios``: the cost comparison's ratios.
    """
    held = [n for n, r in auc.iterrows() if r["low"] > 0.5]
    reversed_ = [n for n, r in auc.iterrows() if r["high"] < 0.5]
    rows = "; ".join(f"{n} {r['auc']:.2f} [{r['low']:.2f}, {r['high']:.2f}]" for n, r in auc.iterrows())
    lines = [f"**The premise, mean LaRE at t = {timestep}** (AUC > ½: generated images have the lower "
             f"loss): {rows}. It holds (interval above ½) for "
             f"{', '.join(held) or 'no generator'}; it is reversed (interval below ½) for "
             f"{', '.join(reversed_) or 'no generator'}."]
    if len(gap):
        best_t = {name: int(gap[name].idxmax()) for name in gap.columns}
        positive = {name: int((gap[name] > 0).sum()) for name in gap.columns}
        lines.append("**Over t** (scored by the reference): the reals' loss exceeds the generated "
                     "images' at " + "; ".join(f"{n}: {positive[n]} of {len(gap)} timesteps (largest "
                                              f"gap at t = {best_t[n]})" for n in gap.columns) + ".")
    reals = study[study["set"] == "real"].dropna(subset=["split_half_corr"])
    if len(reals):
        first, last = reals.iloc[0], reals.iloc[-1]
        lines.append(f"**Ensemble size**: a real map's split-half correlation is "
                     f"{first['split_half_corr']:.2f} at K = {int(first['K'])} and "
                     f"{last['split_half_corr']:.2f} at K = {int(last['K'])}.")
    lines.append(f"**Cost**: LaRE runs {ratios['lare_vs_dire_speedup']:.1f}× as fast as the DIRE-style "
                 f"20 + 20 DDIM variant (the paper: 8×); the batched driver "
                 f"{ratios['batched_vs_per_image_speedup']:.1f}× the per-image loop, and it keeps "
                 f"{ratios['extraction_vs_bare_ratio']:.2f} of the bare model's speed.")
    return "\n\n".join(lines)
