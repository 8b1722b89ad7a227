"""Notebook 07's paper-style figures, redrawn from the other notebooks' ``metrics.json``.

Every figure function takes the ``metrics`` dict of one notebook (what
:func:`lare2lib.core.plotting.read_metrics` returns; tests feed synthetic ones) and returns a
matplotlib figure. Nothing is recomputed and nothing is invented: a quantity that is missing
raises :class:`MissingMetrics` naming it, and a value that is ``null`` (a metric a smoke-sized
split could not give) is drawn as a gap. :data:`FIGURES` lists every figure with the notebooks
it reads; :func:`draw_available` draws those whose notebooks have run and says why it left
the others out; :func:`overview_figure` is the one figure drawn from several notebooks, and
leaves out (with a note) the panel of each notebook that has not run.

Upstream notebooks are found by their two-digit number, so a renamed ``04_…`` still matches.
The schemas of 01–03 are fixed (see the notebooks and the shared README); those of 04–06 are
what these functions expect until the notebooks exist, documented in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lare2lib.core.plotting import METRICS_FILENAME, SET_ORDER, colour_of, read_metrics
from lare2lib.eval.results import cell_interval, cell_std, cell_value

__all__ = [
    "MissingMetrics",
    "PaperFigure",
    "FIGURES",
    "available_metrics",
    "figure_spec",
    "draw_figure",
    "draw_available",
    "render",
    "timestep_loss_figure",
    "cost_figure",
    "ablation_figure",
    "reconstruction_figure",
    "robustness_figure",
    "matrix_figure",
    "autoencoder_family_figure",
    "residual_spectra_figure",
    "resolution_figure",
    "evasion_figure",
    "overview_figure",
    "headline_rows",
    "findings",
]

SINGLE_COLUMN = 3.4
"""Inches: one column of a two-column paper."""
DOUBLE_COLUMN = 7.0
"""Inches: the full text width."""
ROW_HEIGHT = 2.6
"""Inches per row of panels."""


class MissingMetrics(KeyError):
    """A quantity a figure needs is not in the notebook's ``metrics.json``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


# -- reading metrics --------------------------------------------------------------------------


def _need(metrics: Mapping[str, Any], key: str, notebook: str) -> Any:
    value = metrics.get(key) if isinstance(metrics, Mapping) else None
    if value is None or (isinstance(value, Mapping) and not value):
        raise MissingMetrics(f"{notebook} metrics.json has no '{key}'")
    return value


def _number_or_name(text: str) -> tuple[int, float | str]:
    """Sort key: names first (``"none"``: the unperturbed reference), then numbers in numeric
    order (``metrics.json`` sorts keys as text: "128" < "32")."""
    try:
        return 1, float(text)
    except ValueError:
        return 0, text


def _is_number(text: str) -> bool:
    return _number_or_name(text)[0] == 1


def _levels(keys: Sequence[str]) -> list[str]:
    return sorted(keys, key=_number_or_name)


def _ordered_sets(names) -> list[str]:
    """Generators in the world's order (:func:`lare2lib.studies.nb01_lare.colour_of`), ``mean`` last."""
    names = list(dict.fromkeys(names))
    rank = {name: index for index, name in enumerate(SET_ORDER)}
    return sorted(names, key=lambda n: (n == "mean", rank.get(n, len(rank)), n))


def available_metrics(root: str | Path, numbers: Sequence[str] | None = None) -> dict[str, dict]:
    """``{stem: metrics}`` of every ``NN_*/metrics.json`` under ``root`` (a run's figures folder).

    ``numbers`` (e.g. ``("01", "02")``) keeps only those notebooks. A folder without
    ``metrics.json`` (a notebook that has not run, or failed) is simply absent.
    """
    root = Path(root)
    found = {}
    for folder in sorted(root.glob("[0-9][0-9]_*")):
        if (folder / METRICS_FILENAME).is_file() and (numbers is None or folder.name[:2] in numbers):
            found[folder.name] = read_metrics(folder.name, root)
    return found


def _by_number(metrics: Mapping[str, dict], number: str) -> tuple[str, dict] | None:
    matches = [(stem, m) for stem, m in metrics.items() if stem[:2] == number]
    return matches[0] if matches else None


# -- figure helpers ---------------------------------------------------------------------------


def _subplots(panels: int, width: float = DOUBLE_COLUMN, columns: int | None = None, **kwargs):
    import matplotlib.pyplot as plt

    columns = columns or panels
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width, ROW_HEIGHT * rows), squeeze=False,
                             **kwargs)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def _grouped_bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[float]],
                  errors: Mapping[str, Any] | None = None, colours: Mapping[str, str] | None = None):
    """Bars of each series side by side within each group; ``errors[name]`` is yerr (2, G) or (G,)."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for index, (name, values) in enumerate(series.items()):
        offset = (index - (len(series) - 1) / 2) * width
        yerr = None if errors is None else errors.get(name)
        colour = (colours or {}).get(name, f"C{index}")
        ax.bar(x + offset, values, width, yerr=yerr, capsize=2, label=name, color=colour,
               error_kw={"lw": 0.8})
    _tick_labels(ax, x, groups)


CROWDED_BARS = 4
"""More bars than this in a narrow panel: their labels stand vertical (slanted ones still touch)."""


def _tick_labels(ax, x, labels: Sequence[str], *, narrow: bool = False) -> None:
    """Category labels, slanted (anchored at their right end) when they are long, vertical when a
    ``narrow`` panel holds more than :data:`CROWDED_BARS` of them."""
    if narrow and len(labels) > CROWDED_BARS:
        ax.set_xticks(x, labels, rotation=90, ha="center")
        return
    slanted = max(map(len, labels), default=0) > 7
    ax.set_xticks(x, labels, rotation=30 if slanted else 0, ha="right" if slanted else "center")


def _legend_on_top(fig, ax) -> None:
    """One legend for every panel, in a row above them (the panels share their series)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(labels),
               fontsize=7, frameon=False)


