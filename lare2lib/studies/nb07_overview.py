"""Notebook 07's one figure drawn from several notebooks: AUC per generator of each detector family."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lare2lib.core.plotting import colour_of
from lare2lib.studies import nb07_egre, nb07_lare, nb07_recon
from lare2lib.studies.nb07_common import (DOUBLE_COLUMN, MissingMetrics, asymmetric, by_number,
                                          chance_line, note_below, ordered_sets, subplots,
                                          tick_labels)

OVERVIEW_SOURCES = (
    ("01", "mean LaRE (training-free)", nb07_lare.overview_auc),
    ("02", "EGRE (mean over seeds)", nb07_egre.overview_auc),
    ("03", "reconstruction detector (1 try)", nb07_recon.overview_auc),
)
"""Panels of :func:`overview_figure`: notebook number, what its AUC measures, and the function
reading its headline detector's ``{generator: (auc, lo, hi)}``."""


def overview_figure(metrics_by_notebook: Mapping[str, Mapping[str, Any]]):
    """AUC per generator of each family of detector, one panel per upstream notebook.

    A notebook that has not run (or lacks the quantity) gets no panel, and the note under the
    figure names it: panels are never filled with anything but that notebook's numbers.
    Intervals: 01 and 03 bootstrap 95 %, 02 ±1 std over seeds.
    """
    panels, missing = [], []
    for number, label, read_auc in OVERVIEW_SOURCES:
        found = by_number(metrics_by_notebook, number)
        if found is None:
            missing.append(f"{number} ({label}): not run")
            continue
        try:
            panels.append((label, found[0], read_auc(found[1])))
        except MissingMetrics as exc:
            missing.append(f"{number} ({label}): {exc}")
    if not panels:
        raise MissingMetrics("none of 01, 02, 03 has run: " + "; ".join(missing))
    fig, axes = subplots(len(panels), width=min(DOUBLE_COLUMN, 2.6 * len(panels) + 0.6),
                          sharey=True)
    for ax, (label, stem, auc) in zip(axes, panels):
        generators = [g for g in ordered_sets(auc) if g != "real"]
        values = [auc[g][0] for g in generators]
        errors = asymmetric(values, [auc[g][1] for g in generators], [auc[g][2] for g in generators])
        ax.bar(range(len(generators)), values, yerr=errors, capsize=2,
               color=[colour_of(g) for g in generators], error_kw={"lw": 0.8})
        tick_labels(ax, range(len(generators)), generators, narrow=True)
        chance_line(ax)
        ax.set_title(f"{label}\n[{stem}]", fontsize=8)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("AUC vs held-out reals")
    fig.tight_layout()
    if missing:
        note_below(fig, "Not shown: " + "; ".join(missing))
    return fig
