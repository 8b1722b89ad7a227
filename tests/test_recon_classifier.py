"""Reconstruction pairs at native resolution, and the reconstruction-trained classifier kind.

Pairs: tiny random VAEs (SD geometry, 8×) on images of mixed sizes; sides are cut to the
multiple, buckets batch equal sizes, a reconstruction does not depend on its batch, and the
folder path reproduces the world's own reconstruction function. Classifier: a tiny timm
ConvNeXt; crops, tries, small images, the detector file format, training with the one loop,
``lare2 train classifier`` and ``lare2 predict``.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lare2lib.data import transforms
from lare2lib.data.images import BadImageError
from lare2lib.data.imagesets import ImageSet
from lare2lib.detectors import recon_classifier, registry
from lare2lib.detectors.recon_classifier import ReconClassifier, ReconPairs, reconstruct_images
from lare2lib.models.autoencoders import load_autoencoder
from lare2lib.models.tiny import make_tiny_kl, make_tiny_vq
from lare2lib.models.tiny_detectors import tiny_classifier_kwargs
from lare2lib.world import autoencoder_training

SIZES = [(40, 56), (33, 47), (40, 56), (64, 64), (17, 30), (40, 56), (64, 64)]
TINY = dict(backbone="convnext_large", pretrained=False, crop_size=32,
            create_kwargs=tiny_classifier_kwargs("convnext_large"))


def random_images(sizes=SIZES, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)) for h, w in sizes]


@pytest.fixture(scope="module")
def tiny_kl(tmp_path_factory):
    return load_autoencoder(make_tiny_kl(tmp_path_factory.mktemp("kl") / "vae"))


@pytest.fixture(scope="module")
def tiny_vq(tmp_path_factory):
    return load_autoencoder(make_tiny_vq(tmp_path_factory.mktemp("vq") / "vq", spatial_norm=False))


# -- pairs ------------------------------------------------------------------------------------


def test_cut_to_multiple_matches_the_pil_transform():
    for image in random_images():
        cut = recon_classifier.cut_to_multiple(image, 8)
        pil = transforms.cut_to_multiple(Image.fromarray(image.permute(1, 2, 0).numpy()), 8)
        assert torch.equal(cut, torch.from_numpy(np.array(pil)).permute(2, 0, 1))
        assert cut.shape[1] % 8 == 0 and cut.shape[2] % 8 == 0
    with pytest.raises(BadImageError, match="too_small|no side"):
        recon_classifier.cut_to_multiple(random_images([(5, 30)])[0], 8)


def test_size_buckets_group_equal_sizes_in_order():
    sizes = [(8, 8), (16, 8), (8, 8), (8, 8), (16, 8)]
    assert recon_classifier.size_buckets(sizes, 2) == [[0, 2], [3], [1, 4]]
    for batch in recon_classifier.size_buckets([tuple(s) for s in SIZES], 2):
        assert len(batch) <= 2 and len({SIZES[i] for i in batch}) == 1


def test_reconstruction_is_cut_to_the_multiple_and_batched_by_size(tiny_kl, monkeypatch):
    images = random_images()
    ids = [f"img{k}" for k in range(len(images))]
    shapes = []
    encode = tiny_kl.encode
    monkeypatch.setattr(tiny_kl, "encode", lambda x: shapes.append(tuple(x.shape)) or encode(x))
    real, recon = reconstruct_images(tiny_kl, images, ids, seed=0, batch_size=2)
    assert recon_classifier.downsampling_factor(tiny_kl) == 8
    for image, a, b in zip(images, real, recon):
        h, w = image.shape[1:]
        assert a.shape == b.shape == (3, h - h % 8, w - w % 8)
        assert a.dtype == b.dtype == torch.uint8
    # buckets: (40, 56) ×3 → batches of 2 + 1; (32, 40); (64, 64) ×2; (16, 24)
    assert sorted(shapes) == sorted([(2, 3, 40, 56), (1, 3, 40, 56), (1, 3, 32, 40),
                                     (2, 3, 64, 64), (1, 3, 16, 24)])


@pytest.mark.parametrize("ae_name", ["tiny_kl", "tiny_vq"])
def test_reconstruction_does_not_depend_on_batching(ae_name, request):
    ae = request.getfixturevalue(ae_name)
    images = random_images()
    ids = [f"img{k}" for k in range(len(images))]
    _, alone = reconstruct_images(ae, images, ids, batch_size=1, seed=5)
    order = [6, 0, 3, 1, 5, 2, 4]
    _, shuffled = reconstruct_images(ae, [images[i] for i in order], [ids[i] for i in order],
                                     batch_size=16, seed=5)
    for position, index in enumerate(order):
        difference = (alone[index].int() - shuffled[position].int()).abs()
        assert difference.max() <= 1  # float summation order only, at a rounding boundary
        assert (difference == 0).float().mean() > 0.99


def test_posterior_sample_depends_on_seed_and_id(tiny_kl):
    image = random_images([(32, 32)])[0]
    _, (a,) = reconstruct_images(tiny_kl, [image], ["x"], seed=0)
    _, (b,) = reconstruct_images(tiny_kl, [image], ["x"], seed=1)
    _, (c,) = reconstruct_images(tiny_kl, [image], ["y"], seed=0)
    _, (d,) = reconstruct_images(tiny_kl, [image], ["x"], seed=0)
    assert torch.equal(a, d) and not torch.equal(a, b) and not torch.equal(a, c)


def test_matches_the_worlds_reconstruction_function(tiny_kl, tiny_vq):
    """The folder path and the world's cached sets come from the same computation."""
    pixels = torch.stack(random_images([(32, 32)] * 4))
    ids = [f"photo#{k}" for k in range(4)]
    for ae in (tiny_kl, tiny_vq):
        expected = autoencoder_training.reconstruct(ae, pixels, 3, ids)
        _, recon = reconstruct_images(ae, pixels, ids, seed=3, batch_size=4)
        assert torch.equal(torch.stack(recon), expected)