def _plain_log_axis(axis) -> None:
    """Log axis with plain-number labels on the decades only (no crowded minor labels)."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def _asymmetric(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]):
    """yerr for matplotlib from an interval; zero length where the interval is unknown."""
    values, lows, highs = (np.asarray(v, float) for v in (values, lows, highs))
    below, above = np.nan_to_num(values - lows), np.nan_to_num(highs - values)
    return np.clip(np.vstack([below, above]), 0, None)


def _chance(ax, value: float = 0.5) -> None:
    ax.axhline(value, color="grey", lw=0.8, ls=":")


def _note(fig, text: str) -> None:
    fig.text(0.01, -0.02, text, fontsize=7, color="0.35", ha="left", va="top", wrap=True)


# -- 01: LaRE ---------------------------------------------------------------------------------


def timestep_loss_figure(metrics01: Mapping[str, Any]):
    """The paper's Fig. 1b: mean single-step loss over t per set, one panel per scoring model.

    Reads 01's ``timestep_curve`` ({scoring model: {set: {t: mean loss}}}) and ``timestep``
    (the LaRE t, marked). The y axis is logarithmic when the loss spans a decade or more.
    """
    curves = _need(metrics01, "timestep_curve", "01_lare")
    marked = metrics01.get("timestep")
    fig, axes = _subplots(len(curves), sharey=True)
    for ax, (model, sets) in zip(axes, curves.items()):
        span = []
        for name in _ordered_sets(sets):
            points = sorted((float(t), cell_value(v)) for t, v in sets[name].items())
            ts, losses = zip(*points)
            span += [v for v in losses if v > 0]
            ax.plot(ts, losses, marker="o", ms=2.5, lw=1.2, label=name, color=colour_of(name),
                    ls="-" if name == "real" else "--")
        if span and max(span) >= 10 * min(span):
            ax.set_yscale("log")
        if marked is not None:
            ax.axvline(float(marked), color="grey", lw=0.8, ls=":")
        ax.set(xlabel="timestep t", title=f"scored by {model}")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("mean single-step loss")
    fig.tight_layout()
    return fig


COST_LABELS = {
    "lare": "LaRE (batched)",
    "dire": "DIRE-style",
    "driver": "LaRE driver (PNG → store)",
    "bare": "bare forward",
    "per_image": "per-image loop (released)",
}
"""Display names of 01's timed variants (:data:`lare2lib.studies.nb01_cost.VARIANTS`)."""


def cost_figure(metrics01: Mapping[str, Any]):
    """Cost bars: seconds per image of each timed variant, and the speed-ups they give.

    Reads 01's ``cost.timings`` ({variant: {"images_per_second", ...}}) and the ratios
    ``lare_vs_dire_speedup``, ``batched_vs_per_image_speedup``, ``extraction_vs_bare_ratio``.
    The paper's comparison is 0.28 s (LaRE) against 2.3 s (DIRE) per image on a GPU; here both
    ran on this CPU in one process, so only the ratio carries over.
    """
    cost = _need(metrics01, "cost", "01_lare")
    timings = _need(cost, "timings", "01_lare cost")
    names = [name for name in COST_LABELS if name in timings] + \
            [name for name in timings if name not in COST_LABELS]
    per_image = [1 / cell_value(timings[name], "images_per_second") for name in names]
    fig, (ax_time, ax_ratio) = _subplots(2, gridspec_kw={"width_ratios": [3, 2]})
    ax_time.barh([COST_LABELS.get(n, n) for n in names], per_image, color="C0")
    for y, seconds in enumerate(per_image):
        ax_time.text(seconds, y, f" {seconds * 1000:.0f} ms", va="center", fontsize=7)
    ax_time.set(xscale="log", xlabel="seconds per image (best of repeats, this CPU)")
    _plain_log_axis(ax_time.xaxis)
    ax_time.invert_yaxis()
    ratios = {
        "LaRE vs DIRE": metrics01.get("lare_vs_dire_speedup"),
        "batched vs per-image": metrics01.get("batched_vs_per_image_speedup"),
        "extraction / bare": metrics01.get("extraction_vs_bare_ratio"),
    }
    ratios = {name: cell_value(v) for name, v in ratios.items() if v is not None}
    ax_ratio.barh(list(ratios), list(ratios.values()), color=["C1", "C2", "C3"][: len(ratios)])
    for y, value in enumerate(ratios.values()):
        ax_ratio.text(value, y, f" {value:.1f}×" if value >= 1.5 else f" {value:.2f}",
                      va="center", fontsize=7)
    ax_ratio.axvline(1, color="grey", lw=0.8, ls=":")
    ax_ratio.set(xlabel="ratio (> 1: the first is faster)", title="measured in one run")
    ax_ratio.invert_yaxis()
    fig.tight_layout()
    return fig


# -- 02: EGRE ablations -----------------------------------------------------------------------


