"""What notebook 01 computes and draws about LaRE in the mini world.

Each function takes image sets (:class:`lare2lib.data.imagesets.ImageSet`) and LDM components
(:class:`lare2lib.models.loaders.LDMComponents`) and returns tensors, tables or a matplotlib figure, so
the notebook's cells stay import → call → show.

Sign convention used throughout: the detection score is the **negated** mean LaRE, and
generated images are the positive class, so ``AUC = P(LaRE(generated) < LaRE(real))``. AUC
above 0.5 means the paper's premise holds (a diffusion model predicts the noise on generated
images better than on real ones); 0.5 is chance; below 0.5 the premise is reversed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lare2lib.core.plotting import colour_of, show_image, show_map
from lare2lib.core.profiles import LareConfig
from lare2lib.data.imagesets import ImageSet
from lare2lib.signals.lare import LareExtractor, single_step_loss
from lare2lib.signals.set_maps import batches, lare_maps, set_pixels, set_prompts

__all__ = [
    "auc_figure",
    "auc_lower_is_generated",
    "auc_table",
    "bootstrap_auc",
    "cost_figure",
    "curve_dict",
    "curve_gap",
    "curve_summary",
    "draw_errors",
    "ensemble_figure",
    "ensemble_study",
    "loss_curves",
    "map_gallery",
    "single_map_figure",
    "timestep_figure",
]


# -- maps and curves ----------------------------------------------------------------------
@torch.inference_mode()
def draw_errors(components, images: ImageSet, class_names: Sequence[str], draws: int,
                config: LareConfig = LareConfig(), *, seed: int = 0,
                batch_size: int = 32) -> torch.Tensor:
    """``(N, draws, C, h, w)``: each noise draw's squared error, before LaRE averages K of them.

    The first K draws of an image are exactly its K-draw LaRE map's draws (same per-image noise
    stream), so averaging them gives the K-draw map for every K ≤ ``draws``.
    """
    extractor = LareExtractor(components, config, seed=seed)
    out = []
    for chunk in batches(images, batch_size):
        prompts = set_prompts(chunk, class_names, components.class_names, config.prompt)
        z0 = extractor.latents(set_pixels(chunk, config.image_size), chunk.ids)
        states = extractor.embed(prompts, extractor.device, extractor.dtype)
        out.append(extractor.draw_errors(z0, chunk.ids, states, config.timestep, draws))
    return torch.cat(out)


def loss_curves(components, sets: Mapping[str, ImageSet], class_names: Sequence[str],
                timesteps: Sequence[int], *, ensemble: int = 1, seed: int = 0,
                batch_size: int = 64, image_size: int | None = None,
                progress: bool = False) -> pd.DataFrame:
    """Mean single-step loss of every image of every set at every t (paper Fig. 1b).

    Long table: ``set``, ``image``, ``t``, ``loss``. One latent sample per image serves every
    t, so differences along t come from the noise level alone.
    """
    rows = []
    for name, images in sets.items():
        for chunk in tqdm(list(batches(images, batch_size)), desc=f"loss curve {name}",
                          disable=not progress):
            size = image_size or chunk.pixels.shape[-1]
            prompts = set_prompts(chunk, class_names, components.class_names)
            losses = single_step_loss(components, set_pixels(chunk, size), chunk.ids, prompts,
                                      timesteps, ensemble=ensemble, seed=seed)
            for image_id, row in zip(chunk.ids, losses.tolist()):
                rows += [{"set": name, "image": image_id, "t": int(t), "loss": value}
                         for t, value in zip(timesteps, row)]
    return pd.DataFrame(rows)


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per set and t: mean loss and its standard error (``sem``) over images."""
    grouped = curves.groupby(["set", "t"], sort=False)["loss"]
    return pd.DataFrame({"mean": grouped.mean(), "sem": grouped.sem(ddof=1)}).reset_index()


