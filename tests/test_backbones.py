"""timm backbones: every profile-named architecture builds, round-trips through a file, and the
packaged EfficientNet-Lite0 weights classify real photos correctly."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import

import numpy as np
import pytest
import torch

from lare2lib.core import paths
from lare2lib.core.profiles import PROFILE_NAMES, get_profile
from lare2lib.models import backbones, lite0
from lare2lib.models.backbones import FeatureBackbone, create_classifier, save_classifier
from lare2lib.models.refs import ModelNotAvailableError
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs


def _profile_backbones() -> list[str]:
    names = []
    for profile in map(get_profile, PROFILE_NAMES):
        names += [profile.models.egre_backbone, *profile.models.recon_classifiers]
    return sorted(set(names))


PROFILE_BACKBONES = _profile_backbones()
FULL_SIZE_KWARGS = {"eva02_large_patch14_448": {"img_size": 252}}
"""The reconstruction detector runs EVA-02-L/14 on 252 crops (18×18 patches), not 448."""
SMALL_ENOUGH_TO_RUN = 10_000_000
"""Parameters above which a full-size model is only built and run on the meta device."""


def _input_side(model: torch.nn.Module) -> int:
    return 252 if "eva02" in model.pretrained_cfg["architecture"] else 64


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "data_dir", lambda: tmp_path / "data")
    return tmp_path / "data"


def test_profiles_name_the_expected_backbones():
    assert {
        "resnet50_clip.openai",
        "convnext_large.fb_in22k_ft_in1k",
        "tf_efficientnetv2_b0.in1k",
        "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k",
        "efficientnet_lite0",
    } <= set(PROFILE_BACKBONES)


@pytest.mark.parametrize("name", PROFILE_BACKBONES)
def test_full_size_architecture_has_one_logit(name):
    kwargs = FULL_SIZE_KWARGS.get(name.split(".")[0], {})
    with torch.device("meta"):
        model = create_classifier(name, num_classes=1, pretrained=False, **kwargs)
        side = kwargs.get("img_size", 224)
        assert model(torch.empty(2, 3, side, side)).shape == (2, 1)


@pytest.mark.parametrize("name", PROFILE_BACKBONES)
def test_tiny_model_runs_and_round_trips_through_safetensors(name, tmp_path):
    kwargs = tiny_classifier_kwargs(name)
    model = create_classifier(name, num_classes=1, pretrained=False, **kwargs).eval()
    if sum(p.numel() for p in model.parameters()) > SMALL_ENOUGH_TO_RUN:
        pytest.skip(f"{name} has no small-width config in timm; its shapes are checked on meta")
    side = _input_side(model)
    pixels = torch.rand(2, 3, side, side)
    file = save_classifier(model, tmp_path / "classifier.safetensors", create_kwargs=kwargs)
    loaded = create_classifier(file).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels), model(pixels), rtol=0, atol=0)
    assert loaded(pixels).shape == (2, 1)


def test_pth_state_dict_needs_the_architecture(tmp_path):
    model = create_classifier("efficientnet_lite0", num_classes=1, pretrained=False).eval()
    file = tmp_path / "detector.pth"
    torch.save(model.state_dict(), file)
    with pytest.raises(ValueError, match="architecture="):
        create_classifier(file)
    loaded = create_classifier(file, architecture="efficientnet_lite0").eval()
    pixels = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels), model(pixels), rtol=0, atol=0)


def test_file_head_is_replaced_when_num_classes_differs(tmp_path):
    model = create_classifier("efficientnet_lite0", num_classes=1000, pretrained=False)
    file = save_classifier(model, tmp_path / "in1k.safetensors")
    assert create_classifier(file, num_classes=None).num_classes == 1000
    assert create_classifier(file, num_classes=1).num_classes == 1


def test_timm_hub_weights_offline_give_the_clear_message():
    with pytest.raises(ModelNotAvailableError) as info:
        create_classifier("convnext_large.fb_in22k_ft_in1k", pretrained=True)
    message = str(info.value)
    assert "convnext_large.fb_in22k_ft_in1k" in message and "classifier" in message
    assert (
        "hf download timm/convnext_large.fb_in22k_ft_in1k" in message and ".safetensors" in message
    )
    assert "Traceback" not in message and info.value.__cause__ is None


def test_unknown_name_lists_what_is_valid():
    with pytest.raises(ValueError, match="timm.list_models"):
        create_classifier("resnet_does_not_exist")


# -- EfficientNet-Lite0 from the PyPI package -------------------------------------------------

CAT_CLASSES = {281, 282, 283, 285, 287}
"""tabby, tiger cat, Persian, Egyptian cat, lynx."""
PHOTO_EXPECTATIONS = {
    "chelsea": CAT_CLASSES,
    "coffee": {504, 967, 968},  # coffee mug, espresso, cup
    "rocket": {657, 744, 812},  # missile, projectile, space shuttle
    "flower": {985},  # daisy: ImageNet normalisation ranks "lampshade" first here
}


def _photo(name: str) -> np.ndarray:
    from skimage import data
    from sklearn.datasets import load_sample_image

    return load_sample_image(f"{name}.jpg") if name == "flower" else getattr(data, name)()


@pytest.fixture(scope="module")
def lite0_in1k(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(paths, "data_dir", lambda: tmp_path_factory.mktemp("data"))
        yield create_classifier("efficientnet_lite0", num_classes=None).eval()


def test_conversion_is_cached_as_safetensors_and_reused(data_dir):
    first = lite0.efficientnet_lite0_state_dict()
    cache = data_dir / "weights" / "efficientnet_lite0.pkg_in1k.safetensors"
    assert cache.is_file() and not list(cache.parent.glob(".*.tmp"))
    again = lite0.efficientnet_lite0_state_dict()
    assert len(first) == 296 and first.keys() == again.keys()
    for key in first:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)


def test_conversion_rejects_a_shape_mismatch():
    source = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    template = {"x.weight": torch.zeros(3, 2), "x.bias": torch.zeros(2)}
    with pytest.raises(ValueError, match="does not match"):
        lite0.convert_lite0_keys(source, template)


@pytest.fixture(scope="module")
def lite0_top5(lite0_in1k) -> dict[str, list[int]]:
    """Top-5 ImageNet classes per photo, preprocessed by timm from the model's pretrained_cfg."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=lite0_in1k))
    names = sorted(PHOTO_EXPECTATIONS)
    pixels = torch.stack(
        [transform(Image.fromarray(_photo(name)).convert("RGB")) for name in names]
    )
    with torch.no_grad():
        top5 = lite0_in1k(pixels).topk(5).indices.tolist()
    return dict(zip(names, top5))


