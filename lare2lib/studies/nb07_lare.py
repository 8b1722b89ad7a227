"""Notebook 07's figures and sentences from 01 (LaRE): loss over t, cost, mean-LaRE AUC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lare2lib.core.plotting import colour_of
from lare2lib.eval.results import cell_interval, cell_value
from lare2lib.studies.nb07_common import (fmt, headline_row, need, ordered_sets, plain_log_axis,
                                          subplots, verdict)


def timestep_loss_figure(metrics01: Mapping[str, Any]):
    """The paper's Fig. 1b: mean single-step loss over t per set, one panel per scoring model.

    Reads 01's ``timestep_curve`` ({scoring model: {set: {t: mean loss}}}) and ``timestep``
    (the LaRE t, marked). The y axis is logarithmic when the loss spans a decade or more.
    """
    curves = need(metrics01, "timestep_curve", "01_lare")
    marked = metrics01.get("timestep")
    fig, axes = subplots(len(curves), sharey=True)
    for ax, (model, sets) in zip(axes, curves.items()):
        span = []
        for name in ordered_sets(sets):
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
    cost = need(metrics01, "cost", "01_lare")
    timings = need(cost, "timings", "01_lare cost")
    names = [name for name in COST_LABELS if name in timings] + \
            [name for name in timings if name not in COST_LABELS]
    per_image = [1 / cell_value(timings[name], "images_per_second") for name in names]
    fig, (ax_time, ax_ratio) = subplots(2, gridspec_kw={"width_ratios": [3, 2]})
    ax_time.barh([COST_LABELS.get(n, n) for n in names], per_image, color="C0")
    for y, seconds in enumerate(per_image):
        ax_time.text(seconds, y, f" {seconds * 1000:.0f} ms", va="center", fontsize=7)
    ax_time.set(xscale="log", xlabel="seconds per image (best of repeats, this CPU)")
    plain_log_axis(ax_time.xaxis)
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


def overview_auc(metrics01: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """{generator: (auc, lo, hi)} of mean LaRE (training-free), bootstrap 95 %."""
    table = need(metrics01, "lare_auc", "01_lare")
    return {g: (cell_value(r, "auc"), *cell_interval(r)) for g, r in table.items()}


def headline_rows(stem: str, metrics01: Mapping[str, Any]) -> list[dict[str, Any]]:
    """07's headline rows of 01: mean-LaRE AUC per set, and the measured speed-ups."""
    rows = [headline_row(stem, "mean-LaRE AUC", name, row, "auc")
            for name, row in (metrics01.get("lare_auc") or {}).items()]
    for key in ("lare_vs_dire_speedup", "batched_vs_per_image_speedup"):
        if metrics01.get(key) is not None:
            rows.append(headline_row(stem, key, "", metrics01[key]))
    return rows


def findings(stem: str, m: Mapping[str, Any]) -> list[str]:
    """07's sentences on this notebook (``stem`` is unused: the sentences name their method)."""
    out = []
    if m.get("lare_auc"):
        table = m["lare_auc"]
        values = ", ".join(f"{g} {fmt(cell_value(table[g], 'auc'))} [{fmt(cell_interval(table[g])[0])}, "
                           f"{fmt(cell_interval(table[g])[1])}]" for g in ordered_sets(table))
        out.append(f"Mean LaRE alone, AUC vs held-out reals: {values} ({verdict(table)}; above "
                   f"0.5 = the premise holds).")
    reference = m.get("reference_ldm", "kl_ldm")
    curve = (m.get("timestep_curve") or {}).get(reference) or {}
    if "real" in curve:
        gaps = []
        for name in ordered_sets(curve):
            if name == "real":
                continue
            diffs = {float(t): cell_value(curve["real"][t]) - cell_value(v) for t, v in curve[name].items()
                     if t in curve["real"]}
            t_best = max(diffs, key=lambda t: diffs[t])
            gaps.append(f"{name} {diffs[t_best]:+.3g} at t = {t_best:g}")
        out.append(f"Largest loss gap, real − generated (scored by {reference}): " + ", ".join(gaps)
                   + " (positive = generated images have the lower loss).")
    if m.get("lare_vs_dire_speedup") is not None:
        out.append(f"LaRE ran {fmt(cell_value(m['lare_vs_dire_speedup']), 1)}× faster than the "
                   f"DIRE-style baseline in this run (paper: ≈ 8× on a GPU), the batched driver "
                   f"{fmt(cell_value(m.get('batched_vs_per_image_speedup')), 1)}× faster than the "
                   f"per-image loop.")
    return out
