"""Notebook 08 (in the wild): every detector of notebooks 02–05, and the training-free ones, on
real generator outputs (:mod:`lare2lib.data.wild_set`).

* :func:`find_trained_detectors` collects the checkpoints notebooks 02–05 left in the data
  folder, seeds of one configuration grouped into one row;
* :func:`training_free_detectors`: AEROBLADE with the mini autoencoders and, where its weights
  are present, TAEF2; mean LaRE under each mini LDM;
* :func:`score_detectors` scores one :class:`~lare2lib.data.wild_set.WildSet` with each, one
  detector in memory at a time, no class prompt for either class (the fakes have no class);
* :func:`detection_table` gives AUC / AP / TPR@5 % with photo-grouped intervals, for all fakes
  and per generator family and VAE family (:mod:`lare2lib.studies.nb08_metrics`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lare2lib.studies.nb08_metrics import FPR, detection_row

__all__ = ["NOTEBOOK", "Config", "FoundDetector", "find_trained_detectors", "training_free_detectors",
           "MapCache", "score_detectors", "detection_table", "shortcut_table"]

NOTEBOOK = "08_in_the_wild"

NOTEBOOK_ROOTS: dict[str, tuple[str, ...]] = {
    "02": ("egre",),
    "03": ("runs", "03_ae_reconstruction"),
    "04": ("aefamily",),
    "05": ("resolution",),
}
"""Notebook → the folder under the data directory where its training runs live."""

_WORLD_FOLDER = re.compile(r"^(mini|smoke|full)-[0-9a-f]{12}$")
_SEED = re.compile(r"(^|[-_])seed(\d+)")
_KEY = re.compile(r"-[0-9a-f]{8,}$")
_HEX = re.compile(r"^[0-9a-f]{8,}$")


@dataclass(frozen=True)
class Config:
    """Notebook 08's settings (papermill parameters of the same names)."""

    size: int = 256
    """Both classes: short side resized to this, centre crop (fakes are ≈400² thumbnails)."""
    webp_quality: int = 80
    """The final identical lossy round trip of both classes."""
    real_views: int = 5
    """Windows per held-out photo (13 photos → 65 reals)."""
    bootstrap: int = 1000
    """Resamples of the photo-grouped intervals."""
    max_fakes: int = 0
    """Cap on generated images (0: all); the smoke run uses a handful."""
    max_photos: int = 0
    """Cap on held-out photos (0: all)."""
    shortcut_seeds: int = 0
    """Seeds of each trained detector also scored on the as-shipped files (0: all, so the
    shortcut compares the same seeds; every seed is always scored under the control)."""
    batch_size: int = 16
    seed: int = 0
    """Seed of the detectors' random draws (LaRE noise, crops) and of the bootstrap."""

    @classmethod
    def smoke(cls) -> "Config":
        """The tests' budget: 6 fakes, 3 photos × 2 windows at 64², 50 resamples."""
        return cls(size=64, real_views=2, bootstrap=50, max_fakes=6, max_photos=3)


@dataclass
class FoundDetector:
    """One configuration a notebook trained, with a checkpoint per seed."""

    notebook: str
    name: str
    kind: str
    checkpoints: dict[int, Path] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.notebook} {self.name}"


def _group_name(relative: Path) -> tuple[str, int]:
    """(configuration name, seed) of a checkpoint path relative to its notebook's root: world
    folders, ``runs`` and study keys (hex digests) dropped, ``seed<k>`` read and removed."""
    parts, seed = [], 0
    for part in relative.parent.parts:
        if _WORLD_FOLDER.match(part) or _HEX.match(part) or part == "runs":
            continue
        match = _SEED.search(part)
        if match:
            seed = int(match.group(2))
        part = _KEY.sub("", _SEED.sub("", part)).strip("-_")
        if part:
            parts.append(part)
    return "/".join(parts) or "default", seed


