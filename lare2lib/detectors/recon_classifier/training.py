"""``lare2 train classifier``: its arguments, the paper's crops, the pairs of a folder or of the
mini world, and the run through :func:`lare2lib.detectors.train.fit`."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from lare2lib.detectors.recon_classifier.model import ReconClassifier
from lare2lib.detectors.recon_classifier.pairs import ReconPairs, reconstruct_folder, split_ids

__all__ = ["add_train_arguments", "default_crop", "backbone_create_kwargs", "train_command"]


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``lare2 train classifier``."""
    data = parser.add_argument_group("data")
    data.add_argument("--out", required=True, help="run folder: checkpoints, best.safetensors, history")
    data.add_argument("--profile", default="mini", help="mini | smoke | full: defaults for models and data")
    data.add_argument("--real", help="folder of real training images (default: the world's train split)")
    data.add_argument("--val", help="folder of real validation images (default: --val-fraction of --real)")
    data.add_argument("--val-fraction", type=float, default=0.05, help="share of --real held out by id hash")
    data.add_argument("--autoencoder", help="autoencoder reference (default: the profile's recon_autoencoder)")
    data.add_argument("--pairs", help="folder for the reconstructions of --real (default: OUT/pairs)")
    data.add_argument("--reencode", choices=("png", "jpeg"), default="png",
                      help="one codec for both classes after reconstruction (png: lossless)")
    data.add_argument("--jpeg-quality", type=int, default=96, help="quality of --reencode jpeg")
    data.add_argument("--window", type=int, default=0,
                      help="folder data: centre window random crops are taken in (0: 2 × crop)")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", help="timm name or local file (default: the profile's first recon classifier)")
    model.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    model.add_argument("--crop", type=int, default=0,
                       help="crop size (0: 256 in full, 3/4 of the world's image side in mini/smoke)")
    model.add_argument("--small-image-policy", choices=("reflect", "resize_up", "skip"), default="reflect",
                       help="images smaller than the crop")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=5, help="maximum epochs")
    fit.add_argument("--batch-size", type=int, default=48, help="images per step")
    fit.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    fit.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    fit.add_argument("--early-stopping", type=int, default=8, help="epochs without val improvement (0: off)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the initialisation, data order and crops")
    fit.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    fit.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def default_crop(profile, backbone: str = "") -> int:
    """The paper's crops at full scale (256; 252 = 18 × 14 px patches for EVA-02-L/14), 3/4 of
    the world's image side in mini/smoke."""
    if profile.name != "full":
        return profile.world.image_size * 3 // 4
    return 252 if Path(backbone).name.startswith("eva02") else 256


def backbone_create_kwargs(backbone: str, crop: int) -> dict[str, Any]:
    """Extra ``create_classifier`` arguments of ``backbone`` at crop ``crop``: ViTs take their input size at creation (timm resamples the position embedding)."""
    return {"img_size": crop} if Path(backbone).name.startswith("eva02") else {}



def _folder_datasets(args, profile, crop: int) -> tuple[ReconPairs, ReconPairs, str]:
    from lare2lib.models.autoencoders import load_autoencoder
    from lare2lib.models.devices import resolve_device

    ref = args.autoencoder or profile.models.recon_autoencoder
    ae = load_autoencoder(ref, device=resolve_device(profile.device))
    pairs_dir = Path(args.pairs) if args.pairs else Path(args.out) / "pairs"
    common = dict(ae_name=ref, seed=profile.seed, reencode=args.reencode, jpeg_quality=args.jpeg_quality,
                  progress=not args.no_progress)
    train_manifest = reconstruct_folder(args.real, pairs_dir / "train", ae, **common)
    window = args.window or 2 * crop
    kw = dict(window=window, small_image_policy=args.small_image_policy)
    if args.val:
        reconstruct_folder(args.val, pairs_dir / "val", ae, **common)
        train = ReconPairs.from_folder(pairs_dir / "train", **kw)
        val = ReconPairs.from_folder(pairs_dir / "val", **kw)
        ids = train_manifest["pairs"]
    else:
        ids, val_ids = split_ids(train_manifest["pairs"], args.val_fraction)
        if not val_ids or not ids:
            raise ValueError(f"--val-fraction {args.val_fraction} leaves an empty split of {len(ids) + len(val_ids)} images")
        train = ReconPairs.from_folder(pairs_dir / "train", ids, **kw)
        val = ReconPairs.from_folder(pairs_dir / "train", val_ids, **kw)
    return train, val, hashlib.sha256(json.dumps([ref, ids]).encode()).hexdigest()[:16]


def _world_datasets(args, profile) -> tuple[ReconPairs, ReconPairs, str]:
    from lare2lib.world.build import load_world

    if args.autoencoder and not args.autoencoder.startswith("mini:"):
        raise ValueError("world data uses the world's own autoencoders (mini:kl_ae, mini:vq_ae, taef2); "
                         "pass --real DIR to reconstruct a folder with another one")
    ae = (args.autoencoder or profile.models.recon_autoencoder).removeprefix("mini:")
    world = load_world(profile, progress=not args.no_progress)
    train = ReconPairs.from_sets(world.real["train"], world.reconstructions(ae, "train"))
    val = ReconPairs.from_sets(world.real["val"], world.reconstructions(ae, "val"))
    return train, val, f"{world.folder.name}:{ae}"


def train_command(args: argparse.Namespace) -> int:
    """``lare2 train classifier``: pairs → :func:`lare2lib.detectors.train.fit` → ``OUT/best.safetensors``."""
    from lare2lib.core.profiles import get_profile
    from lare2lib.detectors.train import TrainConfig, fit

    profile = get_profile(args.profile, seed=args.seed)
    backbone = args.backbone or profile.models.recon_classifiers[0]
    crop = args.crop or default_crop(profile, backbone)
    if args.real:
        train, val, fingerprint = _folder_datasets(args, profile, crop)
    elif profile.name == "full":
        raise ValueError("the full profile has no world: pass --real DIR (a folder of real images)")
    else:
        train, val, fingerprint = _world_datasets(args, profile)
    torch.manual_seed(args.seed)  # the head's initialisation
    model = ReconClassifier(backbone, pretrained=not args.no_pretrained, crop_size=crop,
                            small_image_policy=args.small_image_policy,
                            create_kwargs=backbone_create_kwargs(backbone, crop))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         max_steps=args.max_steps, early_stopping=args.early_stopping,
                         num_workers=args.num_workers)
    print(f"classifier {model.config['backbone']} crop {crop}: {len(train)} train / {len(val)} val images "
          f"→ {args.out}")
    result = fit(model, train, val, config, args.out, progress=not args.no_progress,
                 data_fingerprint=fingerprint)
    print(f"best epoch {result.best_epoch} (val {config.monitor} {result.best_metric:.4f}) "
          f"in {result.seconds:.0f} s → {result.best_checkpoint}")
    return 0
