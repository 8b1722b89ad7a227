"""Notebook 06's protocol: four detectors, three kinds of evasion, one threshold each.

* :func:`load_detectors`: the EGRE detector and the reconstruction classifier from notebooks 02
  and 03 when their checkpoints exist (else a small one trained here through the same library
  calls), plus the two training-free scores, AEROBLADE and mean-LaRE.
* :class:`Suite` scores an :class:`~lare2lib.data.imagesets.ImageSet` with every detector's own
  pipeline (EGRE and mean-LaRE share one LaRE map per image when their settings agree).
* Every detector's **threshold** is set once, at :data:`FPR` on the clean held-out reals, as a
  deployed detector would be calibrated; the **detection rate** of an attacked fake set is the
  fraction above it (TPR) and the **AUC** is taken against the reals as they are in that
  experiment (post-processed with the fakes in the sweeps, clean for the attacks on fakes).
* :func:`postprocess_sweep`, :func:`artifact_removal`, :func:`pgd_sweep` run the three
  experiments; :func:`most_graceful` names the detector that keeps most of its detection rate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.eval import attacks, metrics

__all__ = [
    "FPR",
    "DETECTOR_LABELS",
    "IDENTITY_LEVEL",
    "parse_grid",
    "timed",
    "find_checkpoint",
    "load_detectors",
    "Suite",
    "detection",
    "thresholds_at",
    "pooled",
    "clean_detection",
    "findings_text",
    "postprocess_sweep",
    "artifact_removal",
    "pgd_sweep",
    "crop_transfer",
    "most_graceful",
    "postprocess_figure",
    "removal_figure",
    "pgd_figure",
    "pgd_examples_figure",
]

FPR = 0.05
"""False-positive rate on clean reals that fixes every detector's threshold (AEROBLADE's TPR@5%)."""

DETECTOR_LABELS: dict[str, str] = {
    "egre": "EGRE (LaRE-guided)",
    "classifier": "recon classifier",
    "aeroblade": "AEROBLADE",
    "mean_lare": "mean LaRE",
}

IDENTITY_LEVEL: dict[str, float] = {"jpeg": 100, "resize": 1.0, "crop": 1.0, "blur": 0.0, "noise": 0.0}
"""Where the clean images sit on each perturbation's axis in the figures (JPEG: drawn at 100)."""


