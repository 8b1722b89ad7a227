"""EGRE: error-guided refinement of a backbone's features by a LaRE map (LaRE², Luo et al. 2024).

Train with ``lare2 train egre ...`` (arguments: :func:`add_train_arguments`).

The detector reads two things from a classifier backbone (:class:`lare2lib.models.backbones.FeatureBackbone`):
a mid-level feature map ``F`` (CLIP ResNet-50: layer3, 1024×14×14 at 224 px) and a global vector
``x_g`` (CLIP's attention-pool output, 1024-d), and refines them with the image's LaRE map
(METHODS.md §2, the released code; the blocks: :mod:`lare2lib.detectors.egre_heads`):

* **ESR** (:class:`~lare2lib.detectors.egre_heads.SpatialRefinement`): single-query attention over
  the ``F`` tokens, each head's logits biased by the map pooled to the token grid: ``x_s``;
* **ECR** (:class:`~lare2lib.detectors.egre_heads.ChannelRefinement`): a channel gate from the
  pooled map on the pooled features: ``x_c = GAP(F) ⊙ w``;
* **head**: ``Linear([x_g ‖ x_s ‖ x_c] → 2)``, cross-entropy, P(fake) = softmax[:, 1].

With C = 1024 and a 14×14 grid, ESR has 2 303 528 parameters (bias conv 40, positional
embedding 197·1024, q/k/v 3·(1024·512 + 512), output 512·1024 + 1024, LayerNorm 2048) and ECR
131 584 (4·128 + 128·1024): the paper's ≈ 2.30 M and ≈ 0.13 M. The released class also builds a
``Conv2d(4 → 1024)`` that its forward never uses; it is not built here (it would only add
unused weights to every checkpoint).

One class, :class:`EgreDetector` (``kind = "egre"``), covers every ablation through its config:
``variant`` ``"backbone"`` (``[x_g]`` only, L2-normalised as released), ``"esr"`` (``[x_g ‖ x_s]``), ``"ecr"``
(``[x_g ‖ x_c]``, which the release has no class for), ``"egre"`` (both), ``"lare_cnn"`` (a small
ResNet on the map alone, no backbone); ``feature`` ``"lare"`` or ``"dire"`` (a DIRE-style latent
error map of the same shape, :mod:`lare2lib.signals.dire`); ``aligned`` (the map crop that covers the
image crop; False reproduces the release: the whole map, whatever the crop);
``freeze_backbone`` (False = the release's full fine-tuning; True trains the head over fixed
ImageNet features, which the mini notebook uses to fit its CPU budget).

The training command's data, protocol and runs: :mod:`lare2lib.detectors.egre_splits`,
:mod:`lare2lib.detectors.egre_training`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lare2lib.detectors.egre_heads import ChannelRefinement, LareCNN, SpatialRefinement

__all__ = [
    "VARIANTS",
    "FEATURES",
    "EgreDetector",
    "default_config",
    "build_detector",
    "add_train_arguments",
    "train_setup",
    "train_command",
]

VARIANTS = ("backbone", "esr", "ecr", "egre", "lare_cnn")
"""Ablation variants: which of ``x_s`` (ESR) and ``x_c`` (ECR) join ``x_g``; ``lare_cnn`` uses the map only."""
FEATURES = ("lare", "dire")
"""Error maps the detector can be guided by."""

_USES_ESR = {"esr", "egre"}
_USES_ECR = {"ecr", "egre"}


# -- the detector ------------------------------------------------------------------------------


def _default_lare() -> dict[str, Any]:
    return {"timestep": 200, "ensemble": 4, "image_size": 256, "prompt": "class", "article": "a"}


class EgreDetector(nn.Module):
    """EGRE and its ablations as one detector kind (see the module docstring).

    Every argument is JSON-able and kept in :attr:`config`, so ``EgreDetector(**config)``
    rebuilds the architecture (:func:`lare2lib.detectors.registry.load_detector`). Defaults are the
    released ``full`` setting; :func:`default_config` gives a profile's.

    Args:
        variant: One of :data:`VARIANTS`.
        backbone: timm name, local classifier file or folder (:func:`lare2lib.models.backbones.create_classifier`).
        pretrained: Load the backbone's ImageNet/CLIP weights (False: random, for tests).
        backbone_kwargs: Extra ``timm.create_model`` kwargs (small widths in tests).
        freeze_backbone: Keep the backbone fixed (and in eval mode) and train only the head;
            datasets may then feed cached backbone outputs (``feature_map``, ``global``).
        crop_size: Side of the native-resolution image crop the backbone sees; fixes the
            token grid (224 → 14×14 on CLIP ResNet-50; 48 → 3×3 on EfficientNet-Lite0).
        feature: ``"lare"`` or ``"dire"``: which error map guides the head.
        aligned: True: the map window under the image crop; False (released): the whole map.
        ldm: Reference LDM the maps are computed with (``score_images``).
        lare: LaRE settings: ``timestep``, ``ensemble``, ``image_size`` (whole image squashed
            to it), ``prompt`` policy (``class``/``photo``/``empty``).
        dire_steps: DDIM steps each way of the DIRE-style map (``feature="dire"``).
        map_channels: Channels of the error map (the LDM's latent channels).
        heads, dropout, ecr_hidden: ESR heads and dropout, ECR hidden width (released: 8, 0.1, 128).
        cnn_width, cnn_blocks, cnn_shortcut: Base width, blocks per stage and shortcut kernel of
            the ``lare_cnn`` variant (released: 16, [2, 2, 2], 3; see :class:`LareCNN`).
        l2_global: L2-normalise ``x_g`` before the head. ``None``: as released, only in the
            ``backbone`` variant (the released ESR/ECR models feed the raw attention-pool output).
    """

    kind: ClassVar[str] = "egre"

    def __init__(self, *, variant: str = "egre", backbone: str = "resnet50_clip.openai",
                 pretrained: bool = True, backbone_kwargs: dict[str, Any] | None = None,
                 freeze_backbone: bool = False, crop_size: int = 224, feature: str = "lare",
                 aligned: bool = True, ldm: str = "stable-diffusion-v1-5/stable-diffusion-v1-5",
                 lare: dict[str, Any] | None = None, dire_steps: int = 20, map_channels: int = 4,
                 heads: int = 8, dropout: float = 0.1, ecr_hidden: int = 128, cnn_width: int = 16,
                 cnn_blocks: Sequence[int] = (2, 2, 2), cnn_shortcut: int = 3, l2_global: bool | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EGRE variant {variant!r}; valid: {list(VARIANTS)}")
        if feature not in FEATURES:
            raise ValueError(f"unknown error-map feature {feature!r}; valid: {list(FEATURES)}")
        lare = {**_default_lare(), **(lare or {})}
        config = dict(variant=variant, backbone=str(backbone), pretrained=bool(pretrained),
                      backbone_kwargs=dict(backbone_kwargs or {}),
                      freeze_backbone=bool(freeze_backbone), crop_size=int(crop_size),
                      feature=feature, aligned=bool(aligned), ldm=str(ldm), lare=lare,
                      dire_steps=int(dire_steps), map_channels=int(map_channels), heads=int(heads),
                      dropout=float(dropout), ecr_hidden=int(ecr_hidden), cnn_width=int(cnn_width),
                      cnn_blocks=[int(b) for b in cnn_blocks], cnn_shortcut=int(cnn_shortcut),
                      l2_global=bool(variant == "backbone" if l2_global is None else l2_global))
        self.config = json.loads(json.dumps(config))  # JSON-normal: what a checkpoint stores
        self.variant = variant
        self._reference = None  # LDMComponents for score_images, loaded on first use
        self.backbone = self.esr = self.ecr = self.head = self.cnn = None
        if variant == "lare_cnn":
            self.cnn = LareCNN(map_channels, cnn_width, tuple(self.config["cnn_blocks"]), cnn_shortcut)
            self.input_mean, self.input_std = (0.5,) * 3, (0.5,) * 3  # unused: no pixels seen
            return
        from lare2lib.models.backbones import FeatureBackbone

        self.backbone = FeatureBackbone.from_ref(backbone, pretrained=pretrained,
                                                 **self.config["backbone_kwargs"])
        self.input_mean, self.input_std = self.backbone.input_mean, self.backbone.input_std
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        channels, width = self.backbone.feature_channels, self.backbone.global_dim
        if variant in _USES_ESR:
            self.esr = SpatialRefinement(channels, self.token_grid(), map_channels, heads,
                                         dropout=dropout)
            width += channels
        if variant in _USES_ECR:
            self.ecr = ChannelRefinement(channels, map_channels, ecr_hidden)
            width += channels
        self.head = nn.Linear(width, 2)

    # -- shapes ---------------------------------------------------------------------------
    @torch.no_grad()
    def token_grid(self) -> tuple[int, int]:
        """(H, W) of the backbone's feature map at ``crop_size`` (one probe forward)."""
        parameter = next(self.backbone.parameters())
        probe = torch.zeros(1, 3, self.config["crop_size"], self.config["crop_size"],
                            device=parameter.device, dtype=parameter.dtype)
        was_training = self.backbone.training
        feature_map, _ = self.backbone.eval()(probe)
        self.backbone.train(was_training)
        return int(feature_map.shape[-2]), int(feature_map.shape[-1])

    def train(self, mode: bool = True) -> "EgreDetector":
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode (BN statistics fixed)."""
        super().train(mode)
        if self.backbone is not None and self.config["freeze_backbone"]:
            self.backbone.eval()
        return self

    # -- forward --------------------------------------------------------------------------
    def backbone_features(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(F, x_g)``: cached in the batch (frozen backbone) or computed from ``batch["image"]``."""
        if "feature_map" in batch:
            if not self.config["freeze_backbone"]:
                raise ValueError("cached backbone features need freeze_backbone=True "
                                 "(a fine-tuned backbone must see the pixels)")
            return batch["feature_map"], batch["global"]
        return self.backbone(batch["image"])

    def components(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Everything the head reads: ``x_g``, and per variant ``x_s`` + ``attention`` (ESR's
        weights, ``(B, heads, 1 + H·W)``) and ``x_c`` + ``gate`` (ECR, ``(B, C)``)."""
        feature_map, global_vector = self.backbone_features(batch)
        if self.config["l2_global"]:
            global_vector = nn.functional.normalize(global_vector, dim=1)
        parts = {"x_g": global_vector}
        if self.esr is not None:
            parts["x_s"], parts["attention"] = self.esr(feature_map, batch["lare"])
        if self.ecr is not None:
            parts["x_c"], parts["gate"] = self.ecr(feature_map, batch["lare"])
        return parts

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``batch["image"]`` (B, 3, crop, crop) normalised, ``batch["lare"]`` (B, Cm, h, w)
        → ``(B, 2)`` logits (cross-entropy; P(fake) = softmax[:, 1])."""
        if self.cnn is not None:
            return self.cnn(batch["lare"])
        parts = self.components(batch)
        features = [parts[key] for key in ("x_g", "x_s", "x_c") if key in parts]
        return self.head(torch.cat(features, dim=1))

    # -- scoring from raw images ----------------------------------------------------------
    def use_reference(self, components) -> "EgreDetector":
        """Compute maps with these LDM components instead of loading ``config["ldm"]``."""
        self._reference = components
        return self

    def reference(self):
        """The reference LDM (loaded on first use, on the detector's device)."""
        if self._reference is None:
            from lare2lib.models.ldm import load_ldm

            self._reference = load_ldm(self.config["ldm"], device=self._device())
        return self._reference

    def map_extractor(self, seed: int = 0):
        """The LaRE (or DIRE-style, latent space) extractor the config names."""
        from lare2lib.signals.extract import make_extractor

        from lare2lib.detectors.egre_data import lare_config

        config = lare_config(self.config["lare"])
        # squash as LaRE: the map must cover the whole image for the crop alignment
        options = ({"steps": self.config["dire_steps"], "space": "latent", "resize": "squash"}
                   if self.config["feature"] == "dire" else {})
        return make_extractor(self.config["feature"], self.reference(), config, seed=seed,
                              **options)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def score_images(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], *,
                     seed: int = 0, tries: int = 1, batch_size: int = 32, progress: bool = False,
                     class_names: Sequence[str | None] | None = None) -> torch.Tensor:
        """P(fake) ``(N,)`` of decoded uint8 ``(3, H, W)`` images of any size.

        The kind's whole preprocessing: the map of the whole image squashed to
        ``lare["image_size"]`` (noise drawn per (seed, id)); ``tries`` = 1: the centre crop,
        else the mean over ``tries`` random crops drawn per (seed, id); images smaller than the
        crop are reflect-padded. ``class_names`` (per image, optional) fill the ``class``
        prompt policy; without them the prompt falls back to "a photo".
        """
        from tqdm.auto import tqdm

        from lare2lib.detectors import egre_data

        if len(images) != len(image_ids):
            raise ValueError(f"{len(images)} images but {len(image_ids)} ids")
        if tries < 1:
            raise ValueError("tries must be at least 1")
        was_training = self.training
        self.eval()
        extractor = self.map_extractor(seed)
        names = list(class_names) if class_names is not None else [None] * len(images)
        scores = []
        for start in tqdm(range(0, len(images), batch_size), desc="egre", disable=not progress):
            chunk = slice(start, start + batch_size)
            maps = egre_data.maps_of_images(extractor, images[chunk], image_ids[chunk],
                                           names[chunk], self.config["lare"]["prompt"])
            scores.append(self._scores_of_maps(images[chunk], image_ids[chunk], maps, tries, seed))
        self.train(was_training)
        return torch.cat(scores) if scores else torch.zeros(0)

    @torch.inference_mode()
    def score_maps(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], maps: torch.Tensor, *,
                   seed: int = 0, tries: int = 1, batch_size: int = 32) -> torch.Tensor:
        """P(fake) ``(N,)`` as :meth:`score_images` gives it, from maps ``(N, C, h, w)`` computed
        beforehand (shared by several checkpoints over one map setting: a map does not depend on
        the head)."""
        if not len(images) == len(image_ids) == len(maps):
            raise ValueError(f"{len(images)} images, {len(image_ids)} ids and {len(maps)} maps")
        was_training = self.training
        self.eval()
        scores = [self._scores_of_maps(images[s:s + batch_size], image_ids[s:s + batch_size],
                                       maps[s:s + batch_size], tries, seed)
                  for s in range(0, len(images), batch_size)]
        self.train(was_training)
        return torch.cat(scores) if scores else torch.zeros(0)

    def _scores_of_maps(self, images, image_ids, maps: torch.Tensor, tries: int, seed: int) -> torch.Tensor:
        """P(fake) of one chunk: the softmax of each try's crops, averaged over the tries."""
        from lare2lib.detectors import egre_data

        batches = egre_data.scoring_batches(self, images, image_ids, maps, tries=tries, seed=seed)
        probabilities = [self(batch).float().softmax(dim=1)[:, 1] for batch in batches]
        return torch.stack(probabilities).mean(dim=0).cpu()


