"""Notebook 07's figures and sentences from 03 (reconstruction detector, AEROBLADE, robustness).

Notebook 03 draws :func:`reconstruction_figure` and :func:`robustness_figure` itself, from the
same schema it writes; 06's post-processing sweeps reuse :func:`robustness_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lare2lib.core.plotting import colour_of
from lare2lib.eval.results import cell_interval, cell_value
from lare2lib.studies.nb07_common import (MissingMetrics, asymmetric, chance_line, fmt,
                                          grouped_bars, headline_row, is_number, legend_on_top,
                                          line_colours, need, ordered_sets, sorted_levels,
                                          subplots, tick_labels)


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
    fig, axes = subplots(len(panels) + len(extra))
    for ax, (key, title) in zip(axes, panels):
        table = metrics03[key]
        generators = ordered_sets(table)
        tries = [t for t in TRIES if any(t in table[g] for g in generators)]
        values = {t: [cell_value(table[g].get(t)) for g in generators] for t in tries}
        errors = {t: asymmetric(values[t], *zip(*[cell_interval(table[g].get(t)) for g in generators]))
                  for t in tries}
        grouped_bars(ax, generators, {t.replace("_", " "): values[t] for t in tries},
                      {t.replace("_", " "): errors[t] for t in tries}, narrow=True)
        ax.set(ylim=(0, 1.02), title=title)
        if key == "auc":
            chance_line(ax)
    axes[0].set_ylabel("95 % bootstrap CI")
    for ax, key in zip(axes[len(panels):], extra):
        if key == "aeroblade_ap":
            ap = metrics03[key]
            generators = ordered_sets(ap)
            ax.bar(range(len(generators)), [cell_value(ap[g]) for g in generators],
                   color=[colour_of(g) for g in generators])
            tick_labels(ax, range(len(generators)), generators, narrow=True)
            ax.set(ylim=(0, 1.02), title="AEROBLADE AP (training-free)")
        else:
            _roc_panel(ax, metrics03[key])
    fig.tight_layout()
    legend_on_top(fig, axes[0])
    return fig


def _roc_panel(ax, roc: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
    for name in ordered_sets(roc):
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
    fig, axes = subplots(len(robustness), columns=min(len(robustness), 4), sharey=True)
    for ax, (perturbation, by_level) in zip(axes, robustness.items()):
        levels = sorted_levels(list(by_level))
        numeric = all(is_number(level) for level in levels)
        x = [float(level) for level in levels] if numeric else list(range(len(levels)))
        names = ordered_sets(n for level in levels for n in by_level[level])
        for name, colour in zip(names, line_colours(names)):
            y = [cell_value(by_level[level].get(name), metric) for level in levels]
            ax.plot(x, y, marker="o", ms=3, lw=1.2, label=name, color=colour)
        if not numeric:
            ax.set_xticks(x, levels)
        ax.set(xlabel=perturbation, title=perturbation, ylim=(0, 1.02))
        if metric == "auc":
            chance_line(ax)
        elif chance is not None:
            chance_line(ax, chance)
    axes[0].set_ylabel(metric.upper())
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def overview_auc(metrics03: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """{generator: (auc, lo, hi)} of the reconstruction detector with one try, bootstrap 95 %."""
    table = need(metrics03, "auc", "03_ae_reconstruction")
    return {g: (cell_value(r.get("1_try")), *cell_interval(r.get("1_try"))) for g, r in table.items()}


def headline_rows(stem: str, metrics03: Mapping[str, Any]) -> list[dict[str, Any]]:
    """07's headline rows of 03: TPR @ 0.1 % FPR and AUC per set and tries, AEROBLADE's AP."""
    rows = []
    for key, label in (("tpr_at_0.1pct_fpr", "TPR@0.1%FPR"), ("auc", "AUC")):
        for name, row in (metrics03.get(key) or {}).items():
            for tries in TRIES:
                if tries in row:
                    rows.append(headline_row(stem, f"{label} {tries.replace('_', ' ')}", name, row[tries]))
    for name, value in (metrics03.get("aeroblade_ap") or {}).items():
        rows.append(headline_row(stem, "AEROBLADE AP", name, value))
    return rows


def findings(stem: str, m: Mapping[str, Any]) -> list[str]:
    """07's sentences on this notebook (``stem`` is unused: the sentences name their method)."""
    out = []
    for key, label in (("tpr_at_0.1pct_fpr", "TPR @ 0.1 % FPR"), ("auc", "AUC")):
        table = m.get(key) or {}
        ranges = []
        for tries in TRIES:
            values = [cell_value(row.get(tries)) for row in table.values() if tries in row]
            if values:
                ranges.append(f"{tries.replace('_', ' ')} {fmt(np.nanmin(values))}–"
                              f"{fmt(np.nanmax(values))}")
        if ranges:
            out.append(f"Reconstruction detector, {label} across generators: "
                       + ", ".join(ranges) + ".")
    if m.get("aeroblade_ap"):
        values = [cell_value(v) for v in m["aeroblade_ap"].values()]
        out.append(f"AEROBLADE (no training) AP across generators: {fmt(np.nanmin(values))}–"
                   f"{fmt(np.nanmax(values))}.")
    for perturbation, by_level in (m.get("robustness") or {}).items():
        means = {level: np.nanmean([cell_value(v, "auc") for v in by_level[level].values()] or [np.nan])
                 for level in sorted_levels(list(by_level))}
        worst = min(means, key=lambda level: np.nan_to_num(means[level], nan=np.inf))
        out.append(f"Under {perturbation}, the mean over generators falls to {fmt(means[worst])} "
                   f"(level {worst}; levels tried: {', '.join(means)}).")
    return out
