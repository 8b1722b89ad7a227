"""The mini world: the shipped photo corpus, crops and splits, deterministic and resumable training,
committed-weight verification, sampling and reconstruction sets."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lare2lib.core.profiles import get_profile
from lare2lib.data.imagesets import ImageSet, to_uint8
from lare2lib.eval import metrics
from lare2lib.models import conditioning, schedulers
from lare2lib.world import autoencoder_training, build, photos, recipes, sampling, unet_training, weights
from lare2lib.studies import nb00_premise

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


def _manifest() -> list[dict]:
    return json.loads((photos.corpus_dir() / "manifest.json").read_text())


def test_corpus_manifest_lists_every_shipped_photo_once():
    entries = _manifest()
    files = [e["file"] for e in entries]
    assert len(files) == len(set(files)) >= 60
    shipped = {str(f.relative_to(photos.corpus_dir())) for f in photos.corpus_dir().glob("*/*.jpg")}
    assert shipped == set(files)  # no stray photo, none listed but absent
    attribution = (photos.corpus_dir() / "LICENSES.md").read_text()
    for entry in entries:
        assert entry["category"] == entry["file"].split("/")[0] and entry["category"] in photos.CLASS_NAMES
        assert entry["split"] in photos.SPLITS
        assert entry["source_package"] and entry["original_path"] and entry["author"] and entry["licence"]
        assert f"`{entry['file']}`" in attribution
        assert max(entry["width"], entry["height"]) <= 1024 and min(entry["width"], entry["height"]) <= 512
    groups: dict[str, set[str]] = {}
    for entry in entries:  # photos of one scene never straddle splits
        if entry["group"]:
            groups.setdefault(entry["group"], set()).add(entry["split"])
    assert groups and all(len(splits) == 1 for splits in groups.values())
    assert sum(f.stat().st_size for f in photos.corpus_dir().rglob("*")) < 40e6


def test_corpus_loads_verified_with_author_and_licence():
    corpus = photos.load_corpus()
    assert [p.photo_id for p in corpus] == [e["file"] for e in _manifest()]
    astronaut = next(p for p in corpus if p.photo_id == "person/skimage-astronaut.jpg")
    assert astronaut.package.startswith("scikit-image") and "NASA" in astronaut.author
    assert astronaut.path.is_file() and astronaut.path.is_relative_to(photos.corpus_dir())


def test_held_out_split_can_carry_conclusions():
    """At least 10 test photos covering every category, and >= 600 test crops in the mini world."""
    test = [p for p in photos.find_photos() if p.split == "test"]
    assert len(test) >= 10
    assert {p.category for p in test} == set(photos.CLASS_NAMES)
    assert len(test) * get_profile("mini").world.crops_per_photo_heldout >= 600


def _small_corpus(tmp_path, count: int = 3):
    root = tmp_path / "corpus"
    entries = _manifest()[:count]
    for entry in entries:
        (root / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        (root / entry["file"]).write_bytes((photos.corpus_dir() / entry["file"]).read_bytes())
    (root / "manifest.json").write_text(json.dumps(entries))
    return root, entries


def test_altered_or_missing_photo_is_a_clear_error(tmp_path):
    root, entries = _small_corpus(tmp_path)
    assert len(photos.load_corpus(root)) == 3
    target = root / entries[1]["file"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    photos.load_corpus.cache_clear()
    with pytest.raises(photos.CorpusError, match=entries[1]["file"] + ".*sha256"):
        photos.load_corpus(root)
    target.unlink()
    with pytest.raises(photos.CorpusError, match="missing.*" + entries[1]["file"]):
        photos.load_corpus(root)
    (root / "manifest.json").unlink()
    with pytest.raises(photos.CorpusError, match="manifest not found"):
        photos.load_corpus(root)
    photos.load_corpus.cache_clear()


@pytest.mark.parametrize("count", [3, 8, 20])
def test_small_worlds_keep_every_split(count):
    subset = photos.find_photos(max_photos=count)
    assert len(subset) == count
    assert {p.split for p in subset} == set(photos.SPLITS)
    train = [p for p in subset if p.split == "train"]
    assert len({p.category for p in train}) == min(len(train), len(photos.CLASS_NAMES))
    assert photos.find_photos(max_photos=count) == subset  # deterministic
    with pytest.raises(ValueError, match="at least 3"):
        photos.find_photos(max_photos=2)


_WORLD_WITHOUT_OS_PHOTOS = """
import hashlib, sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".rcc"}
opened = []

