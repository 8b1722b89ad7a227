"""Notebook 08's tables as shown, its sample sheet, and what it writes (metrics.json, scores.csv)."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["sample_sheet", "overall_view", "subset_view", "metrics_record", "write_outputs"]

_SHOWN = ("auc", "auc_ci", "ap", "ap_ci", "tpr", "tpr_ci", "auc_std", "seeds", "n_fake")


def _ci(pair: Sequence[float]) -> str:
    return f"[{pair[0]:.2f}, {pair[1]:.2f}]"


def _view(rows: pd.DataFrame) -> pd.DataFrame:
    shown = rows[["detector", *_SHOWN]].copy()
    for key in ("auc_ci", "ap_ci", "tpr_ci"):
        shown[key] = shown[key].map(_ci)
    return shown.round(3)


def overall_view(table: pd.DataFrame) -> pd.DataFrame:
    """All fakes: one row per detector, best AUC first."""
    return _view(table[table.grouping == "all"].sort_values("auc", ascending=False)).set_index("detector")


def subset_view(table: pd.DataFrame, grouping: str) -> pd.DataFrame:
    """AUC per detector (rows) and subset (columns) of one grouping, with each subset's size."""
    rows = table[table.grouping == grouping]
    wide = rows.pivot(index="detector", columns="subset", values="auc")
    sizes = rows.groupby("subset")["n_fake"].first()
    wide.columns = [f"{name} (n={sizes[name]})" for name in wide.columns]
    return wide.round(2)


def sample_sheet(wild, per_row: int = 8, rows: int = 3):
    """The first reals and a spread of fakes, as the detectors see them, titled with the generator."""
    import matplotlib.pyplot as plt

    from lare2lib.core.plotting import show_image

    reals, fakes = wild.of(0), wild.of(1)
    pick = np.linspace(0, len(fakes) - 1, min(len(fakes), per_row * (rows - 1))).round().astype(int)
    shown = reals[:per_row] + [fakes[k] for k in sorted(set(pick))]
    fig, axes = plt.subplots(rows, per_row, figsize=(1.7 * per_row, 1.9 * rows), squeeze=False)
    for ax, image in zip(axes.flat, shown):
        show_image(ax, image.pixels, "photo" if image.label == 0 else image.generator[:18])
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _rows(table: pd.DataFrame) -> dict[str, Any]:
    """``{detector: {grouping: {subset: metrics}}}`` of a detection table."""
    out: dict[str, Any] = {}
    for record in table.to_dict("records"):
        detector, grouping, subset = record.pop("detector"), record.pop("grouping"), record.pop("subset")
        out.setdefault(detector, {}).setdefault(grouping, {})[subset] = record
    return out


def metrics_record(*, profile, config, summary: Mapping[str, Any], tables: Mapping[str, pd.DataFrame],
                   trained: Sequence[Any], seconds: Mapping[str, float], taef2: bool,
                   in_world: Mapping[str, float], started: float) -> dict[str, Any]:
    """Notebook 08's metrics.json: the set, each condition's table, where each detector came from."""
    from lare2lib.studies.nb08_findings import verdict
    from lare2lib.studies.nb08_wild import shortcut_table

    overall = tables["controlled"][tables["controlled"].grouping == "all"]
    return {
        "profile": profile.name,
        "config": asdict(config),
        "set": dict(summary),
        "conditions": {condition: _rows(table) for condition, table in tables.items()},
        "verdicts": {row["detector"]: verdict(row) for row in overall.to_dict("records")},
        "shortcut_auc": shortcut_table(tables).to_dict("index"),
        "in_world_auc": dict(in_world),
        "detectors": {found.label: {"kind": found.kind,
                                    "checkpoints": {str(s): str(p) for s, p in found.checkpoints.items()}}
                      for found in trained},
        "taef2": taef2,
        "scoring_seconds": dict(seconds),
        "load_average": os.getloadavg()[0],
        "seconds": time.time() - started,
    }


def scores_csv(wild_sets: Mapping[str, Any], scores: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """One row per (condition, image): its labels and every detector's seed-mean score."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    detectors = list(next(iter(scores.values())))
    writer.writerow(["condition", "image_id", "label", "group", "generator", "generator_family",
                     "vae_family", "source", *detectors])
    for condition, wild in wild_sets.items():
        means = {name: values.mean(axis=0) for name, values in scores[condition].items()}
        for k, image in enumerate(wild.images):
            writer.writerow([condition, image.image_id, image.label, image.group, image.generator,
                             image.generator_family, image.vae_family, image.source,
                             *(f"{means[name][k]:.6g}" for name in detectors)])
    return buffer.getvalue()


def write_outputs(out_dir: str | Path, *, profile, config, summary, tables, scores, wild_sets, trained,
                  seconds, taef2: bool, in_world: Mapping[str, float], started: float) -> dict[str, Any]:
    """Write ``metrics.json`` (:func:`metrics_record`) and ``scores.csv``; returns the record."""
    from lare2lib.core.plotting import atomic_write, write_metrics
    from lare2lib.studies.nb08_wild import NOTEBOOK

    out_dir = Path(out_dir)
    record = metrics_record(profile=profile, config=config, summary=summary, tables=tables, trained=trained,
                            seconds=seconds, taef2=taef2, in_world=in_world, started=started)
    write_metrics(out_dir, record, notebook=NOTEBOOK)
    text = scores_csv(wild_sets, scores)
    atomic_write(out_dir / "scores.csv", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return record
