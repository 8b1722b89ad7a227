"""Tiny stand-ins for classifier backbones and detectors: small timm widths, a toy detector kind.

Tests build timm classifiers at the widths of :data:`TINY_TIMM_KWARGS`, and register
:class:`ToyDetector` to exercise the training loop and the generic commands.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["TINY_TIMM_KWARGS", "tiny_classifier_kwargs", "ToyDetector", "ToyImageDataset"]


# -- timm backbones ---------------------------------------------------------------------------

TINY_TIMM_KWARGS: dict[str, dict[str, Any]] = {
    "convnext_large": {"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)},
    "eva02_large_patch14_448": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 252},
}
"""Width/depth overrides timm accepts per architecture; others (EfficientNets, the CLIP
ResNet's ByobNet config) take none and are built full size (on the ``meta`` device if large)."""


def tiny_classifier_kwargs(name: str) -> dict[str, Any]:
    """Small-width ``timm.create_model`` kwargs for ``name`` (a tag after '.' is ignored)."""
    return dict(TINY_TIMM_KWARGS.get(name.split(".")[0], {}))


# -- a toy detector kind, for the training loop and the generic commands ------------------------


class ToyDetector(torch.nn.Module):
    """The smallest detector that satisfies :mod:`lare2lib.detectors.registry`' contract.

    A two-layer CNN on images squashed to ``size`` (one logit for BCE, or two for
    cross-entropy), with dropout so that seeding matters. Tests register it under the kind
    ``toy`` (``monkeypatch.setitem(detectors.DETECTOR_KINDS, "toy", "lare2lib.models.tiny_detectors:ToyDetector")``)
    to test the loop and ``lare2 predict`` / ``evaluate`` without the real kinds.
    """

    kind = "toy"

    def __init__(self, size: int = 16, width: int = 8, logits: int = 1, dropout: float = 0.1,
                 pretrained: bool = False):
        super().__init__()
        self.config = {"size": size, "width": width, "logits": logits, "dropout": dropout,
                       "pretrained": pretrained}
        self.size = size
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, stride=2, padding=1), torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(), torch.nn.Conv2d(width, width, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Dropout(dropout),
        )
        self.head = torch.nn.Linear(width, logits)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.head(self.features(batch["image"]))  # (B, logits)
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def preprocess(self, images: list[torch.Tensor]) -> torch.Tensor:
        """uint8 (3, H, W) images of any size → float (B, 3, size, size) in [-1, 1]."""
        resized = [torch.nn.functional.interpolate(im[None].float(), size=(self.size, self.size),
                                                   mode="bilinear", antialias=True, align_corners=False)
                   for im in images]
        return torch.cat(resized) / 127.5 - 1.0

    def score_images(self, images, image_ids, *, seed: int = 0, tries: int = 1, batch_size: int = 32,
                     progress: bool = False, class_names=None) -> torch.Tensor:
        """P(fake) per image (``class_names`` accepted for the detector surface, unused)."""
        from lare2lib.detectors.train import fake_probability

        device = next(self.parameters()).device
        scores = []
        for start in range(0, len(images), batch_size):
            x = self.preprocess(images[start:start + batch_size]).to(device)
            scores.append(fake_probability(self({"image": x})).cpu())
        return torch.cat(scores) if scores else torch.zeros(0)


class ToyImageDataset(torch.utils.data.Dataset):
    """Separable toy data: class-1 images are brighter; ``labels`` exposed for balancing."""

    def __init__(self, n_real: int = 24, n_fake: int = 16, size: int = 16, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.cat([torch.zeros(n_real, dtype=torch.long), torch.ones(n_fake, dtype=torch.long)])
        noise = torch.rand(len(self.labels), 3, size, size, generator=generator)
        self.images = noise * 1.4 - 1.0 + 0.6 * self.labels.float()[:, None, None, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}
