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
from lare2lib.world.quality import kid, pretrained_features, psnr_db

__all__ = [
    "photo_table",
    "crop_counts",
    "image_grid",
    "training_logs",
    "training_curves",
    "autoencoder_psnr",
    "kid_table",
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


def training_logs(manifest: dict) -> dict[str, pd.DataFrame]:
    return {name: pd.DataFrame(result["log"]) for name, result in manifest["training"].items()}


def training_curves(manifest: dict):
    """Autoencoders: held-out PSNR vs step. UNets: train and held-out denoising loss vs step."""
    import matplotlib.pyplot as plt

    frames = training_logs(manifest)
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


# -- metrics.json -----------------------------------------------------------------------------
def metrics_record(profile, world: World, *, crops: dict, generators: dict, train_fakes: dict,
                   reconstructions: dict, ae_psnr: dict, kid: dict, premise: dict,
                   premise_during_training: pd.DataFrame, premise_by_scale: pd.DataFrame,
                   seconds: float) -> dict[str, Any]:
    """Notebook 00's headline numbers in the schema of its ``metrics.json``.

    ``premise``: :func:`~lare2lib.studies.nb00_premise.premise_gap`; ``premise_during_training``: its ``premise_table``;
    ``premise_by_scale``: the AUC table of its ``premise_by_scale``;
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
