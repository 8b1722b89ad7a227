"""lare2lib.eval.attacks: PGD on toy and tiny detectors, differentiable scores equal the
detectors' own, artifact removal.

Tiny random-weight models only (lare2lib.models.tiny); nothing is downloaded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lare2lib.core.profiles import LareConfig
from lare2lib.eval import attacks
from lare2lib.eval.attacks import pgd_attack, psnr, quantise_within
from lare2lib.models.tiny import TINY_CLASS_NAMES, TinyLDMSpec, tiny_ldm_components
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs

SIZE = 48
CROP = 32
TINY_BACKBONE = dict(backbone="convnext_large", pretrained=False)
CLOSE = {"rtol": 1e-4, "atol": 1e-5}
"""Differentiable path vs the detector's own inference path: same ops, fp32 summation order."""


def uint8_images(count: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (count, 3, size, size), dtype=np.uint8))


IDS = [f"gen/{k}" for k in range(4)]


class Brightness(torch.nn.Module):
    """Toy differentiable detector: P(fake) = sigmoid(a · (mean brightness − 0.5))."""

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(8.0 * (x01.mean(dim=(1, 2, 3)) - 0.5))


# -- PGD ----------------------------------------------------------------------------------------


def test_pgd_lowers_the_score_within_the_budget_and_range():
    clean = attacks.to_unit(uint8_images(4))
    clean[:2] = (clean[:2] * 0.2 + 0.8).mul(255).round() / 255  # bright, near the top of range
    toy = Brightness()
    eps = 4 / 255
    adversarial = pgd_attack(toy, clean, eps, steps=5, seed=1)
    assert (toy(adversarial) < toy(clean)).all()
    assert (adversarial - clean).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    on_grid = adversarial * 255
    torch.testing.assert_close(on_grid, on_grid.round(), rtol=0, atol=1e-4)  # 8-bit, as saved
    # the toy's best move is -eps everywhere: PGD should get (almost) all of it
    assert (clean - adversarial).mean() > 0.9 * eps


def test_pgd_is_deterministic_from_the_seed_and_batch_invariant_with_ids():
    clean = attacks.to_unit(uint8_images(4))
    toy = Brightness()
    ids = [f"x{k}" for k in range(4)]
    # one small step: the result still depends on where the random start put each pixel
    attack = dict(eps=8 / 255, steps=1, step_size=1 / 255, keep_best=False)
    first = pgd_attack(toy, clean, seed=3, image_ids=ids, **attack)
    again = pgd_attack(toy, clean, seed=3, image_ids=ids, **attack)
    other = pgd_attack(toy, clean, seed=4, image_ids=ids, **attack)
    assert torch.equal(first, again) and not torch.equal(first, other)
    halves = torch.cat([pgd_attack(toy, clean[:2], seed=3, image_ids=ids[:2], **attack),
                        pgd_attack(toy, clean[2:], seed=3, image_ids=ids[2:], **attack)])
    assert torch.equal(first, halves)
    unnamed = pgd_attack(toy, clean, seed=3, **attack)  # no ids: one draw over the batch
    assert torch.equal(unnamed, pgd_attack(toy, clean, seed=3, **attack))


def test_pgd_zero_budget_returns_the_clean_images_and_bad_budgets_fail():
    clean = attacks.to_unit(uint8_images(2))
    assert torch.equal(pgd_attack(Brightness(), clean, 0.0, steps=5), clean)
    with pytest.raises(ValueError, match="non-negative"):
        pgd_attack(Brightness(), clean, -1 / 255, steps=5)


def test_quantise_within_keeps_fractional_budgets():
    clean = torch.full((1, 3, 2, 2), 100 / 255)
    pushed = clean + 2.6 / 255
    assert torch.allclose(quantise_within(pushed, clean, 2.6 / 255) * 255, torch.full_like(clean, 102.0))
    pulled = quantise_within(clean - 9 / 255, clean, 1 / 255) * 255
    assert torch.allclose(pulled, torch.full_like(clean, 99.0))


def test_psnr_of_a_known_perturbation_and_of_none():
    clean = uint8_images(2)
    shifted = (clean.int() + torch.where(clean < 128, 2, -2)).to(torch.uint8)  # every pixel ±2
    expected = 10 * math.log10(255 ** 2 / 4)
    torch.testing.assert_close(psnr(clean, shifted), torch.full((2,), expected))
    torch.testing.assert_close(psnr(clean.float() / 255, shifted.float() / 255),
                               torch.full((2,), expected), rtol=1e-4, atol=1e-4)
    assert torch.isinf(psnr(clean, clean)).all()


# -- differentiable scores = the detectors' own scores ---------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    from lare2lib.detectors.recon_classifier import ReconClassifier

    torch.manual_seed(0)
    return ReconClassifier(**TINY_BACKBONE, crop_size=CROP,
                           create_kwargs=tiny_classifier_kwargs("convnext_large")).eval()


def test_classifier_score_matches_score_images_on_the_same_crop(classifier):
    images = uint8_images(4)
    expected = classifier.score_images(list(images), IDS, seed=5, tries=1)
    got = attacks.differentiable_score(classifier, IDS, seed=5)(attacks.to_unit(images))
    torch.testing.assert_close(got.detach(), expected, **CLOSE)
    centre = attacks.classifier_score(classifier, IDS, centre=True)(attacks.to_unit(images))
    torch.testing.assert_close(centre.detach(), classifier.score_images(list(images), IDS, tries=0),
                               **CLOSE)