def ablation_figure(metrics02: Mapping[str, Any], metric_names: Sequence[str] = ("acc", "ap", "auc")):
    """Ablation bars: one panel per metric, test sets grouped, variants side by side, ±1 std.

    Reads 02's ``ablation``: {variant: {test set: {metric: {"mean", "std", "n"}}}} where test
    sets are the generators plus ``"mean"``; ``seeds`` (list) goes in the title. Error bars are
    the standard deviation over seeds (none when n = 1).
    """
    ablation = _need(metrics02, "ablation", "02_egre_ablations")
    variants = list(ablation)
    test_sets = _ordered_sets(s for variant in ablation.values() for s in variant)
    present = [m for m in metric_names
               if any(m in cell for variant in ablation.values() for cell in variant.values())]
    if not present:
        raise MissingMetrics(f"02_egre_ablations ablation has none of {list(metric_names)}")
    fig, axes = _subplots(len(present), sharey=True)
    seeds = metrics02.get("seeds")
    for ax, metric in zip(axes, present):
        means = {v: [cell_value(ablation[v].get(s, {}).get(metric), "mean") for s in test_sets]
                 for v in variants}
        stds = {v: np.nan_to_num([cell_std(ablation[v].get(s, {}).get(metric))
                                  for s in test_sets]) for v in variants}
        _grouped_bars(ax, test_sets, means, stds)
        _chance(ax)
        ax.set(ylim=(0, 1.02), title=metric.upper() + (" @ 0.5" if metric == "acc" else ""))
    axes[0].set_ylabel(f"mean ± std, {len(seeds)} seed(s)" if seeds else "mean ± std")
    fig.tight_layout()
    _legend_on_top(fig, axes[0])
    return fig


# -- 03: reconstruction detector, AEROBLADE -----------------------------------------------------


TRIES = ("1_try", "10_tries")
"""Inference modes of 03: one crop, or the mean of 10 crops' sigmoids."""


def reconstruction_figure(metrics03: Mapping[str, Any]):
    """TPR at 0.1 % FPR and AUC per generator, 1 try vs 10 tries, with bootstrap intervals;
    AEROBLADE's AP per generator in a third panel when 03 computed it.

    Reads 03's ``tpr_at_0.1pct_fpr`` and ``auc``: {generator: {"1_try": {"value", "ci"},
    "10_tries": {...}}}, and ``aeroblade_ap``: {generator: AP}. When 03 also stores ROC points,
    ``roc``: {generator: {"fpr": [...], "tpr": [...]}}, they are drawn on a log-FPR axis
    (the low-FPR end the TPR@0.1 % reads off).
    """
    panels = [("tpr_at_0.1pct_fpr", "TPR @ 0.1 % FPR"), ("auc", "ROC AUC")]
    panels = [(key, title) for key, title in panels if metrics03.get(key)]
    if not panels:
        raise MissingMetrics("03_ae_reconstruction metrics.json has no 'tpr_at_0.1pct_fpr' or 'auc'")
    extra = [key for key in ("aeroblade_ap", "roc") if metrics03.get(key)]
    fig, axes = _subplots(len(panels) + len(extra))
    for ax, (key, title) in zip(axes, panels):
        table = metrics03[key]
        generators = _ordered_sets(table)
        tries = [t for t in TRIES if any(t in table[g] for g in generators)]
        values = {t: [cell_value(table[g].get(t)) for g in generators] for t in tries}
        errors = {t: _asymmetric(values[t], *zip(*[cell_interval(table[g].get(t)) for g in generators]))
                  for t in tries}
        _grouped_bars(ax, generators, {t.replace("_", " "): values[t] for t in tries},
                      {t.replace("_", " "): errors[t] for t in tries})
        ax.set(ylim=(0, 1.02), title=title)
        if key == "auc":
            _chance(ax)
    axes[0].set_ylabel("95 % bootstrap CI")
    for ax, key in zip(axes[len(panels):], extra):
        if key == "aeroblade_ap":
            ap = metrics03[key]
            generators = _ordered_sets(ap)
            ax.bar(range(len(generators)), [cell_value(ap[g]) for g in generators],
                   color=[colour_of(g) for g in generators])
            _tick_labels(ax, range(len(generators)), generators)
            ax.set(ylim=(0, 1.02), title="AEROBLADE AP (training-free)")
        else:
            _roc_panel(ax, metrics03[key])
    fig.tight_layout()
    _legend_on_top(fig, axes[0])
    return fig


def _roc_panel(ax, roc: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
    for name in _ordered_sets(roc):
        fpr = np.clip(np.asarray(roc[name]["fpr"], float), 1e-4, 1)
        ax.plot(fpr, roc[name]["tpr"], label=name, color=colour_of(name), lw=1.2)
    ax.axvline(1e-3, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1.02), xlabel="FPR", ylabel="TPR", title="ROC")
    ax.legend(fontsize=7)


def robustness_figure(robustness: Mapping[str, Any], metric: str = "auc",
                      title: str = "robustness of the reconstruction detector",
                      chance: float | None = None):
    """Robustness curves: one panel per perturbation, metric over its level, one line per set.

    ``robustness`` is 03's ``robustness`` (or 06's ``postprocess``): {perturbation: {level:
    {generator or detector: value}}}, where a value is a number or a dict holding ``metric``.
    Levels are plotted in numeric order (``metrics.json`` stores them as sorted text); a
    non-numeric level such as ``"none"`` comes first, as the unperturbed reference. ``chance``:
    where to draw the chance line when ``metric`` is not AUC (a TPR's chance is its FPR).
    """
    if not robustness:
        raise MissingMetrics("no robustness results")
    fig, axes = _subplots(len(robustness), columns=min(len(robustness), 4), sharey=True)
    for ax, (perturbation, by_level) in zip(axes, robustness.items()):
        levels = _levels(list(by_level))
        numeric = all(_is_number(level) for level in levels)
        x = [float(level) for level in levels] if numeric else list(range(len(levels)))
        names = _ordered_sets(n for level in levels for n in by_level[level])
        for name, colour in zip(names, _line_colours(names)):
            y = [cell_value(by_level[level].get(name), metric) for level in levels]
            ax.plot(x, y, marker="o", ms=3, lw=1.2, label=name, color=colour)
        if not numeric:
            ax.set_xticks(x, levels)
        ax.set(xlabel=perturbation, title=perturbation, ylim=(0, 1.02))
        if metric == "auc":
            _chance(ax)
        elif chance is not None:
            _chance(ax, chance)
    axes[0].set_ylabel(metric.upper())
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _line_colours(names: Sequence[str]) -> list[str]:
    """The world's colours when every name is one of its sets; otherwise (detectors) one
    distinct colour per name, in order, so no two lines share one."""
    from lare2lib.core.plotting import SET_ORDER

    if all(name in SET_ORDER for name in names):
        return [colour_of(name) for name in names]
    return [f"C{k % 10}" for k in range(len(names))]


