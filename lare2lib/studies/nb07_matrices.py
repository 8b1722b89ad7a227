"""Notebook 07's figures and sentences from 04 (autoencoder family) and 05 (training resolution):
train × test matrices, and 04's residual spectra."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lare2lib.core.plotting import colour_of
from lare2lib.eval.results import cell_value
from lare2lib.studies.nb07_common import (DOUBLE_COLUMN, SINGLE_COLUMN, MissingMetrics, fmt,
                                          headline_row, is_number, need, ordered_sets, subplots)


def matrix_figure(matrices: Mapping[str, Mapping[str, Mapping[str, Any]]], *, row_label: str,
                  column_label: str, vmin: float = 0.0, vmax: float = 1.0):
    """Annotated heatmaps side by side: {panel title: {row: {column: value}}}.

    Values are numbers or ``{"value", "ci"}`` dicts; a missing cell is left blank. Numeric rows
    and columns (resolutions) come first in numeric order, named ones after, as first seen.
    """
    fig, axes = subplots(len(matrices), width=min(DOUBLE_COLUMN, 3.6 * len(matrices)))
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
    numbers = sorted((k for k in keys if is_number(k)), key=float)
    return numbers + [k for k in keys if not is_number(k)]


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
    matrix = need(metrics, "matrix", notebook)
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
    spectra = need(metrics04, "residual_spectra", "04_autoencoder_family")
    fig, [ax] = subplots(1, width=SINGLE_COLUMN * 1.3)
    for name in ordered_sets(spectra):
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


def headline_rows(stem: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """07's headline rows of 04 or 05: the AUC of every train → test cell of ``matrix``."""
    trained = "autoencoder" if stem[:2] == "04" else "level"
    return [headline_row(stem, f"AUC, trained on {trained} {train}", test, cell, "auc")
            for train, cells in (metrics.get("matrix") or {}).items()
            for test, cell in cells.items()]


def findings(stem: str, m: Mapping[str, Any]) -> list[str]:
    """The worst and best train → test cell of each metric of 04's or 05's ``matrix``."""
    try:
        panels = _matrices(m, stem)
    except MissingMetrics:
        return []
    out = []
    for title, matrix in panels.items():
        cells = {(r, c): cell_value(v) for r, row in matrix.items() for c, v in row.items()}
        cells = {k: v for k, v in cells.items() if not math.isnan(v)}
        if cells:
            best, worst = max(cells, key=cells.get), min(cells, key=cells.get)
            out.append(f"{stem}: {title} from {fmt(cells[worst])} ({worst[0]} → {worst[1]}) to "
                       f"{fmt(cells[best])} ({best[0]} → {best[1]}).")
    return out
