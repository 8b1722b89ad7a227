"""What notebook 07's figure modules share: reading ``metrics.json`` and drawing panels.

Every figure function (one module per upstream notebook: :mod:`~lare2lib.studies.nb07_lare`,
:mod:`~lare2lib.studies.nb07_egre`, :mod:`~lare2lib.studies.nb07_recon`,
:mod:`~lare2lib.studies.nb07_matrices`, :mod:`~lare2lib.studies.nb07_evasion`, and
:mod:`~lare2lib.studies.nb07_overview` across them) takes the ``metrics`` dict of a notebook
(what :func:`lare2lib.core.plotting.read_metrics` returns; tests feed synthetic ones) and
returns a matplotlib figure. Nothing is recomputed and nothing is invented: a quantity that is
missing raises :class:`MissingMetrics` naming it, and a value that is ``null`` (a metric a
smoke-sized split could not give) is drawn as a gap. Cells are read through
:mod:`lare2lib.eval.results`, the one reader of the studies' result cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lare2lib.core.plotting import METRICS_FILENAME, SET_ORDER, colour_of, read_metrics
from lare2lib.eval.results import cell_interval, cell_value

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


# -- reading metrics ------------------------------------------------------------------------


def need(metrics: Mapping[str, Any], key: str, notebook: str) -> Any:
    value = metrics.get(key) if isinstance(metrics, Mapping) else None
    if value is None or (isinstance(value, Mapping) and not value):
        raise MissingMetrics(f"{notebook} metrics.json has no '{key}'")
    return value


def number_or_name(text: str) -> tuple[int, float | str]:
    """Sort key: names first (``"none"``: the unperturbed reference), then numbers in numeric
    order (``metrics.json`` sorts keys as text: "128" < "32")."""
    try:
        return 1, float(text)
    except ValueError:
        return 0, text


def is_number(text: str) -> bool:
    return number_or_name(text)[0] == 1


def sorted_levels(keys: Sequence[str]) -> list[str]:
    return sorted(keys, key=number_or_name)


def ordered_sets(names) -> list[str]:
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


def by_number(metrics: Mapping[str, dict], number: str) -> tuple[str, dict] | None:
    matches = [(stem, m) for stem, m in metrics.items() if stem[:2] == number]
    return matches[0] if matches else None


def headline_row(stem: str, quantity: str, name: str, leaf: Any, key: str | None = None) -> dict[str, Any]:
    """One row of 07's headline table: notebook, quantity, set, value and its interval."""
    lo, hi = cell_interval(leaf)
    return {"notebook": stem, "quantity": quantity, "set": name,
            "value": cell_value(leaf, key), "low": lo, "high": hi}


# -- figure helpers -------------------------------------------------------------------------


def subplots(panels: int, width: float = DOUBLE_COLUMN, columns: int | None = None, **kwargs):
    import matplotlib.pyplot as plt

    columns = columns or panels
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width, ROW_HEIGHT * rows), squeeze=False,
                             **kwargs)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def grouped_bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[float]],
                  errors: Mapping[str, Any] | None = None, colours: Mapping[str, str] | None = None,
                  *, narrow: bool = False):
    """Bars of each series side by side within each group; ``errors[name]`` is yerr (2, G) or (G,).
    ``narrow``: the panel is one of several across the page (see :func:`tick_labels`)."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for index, (name, values) in enumerate(series.items()):
        offset = (index - (len(series) - 1) / 2) * width
        yerr = None if errors is None else errors.get(name)
        colour = (colours or {}).get(name, f"C{index}")
        ax.bar(x + offset, values, width, yerr=yerr, capsize=2, label=name, color=colour,
               error_kw={"lw": 0.8})
    tick_labels(ax, x, groups, narrow=narrow)


CROWDED_BARS = 4
"""More bars than this in a narrow panel: their labels stand vertical (slanted ones still touch)."""


def tick_labels(ax, x, labels: Sequence[str], *, narrow: bool = False) -> None:
    """Category labels, slanted (anchored at their right end) when they are long, vertical when a
    ``narrow`` panel holds more than :data:`CROWDED_BARS` of them."""
    if narrow and len(labels) > CROWDED_BARS:
        ax.set_xticks(x, labels, rotation=90, ha="center")
        return
    slanted = max(map(len, labels), default=0) > 7
    ax.set_xticks(x, labels, rotation=30 if slanted else 0, ha="right" if slanted else "center")


def legend_on_top(fig, ax) -> None:
    """One legend for every panel, in a row above them (the panels share their series)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(labels),
               fontsize=7, frameon=False)


def plain_log_axis(axis) -> None:
    """Log axis with plain-number labels on the decades only (no crowded minor labels)."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def asymmetric(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]):
    """yerr for matplotlib from an interval; zero length where the interval is unknown."""
    values, lows, highs = (np.asarray(v, float) for v in (values, lows, highs))
    below, above = np.nan_to_num(values - lows), np.nan_to_num(highs - values)
    return np.clip(np.vstack([below, above]), 0, None)


def chance_line(ax, value: float = 0.5) -> None:
    ax.axhline(value, color="grey", lw=0.8, ls=":")


def note_below(fig, text: str) -> None:
    fig.text(0.01, -0.02, text, fontsize=7, color="0.35", ha="left", va="top", wrap=True)


def line_colours(names: Sequence[str]) -> list[str]:
    """The world's colours when every name is one of its sets; otherwise (detectors) one
    distinct colour per name, in order, so no two lines share one."""
    from lare2lib.core.plotting import SET_ORDER

    if all(name in SET_ORDER for name in names):
        return [colour_of(name) for name in names]
    return [f"C{k % 10}" for k in range(len(names))]


# -- numbers in words -----------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def verdict(rows: Mapping[str, Any]) -> str:
    """Which generators' interval lies above 0.5, below it, or straddles it."""
    groups: dict[str, list[str]] = {"above 0.5": [], "below 0.5": [], "including 0.5": []}
    for name in ordered_sets(rows):
        lo, hi = cell_interval(rows[name])
        key = "above 0.5" if lo > 0.5 else "below 0.5" if hi < 0.5 else "including 0.5"
        groups[key].append(name)
    return "; ".join(f"interval {k}: {', '.join(v)}" for k, v in groups.items() if v)
