"""GenImage under the mini world's interface (notebooks 01 and 03 in the full profile) and
notebook 00's full-profile stock-taking, on the tiny-full fixture's GenImage folder and hub cache."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from lare2lib.core.profiles import get_profile
from lare2lib.models.tiny_full import GENIMAGE_SUBSETS
from lare2lib.studies import nb00_full
from lare2lib.world.genimage import Budget, generator_tag, load_genimage_world, model_name

pytestmark = pytest.mark.slow  # builds the tiny-full fixture (about 10 s, once per session)

SMOKE_FULL = get_profile("full", smoke=True)


@pytest.fixture
def genimage(tiny_full_world, tmp_path, monkeypatch):
    """A private copy of the fixture's GenImage folder (tests replace and corrupt files in it)."""
    from huggingface_hub import constants

    for name, value in tiny_full_world.environment().items():
        monkeypatch.setenv(name, value)
    # huggingface_hub read HF_HOME when first imported: point its cache at the fixture's
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tiny_full_world.hf_home / "hub"))
    monkeypatch.setenv("LARE2_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "genimage"
    shutil.copytree(tiny_full_world.genimage_root, root)
    return root, root / tiny_full_world.val_classes.relative_to(tiny_full_world.genimage_root)


def test_names_of_subsets_and_models():
    assert {generator_tag(folder) for folder in GENIMAGE_SUBSETS.values()} == set(GENIMAGE_SUBSETS)
    assert model_name("stabilityai/stable-diffusion-2-1:vae") == "stable-diffusion-2-1-vae"
    assert model_name("stable-diffusion-v1-5/stable-diffusion-v1-5") == "stable-diffusion-v1-5"


def test_world_splits_are_disjoint_square_and_classed(genimage):
    root, val_classes = genimage
    world = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes)
    assert world.train_generator == "sdv4"
    assert {g.name for g in world.generators} == set(GENIMAGE_SUBSETS)
    ids = {split: set(world.real[split].ids) for split in ("train", "val", "test")}
    assert ids["train"] and ids["val"] and ids["test"]
    assert not (ids["train"] & ids["val"]) and not ((ids["train"] | ids["val"]) & ids["test"])
    assert all("/train/nature/" in i for i in ids["train"] | ids["val"])
    assert all("/val/nature/" in i for i in ids["test"])
    names = [i.rsplit("/", 1)[-1] for i in ids["test"]]
    assert len(names) == len(set(names))  # one real per file name across subsets
    size = SMOKE_FULL.lare.image_size
    for images in [*world.real.values(), world.generated("sdv4", "train"), world.generated("adm")]:
        assert images.pixels.shape[1:] == (3, size, size)
    # every val real gets its class from the mapping: none falls back to "a photo"
    assert (world.real["test"].class_index < 1000).all()
    with pytest.raises(ValueError, match="only the training subset"):
        world.generated("adm", "train")


def test_world_refuses_prompts_that_differ_by_label(genimage):
    root, _ = genimage
    with pytest.raises(ValueError, match="class prompts would differ by label"):
        load_genimage_world(SMOKE_FULL, root, "sdv4")
    photo = SMOKE_FULL.replace(**{"lare.prompt": "photo"})
    assert load_genimage_world(photo, root, "sdv4").real["test"]


def test_fit_crop_keeps_native_pixels_and_resize_shrinks_the_short_side(genimage):
    root, val_classes = genimage
    crop = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes, fit="crop")
    resized = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes)
    assert crop.folder != resized.folder  # the fit keys the cache
    image = crop.real["test"]
    path = root / image.ids[0]
    native = np.asarray(Image.open(path).convert("RGB"))
    size = image.pixels.shape[-1]
    top, left = (native.shape[0] - size) // 2, (native.shape[1] - size) // 2
    expected = native[top:top + size, left:left + size]
    assert np.array_equal(image.pixels[0].permute(1, 2, 0).numpy(), expected)
    assert not np.array_equal(resized.real["test"].pixels[0].numpy(), image.pixels[0].numpy())


def test_cached_sets_are_reused_and_a_replaced_file_rebuilds_its_set(genimage):
    root, val_classes = genimage
    world = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes)
    first = world.generated("adm")
    cached = sorted(world.folder.glob("gen_adm_test.safetensors"))
    assert cached
    again = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes).generated("adm")
    assert again.ids == first.ids and (again.pixels == first.pixels).all()
    path = root / first.ids[0]
    Image.new("RGB", (300, 280), (10, 200, 30)).save(path)
    os.utime(path, ns=(1, 1))
    rebuilt = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes).generated("adm")
    assert (rebuilt.pixels[0] == rebuilt.pixels[0, :, :1, :1]).all()  # the new flat-green image
    assert (rebuilt.pixels[1:] == first.pixels[1:]).all()


def test_an_undecodable_file_is_skipped_and_listed(genimage):
    root, val_classes = genimage
    folder = root / GENIMAGE_SUBSETS["glide"] / "val" / "ai"
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated PNG
    world = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes)
    glide = world.generated("glide")
    assert victim.relative_to(root).as_posix() not in glide.ids
    assert len(glide) == len(list(folder.iterdir())) - 1
    assert any(str(victim) in entry for entry in world.skipped)


