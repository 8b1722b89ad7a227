"""Notebook 00 in the full profile: what this machine has for the paper's setting, and what the
later notebooks will cost on it.

The mini profile's notebook 00 builds a world; the full profile's world is GenImage and the hub's
models, so 00 instead takes stock:

* :func:`genimage_inventory`: images per subset, split and label of a GenImage folder (file names
  only: nothing is decoded), and how many val reals the class mapping covers;
* :func:`unit_costs`: seconds per image of the operations the later notebooks repeat (a LaRE map,
  one UNet step, an autoencoder reconstruction, a classifier training step, a backbone forward),
  each timed on this device with the profile's own models (one warm-up, best of two);
* :func:`notebook_costs`: per later notebook, its dominant operations at the full budget times
  those unit costs: an estimate (it leaves out data loading, scoring heads and figures).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

__all__ = ["UNITS", "genimage_inventory", "unit_costs", "notebook_workloads", "notebook_costs", "metrics_record"]

UNITS: dict[str, str] = {
    "lare": "one LaRE map (VAE encode + K = 4 noise predictions of the reference LDM)",
    "unet_step": "one VAE encode + one UNet noise prediction (a DIRE step, a loss-over-t point)",
    "reconstruction": "one autoencoder encode + decode (reconstruction pairs, AEROBLADE)",
    "classifier_step": "one image through the reconstruction classifier, forward and backward",
    "backbone": "one image through EGRE's backbone, forward only",
}
"""The operations whose per-image cost :func:`unit_costs` measures."""

WILD_IMAGES = 121
"""Notebook 08's in-the-wild set: 56 generated images and 65 windows of 13 held-out photos."""


def genimage_inventory(root: str | Path, val_classes: str | Path | None = None) -> pd.DataFrame:
    """Images per (subset, split, label) under a GenImage root, from file names; ``classed``:
    how many carry an ImageNet class (from the name, or the ``val_classes`` mapping)."""
    from lare2lib.data.imagenet import class_index_from_filename, load_val_classes
    from lare2lib.data.manifests import discover_genimage
    from lare2lib.world.genimage import generator_tag, image_files

    mapping = load_val_classes(val_classes) if val_classes else None
    rows = []
    for subset, splits in discover_genimage(root).items():
        for split, labels in splits.items():
            for label, folder in labels.items():
                names = [p.name for p in image_files(folder)]
                classed = sum(class_index_from_filename(n, val_classes=mapping) is not None for n in names)
                rows.append({"generator": generator_tag(subset), "subset": subset, "split": split,
                             "label": label, "images": len(names), "classed": classed})
    return pd.DataFrame(rows, columns=["generator", "subset", "split", "label", "images", "classed"])


def _best_of_two(run: Callable[[], Any], images: int) -> float:
    run()  # warm-up: first-call allocations, kernel selection
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings) / images


def _lare_units(profile, images: int, seed: int) -> dict[str, float]:
    import dataclasses

    from lare2lib.models.ldm import load_ldm
    from lare2lib.signals.lare import LareExtractor

    components = load_ldm(profile.models.ldm, device=profile.device, dtype=profile.dtype)
    size = profile.lare.image_size
    pixels = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    ids, prompts = [f"probe{k}" for k in range(images)], ["a photo"] * images
    units = {}
    for name, ensemble in (("lare", profile.lare.ensemble), ("unet_step", 1)):
        extractor = LareExtractor(components, dataclasses.replace(profile.lare, ensemble=ensemble), seed=seed)
        units[name] = _best_of_two(lambda: extractor(pixels.to(extractor.device), ids, prompts), images)
    return units


def _reconstruction_unit(profile, images: int, seed: int) -> float:
    from lare2lib.models.autoencoders import load_autoencoder
    from lare2lib.world.autoencoder_training import reconstruct

    ae = load_autoencoder(profile.models.recon_autoencoder, device=profile.device, dtype=profile.dtype)
    pixels = torch.randint(0, 256, (images, 3, 256, 256), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))
    ids = [f"probe{k}" for k in range(images)]
    return _best_of_two(lambda: reconstruct(ae, pixels, seed, ids, batch_size=images), images)


