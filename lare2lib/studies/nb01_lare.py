"""What notebook 01 computes and draws about LaRE in the mini world.

Each function takes image sets (:class:`lare2lib.data.imagesets.ImageSet`) and LDM components
(:class:`lare2lib.models.ldm.LDMComponents`) and returns tensors, tables or a matplotlib figure, so
the notebook's cells stay import → call → show.

Sign convention used throughout: the detection score is the **negated** mean LaRE, and
generated images are the positive class, so ``AUC = P(LaRE(generated) < LaRE(real))``. AUC
above 0.5 means the paper's premise holds (a diffusion model predicts the noise on generated
images better than on real ones); 0.5 is chance; below 0.5 the premise is reversed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lare2lib.core.profiles import LareConfig
from lare2lib.data.imagesets import ImageSet
from lare2lib.eval import metrics
from lare2lib.signals.lare import LareExtractor, single_step_loss
from lare2lib.signals.set_maps import batches, set_pixels, set_prompts

__all__ = [
    "AUC_CONVENTION",
    "Config",
    "auc_table",
    "curve_dict",
    "curve_gap",
    "curve_summary",
    "draw_errors",
    "ensemble_study",
    "lare_auc",
    "lare_auc_interval",
    "loss_curves",
    "metrics_record",
    "own_model",
    "own_model_curves",
    "parse_ints",
    "write_metrics",
]


@dataclass(frozen=True)
class Config:
    """Notebook 01's budget: how many images each section looks at, and how LaRE is drawn.

    The defaults are the mini notebook's; :meth:`smoke` is the tests' and CI's budget. Build it
    with :func:`lare2lib.studies.common.study_config` so that every parameter the user set wins.
    """

    timestep: int = 200
    """LaRE timestep t (released code: 200; older configs 261, 280)."""
    ensemble: int = 4
    """Noise draws K per image, averaged (released code: 4; older configs 8)."""
    n_images: int = 256
    """Images per set (held-out reals and each generator) for maps and AUC; 0 for all."""
    curve_images: int = 128
    """Images per set for the loss-over-t curves."""
    curve_timesteps: str = "20,50,100,150,200,300,400,500,600,700,800,900,980"
    """Comma-separated t grid of the loss curves."""
    ensemble_sizes: str = "1,2,4,8,16"
    """Comma-separated K values of the ensemble study (draws up to the largest)."""
    ensemble_images: int = 96
    """Images per set for the ensemble study."""
    bootstrap: int = 1000
    """Bootstrap resamples of the AUC intervals."""
    cost_images: int = 64
    """Images timed per cost variant (DIRE and the per-image loop: a quarter of them)."""
    cost_batch: int = 32
    """Batch size of the batched variants (and of the map extraction)."""
    dire_steps: int = 20
    """DDIM steps each way of the DIRE-style baseline (DIRE: 20 plus 20)."""
    cost_repeats: int = 3
    """Timed repeats per cost variant after one warm-up run; the fastest is kept."""
    num_workers: int = 0
    """DataLoader decoding processes of the extraction driver (0: the main process)."""

    @classmethod
    def smoke(cls) -> Config:
        """Seconds, not minutes: every section runs, on a handful of images."""
        return cls(n_images=8, curve_images=8, ensemble_images=8, bootstrap=100,
                   curve_timesteps="20,200,600,980", ensemble_sizes="1,2,4",
                   cost_images=8, cost_batch=8, dire_steps=4, cost_repeats=1)

    @property
    def timesteps(self) -> list[int]:
        """:attr:`curve_timesteps` as integers."""
        return parse_ints(self.curve_timesteps)

    @property
    def ks(self) -> list[int]:
        """:attr:`ensemble_sizes` as integers."""
        return parse_ints(self.ensemble_sizes)

    def lare_config(self, base: LareConfig) -> LareConfig:
        """``base`` (the profile's LaRE settings) at this t and K, with class prompts."""
        return replace(base, timestep=self.timestep, ensemble=self.ensemble, prompt="class")


def parse_ints(text: str) -> list[int]:
    """``"1, 2,4"`` → ``[1, 2, 4]``; a clear error for anything else."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"expected at least one integer, got {text!r}")
    return values


# -- maps and curves ----------------------------------------------------------------------
@torch.inference_mode()
def draw_errors(components, images: ImageSet, class_names: Sequence[str], draws: int,
                config: LareConfig = LareConfig(), *, seed: int = 0,
                batch_size: int = 32) -> torch.Tensor:
    """``(N, draws, C, h, w)``: each noise draw's squared error, before LaRE averages K of them.

    The first K draws of an image are exactly its K-draw LaRE map's draws (same per-image noise
    stream), so averaging them gives the K-draw map for every K ≤ ``draws``.
    """
    extractor = LareExtractor(components, config, seed=seed)
    out = []
    for chunk in batches(images, batch_size):
        prompts = set_prompts(chunk, class_names, components.class_names, config.prompt)
        z0 = extractor.latents(set_pixels(chunk, config.image_size), chunk.ids)
        states = extractor.embed(prompts, extractor.device, extractor.dtype)
        out.append(extractor.draw_errors(z0, chunk.ids, states, config.timestep, draws))
    return torch.cat(out)


def loss_curves(components, sets: Mapping[str, ImageSet], class_names: Sequence[str],
                timesteps: Sequence[int], *, ensemble: int = 1, seed: int = 0,
                batch_size: int = 64, image_size: int | None = None,
                progress: bool = False) -> pd.DataFrame:
    """Mean single-step loss of every image of every set at every t (paper Fig. 1b).

    Long table: ``set``, ``image``, ``t``, ``loss``. One latent sample per image serves every
    t, so differences along t come from the noise level alone.
    """
    rows = []
    for name, images in sets.items():
        for chunk in tqdm(list(batches(images, batch_size)), desc=f"loss curve {name}",
                          disable=not progress):
            size = image_size or chunk.pixels.shape[-1]
            prompts = set_prompts(chunk, class_names, components.class_names)
            losses = single_step_loss(components, set_pixels(chunk, size), chunk.ids, prompts,
                                      timesteps, ensemble=ensemble, seed=seed)
            for image_id, row in zip(chunk.ids, losses.tolist()):
                rows += [{"set": name, "image": image_id, "t": int(t), "loss": value}
                         for t, value in zip(timesteps, row)]
    return pd.DataFrame(rows)


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per set and t: mean loss and its standard error (``sem``) over images."""
    grouped = curves.groupby(["set", "t"], sort=False)["loss"]
    return pd.DataFrame({"mean": grouped.mean(), "sem": grouped.sem(ddof=1)}).reset_index()


