"""Notebook 06's four detectors: found from notebooks 02 and 03, or trained here, or training-free.

:func:`load_detectors` returns the EGRE detector and the reconstruction classifier from
notebooks 02 and 03 when their checkpoints exist (:func:`find_checkpoint`; else a small one is
trained here through the same library calls), plus the two training-free scores, AEROBLADE and
mean-LaRE.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lare2lib.eval import attacks
from lare2lib.studies.nb06_evasion import Config

__all__ = ["find_checkpoint", "load_detectors"]


def _checkpoint_in_metrics(figures_root: Path | None, seed: int) -> Path | None:
    """Notebook 02's ESR + ECR checkpoint of ``seed`` as its metrics.json records it."""
    from lare2lib.core.plotting import read_metrics

    try:
        runs = read_metrics("02_egre_ablations", figures_root).get("runs", {})
    except FileNotFoundError:
        return None
    path = runs.get("egre", {}).get(str(seed), {}).get("checkpoint")
    return Path(path) if path and Path(path).is_file() else None


def find_checkpoint(kind: str, world, seed: int, figures_root: str | Path | None = None) -> Path | None:
    """The checkpoint an earlier notebook left for this world and seed, or None.

    EGRE: the one notebook 02's ``metrics.json`` (under ``figures_root``) names for its ESR + ECR
    row, else the newest ``<data>/egre/<world>/runs/egre-seed<seed>-*/best.safetensors``
    (:func:`lare2lib.studies.nb02_egre.run_ablation`'s layout). Classifier: the newest of notebook 03's
    ``<data>/runs/03_ae_reconstruction/<world>/<config>/seed<seed>/best.safetensors``.
    """
    from lare2lib.core import paths

    if kind == "egre":
        named = _checkpoint_in_metrics(Path(figures_root) if figures_root else None, seed)
        if named is not None:
            return named
        root, pattern = paths.data_dir() / "egre" / world.folder.name / "runs", f"egre-seed{seed}-*"
    elif kind == "classifier":
        root = paths.data_dir() / "runs" / "03_ae_reconstruction" / world.folder.name
        pattern = f"*/seed{seed}"
    else:
        raise ValueError(f"no earlier notebook trains a {kind!r} detector")
    found = [p / "best.safetensors" for p in root.glob(pattern)] if root.is_dir() else []
    found = sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _study_key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _train_egre(world, reference, seed: int, config: Config, progress: bool):
    """A small ESR + ECR detector (frozen backbone) trained here with notebook 02's protocol.

    ``config``'s per-class budget and its ``train`` epochs and step cap, 8 test images per set,
    the profile's seed; the rest is the mini protocol (:func:`egre_training.train_config`).
    """
    from lare2lib.core import paths
    from lare2lib.detectors import egre, egre_splits, egre_training

    detector_config = egre.default_config(world.profile, variant="egre")
    budget = egre_splits.SplitBudget(train_per_class=config.train_per_class,
                                     val_per_class=config.val_per_class, test_per_set=8,
                                     seed=world.profile.seed)
    train = egre_training.train_config(epochs=config.train.epochs, max_steps=config.train.max_steps,
                                       seed=seed)
    data = egre_splits.world_data(world, detector_config, budget, reference=reference, progress=progress)
    key = _study_key([detector_config, egre_training.protocol_record(budget, train)])
    out = paths.data_dir() / "evasion" / world.folder.name / f"egre-seed{seed}-{key}"
    model, _ = egre_training.train_variant(egre.build_detector(detector_config, seed), data, train, out)
    return model


def _train_classifier(world, seed: int, config: Config, progress: bool):
    """A reconstruction classifier (real vs kl_ae reconstructions) trained here as notebook 03 does,
    under ``config.train`` with its seed set to ``seed``."""
    from lare2lib.core import paths
    from lare2lib.data.imagesets import subsample
    from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs, default_crop
    from lare2lib.detectors.train import fit

    profile = world.profile
    ae = world.recon_autoencoder
    n_train, n_val = config.train_per_class, config.val_per_class
    # the same draw on both sets of a split keeps each real with its own reconstruction
    pairs = {split: ReconPairs.from_sets(subsample(world.real[split], n, seed),
                                         subsample(world.reconstructions(ae, split), n, seed))
             for split, n in (("train", n_train), ("val", n_val))}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ReconClassifier(profile.models.recon_classifiers[0], pretrained=True,
                                crop_size=default_crop(profile))
    train = dataclasses.replace(config.train, seed=seed)
    key = _study_key([model.config, ae, n_train, n_val, train])
    out = paths.data_dir() / "evasion" / world.folder.name / f"classifier-seed{seed}-{key}"
    fit(model, pairs["train"], pairs["val"], train, out, progress=progress,
        data_fingerprint=f"{world.folder.name}:{ae}:{n_train}:{n_val}")
    return model.eval()


def load_detectors(world, config: Config | None = None, *, seed: int = 0, egre_checkpoint: str = "",
                   classifier_checkpoint: str = "", figures_root: str | Path | None = None,
                   progress: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """``(name → detector, name → where it came from)`` for ``egre``, ``classifier``,
    ``aeroblade`` and ``mean_lare``.

    A checkpoint path given here wins; else :func:`find_checkpoint` (``figures_root``: the folder
    of this run's notebook outputs, where 02's metrics.json is); else a small detector is
    trained here under ``config`` (default :class:`~lare2lib.studies.nb06_evasion.Config`:
    ``train_per_class``, ``val_per_class`` and the ``train`` protocol). EGRE computes its maps
    with the world's reference LDM (``kl_ldm``; SD v1.5 on GenImage), AEROBLADE takes its minimum
    over the world's AEROBLADE autoencoders.
    """
    from lare2lib.detectors.egre_data import lare_config as config_of
    from lare2lib.detectors.aeroblade import BackboneDistance
    from lare2lib.detectors.registry import load_detector
    from lare2lib.world.weights import world_ldm

    config = config or Config()
    reference = world_ldm(world, world.reference_ldm)
    detectors: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for kind, given in (("egre", egre_checkpoint), ("classifier", classifier_checkpoint)):
        path = Path(given) if given else find_checkpoint(kind, world, seed, figures_root)
        if path is not None:
            detectors[kind], origin[kind] = load_detector(path), f"checkpoint {path}"
        elif kind == "egre":
            detectors[kind], origin[kind] = _train_egre(world, reference, seed, config, progress), \
                f"trained here ({config.training_budget()})"
        else:
            detectors[kind], origin[kind] = _train_classifier(world, seed, config, progress), \
                f"trained here ({config.training_budget()})"
    detectors["egre"].use_reference(reference)
    autoencoders = {name: world.autoencoder(name) for name in world.aeroblade_autoencoders}
    distance = BackboneDistance()
    detectors["aeroblade"] = attacks.Aeroblade(autoencoders, distance, seed=world.profile.seed)
    origin["aeroblade"] = f"training-free: −min {distance.name} distance over {sorted(autoencoders)}"
    lare = detectors["egre"].config["lare"]
    lare_config = config_of(lare)
    detectors["mean_lare"] = attacks.MeanLare(reference, lare_config, seed=seed)
    origin["mean_lare"] = (f"training-free: −mean LaRE ({reference.name}, t={lare_config.timestep}, "
                           f"K={lare_config.ensemble})")
    return detectors, origin
