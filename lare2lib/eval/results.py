"""The one shape of a result cell in every ``metrics.json``, and the readers of it.

A study reports each metric of each (detector, test set) pair as a **cell**. Three forms exist,
from the simplest to the richest, and every reader (notebook 07's figures, the HTML report,
the tests) accepts all of them through the functions below rather than parsing leaves itself:

* a plain number (``0.93``) or ``null`` (a metric a smoke-sized split could not give);
* ``{"value": mean over seeds, "std": spread over seeds, "n": seeds, "per_seed": [...],
  "ci": [low, high]}``: what :func:`seed_cell` builds, the form for anything trained on several
  seeds (notebooks 02-06);
* ``{"auc" | "mean": ..., "low": ..., "high": ...}``: a single number with its interval
  (notebook 01's :func:`lare2lib.eval.metrics.auc_interval` rows, :func:`lare2lib.eval.metrics.mean_std`).

A result **table** is ``{row: {column: cell}}`` (e.g. training autoencoder → test set → cell);
:func:`table_values` reads one out as plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["cell_value", "cell_std", "cell_interval", "seed_cell", "table_values"]

VALUE_KEYS = ("value", "mean")
"""Keys under which a dict cell holds its point estimate (after an explicitly requested key)."""


def cell_value(cell: Any, key: str | None = None) -> float:
    """The point estimate of ``cell``: the number itself, ``cell[key]``, ``cell["value"]`` or
    ``cell["mean"]``; NaN for ``null`` or a dict without any of them."""
    if isinstance(cell, Mapping):
        for name in (key, *VALUE_KEYS):
            if name is not None and name in cell:
                return cell_value(cell[name])
        return math.nan
    return math.nan if cell is None else float(cell)


def cell_std(cell: Any) -> float:
    """The spread over seeds (``std``); NaN for a plain number or a cell of one run."""
    return cell_value(cell["std"]) if isinstance(cell, Mapping) and "std" in cell else math.nan


def cell_interval(cell: Any) -> tuple[float, float]:
    """``(low, high)`` of a cell's ``ci`` or ``low``/``high``; NaNs when it has none."""
    if isinstance(cell, Mapping):
        ci = cell.get("ci")
        if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2:
            return cell_value(ci[0]), cell_value(ci[1])
        if "low" in cell and "high" in cell:
            return cell_value(cell["low"]), cell_value(cell["high"])
    return math.nan, math.nan


def seed_cell(per_seed: Sequence[float], ci: Sequence[float] | None = None) -> dict[str, Any]:
    """The seed form of a cell: mean, sample std (ddof 1; 0 for one seed), n, the values, ``ci``."""
    values = np.asarray(per_seed, dtype=np.float64)
    if values.size == 0:
        raise ValueError("a seed cell needs at least one value")
    cell: dict[str, Any] = {"value": float(values.mean()),
                            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                            "n": int(values.size), "per_seed": [float(v) for v in values]}
    if ci is not None:
        cell["ci"] = [float(ci[0]), float(ci[1])]
    return cell


def table_values(table: Mapping[str, Mapping[str, Any]], key: str | None = None) -> dict[str, dict[str, float]]:
    """``{row: {column: cell}}`` → ``{row: {column: float}}`` (:func:`cell_value` of each cell)."""
    return {row: {column: cell_value(cell, key) for column, cell in cells.items()}
            for row, cells in table.items()}
