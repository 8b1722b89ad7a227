"""EGRE's three splits from the mini (smoke) world or GenImage, with their maps and features cached.

* :func:`world_data` (mini / smoke) and :func:`genimage_data` (full) build the splits as
  :class:`lare2lib.detectors.egre_data.EgreDataset`s, with the LaRE (and DIRE-style) maps and, for a
  frozen backbone, its features cached under ``<data>/egre/``. Training: real train crops vs
  the training generator's train samples; validation: the held-out real val crops vs its val
  samples (model selection, never a test set); test: the held-out real test crops vs every
  generator's test samples (the cross-generator protocol).
* :class:`SplitBudget`: how many images each split draws and how they are cut.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lare2lib.detectors.egre_data import (
    EgreDataset,
    LazyImages,
    ensure_maps,
    map_store,
    normalise,
    tensor_records,
)

__all__ = ["SplitBudget", "EgreData", "world_data", "genimage_data", "cache_backbone_features"]


@dataclass(frozen=True)
class SplitBudget:
    """How many images each split draws and how they are cut (defaults: the mini protocol)."""

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
    seed: int = 0
    """Seed of the subsets and crop offsets (the world's maps use the profile seed)."""

    @classmethod
    def smoke(cls):
        """The smoke budget: every image of the tiny world, two crops each."""
        return cls(train_per_class=0, val_per_class=0, train_crops=2)


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


def world_data(world, detector_config: Mapping[str, Any], budget: SplitBudget, *,
               features: Sequence[str] = ("lare",), reference=None,
               progress: bool = True) -> EgreData:
    """The mini (or smoke) world's splits for EGRE, maps and frozen features cached.

    ``reference`` (LDM components of ``detector_config["ldm"]``) is loaded when not given.
    """
    from lare2lib.core import paths

    generator = world.train_generator
    names = world.class_names
    pick = lambda images, n, k: _subsample(images, n, budget.seed + k)  # noqa: E731
    train = _join([(pick(world.real["train"], budget.train_per_class, 0), 0),
                   (pick(world.generated(generator, "train"), budget.train_per_class, 1), 1)], names)
    val = _join([(pick(world.real["val"], budget.val_per_class, 2), 0),
                 (pick(world.generated(generator, "val"), budget.val_per_class, 3), 1)], names)
    tests = {"real": _join([(pick(world.real["test"], budget.test_per_set, 4), 0)], names)}
    for spec in world.generators:
        tests[spec.name] = _join([(pick(world.generated(spec.name, "test"), budget.test_per_set, 5), 1)],
                                 names)
    root = paths.data_dir() / "egre" / world.folder.name
    return _prepare(train, val, tests, detector_config, budget, features, root, reference,
                    world.profile.seed, progress)


def genimage_data(root: str, train_subset: str, detector_config: Mapping[str, Any],
                  budget: SplitBudget, *, features: Sequence[str] = ("lare",), reference=None,
                  val_fraction: float = 0.05, seed: int = 0, num_workers: int = 0,
                  val_classes: str | os.PathLike | None = None, progress: bool = True) -> EgreData:
    """GenImage: train on ``train_subset``'s ``train`` split (a subset name or a unique part of
    one, e.g. ``sdv4`` for SD V1.4, the benchmark's standard; the released scripts used SD
    V1.5), validate on a ``val_fraction`` of it held out by image id, test on every subset's
    ``val`` split (what the paper reports as test). Images stay on disk (:class:`LazyImages`);
    ``num_workers`` processes decode them for the map extraction. ``val_classes``: the classes
    of the ``ILSVRC2012_val_*`` reals (the release's ``anns/filename_to_folder.json``); without
    it, under the ``class`` prompt policy, the build refuses (:func:`check_classes_by_label`)."""
    from lare2lib.core import paths
    from lare2lib.data.manifests import discover_genimage, genimage_records
    from lare2lib.data.store import config_hash

    subsets = sorted(discover_genimage(root))
    chosen = [name for name in subsets if train_subset == name or train_subset in name]
    if len(chosen) != 1:
        raise ValueError(f"training subset {train_subset!r} matches {chosen or 'nothing'}; "
                         f"GenImage subsets under {root}: {subsets}")
    records = genimage_records(root, chosen[0], "train", val_classes=val_classes)
    split = lambda rs: _Split(LazyImages(rs), [r.image_id for r in rs],  # noqa: E731
                              [int(r.label) for r in rs], [r.class_name for r in rs], list(rs))
    train_records, val_records = held_out_split(records, val_fraction, seed)
    train, val = split(train_records), split(val_records)
    tests = {}
    for name in subsets:
        test_records = genimage_records(root, name, "val", val_classes=val_classes)
        tests[f"{name}:real"] = split([r for r in test_records if r.label == 0])
        tests[name] = split([r for r in test_records if r.label == 1])
    # reals and fakes are extracted as separate sets: check the prompts over all of them at once
    check_classes_by_label([train, val, *tests.values()], detector_config["lare"]["prompt"])
    # the val reals' prompts (so their maps) depend on the class mapping: it keys the cache too
    key = {"root": str(Path(root).resolve())}
    if val_classes is not None:
        from lare2lib.world.weights import sha256_file

        key["val_classes"] = sha256_file(Path(val_classes))
    cache = paths.data_dir() / "egre" / f"genimage-{config_hash(key)}"
    return _prepare(train, val, tests, detector_config, budget, features, cache, reference, seed,
                    progress, num_workers)


def held_out_split(records: Sequence, fraction: float, seed: int) -> tuple[list, list]:
    """``(train, val)`` records: ``fraction`` of them held out by a hash of (seed, image id).

    Each label keeps at least one validation image (a small training folder would otherwise
    leave validation with one class or none, and model selection with no AUC to read).
    """
    from lare2lib.core.rng import image_seed

    rank = {r.image_id: image_seed(seed, r.image_id, "egre-val") % 10_000 for r in records}
    chosen = {r.image_id for r in records if rank[r.image_id] < fraction * 10_000}
    for label in sorted({int(r.label) for r in records}):
        of_label = [r for r in records if int(r.label) == label]
        if len(of_label) > 1 and not any(r.image_id in chosen for r in of_label):
            chosen.add(min(of_label, key=lambda r: (rank[r.image_id], r.image_id)).image_id)
    return ([r for r in records if r.image_id not in chosen],
            [r for r in records if r.image_id in chosen])


def check_classes_by_label(splits: Sequence[_Split], policy: str) -> None:
    """Refuse, naming the fix, when under ``policy`` one label would get class prompts and another
    none, over all ``splits`` together (:func:`lare2lib.signals.prompts.check_prompts_by_label`)."""
    from lare2lib.signals.prompts import check_prompts_by_label, prompt_for

    names = [name for part in splits for name in part.class_names]
    labels = [label for part in splits for label in part.labels]
    check_prompts_by_label([prompt_for(policy, name) for name in names], labels)


def _prepare(train: _Split, val: _Split, tests: dict[str, _Split], config: Mapping[str, Any],
             budget: SplitBudget, features: Sequence[str], root: Path, reference, map_seed: int,
             progress: bool, num_workers: int = 0) -> EgreData:
    from lare2lib.models.backbones import FeatureBackbone

    splits = {"train": train, "val": val, **{f"test:{k}": v for k, v in tests.items()}}
    data_seconds: dict[str, float] = {}
    if reference is None:
        from lare2lib.models.ldm import load_ldm

        reference = load_ldm(config["ldm"])
    maps: dict[str, dict[str, torch.Tensor]] = {}
    for feature in features:
        started = time.perf_counter()
        maps[feature] = _feature_maps(feature, splits, config, budget, reference, root, map_seed,
                                      progress, num_workers)
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
                           train=is_train, crops_per_image=budget.train_crops, seed=budget.seed)

    data = EgreData(dataset("train", True), dataset("val", False),
                    {name: dataset(f"test:{name}", False) for name in tests}, maps, root,
                    data_seconds)
    if config.get("freeze_backbone") and backbone is not None:
        started = time.perf_counter()
        key = {"backbone": config["backbone"], "pretrained": config.get("pretrained", True),
               "backbone_kwargs": config.get("backbone_kwargs", {}), "crop": config["crop_size"],
               "seed": budget.seed, "crops": budget.train_crops}
        cache_backbone_features([data.train, data.val, *data.test.values()], backbone, root, key,
                                batch_size=budget.feature_batch_size, progress=progress)
        data_seconds["backbone_features"] = time.perf_counter() - started
    return data


