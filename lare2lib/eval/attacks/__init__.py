"""Evasion of the project's detectors: white-box PGD, artifact removal, and the scores they need.

Three ways an adversary who holds a generated image can try to make a detector call it real:

* **post-processing** (JPEG, resizing, blur, noise): :mod:`lare2lib.data.perturb`, applied to both
  classes; this package only scores the results (:mod:`lare2lib.studies.nb06_experiments`);
* **artifact removal** (:mod:`~lare2lib.eval.attacks.removal`): pass the generated image through
  a *different* autoencoder than the one that decoded it (:func:`reencode_through`), or through
  a simple denoiser (:func:`denoise`), hoping to replace the generator's decoder trace by
  another one or to wash it out;
* **white-box PGD** (:mod:`~lare2lib.eval.attacks.pgd`, :func:`pgd_attack`): L∞-bounded gradient
  descent on the detector's own fake score, through its whole preprocessing, ending in an 8-bit
  image as a saved file would be; :func:`psnr` measures what the perturbation costs.

PGD needs each detector's score as a differentiable function of the pixels:
:mod:`~lare2lib.eval.attacks.scores` (:func:`differentiable_score`) rebuilds it with gradients
from the detectors' public pieces, :mod:`~lare2lib.eval.attacks.aeroblade_scorer` does it for
AEROBLADE. :mod:`~lare2lib.eval.attacks.pixels` holds the :data:`ScoreFn` type and the 8-bit
conversions every module shares.

The public names of the modules are importable from here (``from lare2lib.eval import attacks``).
"""

from lare2lib.eval.attacks.aeroblade_scorer import Aeroblade, aeroblade_score
from lare2lib.eval.attacks.pgd import PGD_STREAM, attack_images, pgd_attack
from lare2lib.eval.attacks.pixels import ScoreFn, as_numpy, psnr, quantise_within, to_uint8, to_unit
from lare2lib.eval.attacks.removal import (
    DENOISERS,
    blur_unsharp,
    denoise,
    median_filter,
    reencode_through,
)
from lare2lib.eval.attacks.scores import (
    MeanLare,
    classifier_crop_offsets,
    classifier_score,
    differentiable_score,
    egre_score,
    lare_maps_with_grad,
    mean_lare_score,
)

__all__ = [
    "ScoreFn",
    "PGD_STREAM",
    "to_unit",
    "to_uint8",
    "quantise_within",
    "pgd_attack",
    "attack_images",
    "psnr",
    "as_numpy",
    "MeanLare",
    "Aeroblade",
    "aeroblade_score",
    "classifier_crop_offsets",
    "classifier_score",
    "lare_maps_with_grad",
    "egre_score",
    "mean_lare_score",
    "differentiable_score",
    "median_filter",
    "blur_unsharp",
    "DENOISERS",
    "denoise",
    "reencode_through",
]