def test_reconstructions_and_the_reference_ldm_come_from_the_hub_cache(genimage):
    from lare2lib.world.weights import world_ldm

    root, val_classes = genimage
    world = load_genimage_world(SMOKE_FULL, root, "sdv4", val_classes=val_classes)
    assert world.recon_autoencoder == "stable-diffusion-2-1-vae"
    assert len(world.aeroblade_autoencoders) == 3
    recon = world.reconstructions(world.recon_autoencoder, "val")
    real = world.real["val"]
    assert recon.ids == [f"{i}@{world.recon_autoencoder}" for i in real.ids]
    assert recon.pixels.shape == real.pixels.shape and not (recon.pixels == real.pixels).all()
    assert world_ldm(world, world.reference_ldm) is world_ldm(world, world.reference_ldm)  # loaded once
    with pytest.raises(KeyError, match="one LDM"):
        world_ldm(world, "kl_ldm")
    with pytest.raises(KeyError, match="unknown autoencoder"):
        world.autoencoder("kl_ae")
    # artifact removal re-encodes SD-decoded subsets through the MoVQ, the others through SD 2.1's VAE
    assert world.cross_family_autoencoder("sdv4") == "kandinsky-2-1-movq"
    assert world.cross_family_autoencoder("adm") == world.recon_autoencoder


def test_missing_root_and_unknown_subset_are_refused(genimage, tmp_path):
    root, val_classes = genimage
    with pytest.raises(FileNotFoundError, match="GENIMAGE_ROOT"):
        load_genimage_world(SMOKE_FULL, tmp_path / "nowhere")
    with pytest.raises(ValueError, match="matches nothing"):
        load_genimage_world(SMOKE_FULL, root, "sdxl", val_classes=val_classes)
    with pytest.raises(ValueError, match="unknown fit"):
        load_genimage_world(SMOKE_FULL, root, budget=Budget(fit="squash"), val_classes=val_classes)


# -- notebook 00 in the full profile ------------------------------------------------------------


def test_inventory_counts_every_file_and_the_classes_the_mapping_gives(genimage):
    root, val_classes = genimage
    inventory = nb00_full.genimage_inventory(root, val_classes)
    assert set(inventory["generator"]) == set(GENIMAGE_SUBSETS)
    for row in inventory.itertuples():
        folder = root / row.subset / row.split / row.label
        assert row.images == len(list(folder.iterdir()))
    reals = inventory[(inventory["split"] == "val") & (inventory["label"] == "nature")]
    assert (reals["classed"] == reals["images"]).all()
    unmapped = nb00_full.genimage_inventory(root)
    unmapped_reals = unmapped[(unmapped["split"] == "val") & (unmapped["label"] == "nature")]
    assert (unmapped_reals["classed"] == 0).all()  # ILSVRC2012_val_* names carry no class


def test_costs_are_counts_times_units_and_an_unmeasured_unit_leaves_the_total_open():
    workloads = {"a": {"lare": 3600, "reconstruction": 7200}, "b": {"backbone": 1800}}
    units = dict.fromkeys(nb00_full.UNITS, 1.0) | {"backbone": None}
    costs = nb00_full.notebook_costs(workloads, units)
    assert costs.loc["a", "lare"] == 1.0 and costs.loc["a", "reconstruction"] == 2.0
    assert costs.loc["a", "total"] == 3.0 and costs.loc["a", "backbone"] == 0.0
    assert math.isnan(costs.loc["b", "backbone"]) and math.isnan(costs.loc["b", "total"])


def test_unit_costs_measure_every_unit_and_name_a_missing_model(genimage):
    units, missing = nb00_full.unit_costs(SMOKE_FULL, images=1)
    assert missing == {} and all(units[name] > 0 for name in nb00_full.UNITS)
    absent = SMOKE_FULL.replace(**{"models.ldm": "nobody/no-such-model"})
    units, missing = nb00_full.unit_costs(absent, images=1)
    assert units["lare"] is None and units["unet_step"] is None and "lare" in missing
    assert units["reconstruction"] > 0


def test_workloads_follow_the_inventory(genimage):
    root, val_classes = genimage
    inventory = nb00_full.genimage_inventory(root, val_classes)
    small = nb00_full.notebook_workloads(inventory)
    bigger = nb00_full.notebook_workloads(inventory.assign(images=inventory["images"] * 10))
    assert set(small) == {"01_lare", "02_egre_ablations", "03_ae_reconstruction", "04_autoencoder_family",
                          "05_training_resolution", "06_evasion", "08_in_the_wild"}
    assert bigger["02_egre_ablations"]["lare"] > small["02_egre_ablations"]["lare"]
    assert all(count > 0 for counts in small.values() for count in counts.values())


def test_a_sample_size_parses_and_a_bad_one_is_refused():
    assert Budget.parse("40,5,10") == Budget(train_images=40, val_images=5, test_images=10)
    for bad in ("40,5", "40,0,10", "a,b,c"):
        with pytest.raises(ValueError, match="train,val,test"):
            Budget.parse(bad)