def default_config(profile, **overrides: Any) -> dict[str, Any]:
    """The :class:`EgreDetector` config of a profile (backbone, LDM, LaRE settings, crop).

    Crops: ``full`` 224 (released), ``mini`` 48 (EfficientNet-Lite0's stride-16 map is 3×3; the
    16×16 LaRE map crop under it is 12×12), ``smoke`` 24 (2×2 tokens on 32 px images). A
    ``mini:`` LDM of the smoke profile names the smoke world's own (retrained) folder.
    """
    lare = profile.lare
    crop = {"full": 224, "smoke": 24}.get(profile.name, 48)
    ldm = profile.models.ldm
    if ldm.startswith("mini:") and profile.world.recipe != "mini":
        from lare2lib.world.weights import weights_root

        ldm = str(weights_root(profile.world.recipe) / ldm.removeprefix("mini:"))  # smoke's own LDM
    config = dict(backbone=profile.models.egre_backbone, ldm=ldm, crop_size=crop,
                  lare={"timestep": lare.timestep, "ensemble": lare.ensemble,
                        "image_size": lare.image_size, "prompt": lare.prompt},
                  freeze_backbone=profile.name != "full")
    unknown = set(overrides) - set(EgreDetector.__init__.__kwdefaults__)
    if unknown:
        raise ValueError(f"unknown EGRE config key(s) {sorted(unknown)}")
    return {**config, **overrides}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_detector(config: Mapping[str, Any], seed: int) -> EgreDetector:
    """An :class:`EgreDetector` whose new layers are initialised from ``seed`` alone."""
    with _seeded(seed):
        return EgreDetector(**config)


