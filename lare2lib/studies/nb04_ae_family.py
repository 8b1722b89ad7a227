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

This module holds the notebook's run around them: its budget (:class:`Config`, with
:meth:`Config.smoke`; the notebook builds it with :func:`lare2lib.studies.common.study_config`), the
run's settings (:func:`describe`) and cache folder (:func:`run_root`), the printed rows
(:func:`format_row`), the answer in words (:func:`findings`) and the notebook's ``metrics.json``
(:func:`write_metrics`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare2lib.core.profiles import Profile
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.nb04_matrix import FamilyConfig, matrix_cells
from lare2lib.studies.nb04_spectra import residual_profiles

__all__ = ["Config", "describe", "run_root", "format_row", "findings", "write_metrics"]

NOTEBOOK = "04_autoencoder_family"


@dataclass(frozen=True)
class Config:
    """Budget of notebook 04 (defaults: the mini notebook's; :meth:`smoke`: the tests' and CI's).

    The detector of every row is :meth:`family` (a :class:`FamilyConfig`); its training protocol
    is :attr:`train` (its seed is the notebook's ``SEED``).
    """

    backbone: str = ""
    """timm classifier or local weights file under the one-logit head (empty: the profile's
    first reconstruction classifier)."""
    crop_size: int = 0
    """Training and inference crop side (0: the profile's, 48 px in mini, 24 in smoke, 256 in full)."""
    train_images: int = 1536
    """Real training crops per row, the same seeded subset for every row (0: all)."""
    val_images: int = 0
    """Real validation crops per row (0: all)."""
    tries: int = 1
    """Random crops averaged per test image (the paper's "1 try"; 0: centre crop)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the AUC and TPR intervals."""
    train: TrainConfig = TrainConfig(epochs=3, early_stopping=2)
    """Every row's training protocol (released optimiser: Adam 1e-4, batch 48; early stopping on
    the validation AUC may end a row sooner)."""

    @classmethod
    def smoke(cls) -> Config:
        """Seconds, not minutes: every row and column, two steps of training each, the whole tiny world."""
        return cls(train_images=0, bootstrap=100,
                   train=TrainConfig(epochs=1, early_stopping=2, batch_size=16, max_steps=2))

    def family(self, profile: Profile) -> FamilyConfig:
        """The detector of every row, with the profile's backbone and crop where left at their defaults."""
        return FamilyConfig.for_profile(profile, self.backbone, self.crop_size, train_images=self.train_images,
                                        val_images=self.val_images, tries=self.tries, bootstrap=self.bootstrap)


def describe(source, train_config: TrainConfig) -> dict[str, Any]:
    """The run's settings for ``metrics.json`` (what a reader needs to redo it)."""
    return {"autoencoders": list(source.autoencoders), "family": asdict(source.config),
            "train": asdict(train_config), "seed": source.seed}


def run_root(source, train_config: TrainConfig, profile: Profile, data_dir: str | Path | None = None) -> Path:
    """Folder of the run's training runs under ``data_dir`` (default: :func:`lare2lib.core.paths.data_dir`),
    keyed by its settings and the profile: a finished run is reloaded, an unfinished one resumed."""
    from lare2lib.core import paths

    data_dir = paths.data_dir() if data_dir is None else data_dir
    settings = describe(source, train_config)
    run_key = hashlib.sha256(json.dumps([settings, profile.config_hash()], sort_keys=True, default=str)
                             .encode()).hexdigest()[:12]
    return Path(data_dir) / "aefamily" / f"{profile.name}-{run_key}"


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


def write_metrics(out_dir: str | Path, *, profile: Profile, seed: int, source, train_config: TrainConfig,
                  result: Mapping[str, Any], spectra: Mapping[str, Any], family_of: Mapping[str, str],
                  n_test_real: int, started: float) -> dict[str, Any]:
    """Write the notebook's ``metrics.json`` and return its metrics.

    ``result``: :func:`~lare2lib.studies.nb04_matrix.run_matrix`'s; ``spectra``:
    :func:`~lare2lib.studies.nb04_spectra.spectra`'s; ``started``: ``time.time()`` at the start.
    """
    from lare2lib.core import plotting

    metrics = {
        "profile": profile.name,
        "seed": seed,
        "matrix": matrix_cells(result["matrix"]),
        "matrix_full": result["matrix"],
        "spectra_summary": spectra["summary"],
        "residual_spectra": residual_profiles(spectra["residual"]),
        "training_autoencoders": source.autoencoders,
        "generator_autoencoder": family_of,
        "n_train": result["n_train"],
        "n_val": result["n_val"],
        "n_test_real": n_test_real,
        "best_epoch": result["best_epoch"],
        "history": result["history"],
        "row_seconds": result["seconds"],
        "settings": describe(source, train_config),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "seconds": time.time() - started,
    }
    plotting.write_metrics(out_dir, metrics, notebook=NOTEBOOK)
    return metrics