@pytest.mark.parametrize("photo", sorted(PHOTO_EXPECTATIONS))
def test_lite0_weights_classify_package_photos(lite0_top5, photo):
    top5 = lite0_top5[photo]
    assert top5[0] in PHOTO_EXPECTATIONS[photo], f"{photo}: top-5 ImageNet classes {top5}"


def test_lite0_pretrained_cfg_records_its_normalisation(lite0_in1k):
    assert lite0_in1k.pretrained_cfg["mean"] == lite0.EFFICIENTNET_LITE0_MEAN == (0.5, 0.5, 0.5)
    assert lite0_in1k.pretrained_cfg["tag"] == "pkg_in1k"


# -- (feature map, global vector) for EGRE ----------------------------------------------------


def test_clip_resnet50_yields_layer3_and_attention_pool():
    with torch.device("meta"):
        backbone = FeatureBackbone.from_ref("resnet50_clip.openai", pretrained=False)
        feature_map, global_vector = backbone(torch.empty(1, 3, 224, 224))
    assert feature_map.shape == (1, 1024, 14, 14) and global_vector.shape == (1, 1024)
    assert (backbone.feature_channels, backbone.global_dim, backbone.feature_stride) == (
        1024,
        1024,
        16,
    )
    assert backbone.model.feature_info[backbone.spec.feature_index]["module"] == "stages.2"
    assert backbone.input_mean == backbones.IMAGENET_MEAN  # EGRE's code, not CLIP's mean


def test_lite0_features_feed_its_own_classifier(lite0_in1k):
    backbone = FeatureBackbone(lite0_in1k).eval()
    pixels = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        feature_map, global_vector = backbone(pixels)
        logits = lite0_in1k(pixels)
    assert feature_map.shape == (1, 112, 14, 14) and global_vector.shape == (1, 1280)
    assert (backbone.feature_channels, backbone.global_dim, backbone.feature_stride) == (
        112,
        1280,
        16,
    )
    torch.testing.assert_close(lite0_in1k.get_classifier()(global_vector), logits)