# -- 04, 05: matrices -------------------------------------------------------------------------


def matrix_figure(matrices: Mapping[str, Mapping[str, Mapping[str, Any]]], *, row_label: str,
                  column_label: str, vmin: float = 0.0, vmax: float = 1.0):
    """Annotated heatmaps side by side: {panel title: {row: {column: value}}}.

    Values are numbers or ``{"value", "ci"}`` dicts; a missing cell is left blank. Numeric rows
    and columns (resolutions) come first in numeric order, named ones after, as first seen.
    """
    fig, axes = _subplots(len(matrices), width=min(DOUBLE_COLUMN, 3.6 * len(matrices)))
    for ax, (title, matrix) in zip(axes, matrices.items()):
        rows = _axis_order(list(matrix))
        columns = _axis_order(list(dict.fromkeys(c for row in matrix.values() for c in row)))
        grid = np.array([[cell_value(matrix[r].get(c)) for c in columns] for r in rows])
        image = ax.imshow(grid, vmin=vmin, vmax=vmax, cmap="mako" if _has_mako() else "viridis")
        for (i, j), value in np.ndenumerate(grid):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < (vmin + vmax) / 2 else "black")
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set(xlabel=column_label, ylabel=row_label, title=title)
        ax.grid(False)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def _axis_order(keys: list[str]) -> list[str]:
    """Numeric keys (resolutions) in numeric order, then the named ones (``native``, a
    generator) in first-seen order: ``metrics.json`` stores keys sorted as text."""
    numbers = sorted((k for k in keys if _is_number(k)), key=float)
    return numbers + [k for k in keys if not _is_number(k)]


def _has_mako() -> bool:
    import matplotlib

    try:
        import seaborn  # noqa: F401  (registers "mako")
    except ImportError:
        return False
    return "mako" in matplotlib.colormaps


MATRIX_METRICS = {"auc": "AUC", "tpr@0.1%": "TPR @ 0.1 % FPR"}
"""Cell keys of 04's and 05's ``matrix`` and their panel titles."""


def _matrices(metrics: Mapping[str, Any], notebook: str) -> dict[str, Any]:
    """``{panel title: {row: {column: {"value", "ci"}}}}`` from a notebook's ``matrix``:
    {train: {test: {"auc", "tpr@0.1%", "tpr@0.1%_ci"}}} (what 04 and 05 write)."""
    matrix = _need(metrics, "matrix", notebook)
    panels = {}
    for key, title in MATRIX_METRICS.items():
        panel = {row: {column: {"value": cell[key], "ci": cell.get(f"{key}_ci")}
                       for column, cell in cells.items() if key in cell}
                 for row, cells in matrix.items()}
        if any(panel.values()):
            panels[title] = panel
    if not panels:
        raise MissingMetrics(f"{notebook} matrix has none of {list(MATRIX_METRICS)} in its cells")
    return panels


def autoencoder_family_figure(metrics04: Mapping[str, Any]):
    """Which autoencoder family generalises: train autoencoder × test set, AUC and TPR@0.1 %.

    04 schema: ``matrix``: {train autoencoder: {test set: {"auc", "tpr@0.1%", "tpr@0.1%_ci"}}}
    (rows: the autoencoder whose reconstructions trained the detector, e.g. ``kl_ae``,
    ``vq_ae``, ``taef2``; columns: generators and reconstruction sets).
    """
    return matrix_figure(_matrices(metrics04, "04_autoencoder_family"),
                         row_label="trained on (autoencoder)", column_label="tested on")


def residual_spectra_figure(metrics04: Mapping[str, Any]):
    """Radial profiles of the reconstruction residuals' spectra, one line per autoencoder.

    04 schema: ``residual_spectra``: {autoencoder: {"frequency": [cycles/px],
    "log_magnitude": [ring mean of log |FFT| of recon − real]}}
    (:func:`lare2lib.studies.nb04_ae_family.residual_profiles`).
    """
    spectra = _need(metrics04, "residual_spectra", "04_autoencoder_family")
    fig, [ax] = _subplots(1, width=SINGLE_COLUMN * 1.3)
    for name in _ordered_sets(spectra):
        ax.plot(spectra[name]["frequency"], spectra[name]["log_magnitude"], label=name, lw=1.2,
                color=colour_of(name))
    ax.set(xlabel="spatial frequency (cycles / pixel)", ylabel="log |FFT| of recon − real",
           title="residual spectra")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def resolution_figure(metrics05: Mapping[str, Any]):
    """Training resolution × test resolution, AUC and TPR@0.1 %.

    05 schema: ``matrix``: {train level: {test level: {"auc", "tpr@0.1%"}}}, levels as text
    ("96", "192", "native", "native_256"); numeric levels sort as numbers.
    """
    return matrix_figure(_matrices(metrics05, "05_training_resolution"),
                         row_label="train resolution (px)", column_label="test resolution (px)")