def test_vq_quantisation_flag_and_truncation(tiny_vq):
    images = random_images([(32, 32)] * 2)
    _, quantised = reconstruct_images(tiny_vq, images, ["a", "b"])
    _, raw = reconstruct_images(tiny_vq, images, ["a", "b"], quantize=False)
    _, truncated = reconstruct_images(tiny_vq, images, ["a", "b"], quantize=False, rounding="truncate")
    assert not torch.equal(quantised[0], raw[0])
    assert ((raw[0].int() - truncated[0].int()) >= 0).all()  # truncation never rounds up
    with pytest.raises(ValueError, match="rounding"):
        reconstruct_images(tiny_vq, images, ["a", "b"], rounding="floor")


def test_reconstruct_folder_writes_pairs_reports_bad_files_and_resumes(tiny_kl, tmp_path, monkeypatch):
    source = tmp_path / "reals"
    (source / "sub").mkdir(parents=True)
    for k, image in enumerate(random_images()):
        folder = source / "sub" if k % 2 else source
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"im{k}.jpg", quality=90)
    (source / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "pairs"
    manifest = recon_classifier.reconstruct_folder(source, out, tiny_kl, ae_name="tiny", batch_size=3, progress=False)
    assert len(manifest["pairs"]) == len(SIZES) and "broken.png" in manifest["bad"]
    assert json.loads((out / "pairs.json").read_text())["pairs"] == manifest["pairs"]
    for image_id in manifest["pairs"]:
        real = Image.open(out / "real" / f"{image_id}.png")
        recon = Image.open(out / "recon" / f"{image_id}.png")
        assert real.size == recon.size and real.size[0] % 8 == 0 and real.size[1] % 8 == 0
    calls = []
    monkeypatch.setattr(recon_classifier.pairs, "reconstruct_images", lambda *a, **k: calls.append(1) or ([], []))
    again = recon_classifier.reconstruct_folder(source, out, tiny_kl, progress=False)
    assert not calls and again["pairs"] == manifest["pairs"]
    # a source file replaced under the same name is reconstructed again, and only it
    replaced = random_images([(40, 48)])[0]
    Image.fromarray(replaced.permute(1, 2, 0).numpy()).save(source / "im0.jpg", quality=70)
    redone = []
    monkeypatch.setattr(recon_classifier.pairs, "reconstruct_images",
                        lambda ae, images, ids, **k: redone.extend(ids) or (images, images))
    recon_classifier.reconstruct_folder(source, out, tiny_kl, progress=False)
    assert redone == ["im0.jpg"]


def test_reencode_passes_both_classes_through_one_codec(tiny_kl, tmp_path):
    source = tmp_path / "reals"
    source.mkdir()
    Image.fromarray(random_images([(32, 32)])[0].permute(1, 2, 0).numpy()).save(source / "a.png")
    lossless = recon_classifier.reconstruct_folder(source, tmp_path / "png", tiny_kl, progress=False)
    jpeg = recon_classifier.reconstruct_folder(source, tmp_path / "jpeg", tiny_kl, reencode="jpeg",
                                      jpeg_quality=70, progress=False)
    assert lossless["pairs"] == jpeg["pairs"] == ["a.png"]
    for cls in ("real", "recon"):
        a = np.asarray(Image.open(tmp_path / "png" / cls / "a.png.png"), dtype=np.int64)
        b = np.asarray(Image.open(tmp_path / "jpeg" / cls / "a.png.png"), dtype=np.int64)
        expected = np.asarray(transforms.reencode(Image.fromarray(a.astype(np.uint8)), "jpeg", 70))
        assert np.array_equal(b, expected)


def test_reconstruction_speed_reports_images_per_second(tiny_kl):
    speed = recon_classifier.reconstruction_speed(tiny_kl, size=32, batch_size=2, images=4, repeats=2)
    assert speed["images_per_second"] > 0 and speed["seconds_best"] <= speed["seconds_median"]


# -- the dataset -------------------------------------------------------------------------------


def test_pairs_dataset_labels_and_windows(tmp_path, tiny_kl):
    real = ImageSet("r", torch.stack(random_images([(32, 32)] * 3)), torch.zeros(3, dtype=torch.long),
                    ["a", "b", "c"])
    recon = ImageSet("f", torch.stack(random_images([(32, 32)] * 3, seed=1)), torch.zeros(3, dtype=torch.long),
                     ["a", "b", "c"])
    pairs = ReconPairs.from_sets(real, recon)
    assert pairs.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(pairs[4]["image"], recon.pixels[1]) and int(pairs[4]["label"]) == 1

    source = tmp_path / "reals"
    source.mkdir()
    for k, image in enumerate(random_images()):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(source / f"{k}.png")
    recon_classifier.reconstruct_folder(source, tmp_path / "pairs", tiny_kl, progress=False)
    folder = ReconPairs.from_folder(tmp_path / "pairs", window=48)
    assert len(folder) == 2 * len(SIZES)
    assert all(folder[i]["image"].shape == (3, 48, 48) for i in range(len(folder)))


# -- the classifier ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return ReconClassifier(**TINY).eval()


def test_forward_crops_randomly_in_training_and_centrally_in_eval(classifier):
    x = torch.stack(random_images([(48, 40)] * 4))
    seen = []
    handle = classifier.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        classifier.eval()
        assert classifier({"image": x}).shape == (4,)
        classifier.train()
        torch.manual_seed(1)
        classifier({"image": x})
        torch.manual_seed(1)
        classifier({"image": x})
        classifier.eval()
    finally:
        handle.remove()
    mean, std = classifier.mean, classifier.std
    centre = (x[:, :, 8:40, 4:36].float() / 255 - mean) / std
    torch.testing.assert_close(seen[0], centre)
    assert seen[1].shape == (4, 3, 32, 32) and torch.equal(seen[1], seen[2])
    with pytest.raises(ValueError, match="smaller than the 32px crop"):
        classifier({"image": x[:, :, :20]})


def test_tries_are_nested_seeded_per_image_and_averaged(classifier):
    image = random_images([(64, 80)])[0]
    ten = classifier.crops(image, "img", 10, seed=0)
    one = classifier.crops(image, "img", 1, seed=0)
    assert torch.equal(ten[0], one[0]) and len({c.sum().item() for c in ten}) > 1
    assert not torch.equal(classifier.crops(image, "other", 1, seed=0)[0], one[0])
    with torch.no_grad():
        logits = classifier({"image": torch.stack(ten)})
    expected = torch.sigmoid(logits).mean()
    score = classifier.score_images([image], ["img"], tries=10)
    torch.testing.assert_close(score, expected.reshape(1))
    centre = classifier.crops(image, "img", 0, seed=0)[0]
    assert torch.equal(centre, image[:, 16:48, 24:56])


def test_scores_do_not_depend_on_batch_or_order(classifier):
    images = random_images([(40, 40), (36, 50), (64, 64), (33, 33), (40, 40)])
    ids = [f"i{k}" for k in range(len(images))]
    a = classifier.score_images(images, ids, tries=3, batch_size=3)
    b = classifier.score_images(images[::-1], ids[::-1], tries=3, batch_size=64)
    torch.testing.assert_close(a, b.flip(0), rtol=1e-5, atol=1e-6)
    assert a.shape == (5,) and ((a > 0) & (a < 1)).all()


def test_small_images_are_reflect_padded_never_upscaled(classifier):
    small = random_images([(20, 12)])[0]
    crop = classifier.crops(small, "s", 1, seed=0)[0]
    assert crop.shape == (3, 32, 32)
    # every row of the padded crop is a row of the image, mirrored: no new pixel values
    assert set(crop.flatten().tolist()) <= set(small.flatten().tolist())
    assert classifier.score_images([small], ["s"]).shape == (1,)
    strict = ReconClassifier(**{**TINY, "small_image_policy": "skip"})
    with pytest.raises(BadImageError, match="smaller"):
        strict.score_images([small], ["s"])
    with pytest.raises(ValueError, match="small_image_policy"):
        ReconClassifier(**{**TINY, "small_image_policy": "zoom"})


def test_config_rebuilds_the_model_and_round_trips_through_the_detector_file(classifier, tmp_path):
    assert classifier.config["mean"] == [0.485, 0.456, 0.406]  # resolved, so a reload cannot drift
    path = registry.save_detector(classifier, tmp_path / "det.safetensors")
    loaded = registry.load_detector(path)
    assert isinstance(loaded, ReconClassifier) and loaded.config == classifier.config
    images = random_images([(40, 40), (50, 36)])
    torch.testing.assert_close(loaded.score_images(images, ["a", "b"], tries=2),
                               classifier.score_images(images, ["a", "b"], tries=2), rtol=0, atol=0)


def test_normalisation_is_imagenet_for_every_backbone_as_released():
    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # the release's transforms.Normalize
    for name in ("efficientnet_lite0", "tf_efficientnetv2_b0", "eva02_large_patch14_clip_224"):
        model = ReconClassifier(name, pretrained=False, crop_size=32, create_kwargs=(
            {"img_size": 28, "embed_dim": 32, "depth": 1, "num_heads": 2} if name.startswith("eva") else {}))
        assert model.config["mean"] == pytest.approx(imagenet[0]) and model.config["std"] == pytest.approx(imagenet[1])
    own = ReconClassifier("eva02_large_patch14_clip_224", pretrained=False, crop_size=28, normalisation="model",
                          create_kwargs={"img_size": 28, "embed_dim": 32, "depth": 1, "num_heads": 2})
    assert own.config["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])  # CLIP's statistics
    with pytest.raises(ValueError, match="imagenet.*model"):
        ReconClassifier("efficientnet_lite0", pretrained=False, normalisation="clip")


def test_packaged_backbone_keeps_its_normalisation_after_reload(tmp_path):
    model = ReconClassifier("efficientnet_lite0", pretrained=True, crop_size=32, normalisation="model")
    assert model.config["mean"] == [0.5, 0.5, 0.5] and model.config["std"] == [0.5, 0.5, 0.5]
    loaded = registry.load_detector(registry.save_detector(model, tmp_path / "lite0.safetensors"))
    assert loaded.config["mean"] == [0.5, 0.5, 0.5] and torch.equal(loaded.mean, model.mean)


# -- training and the command line ---------------------------------------------------------------


class FakeWorld:
    """What ``lare2 train classifier`` reads from a world, without building one."""

    def __init__(self, size: int = 40):
        self.folder = type("F", (), {"name": "fake-world"})()

        def images(n, smooth, seed):
            pixels = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size),
                                                                          dtype=np.uint8))
            if smooth:  # "reconstructions": blurred, so a classifier can learn them quickly
                pixels = torch.nn.functional.avg_pool2d(pixels.float(), 3, 1, 1).round().to(torch.uint8)
            return ImageSet("s", pixels, torch.zeros(n, dtype=torch.long), [f"{seed}/{k}" for k in range(n)])

        self.real = {"train": images(24, False, 1), "val": images(8, False, 2), "test": images(8, False, 3)}
        self._recon = {split: images(len(s), True, 10 + k) for k, (split, s) in enumerate(self.real.items())}

    def reconstructions(self, ae, split):
        assert ae == "kl_ae"
        return self._recon[split]


