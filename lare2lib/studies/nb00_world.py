"""What notebook 00 shows about the mini world: tables, quality numbers and figures.

Every function takes a :class:`lare2lib.world.build.World` (or its manifest) and returns plain
data or a matplotlib figure, so the notebook cells stay import → call → show.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.world.build import World
from lare2lib.eval.metrics import auc_interval
from lare2lib.world.photos import CLASS_NAMES, downscaled, find_photos
from lare2lib.world.quality import kid, pretrained_features, psnr_db
from lare2lib.world.sampling import single_step_loss

__all__ = [
    "photo_table",
    "crop_counts",
    "image_grid",
    "training_curves",
    "premise_curve",
    "premise_table",
    "premise_verdict",
    "premise_extrapolation",
    "training_findings",
    "autoencoder_psnr",
    "kid_table",
    "premise_gap",
    "smoothness",
    "scale_windows",
    "premise_by_scale",
    "premise_scale_figure",
    "detail_residuals",
    "premise_findings",
    "metrics_record",
    "write_metrics",
]


def photo_table(world: World) -> pd.DataFrame:
    """One row per photo: source package, category, split, size, author, licence."""
    frame = pd.DataFrame(world.photos["photos"])
    return frame[["id", "package", "category", "split", "width", "height", "author", "licence"]]


def crop_counts(world: World) -> dict[str, int]:
    return {split: len(images) for split, images in world.real.items()}


def image_grid(sets: dict[str, ImageSet], per_row: int = 8, rows: int = 2, seed: int = 0):
    """A figure with ``rows × per_row`` random images from each named set, one panel per set."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.2 * rows / per_row * 2 + 0.6),
                             squeeze=False)
    generator = torch.Generator().manual_seed(seed)
    for ax, (title, images) in zip(axes[0], sets.items()):
        count = min(per_row * rows, len(images))
        pick = torch.randperm(len(images), generator=generator)[:count]
        tiles = images.pixels[pick]
        if count < per_row * rows:  # pad with white so the grid stays rectangular
            pad = torch.full((per_row * rows - count, *tiles.shape[1:]), 255, dtype=torch.uint8)
            tiles = torch.cat([tiles, pad])
        _, c, h, w = tiles.shape
        grid = tiles.view(rows, per_row, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, per_row * w, c)
        ax.imshow(grid.numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig


def _training_frames(manifest: dict) -> dict[str, pd.DataFrame]:
    return {name: pd.DataFrame(result["log"]) for name, result in manifest["training"].items()}


def training_curves(manifest: dict):
    """Autoencoders: held-out PSNR vs step. UNets: train and held-out denoising loss vs step."""
    import matplotlib.pyplot as plt

    frames = _training_frames(manifest)
    fig, (ax_ae, ax_unet) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("kl_ae", "vq_ae"):
        if name in frames and len(frames[name]):
            ax_ae.plot(frames[name]["step"], frames[name]["val_psnr_db"], marker="o", ms=3, label=name)
    ax_ae.set(xlabel="training step", ylabel="held-out PSNR (dB)", title="Autoencoders")
    ax_ae.legend()
    for name in ("kl_ldm", "vq_ldm"):
        if name in frames and len(frames[name]):
            line, = ax_unet.plot(frames[name]["step"], frames[name]["val_loss"], marker="o", ms=3,
                                 label=f"{name} held-out")
            ax_unet.plot(frames[name]["step"], frames[name]["train_loss"], ls=":", color=line.get_color(),
                         label=f"{name} train (one batch)")
    ax_unet.set(xlabel="training step", ylabel="denoising MSE", title="Latent UNets (EMA weights)")
    ax_unet.legend(fontsize=8)
    fig.tight_layout()
    return fig


def premise_table(manifest: dict) -> pd.DataFrame:
    """Per LDM and checkpoint: mean t=200 loss of its samples vs held-out reals, gap, AUC."""
    rows = []
    for name, frame in _training_frames(manifest).items():
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


def autoencoder_psnr(world: World, split: str = "test", autoencoders: tuple[str, ...] = ("kl_ae", "vq_ae")) -> dict:
    """Mean PSNR (dB) of each autoencoder's reconstructions of held-out real crops."""
    real = world.real[split].pixels
    return {name: float(psnr_db(world.reconstructions(name, split).pixels, real).mean())
            for name in autoencoders}


def kid_table(world: World, feature_model: torch.nn.Module, mean, std, size: int = 128) -> dict:
    """KID of each generated set and each reconstruction set against held-out (test) reals.

    ``real_val_vs_train`` (held-out vs training reals, different photos) is the floor a
    generator cannot be expected to beat in this small world.
    """
    def feats(images: ImageSet) -> np.ndarray:
        return pretrained_features(images.pixels, feature_model, mean, std, size=size)

    reference = feats(world.real["test"])
    train_subset = world.real["train"].subset(torch.randperm(len(world.real["train"]),
                                                             generator=torch.Generator().manual_seed(0))[:1024])
    table = {"real_train_vs_test": kid(feats(train_subset), reference)}
    for spec in world.generators:
        table[f"gen_{spec.name}"] = kid(feats(world.generated(spec.name)), reference)
    for name in ("kl_ae", "vq_ae"):
        table[f"recon_{name}"] = kid(feats(world.reconstructions(name, "test")), reference)
    return {key: {"mean": value[0], "std": value[1]} for key, value in table.items()}


def premise_gap(world: World, timestep: int = 200) -> dict:
    """Per generator: mean t=200 loss of held-out reals minus that of its samples (own LDM).

    Positive = the premise holds (samples lie closer to the model's manifold than real photos).
    """
    reals = world.real["test"]
    out = {}
    for spec in world.generators:
        ae, unet, prompts, scale = world.ldm(spec.ldm)
        fakes = world.generated(spec.name)
        real_loss = single_step_loss(ae, unet, prompts, scale, reals.pixels, reals.class_index, reals.ids,
                                     timestep, seed=world.profile.seed)
        fake_loss = single_step_loss(ae, unet, prompts, scale, fakes.pixels, fakes.class_index, fakes.ids,
                                     timestep, seed=world.profile.seed)
        auc = auc_interval(-real_loss.numpy(), -fake_loss.numpy(), seed=world.profile.seed)
        out[spec.name] = {"real_loss": float(real_loss.mean()), "generated_loss": float(fake_loss.mean()),
                          "gap": float(real_loss.mean() - fake_loss.mean()),
                          "auc": auc["auc"], "auc_low": auc["low"], "auc_high": auc["high"]}
    return out


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
    reals = {"world crops": world.real["test"]}
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


# -- metrics.json -----------------------------------------------------------------------------
def metrics_record(profile, world: World, *, crops: dict, generators: dict, train_fakes: dict,
                   reconstructions: dict, ae_psnr: dict, kid: dict, premise: dict,
                   premise_during_training: pd.DataFrame, premise_by_scale: pd.DataFrame,
                   seconds: float) -> dict[str, Any]:
    """Notebook 00's headline numbers in the schema of its ``metrics.json``.

    ``premise``: :func:`premise_gap`; ``premise_during_training``: :func:`premise_table`;
    ``premise_by_scale``: the AUC table of :func:`premise_by_scale`;
    ``train_fakes``: split → images of the training generator.
    """
    return {
        "profile": profile.name,
        "seed": profile.seed,
        "real_photos": len(world.photos["photos"]),
        "photo_packages": world.photos["per_package"],
        "photos_per_split": world.photos["per_split"],
        "test_photo_categories": world.photos["test_categories"],
        "real_crops": crops,
        "generators": generators,
        "train_generator": {"name": profile.world.train_generator,
                            **{split: len(images) for split, images in train_fakes.items()}},
        "reconstructions": reconstructions,
        "ae_psnr_db": ae_psnr,
        "kid": kid,
        "premise_gap": {name: entry["gap"] for name, entry in premise.items()},
        "premise_auc": {name: {k: entry[k] for k in ("auc", "auc_low", "auc_high")} for name, entry in premise.items()},
        "premise_by_scale": premise_by_scale.to_dict(orient="records"),
        "premise_losses": premise,
        "premise_during_training": premise_during_training.to_dict(orient="records"),
        "seconds": seconds,
    }


def write_metrics(out_dir, record: dict[str, Any]):
    """Write :func:`metrics_record`'s output as ``out_dir/metrics.json`` (stamped, atomic)."""
    from lare2lib.core import plotting

    return plotting.write_metrics(out_dir, record, notebook="00_mini_world")
