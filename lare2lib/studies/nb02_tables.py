"""Notebook 02's summaries and tables: over seeds, per row, and the map-shuffle diagnostic.

* :func:`ablation_summary` gives ``variant → test set → {acc, ap, auc, oracle_acc} → {mean, std, n}``;
  :func:`ablation_table`, :func:`diagnostic_table` and :func:`runs_table` show it and the runs.
* :func:`shuffled_map_metrics` scores a trained model with every test map swapped for another
  test image's; :func:`map_shuffle_diagnostic` does it for every map-guided row and seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lare2lib.detectors.egre_data import EgreDataset
from lare2lib.detectors.egre_splits import EgreData
from lare2lib.detectors.egre_training import without_features
from lare2lib.studies.nb02_egre import ABLATION_LABELS

__all__ = [
    "ablation_summary",
    "ablation_table",
    "diagnostic_table",
    "runs_table",
    "shuffled_map_metrics",
    "map_shuffle_diagnostic",
    "shuffle_table",
]

GUIDED_ROWS = ("esr", "ecr", "egre", "lare_cnn")
"""Rows whose head reads the map (what the shuffle diagnostic tests)."""


def ablation_summary(results: Mapping[str, Mapping[int, Mapping[str, Any]]],
                     keys: Sequence[str] = ("acc", "ap", "auc", "oracle_acc")) -> dict[str, Any]:
    """``variant → test set → metric → {"mean", "std", "n"}`` over seeds (``oracle_acc``: the
    threshold-searched accuracy, a labelled diagnostic, never the ACC)."""
    from lare2lib.eval.metrics import mean_std

    summary = {}
    for name, runs in results.items():
        per_seed = [{test: {k: row[k] for k in keys if k in row}
                     for test, row in run["metrics"].items()} for run in runs.values()]
        summary[name] = mean_std(per_seed)
    return summary


def ablation_table(summary: Mapping[str, Any], metrics: Sequence[str] = ("acc", "ap", "auc")):
    """DataFrame: rows = ablation rows, columns = (test set, metric), cells "mean ± std"."""
    import pandas as pd

    rows = {}
    for name, per_set in summary.items():
        rows[ABLATION_LABELS.get(name, name)] = {
            (test, metric): f"{values[metric]['mean']:.3f} ± {values[metric]['std']:.3f}"
            for test, values in per_set.items() for metric in metrics if metric in values}
    table = pd.DataFrame(rows).T
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["test set", "metric"])
    return table


def diagnostic_table(summary: Mapping[str, Any]):
    """DataFrame: ACC at 0.5 and the threshold-searched (oracle) ACC per row and test set."""
    import pandas as pd

    return pd.DataFrame({
        ABLATION_LABELS[name]: {
            **{f"ACC@0.5 {t}": s[t]["acc"]["mean"] for t in s if t != "mean"},
            **{f"oracle ACC {t}": s[t]["oracle_acc"]["mean"] for t in s if t != "mean"}}
        for name, s in summary.items()}).T.round(3)


def runs_table(results: Mapping[str, Mapping[int, Mapping[str, Any]]]):
    """DataFrame: how every run ended (epochs, best epoch, validation AUC, seconds, read back)."""
    import pandas as pd

    return pd.DataFrame([{"row": name, "seed": seed, "epochs": r["epochs"],
                          "best epoch": r["best_epoch"], "val AUC": r["best_val_auc"],
                          "seconds": r["seconds"], "read back": r["resumed"]}
                         for name, per_seed in results.items() for seed, r in per_seed.items()])


# -- the map-shuffle diagnostic ------------------------------------------------------------------


def shuffled_map_metrics(model, tests: Mapping[str, EgreDataset], *, seed: int = 0) -> dict[str, Any]:
    """Metrics with each image's map replaced by another test image's (world layout).

    For each generator, the maps of the real test set and of that generator's set are pooled
    and permuted (seeded), so an image keeps its pixels but gets a random real or generated
    image's map. If the scores barely change, the detector does not use *its* map: whatever a
    map-guided row gains over backbone-only then comes from the extra features, not the guidance.
    """
    from lare2lib.detectors.train import predict
    from lare2lib.eval import metrics

    if not model.config["freeze_backbone"]:
        tests = {name: without_features(ds) for name, ds in tests.items()}
    real = tests["real"]
    generator = torch.Generator().manual_seed(seed)
    table = {}
    for name, fake in tests.items():
        if name == "real":
            continue
        pooled = torch.cat([real.maps, fake.maps])
        order = torch.randperm(len(pooled), generator=generator)
        real_scores = predict(model, real.options(maps=pooled[order[:len(real.maps)]]), progress=False)[0]
        fake_scores = predict(model, fake.options(maps=pooled[order[len(real.maps):]]), progress=False)[0]
        table[name] = metrics.real_vs_sets(real_scores, {name: fake_scores})[name]
    scalar = [k for k, v in next(iter(table.values())).items() if isinstance(v, float)]
    table["mean"] = {k: float(np.mean([row[k] for row in table.values()])) for k in scalar}
    return table


def map_shuffle_diagnostic(data: EgreData, results: Mapping[str, Mapping[int, Mapping[str, Any]]],
                           summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per map-guided row: ``{"intact": its mean metrics, "shuffled": mean ± std over seeds of
    acc, ap, auc with shuffled maps}`` (world layout; every seed's checkpoint is read back)."""
    from lare2lib.detectors.registry import load_detector
    from lare2lib.eval.metrics import mean_std

    shuffle = {}
    for name in (row for row in GUIDED_ROWS if row in results):
        _, _, tests = data.splits("lare", True, with_image=name != "lare_cnn")
        per_seed = [shuffled_map_metrics(load_detector(r["checkpoint"]), tests, seed=seed)
                    for seed, r in results[name].items()]
        shuffle[name] = {"intact": summary[name]["mean"],
                         "shuffled": mean_std([{k: t["mean"][k] for k in ("acc", "ap", "auc")}
                                               for t in per_seed])}
    return shuffle


def shuffle_table(shuffle: Mapping[str, Mapping[str, Any]]):
    """DataFrame: mean ACC and AUC per row, intact against shuffled maps."""
    import pandas as pd

    return pd.DataFrame({
        ABLATION_LABELS[name]: {f"{m} {kind}": entry[kind][m]["mean"]
                                for kind in ("intact", "shuffled") for m in ("acc", "auc")}
        for name, entry in shuffle.items()}).T
