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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lare2lib.studies.nb08_metrics import FPR, detection_row

__all__ = ["NOTEBOOK", "Config", "FoundDetector", "find_trained_detectors", "training_free_detectors",
           "score_detectors", "detection_table", "shortcut_table"]

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


def training_free_detectors(world, taef2_dir: str | Path | None, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """Name → loader of each training-free detector (loaded only when scored)."""
    from lare2lib.detectors.aeroblade import BackboneDistance
    from lare2lib.eval import attacks
    from lare2lib.models.autoencoders import load_autoencoder
    from lare2lib.world.weights import world_ldm

    names = [ref.removeprefix("mini:") for ref in world.profile.models.aeroblade_autoencoders]
    loaders: dict[str, Callable[[], Any]] = {
        f"AEROBLADE ({'+'.join(names)})": lambda: attacks.Aeroblade(
            {n: world.autoencoder(n) for n in names}, BackboneDistance(), seed=seed)}
    if taef2_dir is not None:
        loaders["AEROBLADE (TAEF2)"] = lambda: attacks.Aeroblade(
            {"taef2": load_autoencoder(str(taef2_dir))}, BackboneDistance(), seed=seed)
    for ldm in ("kl_ldm", "vq_ldm"):
        loaders[f"mean LaRE ({ldm})"] = lambda ldm=ldm: attacks.MeanLare(world_ldm(world, ldm),
                                                                          world.profile.lare, seed=seed)
    return loaders


def _score(detector, images, config: Config) -> np.ndarray:
    from lare2lib.eval import attacks

    pixels, ids = [image.pixels for image in images], [image.image_id for image in images]
    if getattr(detector, "kind", "") in ("egre", "classifier"):
        scores = detector.score_images(pixels, ids, seed=config.seed, tries=1,
                                       batch_size=config.batch_size, class_names=None)
    else:
        scores = detector.score_images(pixels, ids, batch_size=config.batch_size)
    return attacks.as_numpy(scores).astype(np.float64)


def score_detectors(wild_sets: Mapping[str, Any], trained: Iterable[FoundDetector],
                    training_free: Mapping[str, Callable[[], Any]], config: Config, *, reference=None,
                    progress: bool = True) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """``(condition → detector label → (S, N) scores, detector label → seconds)``.

    Every wild set (one per processing condition) is scored by every seed of every trained
    detector and by each training-free one; ``reference`` (the world's ``kl_ldm``) is handed to
    EGRE detectors so their maps use the loaded model.
    """
    from tqdm.auto import tqdm

    from lare2lib.detectors.registry import load_detector

    jobs: list[tuple[str, Callable[[], Any]]] = []
    for found in trained:
        for seed, path in sorted(found.checkpoints.items()):
            jobs.append((found.label, lambda path=path: load_detector(path)))
    jobs += list(training_free.items())
    scores: dict[str, dict[str, list[np.ndarray]]] = {condition: {} for condition in wild_sets}
    seconds: dict[str, float] = {}
    for label, load in tqdm(jobs, desc="detectors", disable=not progress):
        started = time.perf_counter()
        detector = load()
        if getattr(detector, "kind", "") == "egre" and reference is not None:
            detector.use_reference(reference)
        for condition, wild in wild_sets.items():
            scores[condition].setdefault(label, []).append(_score(detector, wild.images, config))
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