# -- 06: evasion ------------------------------------------------------------------------------


def evasion_figure(metrics06: Mapping[str, Any], metric: str = "auc"):
    """Evasion at a glance: the artifact-removal attack and PGD budget curves with their PSNR.

    Expected 06 schema (post-processing sweeps go through :func:`robustness_figure` with
    ``postprocessing``): ``artifact_removal``: {detector: {"before": value, "after": value}};
    ``pgd``: {detector: {"epsilon": [budgets, in 8-bit steps], metric: [...], "psnr": [dB]}}.
    Panels whose key is absent are left out; at least one must be present.
    """
    removal = _removal_by_detector(metrics06.get("artifact_removal"), metrics06.get("clean"))
    pgd = _pgd_curves(metrics06.get("pgd"))
    if not removal and not pgd:
        raise MissingMetrics("06_evasion metrics.json has no 'artifact_removal' or 'pgd'")
    fig, axes = _subplots((1 if removal else 0) + (2 if pgd else 0))
    axes = iter(axes)
    if removal:
        ax = next(axes)
        detectors = list(removal)
        stages = list(dict.fromkeys(stage for d in detectors for stage in removal[d]))
        series = {stage: [cell_value(removal[d].get(stage), metric) for d in detectors]
                  for stage in stages}
        _grouped_bars(ax, detectors, series)
        _chance(ax)
        ax.set(ylim=(0, 1.02), ylabel=metric.upper(), title="artifact-removal attack")
        ax.legend(fontsize=7)
    if pgd:
        ax_metric, ax_psnr = next(axes), next(axes)
        for index, (detector, curve) in enumerate(pgd.items()):
            budget = curve["epsilon"]
            ax_metric.plot(budget, [cell_value(v) for v in curve[metric]], marker="o", ms=3,
                           label=detector, color=f"C{index}")
            ax_psnr.plot(budget, [cell_value(v) for v in curve["psnr"]], marker="o", ms=3,
                         label=detector, color=f"C{index}")
        _chance(ax_metric)
        ax_metric.set(xlabel="PGD budget ε", ylabel=metric.upper(), ylim=(0, 1.02),
                      title="PGD attack")
        ax_psnr.set(xlabel="PGD budget ε", ylabel="PSNR (dB)",
                    title="what the attack costs")
        ax_metric.legend(fontsize=7)
    fig.tight_layout()
    return fig


# -- several notebooks at once ----------------------------------------------------------------

OVERVIEW_SOURCES = (
    ("01", "mean LaRE (training-free)"),
    ("02", "EGRE (mean over seeds)"),
    ("03", "reconstruction detector (1 try)"),
)
"""Panels of :func:`overview_figure`: notebook number → what its AUC measures."""

EGRE_HEADLINE_VARIANTS = ("egre", "esr+ecr", "full", "esr_ecr")
"""Names 02 may give its full model (ESR + ECR); the first present is the overview's EGRE."""


