"""The tiny-full fixture (lare2lib.models.tiny_full): every model the ``full`` profile names is in
its hub cache in the real architecture classes, and its GenImage folder reads as GenImage does;
and the GenImage split rules it exercises (validation of both labels, prompts checked across the
separately extracted real and fake sets)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lare2lib.core import environment
from lare2lib.core.profiles import get_profile
from lare2lib.data.manifests import discover_genimage, genimage_records
from lare2lib.detectors import egre_splits
from lare2lib.models.tiny_full import GENIMAGE_SUBSETS, TINY_FULL_CLASSES

pytestmark = pytest.mark.slow  # the session fixture writes ~180 MB of tiny models once (~10 s)


@pytest.fixture
def hub_cache(tiny_full_world, monkeypatch):
    """The fixture's cache as this process's hub cache (HF is imported already, so patch it)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tiny_full_world.hf_home / "hub"))
    return tiny_full_world


def test_every_weight_of_the_full_profile_is_in_the_fixture(hub_cache):
    weights = environment.required_weights("full")
    assert {entry["role"] for entry in weights} == {"ldm", "recon_autoencoder", "aeroblade_autoencoder",
                                                     "egre_backbone", "recon_classifier"}
    assert [entry["reference"] for entry in weights if not entry["present"]] == []


@pytest.mark.parametrize("role", ["egre_backbone", "recon_classifier"])
def test_timm_backbones_load_from_the_cache_at_the_widths_its_config_records(hub_cache, role):
    import timm

    from lare2lib.models.backbones import create_classifier

    models = get_profile("full").models
    names = [models.egre_backbone] if role == "egre_backbone" else list(models.recon_classifiers)
    for name in names:
        config = json.loads((hub_cache.hf_home / "hub" / f"models--timm--{name}" / "snapshots" / ("0" * 40)
                             / "config.json").read_text())
        model = create_classifier(name, num_classes=1)
        assert type(model) is type(timm.create_model(name, pretrained=False, **config["model_args"]))
        assert model.num_classes == 1
        if config["model_args"]:  # the large ones are small here
            assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_the_genimage_folder_has_the_eight_subsets_and_classes_only_through_the_mapping(tiny_full_world):
    root = tiny_full_world.genimage_root
    subsets = discover_genimage(root)
    assert sorted(subsets) == sorted(GENIMAGE_SUBSETS.values())
    sdv4 = GENIMAGE_SUBSETS["sdv4"]
    without = genimage_records(root, sdv4, "val")
    assert {r.class_name for r in without if r.label == 0} == {None}
    assert None not in {r.class_name for r in without if r.label == 1}
    mapped = genimage_records(root, sdv4, "val", val_classes=tiny_full_world.val_classes)
    assert len({r.class_name for r in mapped if r.label == 0}) == len(TINY_FULL_CLASSES)
    glide = genimage_records(root, GENIMAGE_SUBSETS["glide"], "train", include_inferred_classes=False)
    assert {r.class_name for r in glide if r.label == 1} == {None}  # GLIDE's names: the inferred form


def _split(records):
    return egre_splits._Split(None, [r.image_id for r in records], [int(r.label) for r in records],
                              [r.class_name for r in records], list(records))


def test_prompts_are_checked_across_the_real_and_fake_sets_together(tiny_full_world):
    root, sdv4 = tiny_full_world.genimage_root, GENIMAGE_SUBSETS["sdv4"]
    records = genimage_records(root, sdv4, "val")
    reals, fakes = [r for r in records if r.label == 0], [r for r in records if r.label == 1]
    egre_splits.check_classes_by_label([_split(reals)], "class")  # each alone looks fine
    egre_splits.check_classes_by_label([_split(fakes)], "class")
    with pytest.raises(ValueError, match="filename_to_folder.json"):
        egre_splits.check_classes_by_label([_split(reals), _split(fakes)], "class")
    egre_splits.check_classes_by_label([_split(reals), _split(fakes)], "photo")
    mapped = genimage_records(root, sdv4, "val", val_classes=tiny_full_world.val_classes)
    egre_splits.check_classes_by_label([_split([r for r in mapped if r.label == label]) for label in (0, 1)],
                                       "class")


def test_validation_keeps_both_labels_of_a_small_training_folder(tiny_full_world):
    records = genimage_records(tiny_full_world.genimage_root, GENIMAGE_SUBSETS["sdv4"], "train")
    train, val = egre_splits.held_out_split(records, 0.05, seed=0)
    assert sorted(int(r.label) for r in val) == [0, 1]
    assert {r.image_id for r in train} | {r.image_id for r in val} == {r.image_id for r in records}
    assert not {r.image_id for r in train} & {r.image_id for r in val}
    big = [dataclasses.replace(records[0], image_id=f"x{k}", label=k % 2) for k in range(4000)]
    _, held = egre_splits.held_out_split(big, 0.05, seed=0)
    assert 150 < len(held) < 250  # the fraction, when it is enough
