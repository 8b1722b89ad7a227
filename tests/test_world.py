"""The mini world: photo discovery, crops and splits, deterministic and resumable training,
committed-weight verification, sampling and reconstruction sets."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lare2lib.core.profiles import get_profile
from lare2lib.data.imagesets import ImageSet, to_uint8
from lare2lib.models import conditioning, schedulers
from lare2lib.world import autoencoder_training, build, photos, recipes, sampling, unet_training, weights

SMOKE = recipes.RECIPES["smoke"]


@pytest.fixture()
def smoke_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("LARE2_DATA_DIR", str(tmp_path / "data"))
    return get_profile("smoke")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- photos and crops ---------------------------------------------------------------------


def test_catalogue_is_consistent():
    ids = [spec.photo_id for spec in photos.CATALOGUE]
    assert len(ids) == len(set(ids))
    for spec in photos.CATALOGUE:
        assert spec.category in photos.CLASS_NAMES
        assert spec.split in ("train", "val", "test")
    # photos of one scene (stereo pairs, neighbouring aerial shots) never straddle splits
    groups: dict[str, set[str]] = {}
    for spec in photos.CATALOGUE:
        if spec.group:
            groups.setdefault(spec.group, set()).add(spec.split)
    assert all(len(splits) == 1 for splits in groups.values())


def test_pip_only_photos_cover_every_split():
    pip_sources = {"skimage", "sklearn", "matplotlib"}
    splits = {spec.split for spec in photos.CATALOGUE if spec.source in pip_sources}
    assert splits == {"train", "val", "test"}


def test_missing_source_shrinks_world_with_report(monkeypatch, tmp_path):
    full, _ = photos.find_photos()
    monkeypatch.setitem(photos._SOURCE_DIRS, "skimage", lambda: tmp_path / "absent")
    shrunk, report = photos.find_photos()
    assert "skimage" in report.missing_sources
    assert "skimage" in report.summary()
    assert len(shrunk) == len(full) - sum(p.spec.source == "skimage" for p in full)
    sets = photos.make_crops(shrunk, image_size=16, short_side=64, crop_min=16, crop_max=32,
                             per_photo={"train": 1, "val": 1, "test": 1}, seed=0)
    assert sum(len(s) for s in sets.values()) == len(shrunk)


def test_missing_file_is_reported_not_raised(monkeypatch, tmp_path):
    (tmp_path / "astronaut.png").write_bytes(b"not an image")
    monkeypatch.setitem(photos._SOURCE_DIRS, "skimage", lambda: tmp_path)
    _, report = photos.find_photos()
    assert "skimage/astronaut.png" in report.missing_files
    assert report.found["skimage"] == 0


def test_crops_are_split_by_photo_and_deterministic():
    found, _ = photos.find_photos(max_photos=8)
    kwargs = dict(image_size=16, short_side=64, crop_min=16, crop_max=48,
                  per_photo={"train": 3, "val": 2, "test": 2}, seed=5)
    first = photos.make_crops(found, **kwargs)
    second = photos.make_crops(list(reversed(found)), **kwargs)  # order of photos must not matter
    for split in first:
        by_id = dict(zip(second[split].ids, second[split].pixels))
        for image_id, pixels in zip(first[split].ids, first[split].pixels):
            assert torch.equal(by_id[image_id], pixels)
    photo_of = {split: {i.split("#")[0] for i in s.ids} for split, s in first.items()}
    assert not photo_of["train"] & photo_of["val"]
    assert not photo_of["train"] & photo_of["test"]
    assert not photo_of["val"] & photo_of["test"]
    assert first["train"].pixels.shape[1:] == (3, 16, 16)
    assert first["train"].pixels.dtype == torch.uint8


def test_crop_boxes_stay_inside_and_span_scales():
    import numpy as np

    boxes = photos.crop_boxes(300, 200, 200, 64, 256, np.random.default_rng(0))
    sides = [right - left for left, _, right, _ in boxes]
    assert all(0 <= l and 0 <= t and r <= 300 and b <= 200 for l, t, r, b in boxes)
    assert all(r - l == b - t for l, t, r, b in boxes)
    assert min(sides) < 90 and max(sides) > 170  # multi-scale, capped by the short side


# -- image sets ---------------------------------------------------------------------------


def test_imageset_round_trip_and_quantisation(tmp_path):
    pixels = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    images = ImageSet("x", pixels, torch.arange(5), [f"a/{k}" for k in range(5)], {"k": 1})
    images.save(tmp_path / "x.safetensors")
    loaded = ImageSet.load(tmp_path / "x.safetensors")
    assert torch.equal(loaded.pixels, pixels) and loaded.ids == images.ids and loaded.meta == {"k": 1}
    assert to_uint8(torch.tensor([-1.0, -0.999, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError, match="uint8"):
        ImageSet("bad", pixels.float(), torch.arange(5), images.ids)


# -- training -----------------------------------------------------------------------------


def _tiny_sets(n: int = 12, size: int = 16) -> tuple[ImageSet, ImageSet]:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    classes = torch.arange(n) % len(photos.CLASS_NAMES)
    train = ImageSet("t", pixels, classes, [f"t{k}" for k in range(n)])
    val = ImageSet("v", pixels[:4].flip(-1).contiguous(), classes[:4], [f"v{k}" for k in range(4)])
    return train, val


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_autoencoder_training_is_deterministic(tmp_path, kind):
    recipe = SMOKE.kl_ae if kind == "kl" else SMOKE.vq_ae
    train, val = _tiny_sets()
    first, log_a = autoencoder_training.train_autoencoder(recipe, train, val, tmp_path / "a", seed=3, progress=False)
    second, log_b = autoencoder_training.train_autoencoder(recipe, train, val, tmp_path / "b", seed=3, progress=False)
    _assert_same_state(_state(first), _state(second))
    assert [e["val_psnr_db"] for e in log_a] == [e["val_psnr_db"] for e in log_b]
    other, _ = autoencoder_training.train_autoencoder(recipe, train, val, tmp_path / "c", seed=4, progress=False)
    assert not torch.equal(first.state_dict()["encoder.conv_in.weight"], other.state_dict()["encoder.conv_in.weight"])


def test_killed_autoencoder_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    recipe = SMOKE.kl_ae  # 6 steps, checkpoint every 3
    train, val = _tiny_sets()
    reference, _ = autoencoder_training.train_autoencoder(recipe, train, val, tmp_path / "ref", seed=1, progress=False)

    calls = {"n": 0}
    real_loss = autoencoder_training._autoencoder_loss

    def dies_at_step_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated kill")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(autoencoder_training, "_autoencoder_loss", dies_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        autoencoder_training.train_autoencoder(recipe, train, val, tmp_path / "killed", seed=1, progress=False)
    monkeypatch.setattr(autoencoder_training, "_autoencoder_loss", real_loss)
    resumed, log = autoencoder_training.train_autoencoder(recipe, train, val, tmp_path / "killed", seed=1, progress=False)
    _assert_same_state(_state(reference), _state(resumed))
    assert [e["step"] for e in log] == [3, 6]


@pytest.mark.slow
def test_unet_training_is_deterministic_and_measures_the_premise(tmp_path):
    train, val = _tiny_sets()
    ae, _ = autoencoder_training.train_autoencoder(SMOKE.kl_ae, train, val, tmp_path / "ae", seed=0, progress=False)
    scale = autoencoder_training.latent_scaling_factor(ae, train.pixels)
    runs = [unet_training.train_unet(SMOKE.unet, ae, scale, train, val, photos.CLASS_NAMES, tmp_path / name, 0, "kl_ldm",
                             progress=False) for name in ("a", "b")]
    _assert_same_state(_state(runs[0][0]), _state(runs[1][0]))
    log = runs[0][2]
    premise = [e["premise"] for e in log if "premise" in e]
    assert [e["step"] for e in log if "premise" in e] == list(SMOKE.unet.premise_steps)
    assert all(set(p) == {"real_loss", "generated_loss", "gap", "auc"} for p in premise)
    assert all(abs(p["gap"] - (p["real_loss"] - p["generated_loss"])) < 1e-6 for p in premise)


def test_single_step_loss_matches_a_plain_computation(tmp_path):
    train, val = _tiny_sets(n=4)
    ae = autoencoder_training.build_autoencoder(SMOKE.kl_ae, 16).eval()
    unet = unet_training.build_unet(SMOKE.unet, 4, 4).eval()
    prompts = conditioning.ClassPromptEncoder(class_names=photos.CLASS_NAMES, dim=16, seq_len=4).eval()
    losses = sampling.single_step_loss(ae, unet, prompts, 0.5, train.pixels, train.class_index, train.ids,
                                    timestep=200, draws=3, seed=7)
    scheduler = schedulers.sd_training_scheduler()
    with torch.no_grad():
        for k in range(4):  # one image at a time, as the released LaRE loop does
            posterior_noise = recipes.step_generator(7, "lare", train.ids[k])
            posterior = ae.encode(train.pixels[k:k + 1].float() / 127.5 - 1).latent_dist
            z0 = posterior.mean + posterior.std * torch.randn(posterior.mean.shape[1:], generator=posterior_noise)
            z0 = z0 * 0.5
            eps = torch.randn((3, *z0.shape[1:]), generator=recipes.step_generator(7, "lare-noise", train.ids[k]))
            t = torch.full((3,), 200)
            cond = prompts(train.class_index[k:k + 1] + 1).repeat(3, 1, 1)
            pred = unet(scheduler.add_noise(z0.expand(3, -1, -1, -1), eps, t), t, cond).sample
            assert torch.allclose(losses[k], (pred - eps).pow(2).mean(), rtol=1e-5, atol=1e-6)


def test_sampling_depends_only_on_seed_and_index():
    ae = autoencoder_training.build_autoencoder(SMOKE.kl_ae, 16).eval()
    unet = unet_training.build_unet(SMOKE.unet, 4, 4).eval()
    prompts = conditioning.ClassPromptEncoder(class_names=photos.CLASS_NAMES, dim=16, seq_len=4).eval()
    spec = recipes.GeneratorSpec("g", "kl_ldm", steps=3, eta=1.0, guidance=2.0)
    classes = torch.arange(6) % 5
    whole = sampling.sample_images(ae, unet, prompts, 1.0, classes, spec, seed=2, batch_size=6)
    split = sampling.sample_images(ae, unet, prompts, 1.0, classes, spec, seed=2, batch_size=4)
    assert whole.dtype == torch.uint8 and whole.shape == (6, 3, 16, 16)
    assert torch.equal(whole, split)


# -- the committed layout -----------------------------------------------------------------


@pytest.mark.slow
def test_smoke_world_builds_exports_and_verifies(smoke_profile):
    built = build.load_world(smoke_profile, progress=False)
    manifest = built.manifest
    assert set(manifest["training"]) == {"kl_ae", "vq_ae", "kl_ldm", "vq_ldm"}
    for name in ("kl_ldm", "vq_ldm"):
        spec = json.loads((weights.weights_root("smoke") / name / "ldm.json").read_text())
        assert spec["vae"] == f"../{weights.LDM_AE[name]}"
    generated = built.generated("vq_ldm")
    assert len(generated) == smoke_profile.world.generated_per_generator
    assert built.generated("kl_ldm", "train").pixels.shape[0] == smoke_profile.world.generated_train
    with pytest.raises(ValueError, match="only the training generator"):
        built.generated("vq_ldm", "train")
    recon = built.reconstructions("kl_ae", "test")
    assert recon.pixels.shape == built.real["test"].pixels.shape
    assert torch.equal(built.reconstructions("kl_ae", "test").pixels, recon.pixels)  # cached, identical

    # a tampered weight file is caught by the hash check
    weight = weights.weights_root("smoke") / "kl_ae" / "diffusion_pytorch_model.safetensors"
    weight.write_bytes(weight.read_bytes()[:-1] + b"\x00")
    with pytest.raises(weights.WeightsError, match="do not match"):
        weights.verify_weights("smoke")


def test_missing_weights_say_how_to_build_them(tmp_path, monkeypatch):
    monkeypatch.setattr(weights.paths, "weights_dir", lambda: tmp_path / "nothing")
    with pytest.raises(weights.WeightsError, match="RETRAIN=True"):
        weights.verify_weights("mini")


def test_committed_mini_weights_match_their_manifest():
    if not (weights.weights_root("mini") / "manifest.json").is_file():
        pytest.skip("mini weights not committed yet")
    manifest = weights.verify_weights("mini")
    assert manifest["recipe"] == "mini"
    assert dataclasses.asdict(get_profile("mini").world) == manifest["world"]