def _network_unit(model: torch.nn.Module, size: int, images: int, backward: bool) -> float:
    from lare2lib.models.devices import resolve_device

    device = resolve_device("auto")
    model = model.to(device).train(backward)
    x = torch.rand(images, 3, size, size, device=device)

    def step() -> None:
        with torch.set_grad_enabled(backward):
            out = model(x)
            if backward:
                out.float().sum().backward()

    return _best_of_two(step, images)


def unit_costs(profile, *, images: int = 2, seed: int = 0) -> tuple[dict[str, float | None], dict[str, str]]:
    """``(unit → seconds per image, unit → why it was not measured)`` for :data:`UNITS`, timed on
    ``images`` random images with the profile's models on its device. A model not on this
    machine leaves its units ``None``, with the loader's message as the reason."""
    from lare2lib.detectors.recon_classifier import default_crop
    from lare2lib.models.backbones import FeatureBackbone, create_classifier

    classifier = profile.models.recon_classifiers[0]
    probes: dict[str, Callable[[], Any]] = {
        "lare": lambda: _lare_units(profile, images, seed),
        "reconstruction": lambda: {"reconstruction": _reconstruction_unit(profile, images, seed)},
        "classifier_step": lambda: {"classifier_step": _network_unit(
            create_classifier(classifier, pretrained=False), default_crop(profile, classifier), images, True)},
        "backbone": lambda: {"backbone": _network_unit(
            FeatureBackbone.from_ref(profile.models.egre_backbone, pretrained=False), 224, images, False)},
    }
    costs: dict[str, float | None] = dict.fromkeys(UNITS)
    missing: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            costs.update(probe())
        except (OSError, RuntimeError, ValueError) as error:  # ModelNotAvailableError is a RuntimeError
            missing[name] = str(error).splitlines()[0]
    return costs, missing


def _sizes(inventory: pd.DataFrame, train_generator: str) -> dict[str, int]:
    of = inventory.groupby(["generator", "split"])["images"].sum()
    val = inventory[inventory["split"] == "val"]
    return {"train_subset_train": int(of.get((train_generator, "train"), 0)),
            "val_all": int(val["images"].sum()), "subsets": int(inventory["generator"].nunique())}