def find_trained_detectors(data_dir: str | Path | None = None) -> list[FoundDetector]:
    """The detectors notebooks 02–05 trained (their ``best.safetensors`` checkpoints).

    Seeds of one configuration are one :class:`FoundDetector`; where a data folder holds
    several runs of one configuration and seed (an older study key), the newest counts.
    """
    from lare2lib.core import paths
    from lare2lib.detectors.registry import DetectorError, read_detector_metadata

    data_dir = Path(data_dir) if data_dir is not None else paths.data_dir()
    found: dict[tuple[str, str], FoundDetector] = {}
    for notebook, root_parts in NOTEBOOK_ROOTS.items():
        root = data_dir.joinpath(*root_parts)
        files = sorted(root.rglob("best.safetensors"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
        for path in files:
            try:
                kind = read_detector_metadata(path)["kind"]
            except DetectorError:
                continue
            name, seed = _group_name(path.relative_to(root))
            entry = found.setdefault((notebook, name), FoundDetector(notebook, name, kind))
            entry.checkpoints[seed] = path
    return [found[key] for key in sorted(found)]


def training_free_detectors(world, taef2_dir: str | Path | None, seed: int = 0, *, profile=None,
                            distance: str = "", device: str = "cpu") -> dict[str, Callable[[], Any]]:
    """Name → loader of each training-free detector (loaded only when scored).

    Mini/smoke (``world`` given): AEROBLADE over the world's autoencoders, mean LaRE under each
    world LDM. Full (``world`` None, ``profile`` the full profile): AEROBLADE over the profile's
    autoencoders (SD1, SD2, Kandinsky), mean LaRE under its LDM (SD v1.5). With TAEF2 where
    present. ``distance``: AEROBLADE's distance (:data:`lare2lib.detectors.training_free.DISTANCES`;
    empty: ``lpips`` in full, as released, ``backbone`` in mini). ``device``: the full models'.
    """
    from lare2lib.detectors.training_free import aeroblade_distance
    from lare2lib.eval import attacks
    from lare2lib.models.autoencoders import load_autoencoder

    profile = profile if profile is not None else world.profile
    measure = lambda: aeroblade_distance(distance or ("lpips" if world is None else "backbone")).to(device)  # noqa: E731
    refs = list(profile.models.aeroblade_autoencoders)
    if world is not None:
        from lare2lib.world.weights import world_ldm

        names = [ref.removeprefix("mini:") for ref in refs]
        autoencoders = lambda: {n: world.autoencoder(n) for n in names}  # noqa: E731
        ldms = {ldm: lambda ldm=ldm: world_ldm(world, ldm) for ldm in ("kl_ldm", "vq_ldm")}
    else:
        from lare2lib.models.ldm import load_ldm

        names = [ref.split("/")[-1] for ref in refs]
        autoencoders = lambda: {n: load_autoencoder(ref, device=device) for n, ref in zip(names, refs)}  # noqa: E731
        ldms = {profile.models.ldm.split("/")[-1]: lambda: load_ldm(profile.models.ldm, device=device)}
    loaders: dict[str, Callable[[], Any]] = {
        f"AEROBLADE ({'+'.join(names)})": lambda: attacks.Aeroblade(autoencoders(), measure(), seed=seed)}
    if taef2_dir is not None:
        loaders["AEROBLADE (TAEF2)"] = lambda: attacks.Aeroblade(
            {"taef2": load_autoencoder(str(taef2_dir), device=device)}, measure(), seed=seed)
    for name, load in ldms.items():
        loaders[f"mean LaRE ({name})"] = lambda load=load: attacks.MeanLare(load(), profile.lare, seed=seed)
    return loaders


def _score(detector, images, config: Config, maps=None) -> np.ndarray:
    from lare2lib.eval import attacks

    pixels, ids = [image.pixels for image in images], [image.image_id for image in images]
    if maps is not None:
        scores = detector.score_maps(pixels, ids, maps, seed=config.seed, batch_size=config.batch_size)
    elif getattr(detector, "kind", "") in ("egre", "classifier"):
        scores = detector.score_images(pixels, ids, seed=config.seed, tries=1,
                                       batch_size=config.batch_size, class_names=None)
    else:
        scores = detector.score_images(pixels, ids, batch_size=config.batch_size)
    return attacks.as_numpy(scores).astype(np.float64)


class MapCache:
    """The maps of each wild set, computed once per extractor setting and shared by every EGRE
    checkpoint with that setting (feature, LDM, prompt policy and the extractor's own config,
    seed included): a map does not depend on the head trained over it."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.maps: dict[tuple[str, str], Any] = {}

    @staticmethod
    def key(detector, extractor) -> str:
        import json

        setting = {"feature": detector.config["feature"], "ldm": detector.config["ldm"],
                   "prompt": detector.config["lare"]["prompt"], **extractor.config_dict()}
        return json.dumps(setting, sort_keys=True, default=str)

    def get(self, detector, condition: str, images, seed: int):
        """``(N, C, h, w)`` maps of ``images`` (no class prompt: the fakes have no class)."""
        import torch

        from lare2lib.detectors.egre_data import maps_of_images

        extractor = detector.map_extractor(seed)
        key = (condition, self.key(detector, extractor))
        if key not in self.maps:
            pixels, ids = [image.pixels for image in images], [image.image_id for image in images]
            step, policy = self.batch_size, detector.config["lare"]["prompt"]
            with torch.inference_mode():
                self.maps[key] = torch.cat([
                    maps_of_images(extractor, pixels[s:s + step], ids[s:s + step],
                                   [None] * len(ids[s:s + step]), policy)
                    for s in range(0, len(pixels), step)])
        return self.maps[key]


def _jobs(trained: Iterable[FoundDetector], training_free: Mapping[str, Callable[[], Any]],
          conditions: Sequence[str], config: Config,
          device: str = "cpu") -> list[tuple[str, Callable[[], Any], list[str]]]:
    """(label, loader, conditions it is scored under): every seed of a trained detector under
    the first condition, its first ``config.shortcut_seeds`` (0: all) under the others too; the
    training-free ones under all."""
    from lare2lib.detectors.registry import load_detector

    jobs = []
    for found in trained:
        for rank, (seed, path) in enumerate(sorted(found.checkpoints.items())):
            also = config.shortcut_seeds == 0 or rank < config.shortcut_seeds
            scored = [c for i, c in enumerate(conditions) if i == 0 or also]
            jobs.append((found.label, lambda path=path: load_detector(path, device=device), scored))
    jobs += [(label, load, list(conditions)) for label, load in training_free.items()]
    return jobs


def score_detectors(wild_sets: Mapping[str, Any], trained: Iterable[FoundDetector],
                    training_free: Mapping[str, Callable[[], Any]], config: Config, *, reference=None,
                    reference_ldm: str = "mini:kl_ldm", device: str = "cpu",
                    progress: bool = True) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """``(condition → detector label → (S, N) scores, detector label → seconds)``.

    The first wild set (the controlled condition) is scored by every seed of every trained
    detector, the others by its first ``config.shortcut_seeds`` (0: all), and every set by
    each training-free detector. EGRE checkpoints share their maps (:class:`MapCache`); those
    whose config names ``reference_ldm`` compute them with the already loaded ``reference``
    (on ``device``, where the checkpoints are loaded too).
    """
    from tqdm.auto import tqdm

    cache = MapCache(config.batch_size)
    scores: dict[str, dict[str, list[np.ndarray]]] = {condition: {} for condition in wild_sets}
    seconds: dict[str, float] = {}
    for label, load, conditions in tqdm(_jobs(trained, training_free, list(wild_sets), config, device),
                                        desc="detectors", disable=not progress):
        started = time.perf_counter()
        detector = load()
        is_egre = getattr(detector, "kind", "") == "egre"
        if is_egre and reference is not None and detector.config["ldm"] == reference_ldm:
            detector.use_reference(reference)
        for condition in conditions:
            images = wild_sets[condition].images
            maps = cache.get(detector, condition, images, config.seed) if is_egre else None
            scores[condition].setdefault(label, []).append(_score(detector, images, config, maps))
        del detector
        seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - started
    return {c: {label: np.stack(runs) for label, runs in by.items()} for c, by in scores.items()}, seconds


def _subsets(wild) -> dict[tuple[str, str], np.ndarray]:
    """(grouping, value) → boolean mask over the fakes: all, each generator and VAE family."""
    fakes = wild.of(1)
    out = {("all", "all"): np.ones(len(fakes), bool)}
    for column in ("generator_family", "vae_family"):
        values = np.array([getattr(image, column) for image in fakes])
        for value in sorted(set(values)):
            out[(column, value)] = values == value
    return out


def detection_table(wild, scores: Mapping[str, np.ndarray], config: Config) -> pd.DataFrame:
    """One row per (detector, fake subset): AUC, AP, TPR@5 % with grouped intervals, n, seeds."""
    labels = np.array([image.label for image in wild.images])
    real_groups = [image.group for image in wild.images if image.label == 0]
    subsets = _subsets(wild)
    rows = []
    for detector, values in scores.items():
        real, fake = values[:, labels == 0], values[:, labels == 1]
        for (grouping, subset), mask in subsets.items():
            row = detection_row(real, fake[:, mask], real_groups, resamples=config.bootstrap,
                                seed=config.seed, fpr=FPR)
            rows.append({"detector": detector, "grouping": grouping, "subset": subset, **row})
    return pd.DataFrame(rows)


def shortcut_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per detector, AUC on all fakes under each condition and the change when the control goes."""
    wide = pd.DataFrame({condition: table[table.grouping == "all"].set_index("detector")["auc"]
                         for condition, table in tables.items()})
    if {"controlled", "as_shipped"} <= set(wide.columns):
        wide["as_shipped − controlled"] = wide["as_shipped"] - wide["controlled"]
    return wide


def config_record(config: Config) -> dict[str, Any]:
    return asdict(config)
