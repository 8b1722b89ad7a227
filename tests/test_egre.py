"""EGRE (lare2lib.detectors.egre, egre_heads): ESR / ECR as METHODS.md §2 gives them, every variant, checkpoints,
scoring from raw images, and the `lare2 predict` path with bad files."""

from __future__ import annotations

import csv

import pytest
import torch

from lare2lib.detectors.egre import VARIANTS, EgreDetector, default_config
from lare2lib.detectors.egre_heads import ChannelRefinement, LareCNN, SpatialRefinement
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs

TINY = dict(backbone="convnext_large", pretrained=False,
            backbone_kwargs=tiny_classifier_kwargs("convnext_large"))
"""A small random timm CNN: stride-16 map of 64 channels, global vector of 128."""
CROP = 32


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def batch_for(model: EgreDetector, size: int = 2, map_side: int = 8, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(size, 3, CROP, CROP, generator=generator),
            "lare": torch.rand(size, 4, map_side, map_side, generator=generator),
            "label": torch.arange(size) % 2}


def tiny_detector(variant: str = "egre", **overrides) -> EgreDetector:
    torch.manual_seed(0)
    return EgreDetector(variant=variant, **{**TINY, "crop_size": CROP, "heads": 2, **overrides})


# -- the blocks ---------------------------------------------------------------------------------


def test_parameter_counts_of_the_1024_wide_blocks_match_the_paper():
    esr = SpatialRefinement(1024, (14, 14))
    ecr = ChannelRefinement(1024)
    # bias conv 4·8+8, positions 197·1024, q/k/v 3·(1024·512+512), out 512·1024+1024, LN 2·1024
    assert n_params(esr) == 40 + 197 * 1024 + 3 * (1024 * 512 + 512) + 512 * 1024 + 1024 + 2048
    assert n_params(esr) == 2_303_528  # the paper's "≈ 2.30 M"
    assert n_params(ecr) == 4 * 128 + 128 * 1024 == 131_584  # "≈ 0.13 M"
    assert esr.head_dim == 64 and esr.heads == 8
    assert all(float(p.detach().abs().sum()) == 0 for p in (esr.q.bias, esr.k.bias, esr.v.bias))


def test_esr_bias_moves_attention_towards_the_high_error_token():
    torch.manual_seed(0)
    esr = SpatialRefinement(16, (3, 3), heads=2, dropout=0.0).eval()
    with torch.no_grad():
        esr.bias.weight.zero_()
        esr.bias.weight[:, 0] = 5.0  # both heads: logit bias = 5 × channel 0 of the pooled map
        esr.bias.bias.zero_()
    features = torch.randn(1, 16, 3, 3)
    hot = torch.zeros(1, 4, 12, 12)
    hot[:, 0, 4:8, 8:12] = 1.0  # the token at grid row 1, column 2
    x_flat, flat = esr(features, torch.zeros_like(hot))
    x_hot, biased = esr(features, hot)
    token = 1 + 1 * 3 + 2  # column 0 is the mean token
    assert torch.allclose(biased.sum(-1), torch.ones(1, 2))
    assert (biased[0, :, token] > flat[0, :, token]).all()
    assert not torch.allclose(x_hot, x_flat)
    with pytest.raises(ValueError, match="token grid"):
        esr(torch.randn(1, 16, 4, 4), hot)


def _release_esr(esr: SpatialRefinement, features: torch.Tensor, error_map: torch.Tensor) -> torch.Tensor:
    """The released ESR (METHODS.md §2) written out head by head and image by image: tokens with
    the mean prepended plus positions, the mean token as the single query, logits biased by the
    pooled map, and ``LayerNorm(query + out)``."""
    batch, channels, height, width = features.shape
    bias = esr.bias(torch.nn.functional.adaptive_avg_pool2d(error_map, (height, width))).flatten(2)
    rows = []
    for b in range(batch):
        tokens = features[b].reshape(channels, -1).T                          # (HW, C)
        x = torch.cat([tokens.mean(0, keepdim=True), tokens]) + esr.position  # (L, C)
        q, k, v = esr.q(x[0]), esr.k(x), esr.v(x)
        heads = []
        for h in range(esr.heads):
            part = slice(h * esr.head_dim, (h + 1) * esr.head_dim)
            head_bias = torch.cat([bias[b, h].mean(0, keepdim=True), bias[b, h]])
            logits = k[:, part] @ q[part] / esr.head_dim ** 0.5 + head_bias     # (L,)
            heads.append(logits.softmax(0) @ v[:, part])
        out = esr.out(torch.cat(heads))
        rows.append(torch.nn.functional.layer_norm(x[0] + out, (channels,), esr.norm.weight, esr.norm.bias))
    return torch.stack(rows)