def _overview_auc(number: str, metrics: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """{generator: (auc, lo, hi)} of one notebook's headline detector."""
    if number == "01":
        table = _need(metrics, "lare_auc", "01_lare")
        return {g: (cell_value(r, "auc"), *cell_interval(r)) for g, r in table.items()}
    if number == "02":
        ablation = _need(metrics, "ablation", "02_egre_ablations")
        variant = next((v for v in ablation if v.lower() in EGRE_HEADLINE_VARIANTS), None)
        if variant is None:
            raise MissingMetrics(f"02 ablation has no full-EGRE variant ({EGRE_HEADLINE_VARIANTS})")
        cells = {s: c.get("auc", {}) for s, c in ablation[variant].items() if s != "mean"}
        return {s: (cell_value(c, "mean"), cell_value(c, "mean") - cell_std(c), cell_value(c, "mean") + cell_std(c))
                for s, c in cells.items()}
    table = _need(metrics, "auc", "03_ae_reconstruction")
    return {g: (cell_value(r.get("1_try")), *cell_interval(r.get("1_try"))) for g, r in table.items()}


def overview_figure(metrics_by_notebook: Mapping[str, Mapping[str, Any]]):
    """AUC per generator of each family of detector, one panel per upstream notebook.

    A notebook that has not run (or lacks the quantity) gets no panel, and the note under the
    figure names it: panels are never filled with anything but that notebook's numbers.
    Intervals: 01 and 03 bootstrap 95 %, 02 ±1 std over seeds.
    """
    panels, missing = [], []
    for number, label in OVERVIEW_SOURCES:
        found = _by_number(metrics_by_notebook, number)
        if found is None:
            missing.append(f"{number} ({label}): not run")
            continue
        try:
            panels.append((label, found[0], _overview_auc(number, found[1])))
        except MissingMetrics as exc:
            missing.append(f"{number} ({label}): {exc}")
    if not panels:
        raise MissingMetrics("none of 01, 02, 03 has run: " + "; ".join(missing))
    fig, axes = _subplots(len(panels), width=min(DOUBLE_COLUMN, 2.6 * len(panels) + 0.6),
                          sharey=True)
    for ax, (label, stem, auc) in zip(axes, panels):
        generators = [g for g in _ordered_sets(auc) if g != "real"]
        values = [auc[g][0] for g in generators]
        errors = _asymmetric(values, [auc[g][1] for g in generators], [auc[g][2] for g in generators])
        ax.bar(range(len(generators)), values, yerr=errors, capsize=2,
               color=[colour_of(g) for g in generators], error_kw={"lw": 0.8})
        _tick_labels(ax, range(len(generators)), generators, narrow=True)
        _chance(ax)
        ax.set_title(f"{label}\n[{stem}]", fontsize=8)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("AUC vs held-out reals")
    fig.tight_layout()
    if missing:
        _note(fig, "Not shown: " + "; ".join(missing))
    return fig


# -- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperFigure:
    """One figure of notebook 07 and where its numbers come from."""

    name: str
    """File stem of the saved figure (PNG + PDF)."""
    numbers: tuple[str, ...]
    """Upstream notebooks it reads, by number; all are needed unless ``any_of``."""
    draw: Callable[[Mapping[str, Mapping[str, Any]]], Any]
    """``{stem: metrics}`` of the available notebooks → figure (raises :class:`MissingMetrics`)."""
    caption: str
    """One line for the notebook's text."""
    any_of: bool = False
    """Drawn when at least one of ``numbers`` has run (its missing panels are noted)."""


def _single(name: str, number: str, draw: Callable[[Mapping[str, Any]], Any], caption: str,
            key: str | None = None) -> PaperFigure:
    """A figure of one notebook: ``draw`` gets its metrics (or only ``metrics[key]``)."""

    def from_notebook(metrics_by_notebook: Mapping[str, Mapping[str, Any]]):
        stem, metrics = _by_number(metrics_by_notebook, number)
        return draw(_need(metrics, key, stem) if key else metrics)

    return PaperFigure(name, (number,), from_notebook, caption)


def _postprocessing(metrics06: Mapping[str, Any]):
    """06's ``postprocess``: {kind: {level: {detector: {"auc", "tpr", "fpr"}}}}, each sweep
    preceded by the unperturbed ``clean`` rates; the detection rate (TPR at the clean reals'
    ``fpr`` threshold) is 06's headline, so it is what is drawn."""
    sweeps = _need(metrics06, "postprocess", "06_evasion")
    clean = metrics06.get("clean")
    if clean:
        sweeps = {kind: {"clean": clean, **levels} for kind, levels in sweeps.items()}
    return robustness_figure(sweeps, metric="tpr", title="post-processing sweeps",
                             chance=float(metrics06.get("fpr", 0.05)))


FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("overview_auc", ("01", "02", "03"), overview_figure,
                "AUC per generator of each detector family", any_of=True),
    _single("loss_vs_timestep", "01", timestep_loss_figure,
            "single-step loss over t, real vs generated (LaRE Fig. 1b)"),
    _single("cost", "01", cost_figure, "seconds per image and measured speed-ups (LaRE vs DIRE)"),
    _single("egre_ablation", "02", ablation_figure, "EGRE ablations, mean ± std over seeds"),
    _single("reconstruction_tpr", "03", reconstruction_figure,
            "reconstruction detector: TPR @ 0.1 % FPR and AUC, 1 vs 10 tries; AEROBLADE AP"),
    _single("robustness", "03", robustness_figure,
            "robustness of the reconstruction detector to post-processing", key="robustness"),
    _single("autoencoder_family", "04", autoencoder_family_figure, "train autoencoder × test set"),
    _single("residual_spectra", "04", residual_spectra_figure,
            "reconstruction residual spectra per autoencoder"),
    _single("training_resolution", "05", resolution_figure, "train resolution × test resolution"),
    _single("postprocessing", "06", _postprocessing,
            "detectors under post-processing sweeps (detection rate at the clean 5 % FPR threshold)"),
    _single("evasion", "06", evasion_figure,
            "artifact-removal attack and PGD budget curves with PSNR"),
)
"""Every figure of notebook 07, in the order it shows them."""


def figure_spec(name: str) -> PaperFigure:
    """The registered figure called ``name`` (the valid names in the error otherwise)."""
    for spec in FIGURES:
        if spec.name == name:
            return spec
    raise KeyError(f"no paper figure '{name}'; valid: {', '.join(s.name for s in FIGURES)}")


def draw_figure(spec: PaperFigure | str, metrics_by_notebook: Mapping[str, Mapping[str, Any]]):
    """``(figure, [source stems])`` of one figure; :class:`MissingMetrics` when it cannot be
    drawn from what has run (the message says why). Any other error is a bug and propagates."""
    spec = figure_spec(spec) if isinstance(spec, str) else spec
    sources = [found[0] for n in spec.numbers if (found := _by_number(metrics_by_notebook, n))]
    absent = [n for n in spec.numbers if not _by_number(metrics_by_notebook, n)]
    if not sources or (absent and not spec.any_of):
        raise MissingMetrics(f"notebook(s) {', '.join(absent)} not run")
    return spec.draw(metrics_by_notebook), sources


def draw_available(metrics_by_notebook: Mapping[str, Mapping[str, Any]],
                   figures: Sequence[PaperFigure] = FIGURES):
    """Draw every figure whose notebooks have run.

    Returns ``(drawn, skipped)``: ``drawn`` is ``{name: (figure, [source stems])}`` in order,
    ``skipped`` is ``{name: reason}`` (a notebook not run, or a quantity it did not write).
    """
    drawn, skipped = {}, {}
    for spec in figures:
        try:
            drawn[spec.name] = draw_figure(spec, metrics_by_notebook)
        except MissingMetrics as exc:
            skipped[spec.name] = str(exc)
    return drawn, skipped


def render(name: str, metrics_by_notebook: Mapping[str, Mapping[str, Any]],
           out_dir: str | Path, formats: Sequence[str] = ("png", "pdf")):
    """Draw figure ``name`` and save it to ``out_dir`` (:func:`lare2lib.core.plotting.save_figure`).

    Returns ``(figure or None, record)``; the record, for 07's ``metrics.json``, is
    ``{"from": [stems], "files": [names]}`` when drawn and ``{"skipped": reason}`` otherwise.
    The figure is left open, so the notebook shows it after it was saved.
    """
    from lare2lib.core.plotting import save_figure

    try:
        fig, sources = draw_figure(name, metrics_by_notebook)
    except MissingMetrics as exc:
        return None, {"skipped": str(exc)}
    files = save_figure(fig, out_dir, name, formats=formats)
    return fig, {"from": sources, "files": [path.name for path in files]}


