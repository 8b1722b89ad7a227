"""Notebook 07's figures and sentences from 02 (EGRE ablations, mean ± std over seeds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lare2lib.eval.results import cell_std, cell_value
from lare2lib.studies.nb07_common import (MissingMetrics, chance_line, fmt, grouped_bars,
                                          headline_row, legend_on_top, need, ordered_sets,
                                          subplots)


def ablation_figure(metrics02: Mapping[str, Any], metric_names: Sequence[str] = ("acc", "ap", "auc")):
    """Ablation bars: one panel per metric, test sets grouped, variants side by side, ±1 std.

    Reads 02's ``ablation``: {variant: {test set: {metric: {"mean", "std", "n"}}}} where test
    sets are the generators plus ``"mean"``; ``seeds`` (list) goes in the title. Error bars are
    the standard deviation over seeds (none when n = 1).
    """
    ablation = need(metrics02, "ablation", "02_egre_ablations")
    variants = list(ablation)
    test_sets = ordered_sets(s for variant in ablation.values() for s in variant)
    present = [m for m in metric_names
               if any(m in cell for variant in ablation.values() for cell in variant.values())]
    if not present:
        raise MissingMetrics(f"02_egre_ablations ablation has none of {list(metric_names)}")
    fig, axes = subplots(len(present), sharey=True)
    seeds = metrics02.get("seeds")
    for ax, metric in zip(axes, present):
        means = {v: [cell_value(ablation[v].get(s, {}).get(metric), "mean") for s in test_sets]
                 for v in variants}
        stds = {v: np.nan_to_num([cell_std(ablation[v].get(s, {}).get(metric))
                                  for s in test_sets]) for v in variants}
        grouped_bars(ax, test_sets, means, stds)
        chance_line(ax)
        ax.set(ylim=(0, 1.02), title=metric.upper() + (" @ 0.5" if metric == "acc" else ""))
    axes[0].set_ylabel(f"mean ± std, {len(seeds)} seed(s)" if seeds else "mean ± std")
    fig.tight_layout()
    legend_on_top(fig, axes[0])
    return fig


EGRE_HEADLINE_VARIANTS = ("egre", "esr+ecr", "full", "esr_ecr")
"""Names 02 may give its full model (ESR + ECR); the first present is the overview's EGRE."""


def overview_auc(metrics02: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """{generator: (auc, mean − std, mean + std)} of the full EGRE model over seeds."""
    ablation = need(metrics02, "ablation", "02_egre_ablations")
    variant = next((v for v in ablation if v.lower() in EGRE_HEADLINE_VARIANTS), None)
    if variant is None:
        raise MissingMetrics(f"02 ablation has no full-EGRE variant ({EGRE_HEADLINE_VARIANTS})")
    cells = {s: c.get("auc", {}) for s, c in ablation[variant].items() if s != "mean"}
    return {s: (cell_value(c, "mean"), cell_value(c, "mean") - cell_std(c), cell_value(c, "mean") + cell_std(c))
            for s, c in cells.items()}


def headline_rows(stem: str, metrics02: Mapping[str, Any]) -> list[dict[str, Any]]:
    """07's headline rows of 02: each variant's metrics averaged over the test sets."""
    rows = []
    for variant, cells in (metrics02.get("ablation") or {}).items():
        for metric in ("acc", "ap", "auc"):
            if metric in cells.get("mean", {}):
                rows.append(headline_row(stem, f"{variant} {metric} (mean of sets)", "mean",
                                         cells["mean"][metric], "mean"))
    return rows


def findings(stem: str, m: Mapping[str, Any]) -> list[str]:
    """07's sentences on this notebook (``stem`` is unused: the sentences name their method)."""
    ablation = m.get("ablation") or {}
    scored = {v: cells["mean"]["auc"] for v, cells in ablation.items()
              if isinstance(cells.get("mean"), Mapping) and "auc" in cells["mean"]}
    if not scored:
        return []
    ranked = sorted(scored, key=lambda v: -np.nan_to_num(cell_value(scored[v], "mean"), nan=-1))
    listing = ", ".join(f"{v} {fmt(cell_value(scored[v], 'mean'))} ± {fmt(cell_std(scored[v]))}"
                        for v in ranked)
    text = f"EGRE ablation, AUC averaged over test sets (± std over seeds): {listing}."
    if len(ranked) > 1:
        lead = cell_value(scored[ranked[0]], "mean") - cell_value(scored[ranked[1]], "mean")
        spread = max(np.nan_to_num(cell_std(scored[v])) for v in ranked[:2])
        resolved = "more" if lead > spread else "less"
        text += (f" {ranked[0]} leads {ranked[1]} by {fmt(lead)}, {resolved} than the seeds' "
                 f"standard deviation.")
    return [text]