def test_esr_equals_the_released_attention_pool():
    torch.manual_seed(0)
    esr = SpatialRefinement(32, (3, 3), heads=4).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias, so every term is exercised
        esr.norm.weight.uniform_(0.5, 1.5), esr.norm.bias.normal_(), esr.bias.weight.normal_()
    features, error_map = torch.randn(3, 32, 3, 3), torch.rand(3, 4, 12, 12)
    with torch.no_grad():
        ours, _ = esr(features, error_map)
        torch.testing.assert_close(ours, _release_esr(esr, features, error_map), rtol=1e-5, atol=1e-5)
    # the output projection is initialised as released: xavier-uniform weight, zero bias
    bound = (6 / (esr.out.in_features + esr.out.out_features)) ** 0.5
    assert float(esr.out.weight.detach().abs().max()) <= bound and float(esr.out.bias.detach().abs().sum()) == 0


class _ReleaseBlock(torch.nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout)
        self.c2, self.b2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(cout)
        self.skip = torch.nn.Sequential()
        if stride != 1 or cin != cout:  # the release's shortcut: a 3×3 convolution
            self.skip = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                            torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.skip(x))


def test_lare_cnn_is_the_released_resnet():
    """[2, 2, 2] basic blocks of 16/32/64 channels, 3×3 shortcuts, written out independently."""
    torch.manual_seed(0)
    release = torch.nn.Sequential(
        torch.nn.Conv2d(4, 16, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        _ReleaseBlock(16, 16), _ReleaseBlock(16, 16), _ReleaseBlock(16, 32, 2), _ReleaseBlock(32, 32),
        _ReleaseBlock(32, 64, 2), _ReleaseBlock(64, 64),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 2)).eval()
    with torch.no_grad():
        for module in release.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial running statistics
                module.running_mean.normal_(), module.running_var.uniform_(0.5, 2.0)
    ours = LareCNN().eval()
    theirs = release.state_dict()
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in theirs.values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.values())))
    error_map = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(error_map), release(error_map))


def test_backbone_only_l2_normalises_the_global_vector_as_released():
    batch = batch_for(tiny_detector())
    norms = {}
    for variant, flag in (("backbone", None), ("esr", None), ("backbone", False)):
        model = tiny_detector(variant, l2_global=flag).eval()
        norms[variant, flag] = model.components(batch)["x_g"].norm(dim=1)
        assert model.config["l2_global"] == (variant == "backbone" and flag is None)
    torch.testing.assert_close(norms["backbone", None], torch.ones(2))
    assert not torch.allclose(norms["esr", None], torch.ones(2))
    assert not torch.allclose(norms["backbone", False], torch.ones(2))


def test_ecr_gates_the_pooled_features():
    ecr = ChannelRefinement(8, hidden=16)
    features, error_map = torch.randn(3, 8, 5, 5), torch.rand(3, 4, 7, 7)
    x_c, gate = ecr(features, error_map)
    assert ((gate > 0) & (gate < 1)).all()
    torch.testing.assert_close(x_c, features.mean(dim=(2, 3)) * gate)
    assert ecr.squeeze.bias is None and ecr.excite.bias is None