def test_classifier_pgd_lowers_its_own_score(classifier):
    images = uint8_images(4)
    make = lambda ids, names: attacks.differentiable_score(classifier, ids, logit=True)  # noqa: E731
    adversarial = attacks.attack_images(make, images, IDS, 8 / 255, steps=3, batch_size=2)
    assert adversarial.dtype == torch.uint8
    assert (adversarial.int() - images.int()).abs().max() <= 8
    before = classifier.score_images(list(images), IDS).mean()
    after = classifier.score_images(list(adversarial), IDS).mean()
    assert after < before


@pytest.fixture(scope="module")
def tiny_reference():
    return tiny_ldm_components("kl", spec=TinyLDMSpec(image_size=SIZE))  # 24×24 latent map


@pytest.fixture(scope="module")
def egre(tiny_reference):
    from lare2lib.detectors.egre import EgreDetector

    torch.manual_seed(0)
    detector = EgreDetector(variant="egre", **TINY_BACKBONE,
                            backbone_kwargs=tiny_classifier_kwargs("convnext_large"),
                            freeze_backbone=True, crop_size=CROP, ldm="tiny",
                            lare={"timestep": 200, "ensemble": 2, "image_size": SIZE,
                                  "prompt": "class"}, heads=2)
    return detector.use_reference(tiny_reference).eval()


def test_egre_score_matches_score_images(egre):
    images = uint8_images(4, seed=1)
    names = [TINY_CLASS_NAMES[k % len(TINY_CLASS_NAMES)] for k in range(4)]
    expected = egre.score_images(list(images), IDS, seed=2, class_names=names)
    x = attacks.to_unit(images).requires_grad_(True)
    got = attacks.differentiable_score(egre, IDS, names, seed=2)(x)
    torch.testing.assert_close(got.detach(), expected, **CLOSE)
    got.sum().backward()  # gradients reach the pixels through the VAE, the UNet and the head
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mean_lare_score_matches_its_images_score_and_pgd_lowers_it(tiny_reference):
    scorer = attacks.MeanLare(tiny_reference, LareConfig(ensemble=2, image_size=SIZE), seed=1)
    images = uint8_images(4, seed=2)
    expected = scorer.score_images(list(images), IDS)
    score_fn = attacks.differentiable_score(scorer, IDS)
    torch.testing.assert_close(score_fn(attacks.to_unit(images)).detach(), expected, **CLOSE)
    two = attacks.differentiable_score(scorer, IDS[:2])
    adversarial = pgd_attack(two, attacks.to_unit(images[:2]), 8 / 255, steps=2, seed=0)
    after = scorer.score_images(list(attacks.to_uint8(adversarial)), IDS[:2])
    assert after.mean() < expected[:2].mean()


@pytest.fixture(scope="module")
def tiny_aeroblade(tiny_reference):
    from lare2lib.detectors.aeroblade import BackboneDistance

    vq = tiny_ldm_components("vq", spec=TinyLDMSpec(image_size=SIZE)).vae
    distance = BackboneDistance("convnext_large", pretrained=False,
                                **tiny_classifier_kwargs("convnext_large"))
    return attacks.Aeroblade({"kl": tiny_reference.vae, "vq": vq}, distance, seed=3)


def test_aeroblade_score_matches_aeroblade_and_pgd_lowers_it(tiny_aeroblade):
    from lare2lib.detectors.aeroblade import PixelDistance

    images = uint8_images(4, seed=3)
    expected = tiny_aeroblade.score_images(list(images), IDS)
    score_fn = attacks.differentiable_score(tiny_aeroblade, IDS)
    torch.testing.assert_close(score_fn(attacks.to_unit(images)).detach().double(), expected, **CLOSE)
    pixel = attacks.Aeroblade(tiny_aeroblade.autoencoders, PixelDistance(), seed=3)
    torch.testing.assert_close(attacks.aeroblade_score(pixel, IDS)(attacks.to_unit(images)).detach().double(),
                               pixel.score_images(list(images), IDS), **CLOSE)
    two = attacks.differentiable_score(tiny_aeroblade, IDS[:2])
    adversarial = pgd_attack(two, attacks.to_unit(images[:2]), 8 / 255, steps=2, seed=0)
    after = tiny_aeroblade.score_images(list(attacks.to_uint8(adversarial)), IDS[:2])
    assert after.mean() < expected[:2].mean()


# -- artifact removal ---------------------------------------------------------------------------


def test_median_filter_removes_salt_noise_and_keeps_flat_images():
    flat = torch.full((3, 9, 9), 77, dtype=torch.uint8)
    assert torch.equal(attacks.median_filter(flat), flat)
    salted = flat.clone()
    salted[:, 4, 4] = 255
    assert torch.equal(attacks.median_filter(salted), flat)


def test_denoisers_keep_shape_and_dtype_and_unknown_names_fail():
    images = uint8_images(2)
    for name in attacks.DENOISERS:
        out = attacks.denoise(images, name)
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert not torch.equal(out, images)
    with pytest.raises(ValueError, match="unknown denoiser"):
        attacks.denoise(images, "wiener")


def test_reencode_through_another_autoencoder(tiny_reference):
    images = uint8_images(2)
    out = attacks.reencode_through(tiny_reference.vae, images, IDS[:2])
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, attacks.reencode_through(tiny_reference.vae, images, IDS[:2]))
    from lare2lib.world.weights import cross_family_autoencoder

    assert cross_family_autoencoder("kl_ae") == "vq_ae"
    with pytest.raises(ValueError, match="cross-family"):
        cross_family_autoencoder("taef2")
