"""Notebook 00's study of LaRE's premise: during training, with the final sets, and what decides it.

The premise (a diffusion model predicts the noise on its own samples better than on real
photos) is measured as the AUC of "lower single-step loss at t = 200 ⇒ generated", always with
its 95 % bootstrap interval. The functions return plain data or figures; the ``*_findings``
functions compose the notebook's markdown from them, so no number is typed in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.eval.metrics import auc_interval
from lare2lib.studies.nb00_world import training_logs
from lare2lib.world.build import World
from lare2lib.world.photos import CLASS_NAMES, downscaled, find_photos
from lare2lib.world.sampling import single_step_loss

__all__ = [
    "premise_table",
    "premise_extrapolation",
    "premise_verdict",
    "premise_curve",
    "training_findings",
    "detail_residuals",
    "premise_findings",
    "premise_gap",
    "smoothness",
    "scale_windows",
    "premise_by_scale",
    "premise_scale_figure",
]


def premise_table(manifest: dict) -> pd.DataFrame:
    """Per LDM and checkpoint: mean t=200 loss of its samples vs held-out reals, gap, AUC."""
    rows = []
    for name, frame in training_logs(manifest).items():
        if "premise" not in frame:
            continue
        for _, entry in frame.dropna(subset=["premise"]).iterrows():
            compute = entry.get("step_seconds", np.nan)  # logs of world v1 do not record it
            rows.append({"ldm": name, "step": int(entry["step"]), "step_seconds": compute, **entry["premise"]})
    return pd.DataFrame(rows)


def _steps_to_target(steps: np.ndarray, values: np.ndarray, target: float) -> float:
    """Step at which a straight line through (log10 step, value) reaches ``target``.

    ``inf`` when the fitted line does not move towards the target (it would never get there at
    the present rate).
    """
    slope, intercept = np.polyfit(np.log10(steps), values, 1)
    if slope == 0 or (target - values[-1]) * slope < 0:
        return float("inf")
    return float(10 ** ((target - intercept) / slope))


def premise_extrapolation(table: pd.DataFrame, target_auc: float = 0.65, target_kid_ratio: float = 2.0,
                          last: int = 3) -> pd.DataFrame:
    """How much more training the targets would take, from the trend of the last checkpoints.

    Per LDM, a line is fitted through the ``last`` premise checkpoints: logit(AUC) and
    log(KID / floor) against log10(step) (a power law in compute; the curves of world v1 bent
    over, so the fit is deliberately local). Returns per LDM and measure the value at the last
    checkpoint, the target, whether it is reached, and the extrapolated step and CPU-hours
    (at the run's measured seconds per step) at which the line meets the target; ``inf`` when
    the trend points away from it. An extrapolation, not a measurement: it says what the present
    rate of improvement would need, which later checkpoints can only confirm or refute.
    """
    rows = []
    for name, group in table.sort_values("step").groupby("ldm"):
        tail = group.tail(last)
        steps = tail["step"].to_numpy(float)
        rate = tail["step_seconds"].iloc[-1] / steps[-1] if tail["step_seconds"].notna().all() else np.nan
        measures = {"premise AUC": (tail["auc"].to_numpy(float), target_auc, True)}
        if "kid" in tail and tail["kid"].notna().all():
            measures["KID / floor"] = ((tail["kid"] / tail["kid_floor"]).to_numpy(float), target_kid_ratio, False)
        for measure, (values, target, higher_is_better) in measures.items():
            if higher_is_better:
                clipped = np.clip(values, 1e-3, 1 - 1e-3)
                transformed, goal = np.log(clipped / (1 - clipped)), np.log(target / (1 - target))
            else:
                transformed, goal = np.log(np.maximum(values, 1e-6)), np.log(target)
            reached = values[-1] >= target if higher_is_better else values[-1] <= target
            needed = float(steps[-1]) if reached else (_steps_to_target(steps, transformed, goal)
                                                      if len(steps) >= 2 else float("nan"))
            rows.append({"ldm": name, "measure": measure, "last_step": int(steps[-1]), "value": float(values[-1]),
                         "target": target, "reached": bool(reached), "steps_needed": needed,
                         "cpu_hours_needed": needed * rate / 3600})
    return pd.DataFrame(rows)


def premise_verdict(table: pd.DataFrame) -> str:
    """One line per LDM: does the premise hold at the last checkpoint, and how did it move?"""
    lines = []
    for name, group in table.sort_values("step").groupby("ldm"):
        first, last = group.iloc[0], group.iloc[-1]
        holds = "holds" if last["gap"] > 0 else "does not hold yet"
        lines.append(f"{name}: premise {holds} at step {int(last['step'])} (gap {last['gap']:+.4f}, "
                     f"AUC {last['auc']:.2f}); at step {int(first['step'])}: gap {first['gap']:+.4f}, "
                     f"AUC {first['auc']:.2f}")
    return "\n".join(lines)


def premise_curve(manifest: dict):
    """The premise's question: from which training step do samples sit below real images' loss?"""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    table = premise_table(manifest)
    with_kid = "kid" in table and table["kid"].notna().any()
    fig, axes = plt.subplots(1, 3 if with_kid else 2, figsize=(15 if with_kid else 10, 3.6))
    ax_loss, ax_auc = axes[:2]
    for name, group in table.groupby("ldm"):
        line, = ax_loss.plot(group["step"], group["real_loss"], marker="o", ms=3, label=f"{name}: held-out real")
        ax_loss.plot(group["step"], group["generated_loss"], marker="s", ms=3, ls="--", color=line.get_color(),
                     label=f"{name}: its samples")
        ax_auc.plot(group["step"], group["auc"], marker="o", ms=3, label=name, color=line.get_color())
        if "auc_low" in group and group["auc_low"].notna().all():  # logs of world v1 have no interval
            ax_auc.fill_between(group["step"], group["auc_low"], group["auc_high"], alpha=0.2,
                                color=line.get_color(), lw=0)
        if with_kid:
            axes[2].plot(group["step"], group["kid"] / group["kid_floor"], marker="o", ms=3, label=name,
                         color=line.get_color())
    if with_kid:
        axes[2].axhline(2.0, color="grey", lw=1, ls=":", label="target: 2× the real floor")
        axes[2].set(xlabel="UNet training step", ylabel="KID / real floor", xscale="log", yscale="log",
                    title="Realism of the same samples")
        axes[2].legend(fontsize=8)
    ax_loss.set(xlabel="UNet training step", ylabel="single-step loss at t=200", xscale="log",
                title="LaRE's premise during training")
    ax_loss.legend(fontsize=8)
    ax_auc.axhline(0.5, color="grey", lw=1, ls=":")
    ax_auc.set(xlabel="UNet training step", ylabel="AUC (lower loss ⇒ generated)", xscale="log", ylim=(0, 1),
               title="Separation by mean loss")
    ax_auc.legend(fontsize=8)
    steps = sorted(table["step"].unique()) if len(table) else []
    for ax in axes:  # label the checkpoints themselves, not log-scale minor ticks
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    return fig


def training_findings(table: pd.DataFrame, extrapolation: pd.DataFrame) -> str:
    """Markdown bullets on the premise during training and what the targets would take."""
    lines = []
    for name, group in table.sort_values("step").groupby("ldm"):
        first, last = group.iloc[0], group.iloc[-1]
        interval = (f" [{last['auc_low']:.3f}, {last['auc_high']:.3f}]"
                    if "auc_low" in group and pd.notna(last.get("auc_low")) else "")
        line = (f"- **{name}**: premise AUC {first['auc']:.3f} at step {int(first['step'])}, "
                f"{last['auc']:.3f}{interval} at step {int(last['step'])}")
        if "kid" in group and pd.notna(last.get("kid")):
            line += f"; KID {last['kid'] / last['kid_floor']:.1f}× the real floor"
        lines.append(line + ".")
    for _, row in extrapolation.iterrows():
        if row["reached"]:
            lines.append(f"- {row['ldm']}: {row['measure']} target ({row['target']}) reached by step {row['last_step']}.")
        elif np.isinf(row["steps_needed"]):
            lines.append(f"- {row['ldm']}: {row['measure']} is not moving towards its target ({row['target']}) "
                         f"over the last checkpoints: more steps of this model would not reach it.")
        else:
            hours = (f", about {row['cpu_hours_needed']:.0f} CPU-hours at this run's speed"
                     if pd.notna(row["cpu_hours_needed"]) else "")
            lines.append(f"- {row['ldm']}: at the present trend {row['measure']} would reach {row['target']} "
                         f"near step {row['steps_needed']:,.0f}{hours} (extrapolated).")
    return "\n".join(lines)


def _verdict(low: float, high: float) -> str:
    return ("holds (interval above 0.5)" if low > 0.5 else "is inverted (interval below 0.5)" if high < 0.5
            else "is undecided (interval contains 0.5)")


def detail_residuals(points: pd.DataFrame) -> pd.DataFrame:
    """Per LDM and generated set: how far its loss lies off the reals' loss-vs-detail trend.

    The trend is a least-squares line of log loss against log smoothness over every real image
    the LDM scored (all scales). ``ratio`` = exp(mean residual of the set's images): 1 means the
    samples are scored like reals of the same detail; above 1, the model predicts the noise on
    its own samples *worse* than on equally detailed photos, which is what an under-fit model does.
    """
    rows = []
    for ldm, group in points.groupby("ldm"):
        real = group[group["kind"] == "real"]
        slope, intercept = np.polyfit(np.log(real["smoothness"]), np.log(real["loss"]), 1)
        for name, fakes in group[group["kind"] == "generated"].groupby("set", sort=False):
            residual = np.log(fakes["loss"]) - (slope * np.log(fakes["smoothness"]) + intercept)
            rows.append({"ldm": ldm, "generator": name, "ratio": float(np.exp(residual.mean())),
                         "slope": float(slope)})
    return pd.DataFrame(rows)


def premise_findings(gap: dict, scale_auc: pd.DataFrame, points: pd.DataFrame, target: float = 0.65) -> str:
    """Markdown bullets on the premise from this run's numbers (no number is typed in)."""
    lines = []
    for name, entry in gap.items():
        met = "meets" if entry["auc_low"] > 0.5 and entry["auc"] >= target else "misses"
        lines.append(f"- **{name}**, on the world's test crops: AUC {entry['auc']:.3f} "
                     f"[{entry['auc_low']:.3f}, {entry['auc_high']:.3f}]; the premise {_verdict(entry['auc_low'], entry['auc_high'])} "
                     f"and {met} the target (≥ {target}, interval above 0.5).")
    for name, group in scale_auc.groupby("generator", sort=False):
        low, high = group.loc[group["auc"].idxmin()], group.loc[group["auc"].idxmax()]
        lines.append(f"- {name} against the real sets: AUC from {low['auc']:.3f} ({low['reals']}) to "
                     f"{high['auc']:.3f} ({high['reals']}); the same samples, only the reals changed.")
    for _, row in detail_residuals(points).iterrows():
        side = "above" if row["ratio"] > 1 else "below"
        lines.append(f"- {row['generator']}'s samples lie {side} the reals' loss-vs-detail trend of {row['ldm']} "
                     f"(loss × {row['ratio']:.2f} of equally detailed reals; real loss ∝ detail^{row['slope']:.2f}).")
    return "\n".join(lines)


WORLD_CROPS = "world crops"
"""The real set of :func:`premise_by_scale` that is the world's own test crops."""


def premise_gap(scale_auc: pd.DataFrame) -> dict:
    """Per generator, on the world's test crops: mean t=200 loss of held-out reals minus that of
    its samples (own LDM), and the AUC of "lower loss ⇒ generated" with its 95 % interval.

    Read off :func:`premise_by_scale`'s table (its ``world crops`` rows), so each set is scored
    once. Positive gap = the premise holds (samples closer to the model's manifold than photos).
    """
    rows = scale_auc[scale_auc["reals"] == WORLD_CROPS]
    return {row.generator: {"real_loss": row.real_loss, "generated_loss": row.generated_loss,
                            "gap": row.real_loss - row.generated_loss,
                            "auc": row.auc, "auc_low": row.low, "auc_high": row.high}
            for row in rows.itertuples()}


def smoothness(pixels: torch.Tensor) -> torch.Tensor:
    """Mean |Laplacian| of each image's luminance in [0, 1]: ``(N,)``, lower = smoother.

    A measure of how much fine detail a crop holds, the property crop scale and sampler change.
    """
    luma = pixels.float().mean(1, keepdim=True) / 255.0
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return torch.nn.functional.conv2d(luma, kernel).abs().mean(dim=(1, 2, 3))


def scale_windows(world: World, short_side: int | None, per_photo: int = 24, split: str = "test") -> ImageSet:
    """Fixed-size windows cut from the ``split`` photos shrunk to ``short_side`` (None: as stored).

    The world's own crops mix scales (a random crop size, then resized to the image size); these
    windows hold one scale each, so the real side of the premise can be varied alone.
    """
    size = world.profile.world.image_size
    rng = np.random.default_rng(world.profile.seed)
    tiles, classes, ids = [], [], []
    for photo in find_photos(world.profile.world.max_photos):
        if photo.split != split:
            continue
        image = downscaled(photo, short_side or 10 ** 6)
        for k in range(per_photo):
            left, top = int(rng.integers(0, image.width - size + 1)), int(rng.integers(0, image.height - size + 1))
            tiles.append(np.asarray(image.crop((left, top, left + size, top + size))))
            classes.append(CLASS_NAMES.index(photo.category))
            ids.append(f"{photo.photo_id}@{short_side or 'stored'}#{k}")
    pixels = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(f"windows@{short_side or 'stored'}", pixels, torch.tensor(classes), ids)


def premise_by_scale(world: World, scales: tuple[int | None, ...] = (96, 192, 384, None), per_photo: int = 24,
                     timestep: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The premise of every generator against held-out reals at several scales.

    Returns ``(auc, points)``: ``auc`` has one row per (generator, real set) with the AUC of
    "lower loss ⇒ generated" and its 95 % interval; ``points`` one row per image (set, kind,
    LDM, loss, smoothness) for :func:`premise_scale_figure`. Real sets: the world's test crops
    and :func:`scale_windows` at each scale; each generator is scored by its own LDM.
    """
    seed = world.profile.seed
    reals = {WORLD_CROPS: world.real["test"]}
    reals.update({f"{s or 'stored'} px": scale_windows(world, s, per_photo) for s in scales})
    rows, points = [], []

    def losses(ldm: str, images: ImageSet) -> np.ndarray:
        ae, unet, prompts, scale = world.ldm(ldm)
        return single_step_loss(ae, unet, prompts, scale, images.pixels, images.class_index, images.ids,
                                timestep, seed=seed).numpy()

    def add_points(name: str, kind: str, ldm: str, images: ImageSet, loss: np.ndarray) -> None:
        points.append(pd.DataFrame({"set": name, "kind": kind, "ldm": ldm, "loss": loss,
                                    "smoothness": smoothness(images.pixels).numpy()}))

    for ldm in sorted({spec.ldm for spec in world.generators}):
        real_loss = {name: losses(ldm, images) for name, images in reals.items()}
        for name, images in reals.items():
            add_points(name, "real", ldm, images, real_loss[name])
        for spec in (s for s in world.generators if s.ldm == ldm):
            fakes = world.generated(spec.name)
            fake_loss = losses(ldm, fakes)
            add_points(spec.name, "generated", ldm, fakes, fake_loss)
            for name, loss in real_loss.items():
                auc = auc_interval(-loss, -fake_loss, seed=seed)
                rows.append({"generator": spec.name, "ldm": ldm, "reals": name, "auc": auc["auc"],
                             "low": auc["low"], "high": auc["high"], "real_loss": float(loss.mean()),
                             "generated_loss": float(fake_loss.mean())})
    return pd.DataFrame(rows), pd.concat(points, ignore_index=True)


def premise_scale_figure(auc: pd.DataFrame, points: pd.DataFrame, max_points: int = 300, seed: int = 0):
    """Left: premise AUC per generator against each real set. Right: loss vs smoothness per image."""
    import matplotlib.pyplot as plt

    fig, (ax_auc, ax_scatter) = plt.subplots(1, 2, figsize=(12, 4))
    real_sets = list(dict.fromkeys(auc["reals"]))
    for offset, (name, group) in enumerate(auc.groupby("generator", sort=False)):
        x = np.arange(len(real_sets)) + 0.1 * (offset - 1)
        group = group.set_index("reals").loc[real_sets]
        ax_auc.errorbar(x, group["auc"], yerr=[group["auc"] - group["low"], group["high"] - group["auc"]],
                        marker="o", ms=4, capsize=3, label=name)
    ax_auc.axhline(0.5, color="grey", lw=1, ls=":")
    ax_auc.set_xticks(range(len(real_sets)), real_sets)
    ax_auc.set(xlabel="held-out reals (test photos; windows at a short side of …)", ylim=(0, 1),
               ylabel="AUC (lower loss ⇒ generated)", title="The premise depends on the real crops' scale")
    ax_auc.legend(fontsize=8)
    rng = np.random.default_rng(seed)
    shown = points[points["ldm"] == points["ldm"].iloc[0]]  # one LDM's view: its own loss for every set
    for name, group in shown.groupby("set", sort=False):
        group = group.iloc[rng.permutation(len(group))[:max_points]]
        marker = "o" if group["kind"].iloc[0] == "real" else "x"
        ax_scatter.scatter(group["smoothness"], group["loss"], s=6, alpha=0.4, marker=marker, label=name)
    ax_scatter.set(xlabel="mean |Laplacian| (fine detail)", ylabel="single-step loss at t=200",
                   xscale="log", yscale="log", title=f"Loss follows detail for reals ({shown['ldm'].iloc[0]})")
    ax_scatter.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig
