"""Notebook 08's figure and its findings in words, every number read from the run's tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lare2lib.studies.nb08_metrics import FPR

__all__ = ["verdict", "set_summary", "findings_text", "score_figure", "in_world_auc"]

MIN_SUBSET = 5
"""Fewest generated images for a generator or VAE family to be discussed (smaller rows stay
in the table, with their wide intervals)."""


def verdict(row: Mapping[str, Any]) -> str:
    """``transfers`` (AUC interval above ½), ``inverted`` (below), or ``chance``."""
    low, high = row["auc_ci"]
    return "transfers" if low > 0.5 else ("inverted" if high < 0.5 else "chance")


def set_summary(wild) -> dict[str, Any]:
    """Counts of the set: images per class, photos, templates kept and dropped by reason."""
    reasons = Counter(_reason_kind(reason) for reason in wild.dropped.values())
    return {"n_real": len(wild.of(0)), "n_fake": len(wild.of(1)),
            "n_photos": len(set(wild.column("group", 0))),
            "generator_family": dict(Counter(wild.column("generator_family", 1))),
            "vae_family": dict(Counter(wild.column("vae_family", 1))),
            "dropped": dict(reasons)}


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0]


def _fmt(row: Mapping[str, Any], key: str = "auc") -> str:
    low, high = row[f"{key}_ci"]
    return f"{row[key]:.2f} [{low:.2f}, {high:.2f}]"


def _overall(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.grouping == "all"].set_index("detector")


def findings_text(tables: Mapping[str, pd.DataFrame], summary: Mapping[str, Any],
                  in_world: Mapping[str, float] | None = None) -> str:
    """The notebook's answer as Markdown: what transfers, what does not, the shortcut, and
    (``in_world``: :func:`in_world_auc`) how far each detector fell from its own world."""
    controlled = _overall(tables["controlled"])
    verdicts = {name: verdict(row) for name, row in controlled.iterrows()}
    counts = Counter(verdicts.values())
    best = controlled["auc"].idxmax()
    lines = [
        f"**The set.** {summary['n_fake']} text-to-image outputs of real generators against "
        f"{summary['n_real']} windows of {summary['n_photos']} held-out photos, both classes "
        "resized, centre-cropped and WebP-compressed alike.",
        "",
        f"**What transfers (controlled processing).** Of {len(verdicts)} detectors, "
        f"{counts.get('transfers', 0)} separate the real generators' images from the photos "
        f"(AUC interval above ½), {counts.get('chance', 0)} are indistinguishable from chance and "
        f"{counts.get('inverted', 0)} are inverted (they call the photos generated). The best is "
        f"**{best}**: AUC {_fmt(controlled.loc[best])}, TPR@{FPR:.0%} FPR "
        f"{_fmt(controlled.loc[best], 'tpr')}.",
    ]
    transferring = [name for name, v in verdicts.items() if v == "transfers"]
    if transferring:
        lines.append(f"Transferring: {', '.join(transferring)}.")
    inverted = [name for name, v in verdicts.items() if v == "inverted"]
    if inverted:
        lines.append(f"Inverted: {', '.join(inverted)}.")
    lines += ["", _family_sentence(tables["controlled"]), "", _shortcut_sentence(tables)]
    if in_world:
        lines += ["", _fall_sentence(controlled, in_world)]
    lares = [name for name in controlled.index if name.startswith("mean LaRE")]
    if lares:
        parts = [f"{name}: {_fmt(controlled.loc[name])}" for name in lares]
        lines += ["", "**LaRE's premise in the wild.** The mini LDMs' single-step error ranks real "
                  "generators' images against photos at AUC " + "; ".join(parts) + ". Above ½ "
                  "would mean images of *other*, far larger LDMs are easier for the mini LDM to "
                  "denoise than photos are."]
    return "\n".join(lines)


def _fall_sentence(controlled: pd.DataFrame, in_world: Mapping[str, float]) -> str:
    """The detectors' in-world AUC beside their AUC here: the size of the domain gap."""
    pairs = [(name, in_world[name], controlled.loc[name, "auc"]) for name in controlled.index
             if name in in_world and np.isfinite(in_world[name])]
    if not pairs:
        return "**From the world to the wild.** No earlier notebook's in-world AUC was found."
    world, wild = np.median([p[1] for p in pairs]), np.median([p[2] for p in pairs])
    largest = max(pairs, key=lambda p: p[1] - p[2])
    text = (f"**From the world to the wild.** On the mini world's own generators these {len(pairs)} "
            f"detectors reach a median AUC of {world:.2f}; here, {wild:.2f}. The largest fall is "
            f"{largest[0]}'s, {largest[1]:.2f} → {largest[2]:.2f}")
    if largest[1] - largest[2] > 0.2:
        return text + (": what it learned to separate is a trait of the mini world's generators, "
                       "not of generated images in general.")
    return text + ": no detector loses much of its in-world separation."


