"""Notebook 06's answer: which detector degrades most gracefully, and the findings in words."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lare2lib.studies.nb06_suite import DETECTOR_LABELS, FPR

__all__ = ["most_graceful", "findings_text", "postprocess_mean_tpr"]


def most_graceful(pgd: Mapping[str, Mapping[str, Mapping[str, float]]], *, metric: str = "tpr",
                  margin: float = 0.1) -> dict[str, Any]:
    """The detector keeping the largest share of its clean margin over chance under PGD.

    Rule: ``retained = mean over ε > 0 of (m(ε) − c) / (m(0) − c)`` where ``m`` is the detection
    rate (chance ``c`` = :data:`FPR`, the rate of a detector that cannot tell) or the AUC (``c`` =
    ½). A detector whose clean value is less than ``margin`` above chance has nothing to lose
    and is not ranked; ties go to the higher mean under attack; if even the best keeps nothing
    (retained ≤ 0), no detector is named.
    """
    chance = 0.5 if metric == "auc" else FPR
    retained, attacked_mean = {}, {}
    for name, curve in pgd.items():
        clean = curve.get("0", {}).get(metric)
        attacked = [row[metric] for eps, row in curve.items() if float(eps) > 0]
        if clean is None or not attacked:
            continue
        attacked_mean[name] = float(np.mean(attacked))
        if clean >= chance + margin:
            retained[name] = float(np.mean([(v - chance) / (clean - chance) for v in attacked]))
    ranked = sorted(retained, key=lambda n: (retained[n], attacked_mean[n]), reverse=True)
    winner = ranked[0] if ranked and retained[ranked[0]] > 0 else None
    note = ("" if winner or not ranked else
            "every ranked detector is at or below chance at every attacked budget: none degrades gracefully")
    rule = (f"highest mean over ε>0 of ({metric}(ε)−{chance:g})/({metric}(0)−{chance:g}), {chance:g} = "
            f"chance; clean {metric} below {chance + margin:g} not ranked; none if the best keeps nothing")
    return {"detector": winner, "metric": metric, "rule": rule, "retained": retained,
            "attacked_mean": attacked_mean, "not_ranked": sorted(set(pgd) - set(retained)), "note": note}


def _label(name: str) -> str:
    return DETECTOR_LABELS.get(name, name)


def findings_text(clean: Mapping[str, Any], postprocess: Mapping[str, Any], removal: Mapping[str, Any],
                  pgd: Mapping[str, Any], graceful: Mapping[str, Any], graceful_auc: Mapping[str, Any],
                  post_mean: Mapping[str, float], removal_psnr: Mapping[str, float]) -> str:
    """The notebook's answer as Markdown, every number read from this run's results."""
    lines = ["**As it fell in this run** (detection rate = TPR at the clean-real 5 % FPR threshold):", ""]
    for name, row in clean.items():
        levels = [(f"{kind}@{level}", rows[name]["tpr"]) for kind, by_level in postprocess.items()
                  for level, rows in by_level.items()]
        worst = min(levels, key=lambda item: item[1]) if levels else ("—", float("nan"))
        removals = [(a, rows[name]["tpr"]) for a, rows in removal.items() if a != "none"]
        strongest = min(removals, key=lambda item: item[1]) if removals else ("—", float("nan"))
        curve = pgd.get(name, {})
        broken = [eps for eps in sorted(curve, key=float) if float(eps) > 0 and curve[eps]["tpr"] <= FPR]
        largest = max(curve, key=float) if curve else None
        start = curve.get("0", {}).get("tpr", 1.0) if curve else 1.0
        if start < FPR + 0.1:
            pgd_text = f"its PGD subset is (nearly) at chance before any attack (TPR {start:.2f})"
        elif broken:
            pgd_text = (f"PGD brings it to chance at ε = {broken[0]}/255 "
                        f"(PSNR {curve[broken[0]]['psnr']:.1f} dB)")
        else:
            pgd_text = "PGD does not bring it to chance within the budgets tried" + (
                f" (TPR {curve[largest]['tpr']:.2f} at ε = {largest}/255)" if largest else "")
        if largest and "0" in curve:
            pgd_text += f"; PGD AUC {curve['0']['auc']:.2f} → {curve[largest]['auc']:.2f} at ε = {largest}/255"
        lines.append(f"* **{_label(name)}**: clean {row['tpr']:.2f} (AUC {row['auc']:.3f}); post-processing "
                     f"mean {post_mean.get(name, float('nan')):.2f}, worst {worst[0]} → {worst[1]:.2f}; "
                     f"artifact removal worst {strongest[0]} → {strongest[1]:.2f} "
                     f"({removal_psnr.get(strongest[0], float('nan')):.1f} dB); {pgd_text}.")
    lines.append("")
    if graceful["detector"] is None:
        why = graceful["note"] or "none starts far enough above chance to rank"
        lines.append(f"**No detector degrades gracefully under PGD**: {why} ({graceful['rule']}).")
    else:
        retained = ", ".join(f"{_label(n)} {v:.2f}" for n, v in sorted(graceful["retained"].items(),
                                                                       key=lambda kv: -kv[1]))
        other = graceful_auc["detector"]
        agree = ("the AUC rule agrees" if other == graceful["detector"] else
                 f"by the AUC rule it is {_label(other) if other else 'none'}")
        lines.append(f"**Most graceful under PGD: {_label(graceful['detector'])}** ({graceful['rule']}; "
                     f"retained share: {retained}; {agree}). Not ranked: "
                     f"{', '.join(_label(n) for n in graceful['not_ranked']) or 'none'}.")
    if post_mean:
        best = max(post_mean, key=post_mean.get)
        lines.append(f"Under post-processing the highest mean detection rate is {_label(best)}'s "
                     f"({post_mean[best]:.2f}).")
    return "\n".join(lines)


def postprocess_mean_tpr(postprocess: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
                         detectors: Iterable[str]) -> dict[str, float]:
    """Detector → its mean detection rate over every level of every post-processing sweep."""
    import pandas as pd

    return {d: float(pd.Series([row[d]["tpr"] for levels in postprocess.values()
                                for row in levels.values()]).mean()) for d in detectors}