# -- the detector ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_a_step_on_a_batch_of_one(variant):
    model = tiny_detector(variant).train()
    batch = batch_for(model, size=1)
    logits = model(batch)
    assert logits.shape == (1, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.nn.functional.cross_entropy(logits, batch["label"]).backward()
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    if variant == "lare_cnn":
        assert model.backbone is None
    if variant in ("esr", "egre"):
        assert any(k.startswith("esr.") for k in changed)
    if variant in ("ecr", "egre"):
        assert any(k.startswith("ecr.") for k in changed)


def test_head_width_follows_the_variant():
    widths = {v: tiny_detector(v).head.in_features for v in ("backbone", "esr", "ecr", "egre")}
    g, c = 128, 64  # the tiny ConvNeXt: pooled vector 128, stride-16 map 64 channels
    assert widths == {"backbone": g, "esr": g + c, "ecr": g + c, "egre": g + 2 * c}


def test_frozen_backbone_stays_fixed_and_cached_features_give_the_same_logits():
    model = tiny_detector("egre", freeze_backbone=True).train()
    assert not model.backbone.training and not any(p.requires_grad for p in model.backbone.parameters())
    model.eval()
    batch = batch_for(model)
    feature_map, global_vector = model.backbone(batch["image"])
    cached = {"feature_map": feature_map, "global": global_vector, "lare": batch["lare"]}
    torch.testing.assert_close(model(cached), model(batch))
    with pytest.raises(ValueError, match="freeze_backbone"):
        tiny_detector("egre")(cached)


def test_checkpoint_reloads_bit_exactly_with_strict_loading(tmp_path):
    from lare2lib.detectors.registry import load_detector, read_detector_metadata, save_detector

    model = tiny_detector("egre", aligned=False, feature="dire").eval()
    path = save_detector(model, tmp_path / "egre.safetensors")
    meta = read_detector_metadata(path)
    assert meta["kind"] == "egre" and meta["config"] == model.config
    reloaded = load_detector(path)
    assert reloaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    batch = batch_for(model)
    assert torch.equal(model(batch), reloaded(batch))
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state["head.extra"] = torch.zeros(1)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        save_file(state, str(tmp_path / "bad.safetensors"), metadata=handle.metadata())
    with pytest.raises(Exception, match="do not fit|Unexpected"):
        load_detector(tmp_path / "bad.safetensors")


def test_config_is_validated_and_profile_defaults_follow_the_issue():
    from lare2lib.core.profiles import get_profile

    with pytest.raises(ValueError, match="variant"):
        EgreDetector(variant="nope", **TINY)
    with pytest.raises(ValueError, match="feature"):
        EgreDetector(feature="nope", **TINY)
    mini, full = default_config(get_profile("mini")), default_config(get_profile("full"))
    assert (mini["backbone"], mini["crop_size"], mini["freeze_backbone"]) == ("efficientnet_lite0", 48, True)
    assert (full["backbone"], full["crop_size"], full["freeze_backbone"]) == ("resnet50_clip.openai", 224, False)
    assert full["lare"] == {"timestep": 200, "ensemble": 4, "image_size": 256, "prompt": "class"}
    with pytest.raises(ValueError, match="unknown EGRE config"):
        default_config(get_profile("mini"), crop=3)


def test_lite0_at_the_mini_crop_gives_a_three_by_three_grid():
    model = EgreDetector(variant="esr", backbone="efficientnet_lite0", pretrained=False,
                         crop_size=48, freeze_backbone=True)
    assert model.esr.grid == (3, 3)
    assert model.esr.position.shape == (10, 112)  # 1 + 3·3 tokens of EfficientNet-Lite0's 112 channels
    assert model.input_mean == (0.5, 0.5, 0.5)


def test_clip_resnet50_egre_runs_a_training_step():
    """The full profile's architecture (random weights): layer3 map 1024-wide, attention-pool
    vector 1024-d, 1024-wide ESR / ECR, at a small crop so the test stays fast."""
    torch.manual_seed(0)
    model = EgreDetector(variant="egre", backbone="resnet50_clip.openai", pretrained=False,
                         crop_size=64, backbone_kwargs={"img_size": 64}).train()
    assert model.backbone.feature_channels == 1024 and model.backbone.global_dim == 1024
    assert model.esr.grid == (4, 4) and model.head.in_features == 3 * 1024
    batch = {"image": torch.randn(1, 3, 64, 64), "lare": torch.rand(1, 4, 8, 8),
             "label": torch.ones(1, dtype=torch.long)}
    loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
    loss.backward()
    assert model.esr.bias.weight.grad is not None and model.backbone.model.stem.conv1.conv.weight.grad is not None


def test_lare_cnn_sees_only_the_map():
    cnn = LareCNN(width=8)
    assert cnn(torch.rand(1, 4, 12, 12)).shape == (1, 2)
    model = tiny_detector("lare_cnn")
    assert torch.equal(model({"lare": torch.ones(2, 4, 8, 8)}),
                       model({"lare": torch.ones(2, 4, 8, 8), "image": torch.randn(2, 3, CROP, CROP)}))


# -- scoring raw images, and `lare2 predict` -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ldm_folder(tmp_path_factory):
    from lare2lib.models.tiny import make_tiny_mini_ldm

    return make_tiny_mini_ldm(tmp_path_factory.mktemp("weights"))  # KL, f = 8


@pytest.fixture(scope="module")
def scorer(tiny_ldm_folder):
    torch.manual_seed(0)
    return EgreDetector(variant="egre", **TINY, crop_size=CROP, ldm=str(tiny_ldm_folder),
                        lare={"timestep": 200, "ensemble": 2, "image_size": 64, "prompt": "class"},
                        heads=2).eval()


def test_score_images_handles_any_size_and_is_seeded(scorer):
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
              for shape in ((3, 64, 64), (3, 40, 56), (3, 16, 20), (3, 80, 96))]
    ids = [f"img{k}" for k in range(len(images))]
    one = scorer.score_images(images, ids, seed=1, batch_size=3)
    assert one.shape == (4,) and ((one > 0) & (one < 1)).all()
    torch.testing.assert_close(one, scorer.score_images(images, ids, seed=1, batch_size=2))
    three = scorer.score_images(images, ids, seed=1, tries=3)
    assert three.shape == (4,) and not torch.allclose(one, three)
    names = ["cat", None, "rocket", "coffee"]
    assert not torch.allclose(one, scorer.score_images(images, ids, seed=1, class_names=names))