def test_train_command_on_world_data_then_predict_a_folder(tmp_path, monkeypatch):
    from lare2lib.pipeline import cli
    from lare2lib.world import build

    monkeypatch.setattr(build, "load_world", lambda profile, progress=True: FakeWorld())
    out = tmp_path / "run"
    # a tiny ConvNeXt through a local file (the CLI's --backbone accepts timm names and files)
    from lare2lib.models.backbones import create_classifier, save_classifier

    tiny = create_classifier("convnext_large", num_classes=1, pretrained=False, **TINY["create_kwargs"])
    backbone = save_classifier(tiny, tmp_path / "tiny.safetensors", create_kwargs=TINY["create_kwargs"])
    code = cli.main(["train", "classifier", "--profile", "smoke", "--out", str(out), "--backbone",
                     str(backbone), "--crop", "32", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3",
                     "--no-progress"])
    assert code == 0
    history = json.loads((out / "state.json").read_text())["history"]
    assert len(history) == 2 and "val_auc" in history[0]
    detector = registry.load_detector(out / "best.safetensors")
    assert detector.config["crop_size"] == 32 and detector.config["architecture"] == "convnext_large"

    folder = tmp_path / "images"
    folder.mkdir()
    for k, image in enumerate(random_images([(32, 32), (20, 28), (48, 40)])):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{k}.png")
    (folder / "bad.png").write_bytes(b"nope")
    scores = tmp_path / "scores.csv"
    assert cli.main(["predict", "--detector", str(out / "best.safetensors"), str(folder), "--tries", "10",
                     "--out", str(scores), "--no-progress"]) == 0
    rows = {row["image_id"]: row for row in csv.DictReader(scores.open())}
    assert set(rows) == {"0.png", "1.png", "2.png", "bad.png"}
    assert all(0 < float(rows[f"{k}.png"]["score"]) < 1 for k in range(3))
    assert rows["bad.png"]["status"].startswith("bad") and rows["bad.png"]["score"] == ""