def parse_grid(text: str) -> dict[str, tuple[float, ...]]:
    """``"jpeg:90,50;blur:1"`` → ``{"jpeg": (90.0, 50.0), "blur": (1.0,)}``."""
    from lare2lib.data.perturb import KINDS

    grid: dict[str, tuple[float, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, levels = part.partition(":")
        if kind not in KINDS or kind == "none" or not levels:
            raise ValueError(f"bad post-processing axis {part!r}: write kind:level,level with kind "
                             f"in {[k for k in KINDS if k != 'none']}")
        grid[kind] = tuple(float(v) for v in levels.split(","))
    return grid


@contextlib.contextmanager
def timed(record: dict[str, dict[str, float]], name: str):
    """Add the wall and CPU seconds (all threads of this process) of the block to ``record[name]``.

    On a shared machine the CPU seconds are the better measure of the work: wall time there is
    mostly waiting for a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        row = record.setdefault(name, {"wall": 0.0, "cpu": 0.0})
        row["wall"] += time.perf_counter() - wall
        row["cpu"] += time.process_time() - cpu


# -- detectors -------------------------------------------------------------------------------------


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


def _train_egre(world, reference, seed: int, budget: Mapping[str, int], progress: bool):
    """A small ESR + ECR detector (frozen backbone) trained here by notebook 02's own calls."""
    from lare2lib.core import paths
    from lare2lib.detectors import egre
    from lare2lib.studies import nb02_egre

    config = egre.default_config(world.profile, variant="egre")
    study = nb02_egre.StudyConfig(train_per_class=budget["train_per_class"],
                                  val_per_class=budget["val_per_class"], test_per_set=8,
                                  epochs=budget["epochs"], max_steps=budget.get("max_steps", 0),
                                  seed=world.profile.seed)
    data = nb02_egre.world_data(world, config, study, reference=reference, progress=progress)
    out = paths.data_dir() / "evasion" / world.folder.name / f"egre-seed{seed}-{_study_key([config, study])}"
    model, _ = nb02_egre.train_variant(config, data, study, seed, out)
    return model


def _train_classifier(world, seed: int, budget: Mapping[str, int], progress: bool):
    """A reconstruction classifier (real vs kl_ae reconstructions) trained here as notebook 03 does."""
    from lare2lib.core import paths
    from lare2lib.data.imagesets import subsample
    from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs, default_crop
    from lare2lib.detectors.train import TrainConfig, fit

    profile = world.profile
    ae = profile.models.recon_autoencoder.removeprefix("mini:")
    n_train, n_val = budget["train_per_class"], budget["val_per_class"]
    # the same draw on both sets of a split keeps each real with its own reconstruction
    pairs = {split: ReconPairs.from_sets(subsample(world.real[split], n, seed),
                                         subsample(world.reconstructions(ae, split), n, seed))
             for split, n in (("train", n_train), ("val", n_val))}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ReconClassifier(profile.models.recon_classifiers[0], pretrained=True,
                                crop_size=default_crop(profile))
    config = TrainConfig(epochs=budget["epochs"], seed=seed, max_steps=budget.get("max_steps", 0),
                         early_stopping=3)
    key = _study_key([model.config, ae, n_train, n_val, config])
    out = paths.data_dir() / "evasion" / world.folder.name / f"classifier-seed{seed}-{key}"
    fit(model, pairs["train"], pairs["val"], config, out, progress=progress,
        data_fingerprint=f"{world.folder.name}:{ae}:{n_train}:{n_val}")
    return model.eval()


def load_detectors(world, *, seed: int = 0, egre_checkpoint: str = "", classifier_checkpoint: str = "",
                   budget: Mapping[str, int] | None = None, figures_root: str | Path | None = None,
                   progress: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """``(name → detector, name → where it came from)`` for ``egre``, ``classifier``,
    ``aeroblade`` and ``mean_lare``.

    A checkpoint path given here wins; else :func:`find_checkpoint` (``figures_root``: the folder
    of this run's notebook outputs, where 02's metrics.json is); else a small detector is
    trained here under ``budget`` (``train_per_class``, ``val_per_class``, ``epochs``,
    ``max_steps``). EGRE computes its maps with the world's ``kl_ldm``.
    """
    from lare2lib.core.profiles import LareConfig
    from lare2lib.detectors.aeroblade import BackboneDistance
    from lare2lib.detectors.registry import load_detector
    from lare2lib.world.build import world_ldm

    budget = dict(budget or {"train_per_class": 512, "val_per_class": 128, "epochs": 8})
    reference = world_ldm(world, "kl_ldm")
    detectors: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for kind, given in (("egre", egre_checkpoint), ("classifier", classifier_checkpoint)):
        path = Path(given) if given else find_checkpoint(kind, world, seed, figures_root)
        if path is not None:
            detectors[kind], origin[kind] = load_detector(path), f"checkpoint {path}"
        elif kind == "egre":
            detectors[kind], origin[kind] = _train_egre(world, reference, seed, budget, progress), \
                f"trained here ({budget})"
        else:
            detectors[kind], origin[kind] = _train_classifier(world, seed, budget, progress), \
                f"trained here ({budget})"
    detectors["egre"].use_reference(reference)
    autoencoders = {ref.removeprefix("mini:"): world.autoencoder(ref.removeprefix("mini:"))
                    for ref in world.profile.models.aeroblade_autoencoders}
    distance = BackboneDistance()
    detectors["aeroblade"] = attacks.Aeroblade(autoencoders, distance, seed=world.profile.seed)
    origin["aeroblade"] = f"training-free: −min {distance.name} distance over {sorted(autoencoders)}"
    lare = detectors["egre"].config["lare"]
    config = LareConfig(timestep=lare["timestep"], ensemble=lare["ensemble"],
                        image_size=lare["image_size"], prompt=lare["prompt"])
    detectors["mean_lare"] = attacks.MeanLare(reference, config, seed=seed)
    origin["mean_lare"] = (f"training-free: −mean LaRE ({reference.name}, t={config.timestep}, "
                           f"K={config.ensemble})")
    return detectors, origin


# -- scoring ---------------------------------------------------------------------------------------


@dataclass
class Suite:
    """Every detector's own scoring pipeline on image sets (higher = more likely generated).

    EGRE is scored on its centre crop (``tries=1``) and the classifier on its 1-try crop: the
    views PGD attacks. When the mean-LaRE scorer computes the very maps EGRE would (same LDM,
    settings and seed), EGRE reads them instead of recomputing (:func:`egredata.scoring_batches`).
    """

    detectors: dict[str, Any]
    class_names: Sequence[str]
    seed: int = 0
    batch_size: int = 64
    seconds: dict[str, float] = field(default_factory=dict)
    """Scoring time per detector, accumulated over calls."""

    def names(self, images: ImageSet) -> list[str]:
        return [self.class_names[int(c)] for c in images.class_index]

    def _shared_maps(self) -> bool:
        egre, lare = self.detectors.get("egre"), self.detectors.get("mean_lare")
        if egre is None or lare is None:
            return False
        own = egre.map_extractor(self.seed)
        return (own.config_dict() == lare.extractor.config_dict()
                and egre.reference() is lare.extractor.components)

    def _tick(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def score(self, images: ImageSet) -> dict[str, np.ndarray]:
        from lare2lib.detectors.egre_data import scoring_batches

        pixels, ids, names = list(images.pixels), list(images.ids), self.names(images)
        out: dict[str, np.ndarray] = {}
        maps = None
        if "mean_lare" in self.detectors:
            started = time.perf_counter()
            maps = self.detectors["mean_lare"].maps(pixels, ids, names, self.batch_size)
            out["mean_lare"] = (-maps.mean(dim=(1, 2, 3))).double().numpy()
            self._tick("mean_lare", started)
        for name, detector in self.detectors.items():
            if name == "mean_lare":
                continue
            started = time.perf_counter()
            if name == "egre" and maps is not None and self._shared_maps():
                with torch.inference_mode():
                    detector.eval()
                    scores = torch.cat([
                        detector(scoring_batches(detector, pixels[s:s + self.batch_size],
                                                 ids[s:s + self.batch_size],
                                                 maps[s:s + self.batch_size], seed=self.seed)[0])
                        .float().softmax(dim=1)[:, 1].cpu()
                        for s in range(0, len(pixels), self.batch_size)])
            elif name == "egre":
                scores = detector.score_images(pixels, ids, seed=self.seed, class_names=names,
                                               batch_size=self.batch_size)
            elif name == "classifier":
                scores = detector.score_images(pixels, ids, seed=self.seed, tries=1,
                                               batch_size=self.batch_size)
            else:
                scores = detector.score_images(pixels, ids, batch_size=self.batch_size)
            out[name] = attacks._as_numpy(scores).astype(np.float64)
            self._tick(name, started)
        return {name: out[name] for name in self.detectors}


# -- metrics ---------------------------------------------------------------------------------------


def thresholds_at(real_scores: Mapping[str, np.ndarray], fpr: float = FPR) -> dict[str, float]:
    """Each detector's threshold: the ``1 - fpr`` quantile of its clean real scores."""
    return {name: metrics.threshold_at_fpr(scores, fpr) for name, scores in real_scores.items()}


def detection(threshold: float, real_scores: np.ndarray, fake_scores: np.ndarray) -> dict[str, float]:
    """``tpr`` (fakes above the clean threshold), ``auc`` (these reals vs these fakes) and
    ``fpr`` (these reals above the clean threshold: what post-processing does to the reals)."""
    real, fake = np.asarray(real_scores, float), np.asarray(fake_scores, float)
    labels = np.r_[np.zeros(len(real), int), np.ones(len(fake), int)]
    return {"tpr": float((fake > threshold).mean()), "auc": metrics.roc_auc(np.r_[real, fake], labels),
            "fpr": float((real > threshold).mean())}


def pooled(sets: Mapping[str, ImageSet], name: str = "generated") -> ImageSet:
    """One set of several generators' images (ids and classes kept)."""
    parts = list(sets.values())
    return ImageSet(name, torch.cat([s.pixels for s in parts]), torch.cat([s.class_index for s in parts]),
                    [i for s in parts for i in s.ids], {"sets": list(sets)})


def clean_detection(real_scores: Mapping[str, np.ndarray],
                    fake_scores: Mapping[str, Mapping[str, np.ndarray]],
                    thresholds: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(generator → detector → {tpr, auc, fpr}, detector → the same on the pooled generators)``."""
    per_set = {name: {det: detection(thresholds[det], real_scores[det], scores[det]) for det in scores}
               for name, scores in fake_scores.items()}
    detectors = list(next(iter(fake_scores.values())))
    together = {det: detection(thresholds[det], real_scores[det],
                               np.concatenate([scores[det] for scores in fake_scores.values()]))
                for det in detectors}
    return per_set, together


def _table(suite: Suite, thresholds: Mapping[str, float], real: Mapping[str, np.ndarray],
           fake: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: detection(thresholds[name], real[name], fake[name]) for name in suite.detectors}


def postprocess_sweep(suite: Suite, reals: ImageSet, fakes: ImageSet, grid: Mapping[str, Sequence[float]],
                      thresholds: Mapping[str, float], *, seed: int = 0,
                      progress: bool = False) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``perturbation → level → detector → {tpr, auc, fpr}``, both classes post-processed
    identically (:func:`lare2lib.data.perturb.perturb_set`), thresholds from the clean reals."""
    from tqdm.auto import tqdm

    from lare2lib.data.perturb import grid as make_grid
    from lare2lib.data.perturb import perturb_set

    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for perturbation in tqdm(make_grid(grid), desc="post-processing", disable=not progress):
        real = suite.score(perturb_set(reals, perturbation, seed))
        fake = suite.score(perturb_set(fakes, perturbation, seed))
        row = _table(suite, thresholds, real, fake)
        table.setdefault(perturbation.kind, {})[f"{perturbation.level:g}"] = row
    return table


def _removal_sets(world, fakes: Mapping[str, ImageSet], seed: int) -> dict[str, dict[str, ImageSet]]:
    """attack → generator → attacked images (the generated images only; reals stay clean)."""
    from lare2lib.core import paths
    from lare2lib.models.loaders import load_autoencoder
    from lare2lib.world.build import LDM_AE

    def derived(images: ImageSet, pixels: torch.Tensor, attack: str) -> ImageSet:
        return ImageSet(f"{images.name}+{attack}", pixels, images.class_index.clone(), list(images.ids),
                        {**images.meta, "attack": attack})

    attacked: dict[str, dict[str, ImageSet]] = {"cross_family_ae": {}, "median3": {}, "blur_unsharp": {}}
    taef2 = paths.taef2_dir()
    if taef2 is not None:
        attacked["taef2"] = {}
        taef2_ae = load_autoencoder(str(taef2), kind="taef2")
    for name, images in fakes.items():
        other = attacks.cross_family_autoencoder(LDM_AE[world.generator(name).ldm])
        attacked["cross_family_ae"][name] = derived(images, attacks.reencode_through(
            world.autoencoder(other), images.pixels, images.ids, seed=seed), f"ae:{other}")
        for method in ("median3", "blur_unsharp"):
            attacked[method][name] = derived(images, attacks.denoise(images.pixels, method), method)
        if taef2 is not None:
            attacked["taef2"][name] = derived(images, attacks.reencode_through(
                taef2_ae, images.pixels, images.ids, seed=seed), "ae:taef2")
    return attacked


def artifact_removal(suite: Suite, world, reals_scores: Mapping[str, np.ndarray],
                     fakes: Mapping[str, ImageSet], thresholds: Mapping[str, float], *, seed: int = 0,
                     progress: bool = False) -> tuple[dict[str, Any], dict[str, float]]:
    """``(attack → detector → {tpr, auc}, attack → mean PSNR dB)``: the generated images of
    every generator re-encoded by the autoencoder of the other family (``kl_ae`` ↔ ``vq_ae``),
    by TAEF2 when its weights are present, or denoised; scored against the clean reals.
    ``"none"`` is the clean reference."""
    from tqdm.auto import tqdm

    clean = pooled(fakes)
    table = {"none": _table(suite, thresholds, reals_scores, suite.score(clean))}
    cost: dict[str, float] = {"none": float("inf")}
    for attack, sets in tqdm(_removal_sets(world, fakes, seed).items(), desc="artifact removal",
                             disable=not progress):
        attacked = pooled(sets)
        table[attack] = _table(suite, thresholds, reals_scores, suite.score(attacked))
        cost[attack] = float(attacks.psnr(clean.pixels, attacked.pixels).mean())
    return table, cost


def pgd_sweep(suite: Suite, fakes: ImageSet, reals_scores: Mapping[str, np.ndarray],
              thresholds: Mapping[str, float], budgets: Sequence[float], *, steps: int, seed: int = 0,
              batch_size: int = 16, progress: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(detector → ε (in /255, as text) → {tpr, auc, psnr}, detector → ε → adversarial uint8
    images)``. Each detector is attacked through its own differentiable score (log-odds for
    the trained ones), then the saved 8-bit images are scored by its own pipeline."""
    from tqdm.auto import tqdm

    table: dict[str, dict[str, dict[str, float]]] = {}
    examples: dict[str, dict[str, torch.Tensor]] = {}
    names = suite.names(fakes)
    jobs = [(name, eps) for name in suite.detectors for eps in budgets]
    for name, eps in tqdm(jobs, desc="PGD", disable=not progress):
        detector = suite.detectors[name]

        def make(ids, classes, detector=detector):
            return attacks.differentiable_score(detector, ids, classes, seed=suite.seed, logit=True)

        started = time.perf_counter()
        adversarial = attacks.attack_images(make, fakes.pixels, fakes.ids, eps / 255, steps,
                                            class_names=names, seed=seed, batch_size=batch_size)
        attacked = ImageSet(f"{fakes.name}+pgd{eps:g}", adversarial, fakes.class_index.clone(),
                            list(fakes.ids), {})
        alone = Suite({name: detector}, suite.class_names, suite.seed, suite.batch_size)
        scores = alone.score(attacked)[name]
        row = detection(thresholds[name], reals_scores[name], scores)
        quality = attacks.psnr(fakes.pixels, adversarial)
        finite = torch.isfinite(quality)
        row["psnr"] = float(quality[finite].mean()) if finite.any() else float("inf")
        row["seconds"] = time.perf_counter() - started
        table.setdefault(name, {})[f"{eps:g}"] = row
        examples.setdefault(name, {})[f"{eps:g}"] = adversarial
    return table, examples


def crop_transfer(classifier, reals: ImageSet, fakes: ImageSet, attacked: Mapping[str, torch.Tensor], *,
                  tries: int = 10, seed: int = 0, batch_size: int = 120) -> dict[str, dict[str, float]]:
    """Does a PGD perturbation made on the classifier's 1-try crop survive ``tries`` random crops?

    ``attacked``: ε → adversarial images of ``fakes`` (from :func:`pgd_sweep`). The threshold is
    re-set at :data:`FPR` on the clean reals scored the same way (mean of ``tries`` crops).
    """
    def score(pixels: torch.Tensor, ids: Sequence[str]) -> np.ndarray:
        scores = classifier.score_images(list(pixels), list(ids), seed=seed, tries=tries,
                                         batch_size=batch_size)
        return attacks._as_numpy(scores).astype(np.float64)

    real = score(reals.pixels, reals.ids)
    threshold = metrics.threshold_at_fpr(real, FPR)
    return {eps: detection(threshold, real, score(images, fakes.ids)) for eps, images in attacked.items()}


def most_graceful(pgd: Mapping[str, Mapping[str, Mapping[str, float]]], *, metric: str = "tpr",
                  margin: float = 0.1) -> dict[str, Any]:
    """The detector keeping the largest share of its clean margin over chance under PGD.

    Rule: ``retained = mean over ε > 0 of (m(ε) − c) / (m(0) − c)`` where ``m`` is the detection
    rate (chance ``c`` = :data:`FPR`, the rate of a detector that cannot tell) or the AUC (``c`` =
    ½). A detector whose clean value is less than ``margin`` above chance has nothing to lose
    and is not ranked; ties go to the higher mean under attack; if even the best keeps nothing
    (retained ≤ 0), no detector is named.
    """
    chance = 0.5 if metric == "auc" else FPR
    retained, attacked_mean = {}, {}
    for name, curve in pgd.items():
        clean = curve.get("0", {}).get(metric)
        attacked = [row[metric] for eps, row in curve.items() if float(eps) > 0]
        if clean is None or not attacked:
            continue
        attacked_mean[name] = float(np.mean(attacked))
        if clean >= chance + margin:
            retained[name] = float(np.mean([(v - chance) / (clean - chance) for v in attacked]))
    ranked = sorted(retained, key=lambda n: (retained[n], attacked_mean[n]), reverse=True)
    winner = ranked[0] if ranked and retained[ranked[0]] > 0 else None
    note = ("" if winner or not ranked else
            "every ranked detector is at or below chance at every attacked budget: none degrades gracefully")
    rule = (f"highest mean over ε>0 of ({metric}(ε)−{chance:g})/({metric}(0)−{chance:g}), {chance:g} = "
            f"chance; clean {metric} below {chance + margin:g} not ranked; none if the best keeps nothing")
    return {"detector": winner, "metric": metric, "rule": rule, "retained": retained,
            "attacked_mean": attacked_mean, "not_ranked": sorted(set(pgd) - set(retained)), "note": note}


def _label(name: str) -> str:
    return DETECTOR_LABELS.get(name, name)


def findings_text(clean: Mapping[str, Any], postprocess: Mapping[str, Any], removal: Mapping[str, Any],
                  pgd: Mapping[str, Any], graceful: Mapping[str, Any], graceful_auc: Mapping[str, Any],
                  post_mean: Mapping[str, float], removal_psnr: Mapping[str, float]) -> str:
    """The notebook's answer as Markdown, every number read from this run's results."""
    lines = ["**As it fell in this run** (detection rate = TPR at the clean-real 5 % FPR threshold):", ""]
    for name, row in clean.items():
        levels = [(f"{kind}@{level}", rows[name]["tpr"]) for kind, by_level in postprocess.items()
                  for level, rows in by_level.items()]
        worst = min(levels, key=lambda item: item[1]) if levels else ("—", float("nan"))
        removals = [(a, rows[name]["tpr"]) for a, rows in removal.items() if a != "none"]
        strongest = min(removals, key=lambda item: item[1]) if removals else ("—", float("nan"))
        curve = pgd.get(name, {})
        broken = [eps for eps in sorted(curve, key=float) if float(eps) > 0 and curve[eps]["tpr"] <= FPR]
        largest = max(curve, key=float) if curve else None
        start = curve.get("0", {}).get("tpr", 1.0) if curve else 1.0
        if start < FPR + 0.1:
            pgd_text = f"its PGD subset is (nearly) at chance before any attack (TPR {start:.2f})"
        elif broken:
            pgd_text = (f"PGD brings it to chance at ε = {broken[0]}/255 "
                        f"(PSNR {curve[broken[0]]['psnr']:.1f} dB)")
        else:
            pgd_text = "PGD does not bring it to chance within the budgets tried" + (
                f" (TPR {curve[largest]['tpr']:.2f} at ε = {largest}/255)" if largest else "")
        if largest and "0" in curve:
            pgd_text += f"; PGD AUC {curve['0']['auc']:.2f} → {curve[largest]['auc']:.2f} at ε = {largest}/255"
        lines.append(f"* **{_label(name)}**: clean {row['tpr']:.2f} (AUC {row['auc']:.3f}); post-processing "
                     f"mean {post_mean.get(name, float('nan')):.2f}, worst {worst[0]} → {worst[1]:.2f}; "
                     f"artifact removal worst {strongest[0]} → {strongest[1]:.2f} "
                     f"({removal_psnr.get(strongest[0], float('nan')):.1f} dB); {pgd_text}.")
    lines.append("")
    if graceful["detector"] is None:
        why = graceful["note"] or "none starts far enough above chance to rank"
        lines.append(f"**No detector degrades gracefully under PGD**: {why} ({graceful['rule']}).")
    else:
        retained = ", ".join(f"{_label(n)} {v:.2f}" for n, v in sorted(graceful["retained"].items(),
                                                                       key=lambda kv: -kv[1]))
        other = graceful_auc["detector"]
        agree = ("the AUC rule agrees" if other == graceful["detector"] else
                 f"by the AUC rule it is {_label(other) if other else 'none'}")
        lines.append(f"**Most graceful under PGD: {_label(graceful['detector'])}** ({graceful['rule']}; "
                     f"retained share: {retained}; {agree}). Not ranked: "
                     f"{', '.join(_label(n) for n in graceful['not_ranked']) or 'none'}.")
    if post_mean:
        best = max(post_mean, key=post_mean.get)
        lines.append(f"Under post-processing the highest mean detection rate is {_label(best)}'s "
                     f"({post_mean[best]:.2f}).")
    return "\n".join(lines)


# -- figures ---------------------------------------------------------------------------------------


def _colour(name: str) -> str:
    return f"C{list(DETECTOR_LABELS).index(name)}" if name in DETECTOR_LABELS else "k"


def postprocess_figure(sweep: Mapping[str, Any], clean: Mapping[str, Mapping[str, float]]):
    """Rows TPR (at the clean-real 5 % FPR threshold) and AUC; one column per perturbation;
    the clean value drawn at the perturbation's identity level."""
    import matplotlib.pyplot as plt

    kinds = list(sweep)
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.3 * len(kinds), 5.6), sharey="row", squeeze=False)
    for column, kind in enumerate(kinds):
        levels = sorted(sweep[kind], key=float)
        x = [IDENTITY_LEVEL[kind]] + [float(v) for v in levels]
        for row, metric in enumerate(("tpr", "auc")):
            ax = axes[row, column]
            for name in clean:
                y = [clean[name][metric]] + [sweep[kind][v][name][metric] for v in levels]
                order = np.argsort(x)
                ax.plot(np.asarray(x)[order], np.asarray(y)[order], marker="o", ms=3, lw=1.3,
                        color=_colour(name), label=DETECTOR_LABELS.get(name, name))
            ax.axhline(FPR if metric == "tpr" else 0.5, color="grey", lw=0.8, ls=":")
            ax.set(ylim=(-0.02, 1.02), xlabel=f"{kind} level" + (" (quality)" if kind == "jpeg" else ""),
                   ylabel="detection rate (TPR)" if metric == "tpr" else "AUC")
            if kind == "jpeg":
                ax.invert_xaxis()
        axes[0, column].set_title(kind)
    axes[1, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def removal_figure(table: Mapping[str, Mapping[str, Mapping[str, float]]], cost: Mapping[str, float]):
    """Grouped bars: detection rate and AUC of the generated images after each removal attack."""
    import matplotlib.pyplot as plt

    attack_names = list(table)
    detectors = list(next(iter(table.values())))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(detectors)
    for ax, metric in zip(axes, ("tpr", "auc")):
        for k, name in enumerate(detectors):
            ax.bar(np.arange(len(attack_names)) + (k - (len(detectors) - 1) / 2) * width,
                   [table[a][name][metric] for a in attack_names], width, color=_colour(name),
                   label=DETECTOR_LABELS.get(name, name))
        ax.axhline(FPR if metric == "tpr" else 0.5, color="grey", lw=0.8, ls=":")
        labels = [a if not np.isfinite(cost[a]) else f"{a}\n{cost[a]:.1f} dB" for a in attack_names]
        ax.set_xticks(range(len(attack_names)), labels, fontsize=8)
        ax.set(ylim=(0, 1.02), ylabel="detection rate (TPR)" if metric == "tpr" else "AUC")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def pgd_figure(table: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Detection rate and AUC against the PGD budget, PSNR of the perturbation on a second axis."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric in zip(axes, ("tpr", "auc")):
        twin = ax.twinx()
        for name, curve in table.items():
            eps = sorted(curve, key=float)
            x = [float(e) for e in eps]
            ax.plot(x, [curve[e][metric] for e in eps], marker="o", ms=4, lw=1.5, color=_colour(name),
                    label=DETECTOR_LABELS.get(name, name))
            attacked = [(float(e), curve[e]["psnr"]) for e in eps if float(e) > 0]
            twin.plot(*zip(*attacked), ls="--", lw=0.9, marker="x", ms=3, color=_colour(name), alpha=0.6)
        ax.axhline(FPR if metric == "tpr" else 0.5, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="PGD budget ε (×1/255, L∞)", ylim=(-0.02, 1.02),
               ylabel="detection rate (TPR)" if metric == "tpr" else "AUC")
        twin.set_ylabel("PSNR of the perturbation (dB, dashed)")
        twin.grid(False)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def pgd_examples_figure(clean: ImageSet, examples: Mapping[str, torch.Tensor], eps: float, count: int = 3):
    """Per detector: clean image, its adversarial version at budget ``eps`` (``examples``:
    detector → adversarial images), the perturbation amplified ×(127/ε) around mid-grey."""
    import matplotlib.pyplot as plt

    names = list(examples)
    fig, axes = plt.subplots(len(names), 3 * count, figsize=(4.5 * count, 1.6 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        for k in range(min(count, len(clean))):
            delta = examples[name][k].int() - clean.pixels[k].int()
            shown = (delta.float() * 127 / max(eps, 1) + 128).clamp(0, 255).to(torch.uint8)
            panels = ((clean.pixels[k], "clean"), (examples[name][k], f"ε={eps:g}"),
                      (shown, "perturbation"))
            for j, (image, title) in enumerate(panels):
                ax = axes[row, 3 * k + j]
                ax.imshow(image.permute(1, 2, 0).numpy())
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_title(title, fontsize=7)
        axes[row, 0].set_ylabel(DETECTOR_LABELS.get(name, name), fontsize=8)
    fig.tight_layout()
    return fig