def curve_gap(summary: pd.DataFrame, real: str = "real") -> pd.DataFrame:
    """Rows t, columns generated sets: mean loss of ``real`` minus that of the set (positive:
    the premise holds at that t)."""
    table = summary.pivot(index="t", columns="set", values="mean")
    return table.drop(columns=real).rsub(table[real], axis=0)


def curve_dict(summary: pd.DataFrame) -> dict[str, dict[int, float]]:
    """``{set: {t: mean loss}}`` for metrics.json."""
    return {name: dict(zip(group["t"].astype(int), group["mean"].astype(float)))
            for name, group in summary.groupby("set", sort=False)}


# -- separation ---------------------------------------------------------------------------
def auc_lower_is_generated(real: np.ndarray, generated: np.ndarray) -> float:
    """``P(generated < real) + ½ P(tie)``: the ROC AUC of the score ``-LaRE`` with generated
    images as positives (Mann-Whitney U over ``len(real) * len(generated)`` pairs)."""
    from scipy.stats import rankdata

    real, generated = np.asarray(real, float), np.asarray(generated, float)
    ranks = rankdata(np.concatenate([-generated, -real]))
    rank_sum = ranks[: len(generated)].sum()
    pairs = len(generated) * len(real)
    return float((rank_sum - len(generated) * (len(generated) + 1) / 2) / pairs)


def bootstrap_auc(real: np.ndarray, generated: np.ndarray, *, resamples: int = 1000,
                  level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """AUC with a percentile bootstrap interval, reals and generated resampled separately.

    The two classes are resampled independently (stratified), as the test sets were drawn
    independently; ``level`` is the interval's coverage (0.95: the 2.5th to 97.5th percentile).
    """
    rng = np.random.default_rng(seed)
    real, generated = np.asarray(real, float), np.asarray(generated, float)
    values = [auc_lower_is_generated(rng.choice(real, len(real)),
                                     rng.choice(generated, len(generated)))
              for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"auc": auc_lower_is_generated(real, generated), "low": float(low),
            "high": float(high), "level": level, "resamples": resamples,
            "n_real": len(real), "n_generated": len(generated)}


def auc_table(scores: Mapping[str, np.ndarray], real: str = "real", **bootstrap) -> pd.DataFrame:
    """One row per generator: AUC of mean LaRE against the ``real`` set, with its interval."""
    rows = {name: bootstrap_auc(scores[real], values, **bootstrap)
            for name, values in scores.items() if name != real}
    return pd.DataFrame(rows).T


def ensemble_study(errors: Mapping[str, torch.Tensor], ks: Sequence[int], real: str = "real",
                   **bootstrap) -> pd.DataFrame:
    """How the map's noise and the AUC change with the ensemble size K.

    ``errors`` maps set name → ``(N, D, C, h, w)`` per-draw errors (:func:`draw_errors`). For
    each K, per set:

    * ``split_half_corr``: correlation between the K-draw map of draws 1..K and that of draws
      K+1..2K of the same image (needs 2K ≤ D): how reproducible a K-draw map is (1 = no noise);
    * ``noise_ratio``: ‖map₁ − map₂‖ / ‖map₁ + map₂‖ of the same two halves: their
      difference (pure draw noise) against their sum (signal); falls like 1/√K while the
      noise dominates;
    * ``auc`` (generators only): AUC of the mean of the first K draws against ``real``.
    """
    rows = []
    for k in ks:
        means = {name: e[:, :k].mean(dim=(1, 2, 3, 4)).numpy() for name, e in errors.items()}
        for name, e in errors.items():
            row = {"K": k, "set": name}
            if 2 * k <= e.shape[1]:
                first, second = e[:, :k].mean(1).flatten(1), e[:, k:2 * k].mean(1).flatten(1)
                row["split_half_corr"] = float(_rowwise_corr(first, second).mean())
                row["noise_ratio"] = float(((first - second).norm(dim=1)
                                            / (first + second).norm(dim=1)).mean())
            if name != real:
                row["auc"] = auc_lower_is_generated(means[real], means[name])
            rows.append(row)
    return pd.DataFrame(rows)


def _rowwise_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


# -- figures ------------------------------------------------------------------------------
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