def test_train_command_on_a_folder_reconstructs_then_trains(tmp_path, monkeypatch):
    from lare2lib.pipeline import cli

    source = tmp_path / "reals"
    source.mkdir()
    for k, image in enumerate(random_images([(40, 48), (64, 64), (33, 47), (40, 48)] * 4)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(source / f"{k:02d}.png")
    vae = make_tiny_kl(tmp_path / "vae")
    out = tmp_path / "run"
    args = ["train", "classifier", "--profile", "full", "--out", str(out), "--real", str(source),
            "--val-fraction", "0.3",
            "--autoencoder", str(vae), "--backbone", "convnext_large", "--no-pretrained", "--crop", "32",
            "--window", "40", "--epochs", "1", "--batch-size", "8", "--no-progress"]
    monkeypatch.setattr(recon_classifier.training, "ReconClassifier",
                        lambda *a, **k: ReconClassifier(*a, **{**k, "create_kwargs": TINY["create_kwargs"]}))
    assert cli.main(args) == 0
    manifest = json.loads((out / "pairs" / "train" / "pairs.json").read_text())
    assert len(manifest["pairs"]) == 16 and manifest["multiple"] == 8
    assert (out / "best.safetensors").is_file()
    with pytest.raises(ValueError, match="--real"):
        recon_classifier.train_command(cli.build_parser(command="train").parse_args(
            ["train", "classifier", "--profile", "full", "--out", str(tmp_path / "x")]))


def test_default_crops_follow_the_paper_at_full_scale():
    from lare2lib.core.profiles import get_profile

    assert recon_classifier.default_crop(get_profile("mini")) == 48
    assert recon_classifier.default_crop(get_profile("smoke")) == 24
    assert recon_classifier.default_crop(get_profile("full"), "convnext_large.fb_in22k_ft_in1k") == 256
    eva = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"
    assert recon_classifier.default_crop(get_profile("full"), eva) == 252
    assert recon_classifier.backbone_create_kwargs(eva, 252) == {"img_size": 252}
    tiny_eva = {**tiny_classifier_kwargs("eva02_large_patch14_448"), **recon_classifier.backbone_create_kwargs(eva, 252)}
    model = ReconClassifier("eva02_large_patch14_448", pretrained=False, crop_size=252, create_kwargs=tiny_eva)
    with torch.no_grad():
        assert model.eval()({"image": torch.zeros(1, 3, 260, 252, dtype=torch.uint8)}).shape == (1,)


def test_validation_ids_are_a_stable_hash_share_with_one_held_out_of_a_small_folder():
    from lare2lib.detectors.recon_classifier.pairs import is_val, split_ids

    ids = [f"img{k}.png" for k in range(2000)]
    train, val = split_ids(ids, 0.05)
    assert val == [i for i in ids if is_val(i, 0.05)] and 60 < len(val) < 140
    assert sorted(train + val) == sorted(ids)
    small = ["a.png", "b.png", "c.png"]
    assert not any(is_val(i, 0.05) for i in small)
    train, val = split_ids(small, 0.05)
    assert len(val) == 1 and sorted(train + val) == sorted(small)
    assert split_ids(small + ["d.png"], 0.05)[1] in (val, ["d.png"])  # grows without reshuffling
    assert split_ids(["only.png"], 0.05) == (["only.png"], [])
