"""Which autoencoder family a reconstruction detector generalises across (notebook 04).

Vesnin et al. train on real images against their SD 2.1 **VAE** (KL) reconstructions and test on
twelve LDMs, among them Kandinsky 3 with a **MoVQ** (VQ) decoder, but never ask whether the
family of the training autoencoder matters. The study answers it with a matrix:

* rows: the training autoencoder (mini world: ``kl_ae``, ``vq_ae`` and, when
  :func:`lare2lib.core.paths.taef2_dir` finds it, ``taef2``, a real pretrained tiny autoencoder of the
  FLUX.2 latent space); one :class:`lare2lib.detectors.recon_classifier.ReconClassifier` per row, trained with the
  project's one loop (:func:`lare2lib.detectors.train.fit`) on real training crops (label 0) against that
  autoencoder's reconstructions of the same crops (label 1), validated on the validation split;
* columns: held-out reals against every autoencoder's reconstructions of them
  (``recon_<ae>``) and against every generator's test images (the generator's own name);
* cells: ROC AUC and TPR at 0.1 % FPR with a bootstrap interval
  (:func:`lare2lib.detectors.predict.evaluate_sets` → :func:`lare2lib.eval.metrics.real_vs_sets`).

The study is split by responsibility:

* :mod:`~lare2lib.studies.nb04_sources`: the family sources, :class:`WorldFamily` (the mini or
  smoke world's cached sets) and :class:`FolderFamily` (``full``: folders and named autoencoders);
* :mod:`~lare2lib.studies.nb04_matrix`: the detector of a row (:class:`FamilyConfig`), training,
  scoring, the cells with their intervals and the ``matrix`` schema of ``metrics.json``;
* :mod:`~lare2lib.studies.nb04_spectra`: what the detector sees, the residual spectra of every
  autoencoder and the high-pass spectra of generated images;
* :mod:`~lare2lib.studies.nb04_figures`: the notebook's figures.

This module holds the notebook's run around them: the run's settings (:func:`describe`), the
printed rows (:func:`format_row`) and the answer in words (:func:`findings`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from lare2lib.detectors.train import TrainConfig

__all__ = ["describe", "format_row", "findings"]


def describe(source, train_config: TrainConfig) -> dict[str, Any]:
    """The run's settings for ``metrics.json`` (what a reader needs to redo it)."""
    return {"autoencoders": list(source.autoencoders), "family": asdict(source.config),
            "train": asdict(train_config), "seed": source.seed}


def format_row(ae: str, row: Mapping[str, Mapping[str, Any]]) -> str:
    """One printed line per row of the matrix: AUC and TPR@0.1% [interval] per test set."""
    cells = [f"{name} auc {cell['auc']:.3f} tpr {cell['tpr@0.1%']:.3f} "
             f"[{cell.get('tpr@0.1%_ci', [math.nan] * 2)[0]:.2f}, {cell.get('tpr@0.1%_ci', [math.nan] * 2)[1]:.2f}]"
             for name, cell in row.items()]
    return f"{ae}: " + " | ".join(cells)



def _cell_text(cell: Mapping[str, Any]) -> str:
    low, high = cell.get("tpr@0.1%_ci", [math.nan, math.nan])
    return f"AUC {cell['auc']:.3f}, TPR@0.1% {cell['tpr@0.1%']:.2f} [{low:.2f}, {high:.2f}]"


def findings(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]], summary: Mapping[str, Any],
             family_of: Mapping[str, str] | None = None, n_real: int = 0) -> str:
    """The answer as it fell in this run, as Markdown composed from the numbers (nothing hard-coded).

    ``family_of``: generator → the autoencoder it decodes with (mini: ``kl_ldm`` → ``kl_ae``), so
    each row's generator columns can be read as in-family or cross-family.
    """
    family_of = dict(family_of or {})
    lines = []
    for ae, row in matrix.items():
        own = row.get(f"recon_{ae}")
        others = {k: v for k, v in row.items() if k.startswith("recon_") and k != f"recon_{ae}"}
        generators = {k: v for k, v in row.items() if not k.startswith("recon_")}
        text = f"* **trained on `{ae}`**: "
        if own is not None:
            text += f"its own reconstructions {_cell_text(own)}; "
        text += "; ".join(f"`{k.removeprefix('recon_')}` reconstructions AUC {v['auc']:.3f}" for k, v in others.items())
        for name, cell in generators.items():
            tag = "same autoencoder" if family_of.get(name) == ae else f"decoded by `{family_of[name]}`" \
                if name in family_of else "generator"
            text += f"; **`{name}`** ({tag}) {_cell_text(cell)}"
        lines.append(text + ".")
    for ae, row in matrix.items():
        groups = {"same autoencoder": [c["auc"] for n, c in row.items() if family_of.get(n) == ae],
                  "other autoencoders": [c["auc"] for n, c in row.items() if n in family_of and family_of[n] != ae]}
        if all(groups.values()):
            lines.append(f"* **`{ae}` in family vs across**: mean generator AUC "
                         + ", ".join(f"{k} {np.mean(v):.3f} ({len(v)})" for k, v in groups.items())
                         + f"; across − in family = {np.mean(groups['other autoencoders']) - np.mean(groups['same autoencoder']):+.3f}.")
    best = {name: max(matrix, key=lambda ae: matrix[ae][name]["auc"])
            for name in next(iter(matrix.values())) if not name.startswith("recon_")}
    if best:
        lines.append("* **best row per generator (AUC)**: "
                     + ", ".join(f"`{name}` ← `{ae}` ({matrix[ae][name]['auc']:.3f})" for name, ae in best.items()) + ".")
    peaks = summary.get("autoencoders", {})
    if peaks:
        lines.append("* **residual spectra**: " + "; ".join(
            f"`{ae}` grid peak {p['grid_peak_db']:+.1f} dB at period {p['period']}, RMS {p.get('residual_rms', math.nan):.1f} "
            f"levels, {100 * p['high_freq_share']:.0f} % of the energy above 1/4 cycle/px" for ae, p in peaks.items()) + ".")
    if n_real:
        lines.append(f"* TPR at 0.1 % FPR uses the highest of {n_real} real scores as its threshold "
                     f"(fewer than 1000 reals): the intervals, not the points, are the result.")
    return "\n".join(lines)