def no_photos_outside_the_corpus(event, args):
    # Any image opened outside the shipped corpus would make the world depend on the machine.
    if event == "open" and isinstance(args[0], (str, bytes, Path)):
        path = Path(args[0] if not isinstance(args[0], bytes) else args[0].decode())
        if path.suffix.lower() in IMAGE_SUFFIXES:
            opened.append(str(path))

sys.addaudithook(no_photos_outside_the_corpus)
for name in ("skimage", "sklearn", "cv2"):  # as if these packages were not installed
    sys.modules[name] = None

from lare2lib.core.profiles import get_profile
from lare2lib.world import photos, real_crops

profile = get_profile("mini")
found = photos.find_photos()
sets = photos.make_crops(found, image_size=16, short_side=64, crop_min=16, crop_max=48,
                         per_photo={"train": 1, "val": 1, "test": 1}, seed=0)
digest = hashlib.sha256(b"".join(sets[s].pixels.numpy().tobytes() for s in photos.SPLITS)).hexdigest()
outside = [p for p in opened if not Path(p).resolve().is_relative_to(photos.corpus_dir().resolve())]
print(real_crops.crops_key(profile, found), digest, len(outside), *outside[:3])
"""


def test_world_is_identical_without_any_os_photo_package(tmp_path):
    """The same real crops and world key whether or not OS or pip photo sources exist."""
    import hashlib
    import os
    import subprocess
    import sys

    from lare2lib.world import real_crops

    env = {**os.environ, "LARE2_DATA_DIR": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _WORLD_WITHOUT_OS_PHOTOS], capture_output=True, text=True,
                         env=env, check=True, timeout=240).stdout.split()
    key, digest, outside = out[0], out[1], int(out[2])
    assert outside == 0, f"opened images outside the corpus: {out[3:]}"
    found = photos.find_photos()
    sets = photos.make_crops(found, image_size=16, short_side=64, crop_min=16, crop_max=48,
                             per_photo={"train": 1, "val": 1, "test": 1}, seed=0)
    here = hashlib.sha256(b"".join(sets[s].pixels.numpy().tobytes() for s in photos.SPLITS)).hexdigest()
    assert (key, digest) == (real_crops.crops_key(get_profile("mini"), found), here)


def test_crops_key_follows_photo_bytes_and_splits():
    from lare2lib.world import real_crops

    profile = get_profile("mini")
    found = photos.find_photos()
    moved = [dataclasses.replace(found[0], split="test" if found[0].split != "test" else "train"), *found[1:]]
    edited = [dataclasses.replace(found[0], sha256="0" * 64), *found[1:]]
    keys = {real_crops.crops_key(profile, variant) for variant in (found, moved, edited)}
    assert len(keys) == 3


def test_crops_are_split_by_photo_and_deterministic():
    found = photos.find_photos(max_photos=8)
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


def test_training_folder_refuses_a_checkpoint_of_other_inputs(smoke_profile, monkeypatch):
    """A checkpoint trained on other crops or another recipe is never resumed silently."""
    from lare2lib.world import retrain

    retrain.train_stage("kl_ae", smoke_profile, progress=False)
    retrain.train_stage("kl_ae", smoke_profile, progress=False)  # same inputs: resumes (nothing left to do)
    other_unet = dataclasses.replace(SMOKE, unet=dataclasses.replace(SMOKE.unet, steps=9))
    monkeypatch.setitem(recipes.RECIPES, "smoke", other_unet)
    retrain.train_stage("kl_ae", smoke_profile, progress=False)  # another stage's recipe does not matter
    wider = dataclasses.replace(SMOKE, kl_ae=dataclasses.replace(SMOKE.kl_ae, steps=9))
    monkeypatch.setitem(recipes.RECIPES, "smoke", wider)
    with pytest.raises(RuntimeError, match="other inputs.*changed: recipe.*delete that folder"):
        retrain.train_stage("kl_ae", smoke_profile, progress=False)
    monkeypatch.setitem(recipes.RECIPES, "smoke", SMOKE)
    folder = retrain.train_dir("smoke", "kl_ae")
    (folder / "inputs.json").unlink()  # a folder of the older layout: checkpoint, no record
    with pytest.raises(RuntimeError, match="without inputs.json"):
        retrain.train_stage("kl_ae", smoke_profile, progress=False)


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
    assert all(set(p) == {"real_loss", "generated_loss", "gap", "auc", "auc_low", "auc_high", "samples",
                          "kid", "kid_std", "kid_floor"} for p in premise)
    assert all(abs(p["gap"] - (p["real_loss"] - p["generated_loss"])) < 1e-6 for p in premise)
    assert all(p["auc_low"] <= p["auc"] <= p["auc_high"] and p["samples"] == len(val) for p in premise)
    assert len({p["kid_floor"] for p in premise}) == 1  # one floor for the whole training
    compute = [e["step_seconds"] for e in log]
    assert all(0 < a < b for a, b in zip(compute, compute[1:]))


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
    from safetensors import safe_open

    for name in ("kl_ldm", "vq_ldm"):
        spec = json.loads((weights.weights_root("smoke") / name / "ldm.json").read_text())
        assert spec["vae"] == f"../{weights.LDM_AE[name]}"
        stored = weights.weights_root("smoke") / name / "unet" / "diffusion_pytorch_model.safetensors"
        with safe_open(str(stored), "pt") as handle:  # committed in half precision ...
            assert {handle.get_slice(k).get_dtype() for k in handle.keys()} == {"F16"}
        assert next(built.ldm(name)[1].parameters()).dtype == torch.float32  # ... computed in float32
    generated = built.generated("vq_ldm")
    assert len(generated) == smoke_profile.world.generated_per_generator
    assert built.generated("kl_ldm", "train").pixels.shape[0] == smoke_profile.world.generated_train
    with pytest.raises(ValueError, match="only the training generator"):
        built.generated("vq_ldm", "train")
    recon = built.reconstructions("kl_ae", "test")
    assert recon.pixels.shape == built.real["test"].pixels.shape

    # notebook 00's premise study runs on the built world: one AUC per generator and real set
    auc, points = nb00_premise.premise_by_scale(built, scales=(32, None), per_photo=2)
    assert len(auc) == len(built.generators) * 3 and set(auc["reals"]) == {"world crops", "32 px", "stored px"}
    assert ((auc["low"] <= auc["auc"]) & (auc["auc"] <= auc["high"])).all()
    gap = nb00_premise.premise_gap(auc)
    reals = built.real["test"]
    for spec in built.generators:  # checked against the losses computed directly
        ae, unet, prompts, scale = built.ldm(spec.ldm)
        fakes = built.generated(spec.name)
        real_loss, fake_loss = (sampling.single_step_loss(ae, unet, prompts, scale, s.pixels, s.class_index, s.ids,
                                                          200, seed=smoke_profile.seed) for s in (reals, fakes))
        # float32 losses, summed in other batches there: equal to float32 precision of the means
        expected = float(real_loss.mean() - fake_loss.mean())
        assert gap[spec.name]["gap"] == pytest.approx(expected, rel=1e-3, abs=1e-6 * float(real_loss.mean()))
        assert gap[spec.name]["auc"] == pytest.approx(metrics.rank_auc(-real_loss.numpy(), -fake_loss.numpy()))
    assert set(points["kind"]) == {"real", "generated"} and points["smoothness"].ge(0).all()
    assert torch.equal(built.reconstructions("kl_ae", "test").pixels, recon.pixels)  # cached, identical

    # a tampered weight file is caught by the hash check
    weight = weights.weights_root("smoke") / "kl_ae" / "diffusion_pytorch_model.safetensors"
    weight.write_bytes(weight.read_bytes()[:-1] + b"\x00")
    with pytest.raises(weights.WeightsError, match="do not match"):
        weights.verify_weights("smoke")


def test_the_sampling_bill_counts_every_split_of_every_generator():
    world = get_profile("mini").world
    # kl_ldm: train + val + test at 25 guided steps; vq_ldm: test at 25 guided; kl_ldm_fast: test at 5
    assert build.sampling_image_forwards(world) == (1536 + 256 + 512) * 25 * 2 + 512 * 25 * 2 + 512 * 5
    assert build.sample_count(world, "kl_ldm", "train") == 1536
    with pytest.raises(ValueError, match="only the training generator"):
        build.sample_count(world, "vq_ldm", "val")


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
    # trained on the shipped corpus's crops, with the recipe the code states
    from lare2lib.world import real_crops

    profile = get_profile("mini")
    assert manifest["data"]["crops_key"] == real_crops.crops_key(profile, photos.find_photos())
    recipe = recipes.RECIPES["mini"]
    stated = {"kl_ae": recipe.kl_ae, "vq_ae": recipe.vq_ae, "kl_ldm": recipe.unet, "vq_ldm": recipe.unet}
    for stage, stage_recipe in stated.items():
        assert manifest["training"][stage]["recipe"] == json.loads(json.dumps(dataclasses.asdict(stage_recipe)))
