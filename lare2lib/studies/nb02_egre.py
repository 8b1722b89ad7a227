"""Notebook 02's protocol: EGRE's ablations trained on one generator, tested on every one.

* :func:`world_data` (mini / smoke) and :func:`genimage_data` (full) build the three splits as
  :class:`lare2lib.detectors.egre_data.EgreDataset`s, with the LaRE (and DIRE-style) maps and, for a
  frozen backbone, its features cached under ``<data>/egre/``. Training: real train crops vs
  the training generator's train samples; validation: the held-out real val crops vs its val
  samples (model selection, never a test set); test: the held-out real test crops vs every
  generator's test samples (the cross-generator protocol).
* :data:`ABLATIONS` names the rows of the table: backbone only, + ESR, + ECR, ESR + ECR (EGRE),
  the LaRE-only CNN, EGRE on DIRE maps, EGRE with the released misaligned map.
* :func:`run_ablation` trains each row with :func:`lare2lib.detectors.train.fit` for every seed (runs are
  resumable and a finished run is read back, not retrained) and scores every test set;
  :func:`ablation_summary` gives ``variant → test set → {acc, ap, auc} → {mean, std, n}``.
* Figures and the run's findings: :mod:`lare2lib.studies.nb02_figures`.
* ``lare2 train egre``: :func:`add_train_arguments`, :func:`train_command`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare2lib.detectors.egre_data import (
    EgreDataset,
    LazyImages,
    cache_backbone_features,
    ensure_maps,
    map_store,
    tensor_records,
)

__all__ = [
    "ABLATIONS",
    "ABLATION_LABELS",
    "StudyConfig",
    "EgreData",
    "world_data",
    "genimage_data",
    "build_detector",
    "train_variant",
    "evaluate_detector",
    "shuffled_map_metrics",
    "run_ablation",
    "ablation_summary",
    "ablation_table",
    "add_train_arguments",
    "train_command",
]

ABLATIONS: dict[str, dict[str, Any]] = {
    "backbone": {"variant": "backbone"},
    "esr": {"variant": "esr"},
    "ecr": {"variant": "ecr"},
    "egre": {"variant": "egre"},
    "lare_cnn": {"variant": "lare_cnn"},
    "egre_dire": {"variant": "egre", "feature": "dire"},
    "egre_misaligned": {"variant": "egre", "aligned": False},
}
"""Ablation rows: name → :class:`lare2lib.detectors.egre.EgreDetector` config overrides."""

ABLATION_LABELS: dict[str, str] = {
    "backbone": "backbone only",
    "esr": "+ ESR",
    "ecr": "+ ECR",
    "egre": "ESR + ECR (EGRE)",
    "lare_cnn": "LaRE-only CNN",
    "egre_dire": "EGRE on DIRE maps",
    "egre_misaligned": "EGRE, misaligned map (released)",
}


@dataclass(frozen=True)
class StudyConfig:
    """Data and training budget of the ablation study (defaults: the mini notebook's)."""

    train_per_class: int = 768
    """Training images per class (reals and the training generator's samples), drawn by seed; 0 = all."""
    val_per_class: int = 256
    """Validation images per class (held-out reals, the training generator's val samples); 0 = all."""
    test_per_set: int = 0
    """Test images per set (held-out reals and each generator); 0 = all."""
    train_crops: int = 2
    """Random crop positions per training image (each one item per epoch)."""
    map_batch_size: int = 32
    """Images per extraction batch."""
    feature_batch_size: int = 128
    """Crops per batch when caching frozen backbone features."""
    epochs: int = 12
    """Maximum epochs per run (early stopping on the validation AUC usually ends sooner)."""
    early_stopping: int = 3
    """Epochs without validation improvement before a run stops."""
    batch_size: int = 48
    """Training batch (released: 48)."""
    lr: float = 1e-4
    """Adam learning rate (released: 1e-4; :data:`FROZEN_HEAD_LR` for a head over frozen features)."""
    max_steps: int = 0
    """Cap on optimisation steps per run (0 = none; smoke runs)."""
    num_workers: int = 0
    """DataLoader workers (0: the items are cheap slices of cached tensors)."""
    seed: int = 0
    """Seed of the subsets and crop offsets (the world's maps use the profile seed)."""


# -- data --------------------------------------------------------------------------------------


@dataclass
class EgreData:
    """The three splits with the maps of every feature, ready for any ablation row."""

    train: EgreDataset
    val: EgreDataset
    test: dict[str, EgreDataset]
    """``"real"`` (label 0) and one set per generator (label 1)."""
    maps: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """feature → split (``train``, ``val``, ``test:<name>``) → maps."""
    root: Path = Path(".")
    """Cache folder of this world (maps, features, runs)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each preparation step (maps per feature, backbone features)."""

    def splits(self, feature: str = "lare", aligned: bool = True, with_image: bool = True):
        """``(train, val, {test name: set})`` with ``feature``'s maps and the alignment asked."""
        if feature not in self.maps:
            raise KeyError(f"no {feature!r} maps were built; built: {sorted(self.maps)}")
        maps = self.maps[feature]

        def pick(dataset: EgreDataset, key: str) -> EgreDataset:
            return dataset.options(maps=maps[key], aligned=aligned, with_image=with_image)

        return (pick(self.train, "train"), pick(self.val, "val"),
                {name: pick(ds, f"test:{name}") for name, ds in self.test.items()})


@dataclass
class _Split:
    """Images of one split before they become a dataset: pixels (or files), ids, labels, classes."""

    images: Any
    ids: list[str]
    labels: list[int]
    class_names: list[str | None]
    records: list | None = None
    """Extraction records; None: built from in-memory ``images``."""

    def extraction_records(self) -> list:
        return self.records if self.records is not None else tensor_records(
            self.images, self.ids, self.class_names)


def _subsample(images, count: int, seed: int):
    from lare2lib.data.imagesets import subsample

    return subsample(images, count, seed)


def _join(parts: Sequence[tuple[Any, int]], class_names: Sequence[str]) -> _Split:
    """Concatenate ImageSets with their labels into one split."""
    return _Split(torch.cat([images.pixels for images, _ in parts]),
                  [i for images, _ in parts for i in images.ids],
                  [label for images, label in parts for _ in images.ids],
                  [class_names[int(c)] for images, _ in parts for c in images.class_index])


def world_data(world, detector_config: Mapping[str, Any], study: StudyConfig, *,
               features: Sequence[str] = ("lare",), reference=None,
               progress: bool = True) -> EgreData:
    """The mini (or smoke) world's splits for EGRE, maps and frozen features cached.

    ``reference`` (LDM components of ``detector_config["ldm"]``) is loaded when not given.
    """
    from lare2lib.core import paths

    generator = world.profile.world.train_generator
    names = world.class_names
    pick = lambda images, n, k: _subsample(images, n, study.seed + k)  # noqa: E731
    train = _join([(pick(world.real["train"], study.train_per_class, 0), 0),
                   (pick(world.generated(generator, "train"), study.train_per_class, 1), 1)], names)
    val = _join([(pick(world.real["val"], study.val_per_class, 2), 0),
                 (pick(world.generated(generator, "val"), study.val_per_class, 3), 1)], names)
    tests = {"real": _join([(pick(world.real["test"], study.test_per_set, 4), 0)], names)}
    for spec in world.generators:
        tests[spec.name] = _join([(pick(world.generated(spec.name, "test"), study.test_per_set, 5), 1)],
                                 names)
    root = paths.data_dir() / "egre" / world.folder.name
    return _prepare(train, val, tests, detector_config, study, features, root, reference,
                    world.profile.seed, progress)


def genimage_data(root: str, train_subset: str, detector_config: Mapping[str, Any],
                  study: StudyConfig, *, features: Sequence[str] = ("lare",), reference=None,
                  val_fraction: float = 0.05, seed: int = 0, progress: bool = True) -> EgreData:
    """GenImage: train on ``train_subset``'s ``train`` split (a subset name or a unique part of
    one, e.g. ``sdv4`` for SD V1.4, the benchmark's standard; the released scripts used SD
    V1.5), validate on a ``val_fraction`` of it held out by image id, test on every subset's
    ``val`` split (what the paper reports as test). Images stay on disk (:class:`LazyImages`)."""
    from lare2lib.core import paths
    from lare2lib.core.rng import image_seed
    from lare2lib.data.manifests import discover_genimage, genimage_records
    from lare2lib.data.store import config_hash

    subsets = sorted(discover_genimage(root))
    chosen = [name for name in subsets if train_subset == name or train_subset in name]
    if len(chosen) != 1:
        raise ValueError(f"training subset {train_subset!r} matches {chosen or 'nothing'}; "
                         f"GenImage subsets under {root}: {subsets}")
    records = genimage_records(root, chosen[0], "train")
    held_out = lambda r: image_seed(seed, r.image_id, "egre-val") % 10_000 < val_fraction * 10_000  # noqa: E731
    split = lambda rs: _Split(LazyImages(rs), [r.image_id for r in rs],  # noqa: E731
                              [int(r.label) for r in rs], [r.class_name for r in rs], list(rs))
    train = split([r for r in records if not held_out(r)])
    val = split([r for r in records if held_out(r)])
    tests = {}
    for name in subsets:
        test_records = genimage_records(root, name, "val")
        tests[f"{name}:real"] = split([r for r in test_records if r.label == 0])
        tests[name] = split([r for r in test_records if r.label == 1])
    cache = paths.data_dir() / "egre" / f"genimage-{config_hash({'root': str(Path(root).resolve())})}"
    return _prepare(train, val, tests, detector_config, study, features, cache, reference, seed,
                    progress)


def _prepare(train: _Split, val: _Split, tests: dict[str, _Split], config: Mapping[str, Any],
             study: StudyConfig, features: Sequence[str], root: Path, reference, map_seed: int,
             progress: bool) -> EgreData:
    from lare2lib.models.backbones import FeatureBackbone

    splits = {"train": train, "val": val, **{f"test:{k}": v for k, v in tests.items()}}
    data_seconds: dict[str, float] = {}
    if reference is None:
        from lare2lib.models.loaders import load_ldm

        reference = load_ldm(config["ldm"])
    maps: dict[str, dict[str, torch.Tensor]] = {}
    for feature in features:
        started = time.perf_counter()
        maps[feature] = _feature_maps(feature, splits, config, study, reference, root, map_seed,
                                      progress)
        data_seconds[f"maps_{feature}"] = time.perf_counter() - started
    first = maps[features[0]]
    backbone = None
    if config.get("variant") != "lare_cnn" or config.get("freeze_backbone"):
        backbone = FeatureBackbone.from_ref(config["backbone"], pretrained=config.get("pretrained", True),
                                            **config.get("backbone_kwargs", {}))
    mean, std = (backbone.input_mean, backbone.input_std) if backbone else ((0.5,) * 3, (0.5,) * 3)

    def dataset(key: str, is_train: bool) -> EgreDataset:
        part = splits[key]
        return EgreDataset(part.images, part.ids, part.labels, first[key], crop=config["crop_size"],
                           lare_size=config["lare"]["image_size"], mean=mean, std=std,
                           train=is_train, crops_per_image=study.train_crops, seed=study.seed)

    data = EgreData(dataset("train", True), dataset("val", False),
                    {name: dataset(f"test:{name}", False) for name in tests}, maps, root,
                    data_seconds)
    if config.get("freeze_backbone") and backbone is not None:
        started = time.perf_counter()
        key = {"backbone": config["backbone"], "pretrained": config.get("pretrained", True),
               "backbone_kwargs": config.get("backbone_kwargs", {}), "crop": config["crop_size"],
               "seed": study.seed, "crops": study.train_crops}
        cache_backbone_features([data.train, data.val, *data.test.values()], backbone, root, key,
                                batch_size=study.feature_batch_size, progress=progress)
        data_seconds["backbone_features"] = time.perf_counter() - started
    return data


def _feature_maps(feature: str, splits: dict[str, _Split], config: Mapping[str, Any],
                  study: StudyConfig, reference, root: Path, map_seed: int,
                  progress: bool) -> dict[str, torch.Tensor]:
    from lare2lib.core.profiles import LareConfig
    from lare2lib.signals.extract import make_extractor

    lare = config["lare"]
    lare_config = LareConfig(timestep=lare["timestep"], ensemble=lare["ensemble"],
                             image_size=lare["image_size"], prompt=lare["prompt"],
                             batch_size=study.map_batch_size)
    # the detector config is the one source of the DIRE step count (score_images reads it too)
    options = {"steps": config.get("dire_steps", 20), "space": "latent"} if feature == "dire" else {}
    extractor = make_extractor(feature, reference, lare_config, seed=map_seed, **options)
    store = map_store(root / "maps", extractor, config["ldm"], lare["prompt"])
    return {key: ensure_maps(store, extractor, reference, part.extraction_records(), lare_config,
                             batch_size=study.map_batch_size,
                             num_workers=study.num_workers if part.records else 0,
                             progress=progress)
            for key, part in splits.items()}


# -- training and evaluation -------------------------------------------------------------------


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_detector(config: Mapping[str, Any], seed: int):
    """An :class:`EgreDetector` whose new layers are initialised from ``seed`` alone."""
    from lare2lib.detectors.egre import EgreDetector

    with _seeded(seed):
        return EgreDetector(**config)


def _train_config(study: StudyConfig, seed: int, **overrides: Any):
    from lare2lib.detectors.train import TrainConfig

    return TrainConfig(epochs=study.epochs, batch_size=study.batch_size, lr=study.lr,
                       early_stopping=study.early_stopping, seed=seed,
                       num_workers=study.num_workers, max_steps=study.max_steps,
                       eval_batch_size=256, **overrides)


def _fingerprint(*datasets: EgreDataset) -> str:
    from lare2lib.data.store import manifest_hash

    parts = [manifest_hash(ds.item_ids()) + f"/{ds.aligned}/{float(ds.maps.sum()):.6e}"
             for ds in datasets]
    return "|".join(parts)


def train_variant(config: Mapping[str, Any], data: EgreData, study: StudyConfig, seed: int,
                  out_dir: str | Path, *, progress: bool = False, test_set=None,
                  **train_overrides: Any):
    """Train one detector config on ``data``; returns ``(model with best weights, FitResult)``.

    A run directory that already holds this finished run is read back, not retrained.
    """
    from lare2lib.detectors.train import fit

    model = build_detector(config, seed)
    train, val, _ = data.splits(config.get("feature", "lare"), config.get("aligned", True),
                                with_image=config.get("variant") != "lare_cnn")
    if not model.config["freeze_backbone"]:  # a fine-tuned backbone must see the pixels
        train, val = _without_features(train), _without_features(val)
    result = fit(model, train, val, _train_config(study, seed, **train_overrides), out_dir,
                 test_set=test_set, progress=progress, data_fingerprint=_fingerprint(train, val))
    return model, result


def _without_features(dataset: EgreDataset) -> EgreDataset:
    copy = dataset.options()
    copy.features = None
    return copy


def evaluate_detector(model, tests: Mapping[str, EgreDataset], *, bootstrap: int = 0,
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """Metrics per test set and their ``"mean"`` (:func:`lare2lib.eval.metrics.real_vs_sets`).

    The world's layout: one ``"real"`` set against every generator. GenImage's: each subset
    ``X`` against its own reals ``"X:real"``.
    """
    from lare2lib.detectors.train import predict
    from lare2lib.eval import metrics

    if not model.config["freeze_backbone"]:
        tests = {name: _without_features(ds) for name, ds in tests.items()}
    scores = {name: predict(model, ds, batch_size=256, progress=False)[0]
              for name, ds in tests.items()}
    if "real" in scores:
        return metrics.real_vs_sets(scores.pop("real"), scores, bootstrap=bootstrap, seed=seed)
    table = {name: metrics.real_vs_sets(scores[f"{name}:real"], {name: scores[name]},
                                        bootstrap=bootstrap, seed=seed)[name]
             for name in scores if not name.endswith(":real")}
    scalar = [k for k, v in next(iter(table.values())).items() if isinstance(v, float)]
    table["mean"] = {k: float(np.mean([row[k] for row in table.values()])) for k in scalar}
    return table


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
        tests = {name: _without_features(ds) for name, ds in tests.items()}
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


def run_ablation(data: EgreData, base_config: Mapping[str, Any], study: StudyConfig,
                 seeds: Sequence[int], variants: Sequence[str] = tuple(ABLATIONS), *,
                 progress: bool = True) -> dict[str, dict[int, dict[str, Any]]]:
    """Train and test every ablation row for every seed.

    Returns ``variant → seed → {"metrics": real_vs_sets table, "best_epoch", "epochs",
    "steps", "seconds", "checkpoint"}``. Runs live under ``data.root/runs``.
    """
    from tqdm.auto import tqdm

    results: dict[str, dict[int, dict[str, Any]]] = {}
    jobs = [(name, seed) for name in variants for seed in seeds]
    for name, seed in tqdm(jobs, desc="ablation runs", disable=not progress):
        head_only = base_config.get("freeze_backbone") and ABLATIONS[name]["variant"] != "lare_cnn"
        with _threads(1 if head_only else None):
            results.setdefault(name, {})[seed] = _ablation_run(data, base_config, study, name, seed)
    return results


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` torch threads (None: unchanged). Head-only steps on cached
    features are a few small matrix products: split over threads they only wait on each other."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ablation_run(data: EgreData, base_config: Mapping[str, Any], study: StudyConfig, name: str,
              seed: int) -> dict[str, Any]:
    """One (row, seed): train (or read back a finished run), then score every test set."""
    from lare2lib.data.store import config_hash

    config = {**base_config, **ABLATIONS[name]}
    train, val, _ = data.splits(config.get("feature", "lare"), config.get("aligned", True))
    key = config_hash({"config": config, "study": dataclasses.asdict(study),
                       "data": _fingerprint(train, val)})
    out_dir = data.root / "runs" / f"{name}-seed{seed}-{key}"
    started = time.perf_counter()
    model, fit_result = train_variant(config, data, study, seed, out_dir)
    _, _, tests = data.splits(config.get("feature", "lare"), config.get("aligned", True),
                              with_image=config.get("variant") != "lare_cnn")
    return {
        "metrics": evaluate_detector(model, tests),
        "best_epoch": fit_result.best_epoch, "epochs": len(fit_result.history),
        "steps": fit_result.steps, "best_val_auc": fit_result.best_metric,
        "resumed": fit_result.resumed_from is not None,
        "seconds": time.perf_counter() - started, "checkpoint": str(fit_result.best_checkpoint),
    }


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


# -- `lare2 train egre` ------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``lare2 train egre``; unset ones follow the profile and :class:`StudyConfig`."""
    from lare2lib.detectors.egre import FEATURES, VARIANTS

    add = parser.add_argument
    add("--profile", default="mini", help="mini (the built world), smoke, or full (GenImage)")
    add("--variant", choices=VARIANTS, default="egre", help="ablation variant (default egre)")
    add("--feature", choices=FEATURES, default="lare", help="error map guiding the head")
    add("--misaligned", action="store_true",
        help="feed the whole map whatever the crop (the released behaviour)")
    add("--backbone", help="timm name or local classifier file (default: the profile's)")
    add("--backbone-mode", choices=("frozen", "finetune"),
        help="train the head over fixed features (mini default) or fine-tune all (full default, released)")
    add("--crop-size", type=int, help="image crop side (default: full 224, mini 48, smoke 24)")
    add("--seed", type=int, default=0, help="seed of the head's initialisation, data order and dropout")
    add("--epochs", type=int, help="maximum epochs")
    add("--early-stopping", type=int, help="epochs without validation improvement before stopping")
    add("--batch-size", type=int, help="training batch (default 48)")
    add("--lr", type=float, help="Adam learning rate (default: 1e-4, released; 1e-3 over a frozen backbone)")
    add("--max-steps", type=int, help="cap on optimisation steps (smoke runs)")
    add("--train-per-class", type=int, help="training images per class (mini; 0 = all)")
    add("--val-per-class", type=int, help="validation images per class (mini; 0 = all)")
    add("--train-crops", type=int, help="random crop positions per training image")
    add("--dire-steps", type=int, help="DDIM steps each way of the DIRE-style map (full: 20, mini: 4)")
    add("--select-on-test", action="store_true",
        help="reproduce the released fault: pick the scheduler/best model on the test sets")
    add("--data-root", help="full profile: the GenImage root (default: the profile's data_root)")
    add("--train-subset", default="sdv4",
        help="full profile: GenImage training subset (sdv4 = SD V1.4, the standard; sdv5 as released)")
    add("--run-dir", help="folder of the resumable run (default: under the data folder)")
    add("--out", required=True, help="where to write the best checkpoint (.safetensors)")
    add("--num-workers", type=int, default=0, help="DataLoader workers")
    add("--no-progress", action="store_true", help="no progress bars")
    return parser


def _cli_setup(args: argparse.Namespace):
    from lare2lib.core.profiles import get_profile
    from lare2lib.detectors.egre import default_config

    profile = get_profile(args.profile)
    overrides = {"variant": args.variant, "feature": args.feature, "aligned": not args.misaligned}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.backbone_mode:
        overrides["freeze_backbone"] = args.backbone_mode == "frozen"
    if args.crop_size:
        overrides["crop_size"] = args.crop_size
    if args.dire_steps:
        overrides["dire_steps"] = args.dire_steps
    elif args.feature == "dire" and profile.name != "full":
        overrides["dire_steps"] = MINI_DIRE_STEPS
    config = default_config(profile, **overrides)
    study_fields = {"epochs": args.epochs, "early_stopping": args.early_stopping,
                    "batch_size": args.batch_size, "lr": args.lr, "max_steps": args.max_steps,
                    "train_per_class": args.train_per_class, "val_per_class": args.val_per_class,
                    "train_crops": args.train_crops}
    if args.lr is None and config["freeze_backbone"]:
        study_fields["lr"] = FROZEN_HEAD_LR
    study = StudyConfig(**{k: v for k, v in study_fields.items() if v is not None},
                        num_workers=args.num_workers, seed=profile.seed)
    if profile.smoke:
        study = dataclasses.replace(study, **{k: v for k, v in SMOKE_STUDY.items()
                                              if study_fields.get(k) is None})
    return profile, config, study


FROZEN_HEAD_LR = 1e-3
"""Learning rate of a head trained over a frozen backbone (the mini default): the released 1e-4
is for fine-tuning all of CLIP, and leaves a head of tens of thousands of weights unconverged
within the mini epoch budget (measured: backbone-only still improving at epoch 15)."""

MINI_DIRE_STEPS = 4
"""DDIM steps each way of the DIRE-style maps in the mini and smoke worlds (DIRE: 20 + 20),
fewer to fit the CPU budget; ``--dire-steps`` / the notebook's ``DIRE_STEPS`` change it."""

SMOKE_STUDY: dict[str, int] = {"train_per_class": 0, "val_per_class": 0, "epochs": 2,
                               "train_crops": 2}
"""Smoke budgets (every image of the tiny world, two epochs)."""


def train_command(args: argparse.Namespace) -> int:
    """Build the data (maps cached), train, copy the best checkpoint to ``--out``, print metrics."""
    from lare2lib.data.store import config_hash
    from lare2lib.detectors.registry import load_detector

    profile, config, study = _cli_setup(args)
    progress = not args.no_progress
    if profile.name == "full":
        data_root = args.data_root or profile.data_root
        if not data_root:
            raise ValueError("the full profile trains on GenImage: pass --data-root <GenImage root>")
        data = genimage_data(data_root, args.train_subset, config, study, features=(config["feature"],),
                             seed=args.seed, progress=progress)
    else:
        from lare2lib.world.build import load_world

        world = load_world(profile, progress=progress)
        data = world_data(world, config, study, features=(config["feature"],), progress=progress)
    key = config_hash({"config": config, "study": dataclasses.asdict(study),
                       "select_on_test": args.select_on_test})
    run_dir = Path(args.run_dir) if args.run_dir else data.root / "runs" / f"cli-{args.variant}-seed{args.seed}-{key}"
    overrides = {}
    test_set = None
    if args.select_on_test:
        overrides["select_on_test"] = True
        test_set = torch.utils.data.ConcatDataset(list(data.splits(config["feature"], config["aligned"])[2].values()))
        test_set.labels = torch.cat([ds.labels for ds in test_set.datasets])
    started = time.perf_counter()
    model, result = train_variant(config, data, study, args.seed, run_dir, progress=progress,
                                  test_set=test_set, **overrides)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.best_checkpoint, out)
    reloaded = load_detector(out)
    _, _, tests = data.splits(config["feature"], config["aligned"], with_image=config["variant"] != "lare_cnn")
    table = {name: {k: round(float(row[k]), 4) for k in ("acc", "ap", "auc")}
             for name, row in evaluate_detector(reloaded, tests).items()}
    print(json.dumps({"checkpoint": str(out), "run_dir": str(run_dir), "best_epoch": result.best_epoch,
                      "best_val_" + ("test" if args.select_on_test else "auc"): result.best_metric,
                      "seconds": round(time.perf_counter() - started, 1), "test": table},
                     indent=1, default=float))
    return 0

