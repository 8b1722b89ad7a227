"""Notebook 03's tables and the schema of its ``metrics.json`` (which notebook 07 reads).

:func:`metrics_record` assembles the record from the run's parts, key for key as the notebook
wrote it; the printed tables (:func:`detection_frame`, :func:`aeroblade_frame`,
:func:`training_frame`) and the closing summary (:func:`findings`) read the same parts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lare2lib.studies.nb03_baselines import AerobladeRun, attribution_table
from lare2lib.studies.nb03_scoring import Detection

__all__ = [
    "CONVENTION",
    "COMPARED_METRICS",
    "metrics_record",
    "detection_frame",
    "aeroblade_frame",
    "training_frame",
    "findings",
]

CONVENTION = ("label 1 = generated/reconstructed; score = P(fake); value = mean over seeds, "
              "ci = 95% percentile bootstrap of that mean")
"""The ``convention`` entry of ``metrics.json``."""
COMPARED_METRICS = ("auc", "ap", "tpr@5%")
"""Metrics of the ``comparison`` entry (the order of :func:`aeroblade_frame` is AP first)."""


def _aeroblade_cells(blade: AerobladeRun) -> dict[str, dict[str, dict[str, float]]]:
    """Variant → set → ``{"ap", "auc", "tpr@5%"}`` values (no intervals)."""
    return {name: {g: {m: row[m]["value"] for m in ("ap", "auc", "tpr@5%")} for g, row in table.items()}
            for name, table in blade.tables.items()}


def _comparison_cells(rows: Mapping[str, Mapping[str, Any]], sets: Sequence[str]) -> dict[str, Any]:
    """Method → set → metric → value (a cell's ``"value"`` when it is a dict)."""
    return {method: {g: {m: (cell.get("value") if isinstance(cell, dict) else cell)
                         for m, cell in table.get(g, {}).items() if m in COMPARED_METRICS}
                     for g in sets} for method, table in rows.items()}


def _training_records(runs: Sequence[tuple[Any, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Per seed: best epoch, its validation AUC, steps, seconds and the history of :func:`fit`."""
    return [{"seed": s, "best_epoch": r.best_epoch, "val_auc": r.best_metric, "steps": r.steps,
             "seconds": r.seconds, "history": r.history} for s, (_, r) in zip(seeds, runs)]


def metrics_record(*, profile_name: str, seeds: Sequence[int], settings: Mapping[str, Any],
                   detection: Detection, blade: AerobladeRun, generators: Sequence[str],
                   robust: Mapping[str, Any], robust_setup: Mapping[str, Any],
                   rows: Mapping[str, Mapping[str, Any]], egre_ran: bool, runs: Sequence[tuple[Any, Any]],
                   bench: Mapping[str, Any] | None, load: float, started: float) -> dict[str, Any]:
    """The ``metrics`` of notebook 03's ``metrics.json``, in the notebook's key order.

    ``settings``: the run's config record; ``seeds``: the classifiers' seeds; ``runs``:
    ``[(model, FitResult)]`` per seed; ``started``: :func:`time.time` at the notebook's start.
    """
    primary = blade.primary
    return {
        "profile": profile_name,
        "seeds": list(seeds),
        "config": dict(settings),
        "convention": CONVENTION,
        "tpr_at_0.1pct_fpr": detection.tpr,
        "tpr_at_5pct_fpr": detection.tpr5,
        "auc": detection.auc,
        "detection": detection.tables,
        "roc": detection.roc,
        "aeroblade_ap": {g: blade.tables[primary][g]["ap"]["value"] for g in generators},
        "aeroblade": _aeroblade_cells(blade),
        "aeroblade_distance": primary,
        "aeroblade_autoencoders": blade.autoencoders,
        "aeroblade_distractor": blade.distractor or None,
        "aeroblade_attribution": {name: attribution_table(r.attribution, blade.groups).to_dict(orient="index")
                                  for name, r in blade.variants.items()},
        "robustness": robust,
        "robustness_setup": dict(robust_setup),
        "comparison": _comparison_cells(rows, list(generators) + ["mean"]),
        "egre": "from 02_egre_ablations" if egre_ran else "not run",
        "training": _training_records(runs, seeds),
        "recon_256_images_per_second": bench["images_per_second"] if bench else None,
        "recon_bench": bench,
        "load_average_start": load,
        "seconds": time.time() - started,
    }


def _cell(row: Mapping[str, Any], metric: str) -> str:
    cell = row[metric]
    ci = cell.get("ci")
    return f"{cell['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def detection_frame(tables: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Set × (tries, metric) table of ``value [interval]`` strings for AUC and both TPRs."""
    return pd.DataFrame({(tries, metric): {name: _cell(row, metric) for name, row in tables[tries].items()}
                         for tries in tables for metric in ("auc", "tpr@0.1%", "tpr@5%")})


def aeroblade_frame(blade: AerobladeRun) -> pd.DataFrame:
    """Set × (variant, metric) table of AEROBLADE's AP, AUC and TPR at 5 % FPR, 3 decimals."""
    return pd.DataFrame({(d, m): {g: round(row[m]["value"], 3) for g, row in t.items()}
                         for d, t in blade.tables.items() for m in ("ap", "auc", "tpr@5%")})


def training_frame(runs: Sequence[tuple[Any, Any]], seeds: Sequence[int]) -> pd.DataFrame:
    """Per seed: best epoch, validation AUC, steps and seconds, 4 decimals."""
    return pd.DataFrame([{"seed": s, "best epoch": r.best_epoch, "val AUC": r.best_metric, "steps": r.steps,
                          "seconds": r.seconds} for s, (_, r) in zip(seeds, runs)]).round(4)


def findings(metrics: Mapping[str, Any], detection: Detection, *, autoencoder: str, seeds: Sequence[int],
             train_images: int, train_seconds: float, tries: int, test_sets: Sequence[str],
             generators: Sequence[str], load: float) -> str:
    """The notebook's closing summary: AUC and TPR per test set, what was caught, AEROBLADE's AP."""
    auc, tpr = detection.auc, detection.tpr
    lines = [f"Trained on real vs {autoencoder} reconstructions only ({len(seeds)} seed(s), "
             f"{train_images} images each, {train_seconds / 60:.1f} min):"]
    for g in list(test_sets):
        a1, a10 = auc[g]["1_try"], auc[g]["10_tries"]
        t10 = tpr[g]["10_tries"]
        lines.append(f"  {g:>16}: AUC {a1['value']:.3f} (1 try) / {a10['value']:.3f} ({tries} tries) "
                     f"[{a10['ci'][0]:.3f}, {a10['ci'][1]:.3f}]; TPR@0.1%FPR {t10['value']:.3f} "
                     f"[{t10['ci'][0]:.3f}, {t10['ci'][1]:.3f}]")
    caught = [g for g in generators if auc[g]["10_tries"]["ci"][0] > 0.5]
    lines.append(f"Generators detected above chance (10-try AUC interval above 0.5): {caught or 'none'}; "
                 f"AEROBLADE ({metrics['aeroblade_distance']}) AP: "
                 + ", ".join(f"{g} {metrics['aeroblade_ap'][g]:.3f}" for g in generators))
    lines.append(f"Run time {metrics['seconds'] / 60:.1f} min at load average {load:.1f} (start) on "
                 f"{os.cpu_count()} cores.")
    return "\n".join(lines)
