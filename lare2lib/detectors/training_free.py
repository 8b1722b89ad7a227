"""The training-free detectors as ``lare2 predict`` / ``evaluate`` detectors: no checkpoint.

* ``aeroblade``: −min over autoencoders of the distance between an image and its
  reconstruction (Ricker et al. 2024; :class:`lare2lib.eval.attacks.Aeroblade`). Autoencoders
  by reference (``mini:kl_ae``, a local TAEF2 folder, ``stabilityai/sd-vae-ft-mse``, ...).
* ``mean-lare``: −mean of the LaRE map under a reference LDM (notebook 01's score;
  :class:`lare2lib.eval.attacks.MeanLare`).

Both scores are "higher = more likely generated" but are not probabilities: they have no
natural threshold, so ``predict`` leaves the label column empty unless ``--threshold`` is given
(calibrate it on reals, e.g. at 5 % FPR with :func:`lare2lib.eval.metrics.threshold_at_fpr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["TRAINING_FREE", "DISTANCES", "TrainingFreeDetector", "aeroblade_distance", "training_free_detector"]

TRAINING_FREE: dict[str, str] = {
    "aeroblade": "AEROBLADE: -min distance(x, AE(x)) over the --autoencoders",
    "mean-lare": "mean LaRE: -mean LaRE map under the --ldm reference model",
}
"""Name accepted by ``--detector`` → what it scores."""

DISTANCES = ("backbone", "pixel", "lpips")
"""AEROBLADE distances: ``lpips`` is the release's LPIPS-VGG layer 2 (needs the VGG weights in
the torch hub cache); ``backbone`` (mini default) compares EfficientNet-Lite0 features; ``pixel``
is the mean squared pixel error."""


class TrainingFreeDetector:
    """A training-free scorer behind the detector interface of :mod:`lare2lib.detectors.registry`.

    ``score_images`` takes the same arguments as a checkpoint detector's (``tries`` does not
    apply: the whole image is scored once).
    """

    def __init__(self, kind: str, scorer: Any, description: str):
        self.kind, self.scorer, self.description = kind, scorer, description

    def score_images(self, images: Sequence[torch.Tensor], image_ids: Sequence[str], *, seed: int = 0,
                     tries: int = 1, batch_size: int = 32, progress: bool = False,
                     class_names: Sequence[str | None] | None = None) -> torch.Tensor:
        if self.kind == "mean-lare":
            return self.scorer.score_images(images, image_ids, class_names=class_names,
                                            batch_size=batch_size).float().cpu()
        return self.scorer.score_images(images, image_ids, batch_size=batch_size).float()


def aeroblade_distance(name: str) -> torch.nn.Module:
    """The AEROBLADE distance ``name`` (:data:`DISTANCES`); a misspelt name is refused."""
    from lare2lib.detectors.aeroblade import BackboneDistance, LpipsVggDistance, PixelDistance

    if name not in DISTANCES:
        raise ValueError(f"unknown AEROBLADE distance {name!r}; valid: {list(DISTANCES)}")
    return {"backbone": BackboneDistance, "pixel": PixelDistance, "lpips": LpipsVggDistance}[name]()


def training_free_detector(name: str, *, autoencoders: Sequence[str] = ("mini:kl_ae", "mini:vq_ae"),
                           ldm: str = "mini:kl_ldm", distance: str = "backbone", profile: str = "mini",
                           seed: int = 0, device: str | torch.device = "cpu") -> TrainingFreeDetector:
    """The :data:`TRAINING_FREE` detector ``name`` with its models loaded (missing weights raise
    :class:`lare2lib.models.refs.ModelNotAvailableError` naming how to get them).

    ``profile`` supplies mean-LaRE's settings (timestep, ensemble, image size, prompt policy).
    """
    from lare2lib.eval import attacks

    if name not in TRAINING_FREE:
        raise ValueError(f"unknown training-free detector {name!r}; valid: {sorted(TRAINING_FREE)}")
    if name == "aeroblade":
        from lare2lib.models.autoencoders import load_autoencoder

        if not autoencoders:
            raise ValueError("aeroblade needs at least one autoencoder (--autoencoders)")
        loaded = {str(ref): load_autoencoder(ref, device=device) for ref in autoencoders}
        measure = aeroblade_distance(distance).to(device)
        return TrainingFreeDetector(name, attacks.Aeroblade(loaded, measure, seed=seed),
                                    f"-min {measure.name} over {list(loaded)}")
    from lare2lib.core.profiles import get_profile
    from lare2lib.models.ldm import load_ldm

    config = get_profile(profile).lare
    components = load_ldm(ldm, device=device)
    return TrainingFreeDetector(name, attacks.MeanLare(components, config, seed=seed),
                                f"-mean LaRE under {ldm} (t={config.timestep}, K={config.ensemble})")