def _feature_maps(feature: str, splits: dict[str, _Split], config: Mapping[str, Any],
                  budget: SplitBudget, reference, root: Path, map_seed: int,
                  progress: bool, num_workers: int) -> dict[str, torch.Tensor]:
    from lare2lib.detectors.egre_data import lare_config as config_of
    from lare2lib.signals.extract import make_extractor

    lare = config["lare"]
    lare_config = config_of(lare, batch_size=budget.map_batch_size)
    # the detector config is the one source of the DIRE step count (score_images reads it too)
    options = ({"steps": config.get("dire_steps", 20), "space": "latent", "resize": "squash"}
               if feature == "dire" else {})  # squash as LaRE: the map covers the whole image
    extractor = make_extractor(feature, reference, lare_config, seed=map_seed, **options)
    store = map_store(root / "maps", extractor, config["ldm"], lare["prompt"])
    return {key: ensure_maps(store, extractor, reference, part.extraction_records(), lare_config,
                             batch_size=budget.map_batch_size,
                             num_workers=num_workers if part.records else 0,
                             progress=progress)
            for key, part in splits.items()}


# -- frozen backbone features ------------------------------------------------------------------


@torch.inference_mode()
def cache_backbone_features(datasets: Sequence[EgreDataset], backbone, root: str | os.PathLike,
                            key: dict[str, Any], *, batch_size: int = 128,
                            progress: bool = True) -> None:
    """Compute (or read) a frozen backbone's ``(F, x_g)`` for every item; attach to the datasets.

    Stored flat (``C·H·W + D`` floats per crop) in a :class:`FeatureStore` under ``root``
    keyed by ``key`` (backbone, weights, crop size: what the features depend on).
    """
    from tqdm.auto import tqdm

    from lare2lib.data.store import FeatureStore, config_hash

    store = FeatureStore(Path(root) / f"backbone-{config_hash(key)}", key)
    backbone.eval()
    parameter = next(backbone.parameters())
    shape = None
    for dataset in datasets:
        item_ids = dataset.item_ids()
        first = {item_id: i for i, item_id in reversed(list(enumerate(item_ids)))}
        todo = [i for item_id, i in first.items() if item_id not in store]
        for start in tqdm(range(0, len(todo), batch_size), desc="backbone features",
                          disable=not progress or not todo):
            chunk = todo[start:start + batch_size]
            pixels = torch.stack([normalise(dataset.crop_image(i), dataset.mean, dataset.std)
                                  for i in chunk]).to(parameter.device, parameter.dtype)
            feature_map, global_vector = backbone(pixels)
            shape = tuple(feature_map.shape[1:])
            flat = torch.cat([feature_map.flatten(1), global_vector], dim=1).float().cpu()
            store.append([item_ids[i] for i in chunk], flat)
        store.flush()
        if shape is None:
            shape = _probe_shape(backbone, dataset)
        dataset.features = store.get(item_ids)
        dataset.feature_shape = shape


def _probe_shape(backbone, dataset: EgreDataset) -> tuple[int, int, int]:
    parameter = next(backbone.parameters())
    pixels = normalise(dataset.crop_image(0), dataset.mean, dataset.std)[None]
    return tuple(backbone(pixels.to(parameter.device, parameter.dtype))[0].shape[1:])