def curve_gap(summary: pd.DataFrame, real: str = "real") -> pd.DataFrame:
    """Rows t, columns generated sets: mean loss of ``real`` minus that of the set (positive:
    the premise holds at that t)."""
    table = summary.pivot(index="t", columns="set", values="mean")
    return table.drop(columns=real).rsub(table[real], axis=0)


def curve_dict(summary: pd.DataFrame) -> dict[str, dict[int, float]]:
    """``{set: {t: mean loss}}`` for metrics.json."""
    return {name: dict(zip(group["t"].astype(int), group["mean"].astype(float)))
            for name, group in summary.groupby("set", sort=False)}


# -- separation ---------------------------------------------------------------------------
AUC_CONVENTION = "score = -mean LaRE, generated = positive: AUC = P(LaRE(gen) < LaRE(real))"
"""How every AUC of this notebook reads (written into metrics.json)."""


def lare_auc(real: np.ndarray, generated: np.ndarray) -> float:
    """``P(LaRE(generated) < LaRE(real)) + ½ P(tie)``: the ROC AUC of the score ``-LaRE`` with
    generated images as positives (:func:`lare2lib.eval.metrics.rank_auc`)."""
    return metrics.rank_auc(-np.asarray(real, float), -np.asarray(generated, float))


def lare_auc_interval(real: np.ndarray, generated: np.ndarray, *, resamples: int = 1000,
                      level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """:func:`lare_auc` with its percentile bootstrap interval (:func:`lare2lib.eval.metrics.auc_interval`:
    reals and generated images resampled separately, as the test sets were drawn independently).

    ``{"auc", "low", "high", "level", "resamples", "n_real", "n_generated"}``.
    """
    row = metrics.auc_interval(-np.asarray(real, float), -np.asarray(generated, float),
                               resamples=resamples, level=level, seed=seed)
    row["n_generated"] = row.pop("n_fake")
    return row


def auc_table(scores: Mapping[str, np.ndarray], real: str = "real", **bootstrap) -> pd.DataFrame:
    """One row per generator: AUC of mean LaRE against the ``real`` set, with its interval."""
    rows = {name: lare_auc_interval(scores[real], values, **bootstrap)
            for name, values in scores.items() if name != real}
    return pd.DataFrame(rows).T


def ensemble_study(errors: Mapping[str, torch.Tensor], ks: Sequence[int], real: str = "real",
                   **bootstrap) -> pd.DataFrame:
    """How the map's noise and the AUC change with the ensemble size K.

    ``errors`` maps set name → ``(N, D, C, h, w)`` per-draw errors (:func:`draw_errors`). For
    each K, per set:

    * ``split_half_corr``: correlation between the K-draw map of draws 1..K and that of draws
      K+1..2K of the same image (needs 2K ≤ D): how reproducible a K-draw map is (1 = no noise);
    * ``noise_ratio``: ‖map₁ − map₂‖ / ‖map₁ + map₂‖ of the same two halves: their
      difference (pure draw noise) against their sum (signal); falls like 1/√K while the
      noise dominates;
    * ``auc`` (generators only): AUC of the mean of the first K draws against ``real``.
    """
    rows = []
    for k in ks:
        means = {name: e[:, :k].mean(dim=(1, 2, 3, 4)).numpy() for name, e in errors.items()}
        for name, e in errors.items():
            row = {"K": k, "set": name}
            if 2 * k <= e.shape[1]:
                first, second = e[:, :k].mean(1).flatten(1), e[:, k:2 * k].mean(1).flatten(1)
                row["split_half_corr"] = float(_rowwise_corr(first, second).mean())
                row["noise_ratio"] = float(((first - second).norm(dim=1)
                                            / (first + second).norm(dim=1)).mean())
            if name != real:
                row["auc"] = lare_auc(means[real], means[name])
            rows.append(row)
    return pd.DataFrame(rows)


def _rowwise_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


# -- metrics.json -----------------------------------------------------------------------------
def own_model(world) -> str | None:
    """The generator whose samples the right panel of the loss-over-t figure scores with its *own*
    LDM: the mini world's ``vq_ldm``. None where the world has only the reference LDM (GenImage:
    its ``sdv5`` subset is already the reference's own samples, in the common panel)."""
    names = {spec.name for spec in world.generators}
    return "vq_ldm" if "vq_ldm" in names and world.reference_ldm != "vq_ldm" else None


def own_model_curves(world, curve_sets: Mapping[str, ImageSet], generator: str | None,
                     timesteps: Sequence[int], *, seed: int = 0, batch_size: int = 64) -> pd.DataFrame:
    """:func:`curve_summary` of the reals and ``generator``'s samples under ``generator``'s own
    LDM (empty when ``generator`` is None)."""
    from lare2lib.world.weights import world_ldm

    if generator is None:
        return pd.DataFrame(columns=["set", "t", "mean", "sem"])
    sets = {"real": curve_sets["real"], generator: curve_sets[generator]}
    return curve_summary(loss_curves(world_ldm(world, world.generator(generator).ldm), sets, world.class_names,
                                     timesteps, seed=seed, batch_size=batch_size))


def metrics_record(profile, config: Config, *, auc: pd.DataFrame, mean_lare: Mapping[str, np.ndarray],
                   common: pd.DataFrame, own: pd.DataFrame, study: pd.DataFrame, cost,
                   precision: dict | None, seconds: float, file_decoding: pd.DataFrame | None = None,
                   reference: str = "kl_ldm", own_generator: str | None = "vq_ldm") -> dict[str, Any]:
    """Notebook 01's headline numbers, in the schema of its ``metrics.json`` (read by 07).

    ``auc``: :func:`auc_table`; ``common`` / ``own``: :func:`curve_summary` of the reference
    model's (``reference``) and ``own_generator``'s own curves; ``study``: :func:`ensemble_study`;
    ``cost``: a :class:`lare2lib.studies.nb01_cost.CostReport`; ``file_decoding``:
    :func:`lare2lib.studies.nb01_decoding.decoding_table`.
    """
    curves = {reference: curve_dict(common)}
    if own_generator is not None:
        curves[f"{own_generator}_own"] = curve_dict(own)
    return {
        "profile": profile.name,
        "seed": profile.seed,
        "timestep": config.timestep,
        "ensemble": config.ensemble,
        "reference_ldm": reference,
        "auc_convention": AUC_CONVENTION,
        "lare_auc": auc[["auc", "low", "high", "level", "n_real", "n_generated"]].to_dict(orient="index"),
        "mean_lare": {name: float(values.mean()) for name, values in mean_lare.items()},
        "timestep_curve": curves,
        "ensemble_study": study.to_dict(orient="records"),
        "cost": cost.to_dict(),
        "lare_vs_dire_speedup": cost.lare_vs_dire_speedup,
        "batched_vs_per_image_speedup": cost.batched_vs_per_image_speedup,
        "lare_images_per_second": cost.lare_images_per_second,
        "extraction_vs_bare_ratio": cost.extraction_vs_bare_ratio,
        "precision_bf16": precision,
        "file_decoding": [] if file_decoding is None else file_decoding.to_dict(orient="records"),
        "seconds": seconds,
    }


def write_metrics(out_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write :func:`metrics_record`'s output as ``out_dir/metrics.json`` (stamped, atomic)."""
    from lare2lib.core import plotting

    return plotting.write_metrics(out_dir, dict(record), notebook="01_lare")
