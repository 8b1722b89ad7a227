"""Notebook 03's other detectors on the same test sets: AEROBLADE (training-free, minimum
reconstruction distance over autoencoders), the bare mean-LaRE score of notebook 01, notebook
02's EGRE rows, and the table that compares them with the reconstruction classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lare2lib.data.imagesets import ImageSet
from lare2lib.signals import set_maps
from lare2lib.studies.nb03_scoring import Detection, detection_table
from lare2lib.world.weights import world_ldm

__all__ = [
    "AerobladeRun",
    "run_aeroblade",
    "mean_lare_scores",
    "egre_rows",
    "mean_lare_table",
    "comparison_rows",
    "comparison_table",
    "attribution_table",
]


@dataclass(frozen=True)
class AerobladeRun:
    """AEROBLADE on the held-out reals and every generator's test set (what :func:`run_aeroblade` returns)."""

    autoencoders: list[str]
    """The generators' autoencoders the minimum runs over."""
    distractor: str
    """The extra autoencoder of the second row of each distance ("" when none)."""
    sets: dict[str, ImageSet]
    """``"real"`` then each generator's test set, in the order the images were scored."""
    groups: list[str]
    """Set name of every scored image (``(N,)``, the order of :attr:`sets`)."""
    variants: dict[str, Any]
    """Distance (``"+ distractor"`` rows too) → :class:`lare2lib.detectors.aeroblade` result."""
    tables: dict[str, dict[str, dict[str, Any]]]
    """Variant → :func:`~lare2lib.studies.nb03_scoring.detection_table` of its scores."""

    @property
    def primary(self) -> str:
        """The first variant (the first distance over the generators' autoencoders)."""
        return next(iter(self.tables))


def run_aeroblade(world, real: ImageSet, fakes: Mapping[str, ImageSet], autoencoders: Sequence[str],
                  distractor: str, *, bootstrap: int, seed: int, distances: str = "") -> AerobladeRun:
    """Score ``real`` and ``fakes`` by AEROBLADE over ``autoencoders``, and again with ``distractor``
    added (``taef2`` only where its weights are on this machine). ``distances``: comma-separated
    names of :data:`lare2lib.detectors.training_free.DISTANCES` (empty: the profile's defaults)."""
    from lare2lib.core import paths
    from lare2lib.detectors import aeroblade
    from lare2lib.detectors.training_free import aeroblade_distance
    from lare2lib.models.autoencoders import load_autoencoder

    autoencoders = list(autoencoders)
    distractor = distractor if distractor != "taef2" or paths.taef2_dir() is not None else ""
    ae_names = autoencoders + ([distractor] if distractor else [])
    models = {name: (load_autoencoder(str(paths.taef2_dir())) if name == "taef2" else world.autoencoder(name))
              for name in ae_names}
    if distances:
        modules = [aeroblade_distance(name) for name in distances.split(",")]
        distances = {module.name: module for module in modules}
    else:
        distances = aeroblade.default_distances(world.profile.name)
    sets = {"real": real, **fakes}
    pixels = [image for images in sets.values() for image in images.pixels]
    ids = [i for images in sets.values() for i in images.ids]
    groups = [name for name, images in sets.items() for _ in range(len(images))]
    scored = aeroblade.aeroblade(pixels, ids, models, distances, seed=seed, batch_size=64)
    variants = {name: result.subset(autoencoders) for name, result in scored.items()}
    variants |= {f"{name} + {distractor}": result for name, result in scored.items()} if distractor else {}
    tables = {}
    for name, result in variants.items():
        by_set = {g: result.scores[np.asarray(groups) == g] for g in sets}
        real_scores = by_set.pop("real")
        tables[name] = detection_table(real_scores, by_set, bootstrap=bootstrap, seed=seed)
    return AerobladeRun(autoencoders, distractor, sets, groups, variants, tables)


def mean_lare_scores(world, sets: Mapping[str, ImageSet], *, seed: int = 0, batch_size: int = 32,
                     ldm: str = "") -> dict[str, np.ndarray]:
    """Score −mean LaRE (notebook 01's bare LaRE score) of every image, reference LDM ``ldm``
    (empty: the world's, ``kl_ldm`` in mini, SD v1.5 in full)."""

    components = world_ldm(world, ldm or world.reference_ldm)
    config = world.profile.lare
    return {name: -set_maps.lare_maps(components, images, world.class_names, config, seed=seed,
                                     batch_size=batch_size).mean(dim=(1, 2, 3)).numpy().astype(np.float64)
            for name, images in sets.items()}



def egre_rows(root: str | Path, variant: str = "egre",
              rename: Callable[[str], str] | None = None) -> dict[str, dict[str, float]] | None:
    """Notebook 02's EGRE detector per test set: ``{set: {"auc", "ap"}}`` (means over seeds), or None.
    ``rename`` maps 02's set names to this notebook's (GenImage: subset folder → generator tag)."""
    from lare2lib.core.plotting import read_metrics

    try:
        ablation = read_metrics("02_egre_ablations", root).get("ablation", {})
    except FileNotFoundError:
        return None
    cells = ablation.get(variant)
    if not cells:
        return None
    return {(rename or str)(name): {m: float(cell[m]["mean"]) for m in ("auc", "ap") if m in cell}
            for name, cell in cells.items()}


def comparison_rows(detection: Detection, blade: AerobladeRun, *, tries: int,
                    lare: Mapping[str, Any] | None = None,
                    egre: Mapping[str, Any] | None = None) -> dict[str, Mapping[str, Any]]:
    """Method → set → metric cells of every detector: the classifier (1 and ``tries`` tries),
    AEROBLADE per variant, then mean LaRE and EGRE where given."""
    rows: dict[str, Mapping[str, Any]] = {"recon classifier, 1 try": detection.tables["1_try"],
                                          f"recon classifier, {tries} tries": detection.tables["10_tries"]}
    rows |= {f"AEROBLADE ({name})": table for name, table in blade.tables.items()}
    if lare is not None:
        rows["mean LaRE (kl_ldm)"] = lare
    if egre is not None:
        rows["EGRE (notebook 02)"] = egre
    return rows


def mean_lare_table(world, blade: AerobladeRun, *, seed: int) -> dict[str, dict[str, Any]]:
    """:func:`detection_table` (no bootstrap) of :func:`mean_lare_scores` on AEROBLADE's sets."""
    scores = mean_lare_scores(world, blade.sets, seed=seed)
    real = scores.pop("real")
    return detection_table(real, scores, bootstrap=0)


def comparison_table(rows: Mapping[str, Mapping[str, Mapping[str, Any]]], sets: Sequence[str],
                     metrics: Sequence[str] = ("auc", "ap", "tpr@5%")) -> pd.DataFrame:
    """Method × (set, metric) table; a cell is a number or a ``{"value", ...}`` dict; missing = NaN."""
    def value(cell):
        return cell.get("value", np.nan) if isinstance(cell, Mapping) else cell

    data = {method: {(name, metric): value(table.get(name, {}).get(metric, np.nan)) for name in sets
                     for metric in metrics}
            for method, table in rows.items()}
    frame = pd.DataFrame.from_dict(data, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["test set", "metric"])
    return frame


def attribution_table(attribution: Sequence[str], groups: Sequence[str]) -> pd.DataFrame:
    """Fraction of each group (test set) attributed to each autoencoder (rows sum to 1)."""
    return pd.crosstab(pd.Series(list(groups), name="test set"),
                       pd.Series(list(attribution), name="closest autoencoder"), normalize="index")

