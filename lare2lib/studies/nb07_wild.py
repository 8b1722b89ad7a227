"""Notebook 07's figure and sentences from 08 (in the wild: real generators' images)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lare2lib.studies.nb07_common import MissingMetrics, fmt, headline_row, need

__all__ = ["wild_figure", "headline_rows", "findings"]


def _overall(metrics08: Mapping[str, Any], condition: str) -> dict[str, dict[str, Any]]:
    """``{detector: all-fakes row}`` of one processing condition of 08's metrics.json."""
    rows = need(metrics08, "conditions", "08_in_the_wild").get(condition)
    if not rows:
        raise MissingMetrics(f"08_in_the_wild metrics.json has no {condition!r} condition")
    return {detector: by["all"]["all"] for detector, by in rows.items()}


def wild_figure(metrics08: Mapping[str, Any]):
    """AUC with its photo-grouped interval per detector, controlled processing (filled) beside the
    files as shipped (open): the gap is the format/size shortcut.

    Expected 08 schema: ``conditions``: {condition: {detector: {grouping: {subset: {"auc",
    "auc_ci", ...}}}}} with ``all``/``all`` the row of every fake.
    """
    controlled = _overall(metrics08, "controlled")
    shipped = _overall(metrics08, "as_shipped") if "as_shipped" in metrics08["conditions"] else {}
    detectors = sorted(controlled, key=lambda d: controlled[d]["auc"])
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.24 * len(detectors)))
    y = np.arange(len(detectors))
    for offset, rows, style, label in ((-0.15, controlled, "o", "identical processing"),
                                       (0.15, shipped, "s", "as shipped (no control)")):
        names = [d for d in detectors if d in rows]
        if not names:
            continue
        auc = np.array([rows[d]["auc"] for d in names])
        low = np.array([rows[d]["auc_ci"][0] for d in names])
        high = np.array([rows[d]["auc_ci"][1] for d in names])
        at = np.array([detectors.index(d) for d in names]) + offset
        ax.errorbar(auc, at, xerr=[auc - low, high - auc], fmt=style, ms=4, capsize=2, label=label,
                    mfc="white" if style == "s" else None)
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_yticks(y, detectors, fontsize=7)
    ax.set(xlim=(0, 1), xlabel="AUC, real generators' images vs held-out photos (95 % CI)",
           title="in the wild (08)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def headline_rows(stem: str, metrics08: Mapping[str, Any]) -> list[dict[str, Any]]:
    """07's headline rows of 08: each detector's AUC on all real generators' images."""
    try:
        rows = _overall(metrics08, "controlled")
    except MissingMetrics:
        return []
    return [headline_row(stem, "AUC in the wild (identical processing)", detector,
                         {"value": row["auc"], "ci": row["auc_ci"]}) for detector, row in rows.items()]


def findings(stem: str, metrics08: Mapping[str, Any]) -> list[str]:
    """07's sentences on 08: what transfers to real generators, and the best row."""
    try:
        rows = _overall(metrics08, "controlled")
    except MissingMetrics:
        return []
    verdicts = metrics08.get("verdicts", {})
    transfers = [d for d, v in verdicts.items() if v == "transfers"]
    best = max(rows, key=lambda d: rows[d]["auc"])
    low, high = rows[best]["auc_ci"]
    return [f"In the wild ({metrics08.get('set', {}).get('n_fake', '?')} real generators' images): "
            f"{len(transfers)} of {len(rows)} detectors transfer (AUC interval above 0.5); best "
            f"{best}, AUC {fmt(rows[best]['auc'])} [{fmt(low)}, {fmt(high)}]."]
