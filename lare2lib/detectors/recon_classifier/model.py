"""The detector: a timm classifier with one logit trained on real vs reconstructed images
(kind ``"classifier"``), with the seeded inference crops of "1 try" / "10 tries"."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lare2lib.core.rng import image_generator
from lare2lib.data import transforms
from lare2lib.detectors.recon_classifier.pixels import from_pil, to_pil

__all__ = ["CROP_STREAM", "NORMALISATIONS", "ReconClassifier"]

CROP_STREAM = "crop-tries"
""":mod:`lare2lib.core.rng` stream of the inference crops: try k of an image is the k-th draw."""


NORMALISATIONS = ("imagenet", "model")
"""``imagenet``: ImageNet mean/std for every backbone, as the released code does (also EVA-02,
pretrained with CLIP's statistics, and the EfficientNets, with 0.5/0.5); ``model``: the statistics
in the backbone's own timm ``pretrained_cfg``."""


def _resolve_normalisation(model: nn.Module, mean, std, normalisation: str) -> tuple[list[float], list[float]]:
    from lare2lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD

    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; valid: {list(NORMALISATIONS)}")
    cfg = (getattr(model, "pretrained_cfg", {}) or {}) if normalisation == "model" else {}
    mean = list(mean if mean is not None else cfg.get("mean", IMAGENET_MEAN))
    std = list(std if std is not None else cfg.get("std", IMAGENET_STD))
    return [float(v) for v in mean], [float(v) for v in std]


class ReconClassifier(nn.Module):
    """A timm classifier with one logit: P(fake) = sigmoid, trained with BCE (kind ``classifier``).

    ``forward(batch)`` takes ``batch["image"]``, uint8 ``(B, 3, H, W)`` (or float in [0, 1]) with
    H, W ≥ ``crop_size``: in training mode it takes one uniformly placed crop per image (torch's
    global random state, which :func:`lare2lib.detectors.train.fit` seeds per step), in eval mode the
    centre crop; then normalises with ``mean``/``std`` and returns logits ``(B,)``.

    ``mean``/``std`` default to ``normalisation``'s (:data:`NORMALISATIONS`; the release: ImageNet's).
    """

    kind = "classifier"

    def __init__(self, backbone: str = "efficientnet_lite0", pretrained: bool = True,
                 crop_size: int = 256, small_image_policy: str = "reflect",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 architecture: str | None = None, create_kwargs: dict[str, Any] | None = None,
                 normalisation: str = "imagenet"):
        super().__init__()
        from lare2lib.models.backbones import create_classifier

        if small_image_policy not in ("reflect", "resize_up", "skip"):
            raise ValueError(f"small_image_policy must be 'reflect', 'resize_up' or 'skip', got {small_image_policy!r}")
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        create_kwargs = json.loads(json.dumps(create_kwargs or {}))  # JSON form: what a reload sees
        is_file = Path(os.fspath(backbone)).expanduser().exists()
        if is_file or pretrained:
            self.model = create_classifier(backbone, num_classes=1, pretrained=pretrained,
                                           architecture=architecture, **create_kwargs)
        else:  # rebuilding a checkpoint: the architecture alone, every weight comes from the file
            self.model = create_classifier(architecture or backbone, num_classes=1, pretrained=False,
                                           **create_kwargs)
        mean, std = _resolve_normalisation(self.model, mean, std, normalisation)
        self.config = {
            "backbone": os.fspath(backbone), "pretrained": bool(pretrained), "crop_size": int(crop_size),
            "small_image_policy": small_image_policy, "mean": mean, "std": std,
            "architecture": architecture or self.model.pretrained_cfg.get("architecture"),
            "create_kwargs": create_kwargs,
        }
        self.crop_size = int(crop_size)
        self.small_image_policy = small_image_policy
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        c = self.crop_size
        if height < c or width < c:
            raise ValueError(f"images of {height}x{width} are smaller than the {c}px crop; "
                             "score_images applies the small-image policy, datasets must too")
        if (height, width) == (c, c):
            return x
        if not self.training:
            top, left = (height - c) // 2, (width - c) // 2
            return x[..., top:top + c, left:left + c]
        tops = torch.randint(0, height - c + 1, (len(x),)).tolist()
        lefts = torch.randint(0, width - c + 1, (len(x),)).tolist()
        return torch.stack([image[:, t:t + c, l:l + c] for image, t, l in zip(x, tops, lefts)])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self._crop(batch["image"])
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return self.model((x - self.mean) / self.std).reshape(-1)  # (B,) one logit per image

    def crops(self, image: torch.Tensor, image_id: str, tries: int, seed: int) -> list[torch.Tensor]:
        """The ``tries`` inference crops of one uint8 image: try k is the k-th draw of its own
        generator (seed, image id), so the first of 10 tries is the 1-try crop. ``tries=0``:
        the centre crop (a deterministic single view)."""
        pil = to_pil(image)
        if tries == 0:
            return [from_pil(transforms.center_crop(pil, self.crop_size, self.small_image_policy))]
        generator = image_generator(seed, image_id, CROP_STREAM)
        return [from_pil(transforms.random_crop(pil, self.crop_size, generator, self.small_image_policy))
                for _ in range(tries)]

    @torch.inference_mode()
    def crop_probabilities(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], *, seed: int = 0,
                           tries: int = 1, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        """``(N, max(tries, 1))`` P(fake) of every crop of every image (:meth:`crops`), in eval mode.

        Column k is try k: the "1 try" score is column 0 and the "10 tries" score the mean of
        the first 10 columns, from one pass.
        """
        from lare2lib.detectors.train import fake_probability

        if len(images) != len(image_ids):
            raise ValueError(f"{len(images)} images but {len(image_ids)} ids")
        if tries < 0:
            raise ValueError(f"tries must be >= 0, got {tries}")
        was_training = self.training
        self.eval()
        views = max(1, tries)
        per_batch = max(1, batch_size // views)  # images per forward; each brings `views` crops
        out = []
        for start in tqdm(range(0, len(images), per_batch), desc="score", disable=not progress):
            crops = [crop for image, image_id in zip(images[start:start + per_batch],
                                                     image_ids[start:start + per_batch])
                     for crop in self.crops(image, image_id, tries, seed)]
            logits = self({"image": torch.stack(crops).to(self.mean.device)})
            out.append(fake_probability(logits).view(-1, views).cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, views)

    def score_images(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], *, seed: int = 0,
                     tries: int = 1, batch_size: int = 32, progress: bool = False,
                     class_names: Sequence[str | None] | None = None) -> torch.Tensor:
        """P(fake) per image: the mean of the sigmoids of ``tries`` random crops (0: centre crop).

        ``class_names`` is accepted for the uniform detector surface and unused: the classifier
        sees pixels only."""
        return self.crop_probabilities(images, image_ids, seed=seed, tries=tries, batch_size=batch_size,
                                       progress=progress).mean(dim=1)

