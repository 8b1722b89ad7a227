"""AEROBLADE as one scorer (−min reconstruction distance) and its differentiable score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lare2lib.eval.attacks.pixels import ScoreFn

__all__ = ["Aeroblade", "aeroblade_score"]


class Aeroblade:
    """AEROBLADE as one scorer: −min over ``autoencoders`` of ``distance(x, AE(x))``.

    Reconstruction and distance are :func:`lare2lib.detectors.aeroblade.aeroblade`'s (posterior sample
    per (seed, id), VQ latents decoded unquantised, 8-bit by truncation).

    Args:
        autoencoders: name → autoencoder (the world's ``kl_ae`` and ``vq_ae`` in mini).
        distance: A :mod:`lare2lib.detectors.aeroblade` distance (mini: ``BackboneDistance``).
        seed: Seed of the posterior samples.
    """

    kind = "aeroblade"

    def __init__(self, autoencoders: dict[str, torch.nn.Module], distance: torch.nn.Module,
                 seed: int = 0):
        self.autoencoders, self.distance, self.seed = dict(autoencoders), distance, seed

    def score_images(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], *,
                     batch_size: int = 32, **_: Any) -> torch.Tensor:
        """−min distance per image ``(N,)`` (higher = more likely generated)."""
        from lare2lib.detectors.aeroblade import aeroblade

        result = aeroblade(images, image_ids, self.autoencoders, {"d": self.distance},
                           seed=self.seed, batch_size=batch_size)["d"]
        return torch.from_numpy(result.scores)


def _truncate_straight_through(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output in [-1, 1] → [0, 1] truncated to 8 bits as the release does; the
    gradient passes straight through the truncation (its own derivative is zero)."""
    unit = (decoded.clamp(-1, 1) + 1) / 2
    return unit + ((unit * 255).floor() / 255 - unit).detach()


def _distance_with_grad(distance: torch.nn.Module, x01: torch.Tensor,
                        recon01: torch.Tensor) -> torch.Tensor:
    """The distance's value with gradients (``BackboneDistance.forward`` is inference-only:
    its features are taken through the public ``features`` method, same formula)."""
    from lare2lib.detectors.aeroblade import BackboneDistance

    if not isinstance(distance, BackboneDistance):
        return distance(x01, recon01)

    def unit(features: torch.Tensor) -> torch.Tensor:  # lpips.normalize_tensor
        return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)

    a, b = unit(distance.features(x01)), unit(distance.features(recon01))
    return (a - b).pow(2).sum(dim=1).mean(dim=(1, 2))


def aeroblade_score(detector: Aeroblade, image_ids: Sequence[str]) -> ScoreFn:
    """Differentiable −min distance: each reconstruction at the image's fixed posterior sample."""
    from lare2lib.detectors.recon_classifier import decode_reconstruction, encode_for_reconstruction

    def score(x01: torch.Tensor) -> torch.Tensor:
        columns = []
        for ae in detector.autoencoders.values():
            parameter = next(ae.parameters())
            pixels = (x01 * 2 - 1).to(parameter.device, parameter.dtype)
            latents = encode_for_reconstruction(ae, pixels, list(image_ids), detector.seed)
            recon = _truncate_straight_through(decode_reconstruction(ae, latents, quantize=False).float())
            columns.append(_distance_with_grad(detector.distance, x01, recon.to(x01.device)))
        return -torch.stack(columns, dim=1).min(dim=1).values

    return score