# -- headline numbers -------------------------------------------------------------------------


def headline_rows(metrics_by_notebook: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The numbers the figures stand on, one row each: notebook, quantity, set, value, interval.

    For 07's table and ``metrics.json``; rows of notebooks that have not run are absent.
    """
    rows = []

    def add(stem, quantity, name, leaf, key=None):
        lo, hi = cell_interval(leaf)
        rows.append({"notebook": stem, "quantity": quantity, "set": name,
                     "value": cell_value(leaf, key), "low": lo, "high": hi})

    for stem, metrics in metrics_by_notebook.items():
        number = stem[:2]
        if number == "01":
            for name, row in (metrics.get("lare_auc") or {}).items():
                add(stem, "mean-LaRE AUC", name, row, "auc")
            for key in ("lare_vs_dire_speedup", "batched_vs_per_image_speedup"):
                if metrics.get(key) is not None:
                    add(stem, key, "", metrics[key])
        elif number == "02":
            for variant, cells in (metrics.get("ablation") or {}).items():
                for metric in ("acc", "ap", "auc"):
                    if metric in cells.get("mean", {}):
                        add(stem, f"{variant} {metric} (mean of sets)", "mean",
                            cells["mean"][metric], "mean")
        elif number == "03":
            for key, label in (("tpr_at_0.1pct_fpr", "TPR@0.1%FPR"), ("auc", "AUC")):
                for name, row in (metrics.get(key) or {}).items():
                    for tries in TRIES:
                        if tries in row:
                            add(stem, f"{label} {tries.replace('_', ' ')}", name, row[tries])
            for name, value in (metrics.get("aeroblade_ap") or {}).items():
                add(stem, "AEROBLADE AP", name, value)
        elif number in ("04", "05"):
            trained = "autoencoder" if number == "04" else "level"
            for train, cells in (metrics.get("matrix") or {}).items():
                for test, cell in cells.items():
                    add(stem, f"AUC, trained on {trained} {train}", test, cell, "auc")
        elif number == "06":
            for detector, cell in (metrics.get("clean") or {}).items():
                add(stem, "clean detection rate (TPR @ 5 % FPR)", detector, cell, "tpr")
            for detector, value in (metrics.get("postprocess_mean_tpr") or {}).items():
                add(stem, "mean detection rate under post-processing", detector, value)
    return rows



# -- the answers, in words --------------------------------------------------------------------


def _f(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _verdict(rows: Mapping[str, Any]) -> str:
    """Which generators' interval lies above 0.5, below it, or straddles it."""
    groups: dict[str, list[str]] = {"above 0.5": [], "below 0.5": [], "including 0.5": []}
    for name in _ordered_sets(rows):
        lo, hi = cell_interval(rows[name])
        key = "above 0.5" if lo > 0.5 else "below 0.5" if hi < 0.5 else "including 0.5"
        groups[key].append(name)
    return "; ".join(f"interval {k}: {', '.join(v)}" for k, v in groups.items() if v)


def _findings01(m: Mapping[str, Any]) -> list[str]:
    out = []
    if m.get("lare_auc"):
        table = m["lare_auc"]
        values = ", ".join(f"{g} {_f(cell_value(table[g], 'auc'))} [{_f(cell_interval(table[g])[0])}, "
                           f"{_f(cell_interval(table[g])[1])}]" for g in _ordered_sets(table))
        out.append(f"Mean LaRE alone, AUC vs held-out reals: {values} ({_verdict(table)}; above "
                   f"0.5 = the premise holds).")
    curve = (m.get("timestep_curve") or {}).get("kl_ldm") or {}
    if "real" in curve:
        gaps = []
        for name in _ordered_sets(curve):
            if name == "real":
                continue
            diffs = {float(t): cell_value(curve["real"][t]) - cell_value(v) for t, v in curve[name].items()
                     if t in curve["real"]}
            t_best = max(diffs, key=lambda t: diffs[t])
            gaps.append(f"{name} {diffs[t_best]:+.3g} at t = {t_best:g}")
        out.append("Largest loss gap, real − generated (scored by kl_ldm): " + ", ".join(gaps)
                   + " (positive = generated images have the lower loss).")
    if m.get("lare_vs_dire_speedup") is not None:
        out.append(f"LaRE ran {_f(cell_value(m['lare_vs_dire_speedup']), 1)}× faster than the "
                   f"DIRE-style baseline in this run (paper: ≈ 8× on a GPU), the batched driver "
                   f"{_f(cell_value(m.get('batched_vs_per_image_speedup')), 1)}× faster than the "
                   f"per-image loop.")
    return out


def _findings02(m: Mapping[str, Any]) -> list[str]:
    ablation = m.get("ablation") or {}
    scored = {v: cells["mean"]["auc"] for v, cells in ablation.items()
              if isinstance(cells.get("mean"), Mapping) and "auc" in cells["mean"]}
    if not scored:
        return []
    ranked = sorted(scored, key=lambda v: -np.nan_to_num(cell_value(scored[v], "mean"), nan=-1))
    listing = ", ".join(f"{v} {_f(cell_value(scored[v], 'mean'))} ± {_f(cell_std(scored[v]))}"
                        for v in ranked)
    text = f"EGRE ablation, AUC averaged over test sets (± std over seeds): {listing}."
    if len(ranked) > 1:
        lead = cell_value(scored[ranked[0]], "mean") - cell_value(scored[ranked[1]], "mean")
        spread = max(np.nan_to_num(cell_std(scored[v])) for v in ranked[:2])
        resolved = "more" if lead > spread else "less"
        text += (f" {ranked[0]} leads {ranked[1]} by {_f(lead)}, {resolved} than the seeds' "
                 f"standard deviation.")
    return [text]


def _findings03(m: Mapping[str, Any]) -> list[str]:
    out = []
    for key, label in (("tpr_at_0.1pct_fpr", "TPR @ 0.1 % FPR"), ("auc", "AUC")):
        table = m.get(key) or {}
        ranges = []
        for tries in TRIES:
            values = [cell_value(row.get(tries)) for row in table.values() if tries in row]
            if values:
                ranges.append(f"{tries.replace('_', ' ')} {_f(np.nanmin(values))}–"
                              f"{_f(np.nanmax(values))}")
        if ranges:
            out.append(f"Reconstruction detector, {label} across generators: "
                       + ", ".join(ranges) + ".")
    if m.get("aeroblade_ap"):
        values = [cell_value(v) for v in m["aeroblade_ap"].values()]
        out.append(f"AEROBLADE (no training) AP across generators: {_f(np.nanmin(values))}–"
                   f"{_f(np.nanmax(values))}.")
    for perturbation, by_level in (m.get("robustness") or {}).items():
        means = {level: np.nanmean([cell_value(v, "auc") for v in by_level[level].values()] or [np.nan])
                 for level in _levels(list(by_level))}
        worst = min(means, key=lambda level: np.nan_to_num(means[level], nan=np.inf))
        out.append(f"Under {perturbation}, the mean over generators falls to {_f(means[worst])} "
                   f"(level {worst}; levels tried: {', '.join(means)}).")
    return out


def _findings_matrix(m: Mapping[str, Any], stem: str) -> list[str]:
    out = []
    for key, title in MATRIX_METRICS.items():
        matrix = m.get(key) or {}
        cells = {(r, c): cell_value(v) for r, row in matrix.items() for c, v in row.items()}
        cells = {k: v for k, v in cells.items() if not math.isnan(v)}
        if cells:
            best, worst = max(cells, key=cells.get), min(cells, key=cells.get)
            out.append(f"{stem}: {title} from {_f(cells[worst])} ({worst[0]} → {worst[1]}) to "
                       f"{_f(cells[best])} ({best[0]} → {best[1]}).")
    return out


def _pgd_curves(pgd: Mapping[str, Any] | None) -> dict[str, dict[str, list]]:
    """06's ``pgd`` (detector → budget in 8-bit steps → {auc, tpr, psnr}) as curves per detector.

    Curves already in the ``{"epsilon": [...], metric: [...]}`` form pass through unchanged.
    """
    curves: dict[str, dict[str, list]] = {}
    for detector, by_budget in (pgd or {}).items():
        if "epsilon" in by_budget:
            curves[detector] = dict(by_budget)
            continue
        budgets = sorted(by_budget, key=float)
        curve: dict[str, list] = {"epsilon": [float(b) for b in budgets]}
        for key in ("auc", "tpr", "psnr"):
            curve[key] = [by_budget[b].get(key) for b in budgets]
        curves[detector] = curve
    return curves


def _removal_by_detector(removal: Mapping[str, Any] | None,
                         clean: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """06's ``artifact_removal`` (attack → detector → metrics) as detector → stage → metrics.

    The stages are ``before`` (the clean scores, when 06 wrote them) and one per attack; the
    older ``{detector: {"before", "after"}}`` form passes through unchanged.
    """
    if not removal:
        return {}
    first = next(iter(removal.values()))
    if isinstance(first, Mapping) and ({"before", "after"} & set(first)):
        return {d: dict(v) for d, v in removal.items()}
    table: dict[str, dict[str, Any]] = {}
    for attack, by_detector in removal.items():
        for detector, value in by_detector.items():
            row = table.setdefault(detector, {})
            if clean and detector in clean and "before" not in row:
                row["before"] = clean[detector]
            row[attack] = value
    return table


def _findings06(m: Mapping[str, Any]) -> list[str]:
    out = []
    for detector, curve in _pgd_curves(m.get("pgd")).items():
        if curve.get("epsilon") and curve.get("auc"):
            out.append(f"PGD against {detector}: AUC {_f(cell_value(curve['auc'][0]))} → "
                       f"{_f(cell_value(curve['auc'][-1]))} at ε = {curve['epsilon'][-1]}"
                       + (f" (PSNR {_f(cell_value(curve['psnr'][-1]), 1)} dB)."
                          if curve.get("psnr") else "."))
    for detector, stages in _removal_by_detector(m.get("artifact_removal"), m.get("clean")).items():
        attacks = ", ".join(f"{name} {_f(cell_value(value, 'auc'))}" for name, value in stages.items()
                            if name != "before")
        out.append(f"Artifact removal against {detector}: AUC {_f(cell_value(stages.get('before'), 'auc'))} "
                   f"clean; after {attacks}.")
    return out


def findings(metrics_by_notebook: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One sentence per headline result, numbers read from the metrics (nothing hard-coded)."""
    out = []
    for stem, metrics in metrics_by_notebook.items():
        number = stem[:2]
        if number == "01":
            out += _findings01(metrics)
        elif number == "02":
            out += _findings02(metrics)
        elif number == "03":
            out += _findings03(metrics)
        elif number in ("04", "05"):
            out += _findings_matrix(metrics, stem)
        elif number == "06":
            out += _findings06(metrics)
    return out