def _family_sentence(table: pd.DataFrame) -> str:
    """For each VAE family with enough images: the detector ranking it best, and its AUC."""
    parts = []
    rows = table[(table.grouping == "vae_family") & (table.n_fake >= MIN_SUBSET)]
    for family, group in rows.groupby("subset"):
        top = group.loc[group["auc"].idxmax()]
        parts.append(f"{family} ({int(top.n_fake)} images): {top.detector}, AUC {_fmt(top)}")
    if not parts:
        return f"**By VAE family.** No family has {MIN_SUBSET} or more images."
    return "**By VAE family** (best detector per family): " + "; ".join(parts) + "."


def _shortcut_sentence(tables: Mapping[str, pd.DataFrame]) -> str:
    if "as_shipped" not in tables:
        return ""
    controlled, shipped = _overall(tables["controlled"]), _overall(tables["as_shipped"])
    change = (shipped["auc"] - controlled["auc"]).dropna()
    biggest = change.abs().idxmax()
    flipped = [name for name in change.index
               if verdict(controlled.loc[name]) != "transfers" and verdict(shipped.loc[name]) == "transfers"]
    text = (f"**The format/size shortcut.** Scored on the files as shipped (fakes: WebP thumbnails "
            f"of their own sizes; reals: the photo's centre square, stored JPEG/PNG), AUC moves by "
            f"{change.abs().mean():.2f} on average; most for {biggest} "
            f"({controlled.loc[biggest, 'auc']:.2f} → {shipped.loc[biggest, 'auc']:.2f}).")
    if flipped:
        text += (f" {len(flipped)} detector(s) would *appear* to transfer only without the control: "
                 f"{', '.join(flipped)}.")
    return text


def score_figure(wild, scores: Mapping[str, np.ndarray], detectors: Sequence[str], *, columns: int = 4):
    """Score distributions: one panel per detector, reals then each VAE family's fakes.

    Scores are standardised by the reals of each detector (mean 0, sd 1), so panels share a
    scale: a family above 0 scores as more generated than the typical photo.
    """
    import matplotlib.pyplot as plt

    labels = np.array([image.label for image in wild.images])
    families = np.array([image.vae_family if image.label else "real" for image in wild.images])
    order = ["real"] + sorted(set(families[labels == 1]))
    rows = int(np.ceil(len(detectors) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False,
                             sharey=False)
    for ax, name in zip(axes.flat, detectors):
        values = scores[name].mean(axis=0)
        real = values[labels == 0]
        z = (values - real.mean()) / (real.std() + 1e-12)
        data = [z[families == family] for family in order]
        ax.boxplot(data, vert=True, showfliers=False, widths=0.6)
        for k, points in enumerate(data, start=1):
            jitter = np.random.default_rng(k).uniform(-0.18, 0.18, points.size)
            ax.scatter(np.full(points.size, k) + jitter, points, s=8, alpha=0.6,
                       color="tab:blue" if k == 1 else "tab:red")
        ax.axhline(0, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(1, len(order) + 1), order, rotation=60, ha="right", fontsize=7)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(detectors):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("score, standardised on reals")
    fig.tight_layout()
    return fig


WORLD_GENERATORS = ("kl_ldm", "vq_ldm", "kl_ldm_fast")
"""The mini world's generators, whose mean AUC is each detector's in-world AUC."""


def _mean_auc(rows: Mapping[str, Any], pick=lambda cell: cell) -> float:
    from lare2lib.eval.results import cell_value

    values = [cell_value(pick(rows[g]), "auc") for g in WORLD_GENERATORS if g in rows]
    return float(np.mean(values)) if values else float("nan")


def in_world_auc(detectors: Sequence[str], metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Each detector's mean AUC over the world's generators, as its own notebook measured it.

    ``metrics``: ``{stem: metrics}`` of notebooks 02–05 (:func:`lare2lib.studies.nb07_common.
    available_metrics`). 02: the ablation table; 03: its comparison rows (the classifier's 1 try,
    AEROBLADE on the backbone distance, mean LaRE under ``kl_ldm``); 04: its train-autoencoder
    matrix; 05: its generator rows per training level. NaN where no notebook measured it.
    """
    from lare2lib.eval.results import cell_value

    by_number = {stem[:2]: m for stem, m in metrics.items()}
    comparison = by_number.get("03", {}).get("comparison", {})
    out = {}
    for name in detectors:
        number, _, config = name.partition(" ")
        value = float("nan")
        if number == "02" and config in by_number.get("02", {}).get("ablation", {}):
            value = cell_value(by_number["02"]["ablation"][config].get("mean", {}).get("auc"))
        elif number == "03" and "recon classifier, 1 try" in comparison:
            value = cell_value(comparison["recon classifier, 1 try"].get("mean"), "auc")
        elif number == "04" and config in by_number.get("04", {}).get("matrix", {}):
            value = _mean_auc(by_number["04"]["matrix"][config])
        elif number == "05" and config.removeprefix("train_") in by_number.get("05", {}).get("generators", {}):
            value = _mean_auc(by_number["05"]["generators"][config.removeprefix("train_")])
        elif name.startswith("AEROBLADE (kl_ae"):
            key = next((k for k in comparison if k.startswith("AEROBLADE (efficientnet")), None)
            value = cell_value(comparison[key].get("mean"), "auc") if key else value
        elif name == "mean LaRE (kl_ldm)" and name in comparison:
            value = cell_value(comparison[name].get("mean"), "auc")
        out[name] = value
    return out
