"""Post-processing perturbations: deterministic, class-blind, the right strength and shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lare2lib.data import perturb
from lare2lib.data.imagesets import ImageSet
from lare2lib.data.perturb import Perturbation


def smooth_image(height: int = 40, width: int = 56, seed: int = 0) -> torch.Tensor:
    """A photo-like uint8 image: smooth gradients plus mild texture (JPEG-compressible)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 80 * np.sin(x / 9 + c) * np.cos(y / 7 - c) for c in range(3)])
    texture = rng.normal(0, 12, (3, height, width))
    return torch.from_numpy(np.clip(base + texture, 0, 255).round().astype(np.uint8))


@pytest.mark.parametrize("p", perturb.grid(perturb.AEROBLADE_GRID | perturb.ROBUSTNESS_GRID))
def test_deterministic_uint8_and_shape(p):
    image = smooth_image()
    a, b = p(image, "id/1", seed=3), p(image, "id/1", seed=3)
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    if p.kind == "resize":
        assert a.shape == (3, round(40 * p.level), round(56 * p.level))
    else:
        assert a.shape == image.shape
        assert not torch.equal(a, image), f"{p.name} left the image unchanged"


def test_identity_levels_return_equal_copies():
    image = smooth_image()
    for p in (Perturbation("none"), Perturbation("resize", 1.0), Perturbation("crop", 1.0),
              Perturbation("blur", 0.0), Perturbation("noise", 0.0)):
        out = p(image, "x")
        assert torch.equal(out, image) and out.data_ptr() != image.data_ptr()


def test_stronger_jpeg_and_blur_move_further():
    image = smooth_image()

    def err(p):
        return (p(image, "x").float() - image.float()).abs().mean().item()

    jpeg = [err(Perturbation("jpeg", q)) for q in (95, 70, 50)]
    blur = [err(Perturbation("blur", s)) for s in (1, 2, 4)]
    assert jpeg == sorted(jpeg) and blur == sorted(blur)


def test_blur_matches_reference_on_constant_and_removes_high_frequency():
    constant = torch.full((3, 20, 20), 77, dtype=torch.uint8)
    assert torch.equal(perturb.blur(constant, 2.0), constant)  # kernel sums to 1, borders reflect
    checker = ((torch.arange(20)[:, None] + torch.arange(20)[None]) % 2 * 255).to(torch.uint8)
    blurred = perturb.blur(checker.expand(3, 20, 20).contiguous(), 1.5)
    assert blurred.float().std() < 3  # a ±127 checkerboard flattens to its mean


def test_blur_on_image_smaller_than_kernel():
    tiny = smooth_image(4, 5)
    assert perturb.blur(tiny, 3.0).shape == tiny.shape


def test_noise_depends_on_id_and_seed_only():
    image = smooth_image()
    p = Perturbation("noise", 0.1)
    a = p(image, "a", seed=0)
    assert not torch.equal(a, p(image, "b", seed=0))
    assert not torch.equal(a, p(image, "a", seed=1))
    # the strength is what was asked: std of the difference ≈ 0.1 * 255 (less where clipped)
    diff = (a.float() - image.float()) / 255
    assert 0.08 < diff.std().item() < 0.105
    with pytest.raises(ValueError, match="image id"):
        p(image)


def test_set_and_batch_agree_and_are_class_blind():
    """A set is perturbed image by image: order and set membership change nothing."""
    pixels = torch.stack([smooth_image(seed=k) for k in range(4)])
    ids = [f"img{k}" for k in range(4)]
    images = ImageSet("real", pixels, torch.zeros(4, dtype=torch.long), ids)
    for p in (Perturbation("jpeg", 60), Perturbation("noise", 0.05), Perturbation("crop", 0.7)):
        out = perturb.perturb_set(images, p, seed=2)
        assert out.ids == ids and out.meta["perturbation"] == p.name
        reversed_set = images.subset([3, 2, 1, 0])
        out_rev = perturb.perturb_set(reversed_set, p, seed=2)
        assert torch.equal(out_rev.pixels, out.pixels.flip(0))
        assert torch.equal(out.pixels[1], p(pixels[1], "img1", seed=2))


def test_resize_set_changes_size_uniformly():
    pixels = torch.stack([smooth_image(32, 32, k) for k in range(2)])
    images = ImageSet("g", pixels, torch.zeros(2, dtype=torch.long), ["a", "b"])
    out = perturb.perturb_set(images, Perturbation("resize", 0.5))
    assert out.pixels.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("kind, level", [("jpeg", 0), ("jpeg", 101), ("resize", 0), ("crop", 1.5),
                                         ("blur", -1), ("noise", -0.1)])
def test_bad_levels_are_refused(kind, level):
    with pytest.raises(ValueError):
        Perturbation(kind, level)(smooth_image(), "x")


def test_bad_kind_and_input_are_refused():
    with pytest.raises(ValueError, match="valid"):
        Perturbation("sharpen", 1)
    with pytest.raises(ValueError, match="uint8"):
        Perturbation("jpeg", 90)(smooth_image().float())


def test_names_are_stable_keys():
    assert Perturbation("jpeg", 90.0).name == "jpeg@90"
    assert Perturbation("resize", 0.5).name == "resize@0.5"
    assert Perturbation("none").name == "none"
