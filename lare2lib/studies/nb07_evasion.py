"""Notebook 07's figures and sentences from 06 (evasion: post-processing, artifact removal, PGD)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lare2lib.eval.results import cell_value
from lare2lib.studies.nb07_common import (MissingMetrics, chance_line, fmt, grouped_bars,
                                          headline_row, need, subplots)
from lare2lib.studies.nb07_recon import robustness_figure


def evasion_figure(metrics06: Mapping[str, Any], metric: str = "auc"):
    """Evasion at a glance: the artifact-removal attack and PGD budget curves with their PSNR.

    Expected 06 schema (post-processing sweeps go through :func:`robustness_figure` with
    ``postprocessing``): ``artifact_removal``: {detector: {"before": value, "after": value}};
    ``pgd``: {detector: {"epsilon": [budgets, in 8-bit steps], metric: [...], "psnr": [dB]}}.
    Panels whose key is absent are left out; at least one must be present.
    """
    removal = _removal_by_detector(metrics06.get("artifact_removal"), metrics06.get("clean"))
    pgd = _pgd_curves(metrics06.get("pgd"))
    if not removal and not pgd:
        raise MissingMetrics("06_evasion metrics.json has no 'artifact_removal' or 'pgd'")
    fig, axes = subplots((1 if removal else 0) + (2 if pgd else 0))
    axes = iter(axes)
    if removal:
        ax = next(axes)
        detectors = list(removal)
        stages = list(dict.fromkeys(stage for d in detectors for stage in removal[d]))
        series = {stage: [cell_value(removal[d].get(stage), metric) for d in detectors]
                  for stage in stages}
        grouped_bars(ax, detectors, series)
        chance_line(ax)
        ax.set(ylim=(0, 1.02), ylabel=metric.upper(), title="artifact-removal attack")
        ax.legend(fontsize=7)
    if pgd:
        ax_metric, ax_psnr = next(axes), next(axes)
        for index, (detector, curve) in enumerate(pgd.items()):
            budget = curve["epsilon"]
            ax_metric.plot(budget, [cell_value(v) for v in curve[metric]], marker="o", ms=3,
                           label=detector, color=f"C{index}")
            ax_psnr.plot(budget, [cell_value(v) for v in curve["psnr"]], marker="o", ms=3,
                         label=detector, color=f"C{index}")
        chance_line(ax_metric)
        ax_metric.set(xlabel="PGD budget ε", ylabel=metric.upper(), ylim=(0, 1.02),
                      title="PGD attack")
        ax_psnr.set(xlabel="PGD budget ε", ylabel="PSNR (dB)",
                    title="what the attack costs")
        ax_metric.legend(fontsize=7)
    fig.tight_layout()
    return fig


def postprocessing_figure(metrics06: Mapping[str, Any]):
    """06's ``postprocess``: {kind: {level: {detector: {"auc", "tpr", "fpr"}}}}, each sweep
    preceded by the unperturbed ``clean`` rates; the detection rate (TPR at the clean reals'
    ``fpr`` threshold) is 06's headline, so it is what is drawn."""
    sweeps = need(metrics06, "postprocess", "06_evasion")
    clean = metrics06.get("clean")
    if clean:
        sweeps = {kind: {"clean": clean, **levels} for kind, levels in sweeps.items()}
    return robustness_figure(sweeps, metric="tpr", title="post-processing sweeps",
                             chance=float(metrics06.get("fpr", 0.05)))


def _pgd_curves(pgd: Mapping[str, Any] | None) -> dict[str, dict[str, list]]:
    """06's ``pgd`` (detector → budget in 8-bit steps → {auc, tpr, psnr}) as curves per detector.

    Curves already in the ``{"epsilon": [...], metric: [...]}`` form pass through unchanged.
    """
    curves: dict[str, dict[str, list]] = {}
    for detector, by_budget in (pgd or {}).items():
        if "epsilon" in by_budget:
            curves[detector] = dict(by_budget)
            continue
        budgets = sorted(by_budget, key=float)
        curve: dict[str, list] = {"epsilon": [float(b) for b in budgets]}
        for key in ("auc", "tpr", "psnr"):
            curve[key] = [by_budget[b].get(key) for b in budgets]
        curves[detector] = curve
    return curves


def _removal_by_detector(removal: Mapping[str, Any] | None,
                         clean: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """06's ``artifact_removal`` (attack → detector → metrics) as detector → stage → metrics.

    The stages are ``before`` (the clean scores, when 06 wrote them) and one per attack; the
    older ``{detector: {"before", "after"}}`` form passes through unchanged.
    """
    if not removal:
        return {}
    first = next(iter(removal.values()))
    if isinstance(first, Mapping) and ({"before", "after"} & set(first)):
        return {d: dict(v) for d, v in removal.items()}
    table: dict[str, dict[str, Any]] = {}
    for attack, by_detector in removal.items():
        for detector, value in by_detector.items():
            row = table.setdefault(detector, {})
            if clean and detector in clean and "before" not in row:
                row["before"] = clean[detector]
            row[attack] = value
    return table


def headline_rows(stem: str, metrics06: Mapping[str, Any]) -> list[dict[str, Any]]:
    """07's headline rows of 06: clean detection rate and its mean under post-processing."""
    rows = [headline_row(stem, "clean detection rate (TPR @ 5 % FPR)", detector, cell, "tpr")
            for detector, cell in (metrics06.get("clean") or {}).items()]
    rows += [headline_row(stem, "mean detection rate under post-processing", detector, value)
             for detector, value in (metrics06.get("postprocess_mean_tpr") or {}).items()]
    return rows


def findings(stem: str, m: Mapping[str, Any]) -> list[str]:
    """07's sentences on this notebook (``stem`` is unused: the sentences name their method)."""
    out = []
    for detector, curve in _pgd_curves(m.get("pgd")).items():
        if curve.get("epsilon") and curve.get("auc"):
            out.append(f"PGD against {detector}: AUC {fmt(cell_value(curve['auc'][0]))} → "
                       f"{fmt(cell_value(curve['auc'][-1]))} at ε = {curve['epsilon'][-1]}"
                       + (f" (PSNR {fmt(cell_value(curve['psnr'][-1]), 1)} dB)."
                          if curve.get("psnr") else "."))
    for detector, stages in _removal_by_detector(m.get("artifact_removal"), m.get("clean")).items():
        attacks = ", ".join(f"{name} {fmt(cell_value(value, 'auc'))}" for name, value in stages.items()
                            if name != "before")
        out.append(f"Artifact removal against {detector}: AUC {fmt(cell_value(stages.get('before'), 'auc'))} "
                   f"clean; after {attacks}.")
    return out
