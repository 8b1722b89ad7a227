"""KID and PSNR (lare2lib.world.quality) against independent implementations written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lare2lib.world.quality import KIDReference, kid, psnr_db


def mmd2_by_pairs(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel, by explicit loops over pairs."""
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_of_whole_sets_equals_the_pairwise_definition():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.4, 1.0, size=(9, 5))
    mean, std = kid(x, y, subsets=3, subset_size=100)  # subsets of min(100, 12, 9) = 9 images
    assert std >= 0.0
    # With subsets as large as the smaller set, every subset of y is y itself (in some order).
    one, _ = kid(x[:9], y, subsets=1, subset_size=9, seed=5)
    assert one == pytest.approx(mmd2_by_pairs(x[:9], y), rel=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same, _ = kid(a, b, subsets=10, subset_size=100)
    shifted, _ = kid(a, b + 1.0, subsets=10, subset_size=100)
    assert abs(same) < 0.05 < shifted  # unbiased: can be slightly negative
    assert kid(a, b, subsets=10, subset_size=100) == kid(a, b, subsets=10, subset_size=100)


def test_kid_is_symmetric_up_to_subset_draws_and_refuses_tiny_sets():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 4)), rng.normal(1.0, 1.0, size=(10, 4))
    assert kid(a, b, subsets=1, subset_size=10)[0] == pytest.approx(kid(b, a, subsets=1, subset_size=10)[0])
    with pytest.raises(ValueError, match="at least two images"):
        kid(a[:1], b)


def test_psnr_matches_the_definition_and_is_capped_for_identical_images():
    a = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    b = a.clone()
    b[0] += 10  # MSE 100 on the first image
    got = psnr_db(a, b)
    assert got[0].item() == pytest.approx(10 * np.log10(255.0 ** 2 / 100.0))
    assert got[1].item() == pytest.approx(10 * np.log10(255.0 ** 2 / 1e-10))  # finite, not inf


def test_kid_reference_scores_batches_against_fixed_reals_with_a_floor():
    generator = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(96, 3, 32, 32, generator=generator), 5, 1, 2)
    reals = (smooth * 255).to(torch.uint8)
    reference = KIDReference(reals[:48], reals[48:], size=32)
    near = reference(reals[48:])  # the floor's own images: KID equals the floor
    assert near["kid"] == pytest.approx(near["kid_floor"]) and near["kid_std"] >= 0
    noise = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=generator)
    far = reference(noise)
    assert far["kid"] > 10 * max(near["kid_floor"], 1e-6)
    assert far["kid_floor"] == near["kid_floor"]  # computed once