# -- `lare2 train egre` ------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``lare2 train egre``; unset ones follow the profile and the mini protocol
    (:mod:`lare2lib.detectors.egre_training`)."""
    add = parser.add_argument
    add("--profile", default="mini", help="mini (the built world), smoke, or full (GenImage)")
    add("--variant", choices=VARIANTS, default="egre", help="ablation variant (default egre)")
    add("--feature", choices=FEATURES, default="lare", help="error map guiding the head")
    add("--misaligned", action="store_true",
        help="feed the whole map whatever the crop (the released behaviour)")
    add("--backbone", help="timm name or local classifier file (default: the profile's)")
    add("--backbone-mode", choices=("frozen", "finetune"),
        help="train the head over fixed features (mini default) or fine-tune all (full default, released)")
    add("--crop-size", type=int, help="image crop side (default: full 224, mini 48, smoke 24)")
    add("--seed", type=int, default=0, help="seed of the head's initialisation, data order and dropout")
    add("--epochs", type=int, help="maximum epochs")
    add("--early-stopping", type=int, help="epochs without validation improvement before stopping")
    add("--batch-size", type=int, help="training batch (default 48)")
    add("--lr", type=float, help="Adam learning rate (default: 1e-4, released; 1e-3 over a frozen backbone)")
    add("--max-steps", type=int, help="cap on optimisation steps (smoke runs)")
    add("--train-per-class", type=int, help="training images per class (mini; 0 = all)")
    add("--val-per-class", type=int, help="validation images per class (mini; 0 = all)")
    add("--train-crops", type=int, help="random crop positions per training image")
    add("--dire-steps", type=int, help="DDIM steps each way of the DIRE-style map (full: 20, mini: 4)")
    add("--select-on-test", action="store_true",
        help="reproduce the released fault: pick the scheduler/best model on the test sets")
    add("--data-root", help="full profile: the GenImage root (default: the profile's data_root)")
    add("--train-subset", default="sdv4",
        help="full profile: GenImage training subset (sdv4 = SD V1.4, the standard; sdv5 as released)")
    add("--run-dir", help="folder of the resumable run (default: under the data folder)")
    add("--out", required=True, help="where to write the best checkpoint (.safetensors)")
    add("--num-workers", type=int, default=0, help="DataLoader workers")
    add("--no-progress", action="store_true", help="no progress bars")
    return parser


def train_setup(args: argparse.Namespace):
    """``(profile, detector config, split budget, TrainConfig)`` of the parsed arguments."""
    from lare2lib.core.profiles import get_profile
    from lare2lib.detectors.egre_training import MINI_DIRE_STEPS, protocol_from_args

    profile = get_profile(args.profile)
    overrides = {"variant": args.variant, "feature": args.feature, "aligned": not args.misaligned}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.backbone_mode:
        overrides["freeze_backbone"] = args.backbone_mode == "frozen"
    if args.crop_size:
        overrides["crop_size"] = args.crop_size
    if args.dire_steps:
        overrides["dire_steps"] = args.dire_steps
    elif args.feature == "dire" and profile.name != "full":
        overrides["dire_steps"] = MINI_DIRE_STEPS
    config = default_config(profile, **overrides)
    budget, train = protocol_from_args(args, profile, config["freeze_backbone"])
    return profile, config, budget, train


def train_command(args: argparse.Namespace) -> int:
    """``lare2 train egre``: train one variant on the profile's data, save the best checkpoint."""
    from lare2lib.detectors.egre_training import train_and_report

    profile, config, budget, train = train_setup(args)
    return train_and_report(args, profile, config, budget, train,
                            build_detector(config, args.seed))
