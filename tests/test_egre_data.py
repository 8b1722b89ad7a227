"""EGRE data and protocol (lare2lib.detectors.egre_data, egre_splits, egre_training, lare2lib.studies.nb02_egre): crop/map alignment, the
cached map and feature stores, and the ablation loop on a tiny stand-in world."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors import egre_data as D
from lare2lib.detectors import egre_splits, egre_training
from lare2lib.detectors import egre
from lare2lib.detectors.egre import build_detector
from lare2lib.models.tiny import TINY_CLASS_NAMES, TinyLDMSpec, tiny_ldm_components
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs
from lare2lib.detectors.train import TrainConfig
from lare2lib.studies import nb02_egre as S
from lare2lib.studies import nb02_figures, nb02_tables

# -- geometry ---------------------------------------------------------------------------------------


def test_world_geometry_windows_are_exact():
    # mini: 64 px images, 16×16 map (f = 4), 48 px crop at multiples of 4 → a 12×12 window
    assert D.map_cell((64, 64), (16, 16)) == 4
    for top, left in ((0, 0), (8, 8), (16, 4)):
        assert D.map_window((top, left), 48, (64, 64), (16, 16)) == (top // 4, top // 4 + 12,
                                                                     left // 4, left // 4 + 12)
    error_map = torch.arange(16 * 16, dtype=torch.float32).view(1, 16, 16)
    window = D.crop_map(error_map, (8, 4), 48, (64, 64), 12)
    assert torch.equal(window, error_map[:, 2:14, 1:13])
    assert torch.equal(D.crop_map(error_map, (8, 4), 48, (64, 64), 12, aligned=False), error_map)
    assert D.window_side(48, 16, 64) == 12 and D.window_side(224, 32, 256) == 28


def test_crop_offsets_are_seeded_snapped_and_distinct():
    offsets = D.crop_offsets("photo#3", (64, 64), 48, count=4, seed=1, step=4)
    assert offsets == D.crop_offsets("photo#3", (64, 64), 48, count=4, seed=1, step=4)
    assert offsets != D.crop_offsets("photo#3", (64, 64), 48, count=4, seed=2, step=4)
    assert len(set(offsets)) == 4
    assert all(0 <= t <= 16 and 0 <= l <= 16 and t % 4 == 0 and l % 4 == 0 for t, l in offsets)
    assert D.crop_offsets("x", (64, 64), 48, centre=True, step=4) == [(8, 8)]
    assert len(D.crop_offsets("x", (52, 52), 48, count=9, step=4)) == 9  # 2×2 positions, repeated


def test_other_sizes_resample_windows_and_pad_small_images():
    error_map = torch.rand(4, 32, 32)  # a 256-squashed SD map
    window = D.crop_map(error_map, (100, 0), 224, (512, 384), 28)
    assert window.shape == (4, 28, 28)
    assert D.map_window((0, 0), 224, (128, 128), (32, 32)) == (0, 32, 0, 32)  # padded: whole map
    small = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    crop = D.crop_pixels(small, (0, 0), 32)
    assert crop.shape == (3, 32, 32)
    torch.testing.assert_close(crop[:, 6:26, 1:31], small)  # centred, reflected around


def test_dataset_items_labels_and_options():
    pixels = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    maps = torch.rand(4, 4, 16, 16)
    kwargs = dict(crop=48, lare_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    train = D.EgreDataset(pixels, list("abcd"), [0, 0, 1, 1], maps, train=True, crops_per_image=3, **kwargs)
    assert len(train) == 12 and train.labels.tolist() == [0] * 6 + [1] * 6
    item = train[5]
    assert item["image"].shape == (3, 48, 48) and item["lare"].shape == (4, 12, 12)
    row, top, left = train.items[5]
    torch.testing.assert_close(item["image"], (pixels[row, :, top:top + 48, left:left + 48] / 255 - 0.5) / 0.5)
    misaligned = train.options(aligned=False, with_image=False)
    assert misaligned[5]["lare"].shape == (4, 16, 16) and "image" not in misaligned[5]
    assert train.aligned and train[5]["lare"].shape == (4, 12, 12)
    test = D.EgreDataset(pixels, list("abcd"), [0, 0, 1, 1], maps, **kwargs)
    assert test.items == [(k, 8, 8) for k in range(4)]
    with pytest.raises(ValueError, match="differ in length"):
        D.EgreDataset(pixels, list("abc"), [0, 0, 1, 1], maps, **kwargs)


# -- a tiny stand-in world ----------------------------------------------------------------------------

SIZE = 32


def _images(name: str, count: int, seed: int) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (count, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    return ImageSet(name, pixels, torch.arange(count) % len(TINY_CLASS_NAMES),
                    [f"{name}/{k}" for k in range(count)])


def fake_world(folder: Path):
    """What world_data reads from a World: real splits, generated sets, names, profile, folder."""
    real = {"train": _images("real_train", 8, 0), "val": _images("real_val", 3, 1),
            "test": _images("real_test", 4, 2)}
    generated = {("g1", "train"): _images("g1_train", 7, 3), ("g1", "val"): _images("g1_val", 3, 4),
                 ("g1", "test"): _images("g1_test", 4, 5), ("g2", "test"): _images("g2_test", 4, 6)}
    profile = SimpleNamespace(seed=0, world=SimpleNamespace(train_generator="g1"))
    return SimpleNamespace(real=real, generated=lambda name, split="test": generated[(name, split)],
                           generators=[SimpleNamespace(name="g1"), SimpleNamespace(name="g2")],
                           class_names=TINY_CLASS_NAMES, profile=profile, folder=folder, train_generator="g1")


TINY_F4 = TinyLDMSpec(vae_widths=(8, 16, 16))
"""The tiny LDM with f = 4, as the mini world: 4×8×8 maps of 32 px images."""

CONFIG = dict(backbone="convnext_large", pretrained=False,
              backbone_kwargs=tiny_classifier_kwargs("convnext_large"), crop_size=SIZE,
              freeze_backbone=True, ldm="tiny", heads=2, dire_steps=2,
              lare={"timestep": 200, "ensemble": 2, "image_size": SIZE, "prompt": "class"})
STUDY = S.Config(train_per_class=6, val_per_class=0, train_crops=2, map_batch_size=8,
                 train=TrainConfig(epochs=2, early_stopping=0, batch_size=4, eval_batch_size=256))


@pytest.fixture(scope="module")
def world_and_data(tmp_path_factory):
    world = fake_world(tmp_path_factory.mktemp("world") / "tiny-world")
    reference = tiny_ldm_components("kl", spec=TINY_F4)
    data = egre_splits.world_data(world, CONFIG, STUDY, features=("lare", "dire"), reference=reference,
                        progress=False)
    return world, reference, data


def test_world_data_builds_every_split_with_both_maps_and_cached_features(world_and_data):
    world, reference, data = world_and_data
    assert len(data.train) == 2 * 6 * 2 and data.train.labels.sum() == 12
    assert len(data.val) == 6 and set(data.test) == {"real", "g1", "g2"}
    assert data.test["real"].labels.sum() == 0 and data.test["g2"].labels.min() == 1
    assert data.train.features is not None and data.train.feature_shape == (64, 2, 2)
    train, val, tests = data.splits("dire", aligned=False)
    assert train[0]["lare"].shape == (4, 8, 8) and not torch.equal(
        train[0]["lare"], data.splits("lare", aligned=False)[0][0]["lare"])
    assert data.train.maps.shape == (12, 4, 8, 8)
    # the stores answer a second build without touching the LDM
    calls = []
    unet_forward = reference.unet.forward
    reference.unet.forward = lambda *a, **k: calls.append(1) or unet_forward(*a, **k)
    try:
        again = egre_splits.world_data(world, CONFIG, STUDY, features=("lare", "dire"), reference=reference,
                             progress=False)
    finally:
        reference.unet.forward = unet_forward
    assert not calls
    torch.testing.assert_close(again.maps["dire"]["test:g2"], data.maps["dire"]["test:g2"])
    torch.testing.assert_close(again.train.features, data.train.features)


@pytest.mark.slow
def test_ablation_runs_every_row_and_summarises_over_seeds(world_and_data):
    _, _, data = world_and_data
    rows = ("backbone", "egre", "lare_cnn", "egre_misaligned", "egre_dire")
    results = S.run_ablation(data, CONFIG, STUDY, seeds=[0, 1], variants=rows, progress=False)
    summary = nb02_tables.ablation_summary(results)
    assert set(summary) == set(rows)
    for row in rows:
        assert set(summary[row]) == {"g1", "g2", "mean"}
        assert summary[row]["mean"]["auc"]["n"] == 2
        assert set(summary[row]["g1"]) >= {"acc", "ap", "auc", "oracle_acc"}
    run = results["egre"][0]
    assert run["epochs"] == 2 and Path(run["checkpoint"]).is_file()
    # a finished run is read back, not retrained
    again = S.run_ablation(data, CONFIG, STUDY, seeds=[0], variants=["egre"], progress=False)
    assert again["egre"][0]["metrics"] == results["egre"][0]["metrics"]
    table = nb02_tables.ablation_table(summary)
    assert table.shape == (len(rows), 3 * 3)
    import matplotlib

    matplotlib.use("Agg", force=True)
    nb02_figures.ablation_figure(summary)
    text = nb02_figures.findings(summary)
    assert "Highest mean AUC" in text and "AUC, aligned against the released misaligned map" in text
    assert "Highest mean ACC" in text


def test_attention_and_gate_pictures_come_from_the_trained_model(world_and_data):
    _, _, data = world_and_data
    model = build_detector(CONFIG, 0).eval()
    _, _, tests = data.splits("lare")
    examples = {name: nb02_figures.attention_examples(model, tests[name], [0, 1]) for name in ("real", "g1")}
    ex = examples["real"]
    assert ex["attention"].shape == (2, 2, 2, 2) and ex["gate"].shape == (2, 64)
    total = ex["attention"].sum(dim=(2, 3)) + ex["mean_token"]
    torch.testing.assert_close(total, torch.ones_like(total))
    import matplotlib

    matplotlib.use("Agg", force=True)
    nb02_figures.attention_figure(examples)
    shuffled = nb02_tables.shuffled_map_metrics(model, tests, seed=1)
    assert set(shuffled) == {"g1", "g2", "mean"} and 0 <= shuffled["mean"]["auc"] <= 1
    from lare2lib.eval.metrics import mean_std

    entry = {"intact": mean_std([{"acc": 0.9, "auc": 0.95}]), "shuffled": mean_std([{"acc": 0.5, "auc": 0.5}])}
    assert "Δ -0.4000" in nb02_figures.shuffle_findings({"egre": entry})
    effect = nb02_figures.bias_effect(examples)
    assert set(effect["real"]) == {"bias_spread", "max_change_pp", "mean_change_pp"}
    nb02_figures.gate_figure({name: e["gate"] for name, e in examples.items()})


def test_genimage_layout_trains_on_one_subset_and_tests_on_all(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for subset in ("imagenet_ai_0419_sdv4", "imagenet_glide"):
        for split in ("train", "val"):
            for label in ("ai", "nature"):
                folder = tmp_path / "genimage" / subset / split / label
                folder.mkdir(parents=True)
                for k in range(4 if split == "train" else 2):
                    side = int(rng.integers(30, 50))
                    Image.fromarray(rng.integers(0, 256, (side, side + 4, 3), dtype=np.uint8)).save(
                        folder / f"n01440764_{k}_{label}.png")
    reference = tiny_ldm_components("kl", spec=TINY_F4)
    config = {**CONFIG, "crop_size": 32}
    data = egre_splits.genimage_data(str(tmp_path / "genimage"), "sdv4", config, STUDY, reference=reference,
                           val_fraction=0.3, progress=False)
    assert set(data.test) == {"imagenet_ai_0419_sdv4", "imagenet_ai_0419_sdv4:real",
                              "imagenet_glide", "imagenet_glide:real"}
    assert len(data.train.ids) + len(data.val.ids) == 8
    assert data.train[0]["lare"].shape == (4, 8, 8)
    with pytest.raises(ValueError, match="matches"):
        egre_splits.genimage_data(str(tmp_path / "genimage"), "imagenet", config, STUDY, reference=reference)
    model = build_detector(config, 0)
    table = egre_training.evaluate_detector(model, data.test)
    assert set(table) == {"imagenet_ai_0419_sdv4", "imagenet_glide", "mean"}


def test_cli_parser_knows_the_egre_arguments():
    from lare2lib.pipeline import cli

    parser = cli.build_parser(command="train")
    args = parser.parse_args(["train", "egre", "--variant", "esr", "--misaligned", "--out", "x.safetensors",
                              "--backbone-mode", "finetune", "--train-subset", "sdv5"])
    assert (args.kind, args.variant, args.misaligned, args.backbone_mode, args.train_subset) == (
        "egre", "esr", True, "finetune", "sdv5")
    profile, config, budget, train = egre.train_setup(args)
    assert config["variant"] == "esr" and config["aligned"] is False and config["freeze_backbone"] is False
    assert budget.train_per_class == egre_splits.SplitBudget().train_per_class == 768
    assert train == egre_training.train_config()  # fine-tuning: the released 1e-4


@pytest.mark.slow
def test_cli_trains_on_the_smoke_world_and_the_checkpoint_predicts(tmp_path, capsys):
    """`lare2 train egre --profile smoke` end to end, then `lare2 predict` with its checkpoint."""
    import json

    from lare2lib.core.profiles import get_profile
    from lare2lib.detectors.registry import load_detector
    from lare2lib.pipeline import cli
    from lare2lib.world.build import load_world

    out = tmp_path / "egre.safetensors"
    argv = ["train", "egre", "--profile", "smoke", "--variant", "egre", "--out", str(out),
            "--epochs", "1", "--no-progress"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["test"]) == {"kl_ldm", "vq_ldm", "kl_ldm_fast", "mean"}
    detector = load_detector(out)
    assert detector.config["variant"] == "egre" and detector.config["crop_size"] == 24
    world = load_world(get_profile("smoke"), progress=False)
    folder = tmp_path / "pngs"
    world.generated("kl_ldm", "test").subset([0, 1]).export_png(folder)
    (folder / "bad.png").write_bytes(b"garbage")
    assert cli.main(["predict", "--detector", str(out), str(folder), "--out", str(tmp_path / "s.csv"),
                     "--no-progress"]) == 0
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert len(lines) == 4 and sum("bad" in line for line in lines) == 1
    # a rerun reads the finished run back instead of training again
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["test"] == report["test"]