def notebook_workloads(inventory: pd.DataFrame, train_generator: str = "sdv4") -> dict[str, dict[str, int]]:
    """Notebook → unit → how many times it runs at the full budget (dominant operations only).

    Counts follow each notebook's default budget: 01's maps, curves and ensemble study over the
    reals and every subset; 02's LaRE and 20 + 20-step DIRE maps of every image it reads and one
    backbone pass per training crop (frozen backbone, features cached) or 12 epochs of them
    (fine-tuned is not the default); 03's pairs, three seeds of training, AEROBLADE over three
    autoencoders and mean LaRE; 04's three autoencoder rows and 05's four levels (pairs and a
    1536-image, 3-epoch training each); 06's post-processing grid (EGRE and mean LaRE, AEROBLADE,
    the classifier) and PGD (a backward pass costs about two forwards); 08's wild set in two
    conditions (LaRE and DIRE maps shared by 21 EGRE checkpoints, AEROBLADE over three autoencoders).
    """
    from lare2lib.studies import nb01_lare, nb02_egre, nb03_recon, nb06_evasion
    from lare2lib.world.genimage import Budget

    n = _sizes(inventory, train_generator)
    sets = n["subsets"] + 1  # every subset's fakes and the reals
    b01, b02, b03, world = nb01_lare.Config(), nb02_egre.Config(), nb03_recon.Config(), Budget()
    steps = len(b01.timesteps)
    read02 = 2 * b02.train_per_class + 2 * b02.val_per_class + n["val_all"]
    test03 = world.test_images * sets
    pairs03 = world.train_images + world.val_images + world.test_images
    b06 = nb06_evasion.Config()
    images06 = b06.n_real + b06.n_fake * n["subsets"]
    levels06 = sum(len(levels) for levels in b06.grid().values())
    pgd06 = b06.pgd_images * len(b06.budgets()) * b06.pgd_steps  # attack steps per detector
    return {
        "01_lare": {"lare": sets * b01.n_images + 4 * b01.cost_images,
                    "unet_step": sets * (b01.curve_images * steps + b01.ensemble_images * max(b01.ks))
                    + 2 * b01.dire_steps * b01.cost_images},
        "02_egre_ablations": {"lare": read02, "unet_step": 2 * 20 * read02,
                              "backbone": 2 * b02.train_per_class * b02.train_crops + 2 * b02.val_per_class
                              + n["val_all"]},
        "03_ae_reconstruction": {"reconstruction": pairs03 + 4 * test03,
                                 "classifier_step": b03.n_seeds * b03.train_images
                                 + b03.n_seeds * b03.tries * test03 // 3,
                                 "lare": test03},
        "04_autoencoder_family": {"reconstruction": 3 * pairs03, "classifier_step": 3 * 1536 * 3},
        "05_training_resolution": {"reconstruction": 4 * pairs03, "classifier_step": 4 * 1536 * 3},
        # EGRE and mean LaRE: one map per image and level; a PGD step is a forward and a backward (≈ 3 forwards)
        "06_evasion": {"lare": 2 * (levels06 + 1) * images06 + 2 * 3 * pgd06,
                       "reconstruction": 3 * (levels06 + 1) * images06,
                       "classifier_step": (levels06 + 1) * images06 // 3 + pgd06},
        "08_in_the_wild": {"lare": 2 * WILD_IMAGES, "unet_step": 2 * 40 * WILD_IMAGES,
                           "reconstruction": 2 * 3 * WILD_IMAGES, "backbone": 2 * 21 * WILD_IMAGES},
    }


def notebook_costs(workloads: Mapping[str, Mapping[str, int]],
                   units: Mapping[str, float | None]) -> pd.DataFrame:
    """Notebook × unit: estimated hours (count × seconds per image; 0 where the notebook does not
    use the unit), and their sum (NaN where a unit it uses could not be measured here)."""
    rows = {}
    for notebook, counts in workloads.items():
        hours = {unit: (count * units[unit] / 3600 if units.get(unit) is not None else float("nan"))
                 for unit, count in counts.items()}
        rows[notebook] = {**dict.fromkeys(UNITS, 0.0), **hours,
                          "total": sum(hours.values())}  # NaN when a unit it uses is unmeasured
    return pd.DataFrame.from_dict(rows, orient="index")


def metrics_record(profile, *, environment: Mapping[str, Any], inventory: pd.DataFrame,
                   units: Mapping[str, float | None], missing: Mapping[str, str],
                   costs: pd.DataFrame, seconds: float) -> dict[str, Any]:
    """Notebook 00's ``metrics.json`` in the full profile (the mini one builds a world instead)."""
    def number(value: float) -> float | None:
        return None if pd.isna(value) else float(value)

    return {
        "profile": profile.name,
        "seed": profile.seed,
        "environment": dict(environment),
        "genimage": inventory.to_dict(orient="records"),
        "real_images": int(inventory.loc[inventory["label"] == "nature", "images"].sum()),
        "generated_images": int(inventory.loc[inventory["label"] == "ai", "images"].sum()),
        "unit_seconds": dict(units),
        "unit_missing": dict(missing),
        "estimated_hours": {notebook: {k: number(v) for k, v in row.items()}
                            for notebook, row in costs.to_dict(orient="index").items()},
        "seconds": seconds,
    }
