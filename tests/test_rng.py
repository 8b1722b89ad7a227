"""Per-image random streams: numbers depend on (seed, stream, image id) and nothing else."""

from __future__ import annotations

import pytest
import torch

from lare2lib.core.rng import image_generator, image_seed, randn_per_image


def test_same_arguments_same_numbers():
    first = torch.randn(5, generator=image_generator(7, "a/b.png", "lare-noise"))
    second = torch.randn(5, generator=image_generator(7, "a/b.png", "lare-noise"))
    assert torch.equal(first, second)


@pytest.mark.parametrize("changed", [
    (8, "a/b.png", "lare-noise"),      # seed
    (7, "a/c.png", "lare-noise"),      # image id
    (7, "c/b.png", "lare-noise"),      # same stem, other folder
    (7, "a/b.png", "posterior"),       # stream
])
def test_any_changed_argument_changes_the_numbers(changed):
    base = torch.randn(5, generator=image_generator(7, "a/b.png", "lare-noise"))
    assert not torch.equal(base, torch.randn(5, generator=image_generator(*changed)))


def test_seed_encoding_is_unambiguous():
    assert image_seed(1, "2x") != image_seed(12, "x")
    assert 0 <= image_seed(2**40, "id") < 2**63


def test_rows_do_not_depend_on_the_rest_of_the_batch():
    ids = ["x", "y", "z"]
    together = randn_per_image((2, 3), 0, ids, "s")
    assert together.shape == (3, 2, 3)
    for row, image_id in enumerate(ids):
        alone = randn_per_image((2, 3), 0, [image_id], "s")[0]
        assert torch.equal(together[row], alone)
    reversed_rows = randn_per_image((2, 3), 0, ids[::-1], "s")
    assert torch.equal(reversed_rows, together.flip(0))


def test_dtype_is_cast_after_drawing_in_float32():
    full = randn_per_image((4,), 0, ["x"], "s")
    half = randn_per_image((4,), 0, ["x"], "s", dtype=torch.float16)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, rtol=1e-3, atol=1e-3)
    assert randn_per_image((4,), 0, [], "s").shape == (0, 4)
