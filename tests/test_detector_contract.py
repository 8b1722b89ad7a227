"""One test over every registered detector kind (the timm way): what ``lare2 predict`` relies on.

For each kind in :data:`lare2lib.detectors.registry.DETECTOR_KINDS`: build a tiny random
instance, save it, reload it strictly, and score decoded 8-bit RGB images of mixed sizes with
and without class names. Scores are probabilities and survive the round trip unchanged. A new
kind must add its tiny config to ``TINY_CONFIGS`` (the first test fails until it does).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lare2lib.detectors.registry import (
    DETECTOR_KINDS,
    build_detector,
    load_detector,
    read_detector_metadata,
    save_detector,
)
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs

SIZES = [(40, 40), (33, 57), (64, 48), (24, 30)]
"""Mixed sizes, one smaller than the 32 px crop (padded or zoomed, never an error)."""
CLASS_NAMES = ["cat", None, "rocket", "coffee"]


def tiny_configs(ldm_folder: str) -> dict[str, dict]:
    backbone = dict(backbone="convnext_large", pretrained=False)
    return {
        "egre": dict(variant="egre", **backbone, crop_size=32, heads=2, ldm=ldm_folder,
                     backbone_kwargs=tiny_classifier_kwargs("convnext_large"),
                     lare={"timestep": 200, "ensemble": 2, "image_size": 64, "prompt": "class"}),
        "classifier": dict(**backbone, crop_size=32,
                           create_kwargs=tiny_classifier_kwargs("convnext_large")),
    }


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    from lare2lib.models.tiny import make_tiny_mini_ldm

    folder = make_tiny_mini_ldm(tmp_path_factory.mktemp("weights"),
                                class_names=("cat", "coffee", "rocket"))
    return tiny_configs(str(folder))


def decoded_images(seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)) for h, w in SIZES]


def test_every_registered_kind_has_a_tiny_config():
    assert set(tiny_configs("unused")) == set(DETECTOR_KINDS)


@pytest.mark.parametrize("kind", sorted(DETECTOR_KINDS))
def test_build_save_reload_and_score(kind, configs, tmp_path):
    torch.manual_seed(0)
    model = build_detector(kind, **configs[kind]).eval()
    assert model.kind == kind
    path = save_detector(model, tmp_path / f"{kind}.safetensors")
    assert read_detector_metadata(path)["kind"] == kind
    reloaded = load_detector(path)  # strict: every weight fits, none left over

    images, ids = decoded_images(), [f"img/{k}" for k in range(len(SIZES))]
    for names in (None, CLASS_NAMES):
        with torch.inference_mode():
            scores = model.score_images(images, ids, seed=3, batch_size=3, class_names=names)
            again = reloaded.score_images(images, ids, seed=3, batch_size=2, class_names=names)
        assert scores.shape == (len(SIZES),) and scores.dtype.is_floating_point
        assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
        torch.testing.assert_close(again, scores)  # same weights, same seeds, any batching