def test_score_images_equals_the_dataset_path_for_world_sized_images(scorer):
    """Training items (maps through the feature-store driver, centre crop) and score_images
    (maps from tensors) must give the model the same inputs."""
    import tempfile

    from lare2lib.core.profiles import LareConfig
    from lare2lib.data.store import FeatureStore
    from lare2lib.detectors.egre_data import EgreDataset, ensure_maps, tensor_records

    generator = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8, generator=generator)
    ids, names = ["a", "b", "c"], ["cat", "coffee", None]
    extractor = scorer.map_extractor(seed=4)
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder, {"test": 1})
        maps = ensure_maps(store, extractor, scorer.reference(), tensor_records(pixels, ids, names),
                           LareConfig(ensemble=2, image_size=64), batch_size=2, progress=False)
    dataset = EgreDataset(pixels, ids, [0, 1, 1], maps, crop=CROP, lare_size=64,
                          mean=scorer.input_mean, std=scorer.input_std)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    expected = scorer(batch).softmax(dim=1)[:, 1]
    got = scorer.score_images(list(pixels), ids, seed=4, class_names=names)
    torch.testing.assert_close(got, expected)


def test_predict_scores_a_folder_with_bad_files_and_reports_them(scorer, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from lare2lib.detectors.registry import save_detector
    from lare2lib.pipeline import cli

    checkpoint = save_detector(scorer, tmp_path / "egre.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(((64, 64), (48, 40), (20, 20))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"ok{k}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "scores.csv"
    assert cli.main(["predict", "--detector", str(checkpoint), str(folder), "--out", str(out),
                     "--no-progress"]) == 0
    rows = {row["image_id"]: row for row in csv.DictReader(out.open())}
    assert set(rows) == {"ok0.png", "ok1.png", "ok2.png", "broken.png", "empty.jpg"}
    for name in ("ok0.png", "ok1.png", "ok2.png"):
        assert rows[name]["status"] == "ok" and 0 < float(rows[name]["score"]) < 1
    for name in ("broken.png", "empty.jpg"):
        assert rows[name]["status"].startswith("bad") and rows[name]["score"] == ""
    assert "2 bad" in capsys.readouterr().err
