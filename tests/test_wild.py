"""The in-the-wild set (notebook 08): which template previews count as text-to-image stills, the
one processing rule both classes go through, deduplication, and the photo-grouped metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sklearn.metrics import average_precision_score

from lare2lib.data import wild_set, wild_templates
from lare2lib.data.wild_templates import WildTemplate, classify_template, generator_family, vae_family
from lare2lib.detectors import registry
from lare2lib.studies import nb08_metrics, nb08_wild

WHEELS_MISSING = wild_templates.missing_packages()
needs_wheels = pytest.mark.skipif(
    bool(WHEELS_MISSING), reason=f"the ComfyUI template wheels are not installed: {', '.join(WHEELS_MISSING)} "
                                 "(pip install -e '.[wild]')")


def _entry(**overrides):
    entry = {"name": "t", "tags": ["Text to Image"], "models": ["FLUX", "FLUX.1"], "category": "Image",
             "category_type": "image", "io": {"inputs": [], "outputs": [{"mediaType": "image"}]}}
    entry.update(overrides)
    return entry


def _workflow(*nodes):
    """A workflow with top-level nodes and one subgraph holding the loaders."""
    return {"nodes": [{"type": "SaveImage", "mode": 0}],
            "definitions": {"subgraphs": [{"nodes": list(nodes)}]}}


VAE = {"type": "VAELoader", "mode": 0, "widgets_values": ["ae.safetensors"]}


# -- the decisions ----------------------------------------------------------------------------


def test_a_text_to_image_template_is_kept_with_its_vae_family(tmp_path):
    found = classify_template("flux_t2i", tmp_path / "x-1.webp", _entry(), _workflow(VAE))
    assert found.keep and found.reason == "text-to-image"
    assert found.vae_family == "sd3-flux1-16ch" and found.generator == "FLUX.1"
    assert found.generator_family == "FLUX.1 family" and found.evidence == "index.json + workflow"


@pytest.mark.parametrize("entry, nodes, reason", [
    (_entry(tags=["Text to Image", "Image Edit"]), [VAE], "edit or control template (Image Edit)"),
    (_entry(tags=["Image"]), [VAE], "not tagged Text to Image"),
    (_entry(thumbnailVariant="compareSlider"), [VAE], "before/after pair (compareSlider)"),
    (_entry(thumbnailVariant="hoverDissolve"), [VAE], "before/after pair (hoverDissolve)"),
    (_entry(io={"inputs": [{"mediaType": "image"}], "outputs": []}), [VAE], "takes an input image"),
    (_entry(category="Vector"), [VAE], "not a text-to-image category (Vector)"),
    (_entry(category_type="video", category="Video"), [VAE], "not a text-to-image category (Video)"),
    (_entry(io=None), [VAE, {"type": "LoadImage", "mode": 0}], "takes an input image"),
    (None, [VAE, {"type": "SaveVideo", "mode": 0}], "saves a vector, video, audio or 3D output"),
])
def test_previews_that_are_not_untouched_text_to_image_stills_are_dropped(tmp_path, entry, nodes, reason):
    found = classify_template("t", tmp_path / "t-1.webp", entry, _workflow(*nodes))
    assert not found.keep and found.reason == reason


def test_a_bypassed_input_node_does_not_make_an_edit_template(tmp_path):
    bypassed = {"type": "LoadImage", "mode": 4}
    assert classify_template("t", tmp_path / "t-1.webp", _entry(io=None), _workflow(VAE, bypassed)).keep


def test_without_any_metadata_the_file_name_decides_and_says_so(tmp_path):
    named = classify_template("api_openai_dall_e_3_t2i", tmp_path / "a-1.webp", None, None)
    other = classify_template("api_luma_i2v", tmp_path / "b-1.webp", None, None)
    assert named.keep and named.evidence == "file name" and named.vae_family == "unknown"
    assert not other.keep and "no metadata" in other.reason
    assert not classify_template("x_t2i", None, _entry(), _workflow(VAE)).keep  # no preview shipped


@pytest.mark.parametrize("vaes, checkpoints, family", [
    (["ae.safetensors"], [], "sd3-flux1-16ch"),
    (["flux2-vae.safetensors"], [], "flux2-32ch"),
    (["full_encoder_small_decoder.safetensors"], [], "flux2-32ch"),
    (["qwen_image_vae.safetensors"], [], "wan-qwen-16ch"),
    (["pixel_space"], [], "pixel-space"),
    (["vae-ft-mse-840000-ema-pruned.safetensors"], [], "sd-kl-f8-4ch"),
    ([], ["sd_xl_base_1.0.safetensors"], "sd-kl-f8-4ch"),
    ([], ["sd3.5_large_fp8_scaled.safetensors"], "sd3-flux1-16ch"),
    ([], ["NetaYumev35_pretrained_all_in_one.safetensors"], "unknown"),
    ([], [], "unknown"),
])
def test_vae_family_from_the_loader_files(vaes, checkpoints, family):
    assert vae_family(vaes, checkpoints) == family
    assert family in wild_templates.VAE_FAMILIES


def test_generator_families():
    assert generator_family(["SDXL", "Stability"], local=True) == "Stability (SD)"
    assert generator_family(["FLUX", "FLUX.2 Klein"], local=True) == "FLUX.2"
    assert generator_family(["Lens"], local=True) == "other open"
    assert generator_family(["GPT Image 2"], local=False) == "API (closed)"


# -- one rule for both classes ------------------------------------------------------------------


def _photo(width, height, seed=0, mode="RGB"):
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "CMYK"])
def test_process_resizes_crops_and_round_trips_every_mode_alike(mode):
    image = _photo(300, 200, mode=mode)
    out = wild_set.process(image, 64, 80)
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    assert torch.equal(out, wild_set.process(image, 64, 80))  # deterministic
    lossless = wild_set.process(image, 64, None)
    assert not torch.equal(out, lossless)  # the WebP round trip changed pixels
    # the rule is short side → size, then the centre: equal to an explicit resize + centre crop
    expected = image.convert("RGB").resize((96, 64), Image.Resampling.LANCZOS).crop((16, 0, 80, 64))
    assert torch.equal(lossless, torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1))


@pytest.mark.parametrize("kwargs", [dict(size=4), dict(size=64, webp_quality=0), dict(size=64, webp_quality=101)])
def test_process_refuses_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        wild_set.process(_photo(32, 32), **kwargs)


def test_real_windows_are_the_centre_then_the_corners():
    windows = wild_set.real_windows(_photo(400, 200), 5)
    assert [w.size for w in windows] == [(200, 200)] + [(150, 150)] * 4
    with pytest.raises(ValueError):
        wild_set.real_windows(_photo(40, 40), 6)


def test_dedupe_is_by_decoded_pixels_not_file_bytes(tmp_path):
    image = _photo(40, 30)
    image.save(tmp_path / "a.png")
    image.save(tmp_path / "b.webp", lossless=True)
    opened = [(name, Image.open(tmp_path / name)) for name in ("a.png", "b.webp")]
    opened.append(("c", _photo(40, 30, seed=1)))
    keep, dropped = wild_set.dedupe_pixels(opened)
    assert keep == ["a.png", "c"] and dropped == {"b.webp": "duplicate pixels of a.png"}


def _template(path, template_id, **kwargs):
    return WildTemplate(template_id, path, True, "text-to-image", kwargs.get("generator", "G"), "other open",
                        kwargs.get("vae", "unknown"), "index.json + workflow")


def test_animated_corrupt_and_duplicate_previews_are_dropped_with_their_reason(tmp_path):
    frames = [_photo(48, 48, seed=k) for k in range(3)]
    frames[0].save(tmp_path / "anim-1.webp", save_all=True, append_images=frames[1:], duration=50)
    frames[0].save(tmp_path / "still-1.webp", quality=90)
    (tmp_path / "broken-1.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 garbage")
    Image.open(tmp_path / "still-1.webp").save(tmp_path / "copy-1.png")
    catalogue = [_template(tmp_path / f"{name}-1.webp", name) for name in ("anim", "broken", "still")]
    catalogue.append(_template(tmp_path / "copy-1.png", "copy"))
    catalogue.append(WildTemplate("edit", None, False, "takes an input image", "G", "x", "unknown", "index.json"))
    built = wild_set.build_wild_set(size=32, real_views=2, max_photos=2, catalogue=catalogue)
    assert [image.image_id for image in built.of(1)] == ["fake/still"]
    assert built.dropped["anim"].startswith("animated") and built.dropped["broken"].startswith("undecodable")
    assert built.dropped["copy"] == "duplicate pixels of still" and built.dropped["edit"] == "takes an input image"
    reals = built.of(0)
    assert len(reals) == 4 and len({image.group for image in reals}) == 2  # two photos, two windows each
    assert all(image.pixels.shape == (3, 32, 32) for image in built.images)
    shipped = wild_set.build_wild_set(condition="as_shipped", max_photos=2, catalogue=catalogue)
    assert shipped.of(1)[0].pixels.shape == (3, 48, 48) and len(shipped.of(0)) == 2


def test_the_reals_are_the_held_out_photos_only():
    from lare2lib.world.photos import load_corpus

    test_ids = {p.photo_id for p in load_corpus() if p.split == "test"}
    built = wild_set.build_wild_set(size=16, real_views=1, catalogue=[])
    assert {image.group for image in built.of(0)} == test_ids


# -- the metrics --------------------------------------------------------------------------------


def test_fast_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        real, fake = rng.integers(0, 6, 13).astype(float), rng.integers(2, 8, 9).astype(float)
        expected = average_precision_score(np.r_[np.zeros(13), np.ones(9)], np.r_[real, fake])
        assert nb08_metrics.fast_average_precision(real, fake) == pytest.approx(expected, abs=1e-12)


def test_grouped_bootstrap_draws_whole_photos():
    groups = ["a", "a", "b", "b", "c", "c"]
    index = nb08_metrics.grouped_indices(groups, 50, np.random.default_rng(0))
    assert index.shape == (50, 6)
    pairs = index.reshape(50, 3, 2)
    assert np.all(pairs[:, :, 1] == pairs[:, :, 0] + 1) and np.all(pairs[:, :, 0] % 2 == 0)
    with pytest.raises(ValueError):
        nb08_metrics.grouped_indices(["a", "b", "a", "b"], 5, np.random.default_rng(0))


def test_detection_row_averages_seeds_and_brackets_its_value():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(0, 1, (3, 12)), rng.normal(1, 1, (3, 10))
    row = nb08_metrics.detection_row(real, fake, [f"p{k // 3}" for k in range(12)], resamples=200)
    per_seed = [nb08_metrics.metrics.rank_auc(r, f) for r, f in zip(real, fake)]
    assert row["auc"] == pytest.approx(np.mean(per_seed)) and row["seeds"] == 3 and row["n_photos"] == 4
    assert row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1] and row["auc_std"] > 0
    perfect = nb08_metrics.detection_row(np.zeros(4), np.ones(3), ["a", "a", "b", "b"], resamples=20)
    assert perfect["auc"] == 1 and perfect["auc_ci"] == [1.0, 1.0] and perfect["tpr"] == 1


# -- finding what notebooks 02-05 trained -------------------------------------------------------


def _checkpoint(path, kind="classifier"):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": registry.FORMAT, "kind": kind, "config": "{}"})


def test_trained_detectors_are_grouped_over_seeds(tmp_path):
    world = "mini-0123456789ab"
    for seed in (0, 1):
        _checkpoint(tmp_path / "egre" / world / "runs" / f"egre-seed{seed}-abcdef0123456789" / "best.safetensors", "egre")
        _checkpoint(tmp_path / "resolution" / "bd2e12be508a" / "runs" / "train_64" / "best.safetensors")
        _checkpoint(tmp_path / "runs" / "03_ae_reconstruction" / world / "lite0-kl_ae" / f"seed{seed}" / "best.safetensors")
    (tmp_path / "aefamily" / "x").mkdir(parents=True)
    (tmp_path / "aefamily" / "x" / "best.safetensors").write_bytes(b"not a checkpoint")
    found = nb08_wild.find_trained_detectors(tmp_path)
    assert [(f.notebook, f.name, f.kind, sorted(f.checkpoints)) for f in found] == [
        ("02", "egre", "egre", [0, 1]), ("03", "lite0-kl_ae", "classifier", [0, 1]),
        ("05", "train_64", "classifier", [0])]


def _tiny_egre_checkpoints(folder, ldm_folder):
    """EGRE checkpoints over one map setting (two seeds, and a misaligned crop) and one over
    DIRE maps, as notebook 02 leaves them (``<row>-seed<k>/best.safetensors``)."""
    from lare2lib.detectors.egre import EgreDetector
    from lare2lib.models.tiny_detectors import tiny_classifier_kwargs

    lare = {"timestep": 200, "ensemble": 1, "image_size": 32, "prompt": "class"}
    rows = {"egre": ({}, (0, 1)), "egre_misaligned": ({"variant": "esr", "aligned": False}, (0,)),
            "egre_dire": ({"feature": "dire", "dire_steps": 2}, (0,))}
    for name, (overrides, seeds) in rows.items():
        for seed in seeds:
            torch.manual_seed(seed)
            model = EgreDetector(**{"variant": "egre", "backbone": "convnext_large", "pretrained": False,
                                    "backbone_kwargs": tiny_classifier_kwargs("convnext_large"),
                                    "crop_size": 32, "heads": 2, "ldm": str(ldm_folder), "lare": lare,
                                    **overrides})
            registry.save_detector(model, folder / "egre" / f"{name}-seed{seed}" / "best.safetensors")


def _tiny_wild_set(condition, sizes):
    generator = torch.Generator().manual_seed(len(sizes))
    images = [wild_set.WildImage(f"{condition}{k}", torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                                                                  generator=generator),
                                 k % 2, f"g{k // 2}") for k, (h, w) in enumerate(sizes)]
    return wild_set.WildSet(images, condition=condition)


@pytest.mark.slow
def test_egre_checkpoints_share_their_maps_and_score_as_they_would_alone(tmp_path, monkeypatch):
    from lare2lib.detectors import egre_data
    from lare2lib.models.tiny import make_tiny_mini_ldm

    _tiny_egre_checkpoints(tmp_path, make_tiny_mini_ldm(tmp_path / "weights"))
    wild_sets = {"controlled": _tiny_wild_set("controlled", [(64, 64)] * 4),
                 "as_shipped": _tiny_wild_set("as_shipped", [(80, 96), (64, 64), (40, 56)])}
    calls = []
    real_maps = egre_data.maps_of_images
    monkeypatch.setattr(egre_data, "maps_of_images", lambda extractor, *a: calls.append(extractor.method)
                        or real_maps(extractor, *a))
    trained = nb08_wild.find_trained_detectors(tmp_path)
    assert [(f.name, sorted(f.checkpoints)) for f in trained] == [
        ("egre", [0, 1]), ("egre_dire", [0]), ("egre_misaligned", [0])]
    config = nb08_wild.Config(batch_size=3, seed=2, shortcut_seeds=1)
    scores, seconds = nb08_wild.score_detectors(wild_sets, trained, {}, config, progress=False)
    # one LaRE and one DIRE map set per condition, in batches of 3: 2 + 1 calls each
    assert sorted(calls) == sorted(["lare"] * 3 + ["dire"] * 3)
    assert set(seconds) == {f.label for f in trained}
    for found in trained:
        assert scores["controlled"][found.label].shape == (len(found.checkpoints), 4)
        assert scores["as_shipped"][found.label].shape == (1, 3)  # shortcut_seeds = 1
        for condition, wild in wild_sets.items():
            detector = registry.load_detector(found.checkpoints[0])
            alone = detector.score_images([i.pixels for i in wild.images], [i.image_id for i in wild.images],
                                          seed=2, tries=1, batch_size=3)
            np.testing.assert_allclose(scores[condition][found.label][0], alone.double().numpy(), atol=1e-6)


# -- the real wheels ----------------------------------------------------------------------------


@needs_wheels
def test_the_shipped_templates_give_a_labelled_text_to_image_set():
    catalogue = {t.template_id: t for t in wild_templates.template_catalogue()}
    kept = [t for t in catalogue.values() if t.keep]
    assert len(kept) >= 40 and all(t.preview is not None and t.preview.is_file() for t in kept)
    assert catalogue["sdxl_simple_example"].vae_family == "sd-kl-f8-4ch"
    assert catalogue["image_flux2_text_to_image"].vae_family == "flux2-32ch"
    assert catalogue["flux_dev_full_text_to_image"].vae_family == "sd3-flux1-16ch"
    assert not catalogue["image_flux2"].keep  # an edit template with a before/after thumbnail
    families = {t.vae_family for t in kept}
    assert {"sd-kl-f8-4ch", "sd3-flux1-16ch", "flux2-32ch", "unknown"} <= families


def test_the_wild_extra_pins_every_wheel_and_dev_includes_it():
    import tomllib

    from lare2lib.core import paths

    extras = tomllib.loads((paths.repo_root() / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pinned = {line.split("==")[0] for line in extras["wild"] if "==" in line}
    assert pinned == set(wild_templates.WILD_PACKAGES.values())
    assert "lare2lib[wild]" in extras["dev"]


# -- the notebook's tables and words ----------------------------------------------------------


def _toy_set(n_photos=4, views=2, n_fake=6):
    images = [wild_set.WildImage(f"real/p{p}#{v}", torch.zeros(3, 8, 8, dtype=torch.uint8), 0, f"p{p}")
              for p in range(n_photos) for v in range(views)]
    images += [wild_set.WildImage(f"fake/t{k}", torch.zeros(3, 8, 8, dtype=torch.uint8), 1, f"t{k}",
                                  "G", "FLUX.2" if k % 2 else "API (closed)", "flux2-32ch" if k % 2 else "unknown")
               for k in range(n_fake)]
    return wild_set.WildSet(images, {"x": "takes an input image", "y": "animated (3 frames)"})


def test_tables_and_findings_are_composed_from_the_scores():
    from lare2lib.studies import nb08_findings

    toy = _toy_set()
    labels = np.array([image.label for image in toy.images])
    separating = np.where(labels == 1, 5.0, 0.0) + np.arange(labels.size) * 1e-3
    scores = {"good": separating[None], "inverted": -separating[None],
              "noise": np.zeros((2, labels.size))}  # all ties: AUC ½ exactly
    config = nb08_wild.Config(bootstrap=100)
    controlled = nb08_wild.detection_table(toy, scores, config)
    assert set(controlled.subset) == {"all", "FLUX.2", "API (closed)", "flux2-32ch", "unknown"}
    shipped = nb08_wild.detection_table(toy, {**scores, "noise": scores["good"]}, config)
    tables = {"controlled": controlled, "as_shipped": shipped}
    overall = controlled[controlled.grouping == "all"].set_index("detector")
    assert nb08_findings.verdict(overall.loc["good"]) == "transfers"
    assert nb08_findings.verdict(overall.loc["inverted"]) == "inverted"
    summary = nb08_findings.set_summary(toy)
    assert summary["dropped"] == {"takes an input image": 1, "animated": 1} and summary["n_photos"] == 4
    text = nb08_findings.findings_text(tables, summary)
    assert "Of 3 detectors, 1 separate" in text and "1 are indistinguishable from chance" in text
    assert "1 are inverted" in text and "**good**" in text
    assert "would *appear* to transfer only without the control: noise" in text
    shortcut = nb08_wild.shortcut_table(tables)
    assert shortcut.loc["noise", "as_shipped − controlled"] == pytest.approx(0.5)


def test_in_world_auc_reads_each_notebooks_own_table():
    from lare2lib.studies import nb08_findings

    world = {g: {"auc": a} for g, a in zip(nb08_findings.WORLD_GENERATORS, (0.9, 0.7, 0.8))}
    metrics = {
        "02_egre_ablations": {"ablation": {"egre": {"mean": {"auc": {"mean": 0.95, "std": 0.01}}}}},
        "03_ae_reconstruction": {"comparison": {"recon classifier, 1 try": {"mean": {"auc": 0.85}},
                                                "AEROBLADE (efficientnet_lite0_blocks.0)": {"mean": {"auc": 0.99}},
                                                "mean LaRE (kl_ldm)": {"mean": {"auc": 0.3}}}},
        "04_autoencoder_family": {"matrix": {"kl_ae": {**world, "recon_kl_ae": {"auc": 0.1}}}},
        "05_training_resolution": {"generators": {"64": world}},
    }
    names = ["02 egre", "03 lite0-kl_ae", "04 kl_ae", "05 train_64", "AEROBLADE (kl_ae+vq_ae)",
             "mean LaRE (kl_ldm)", "mean LaRE (vq_ldm)", "02 missing"]
    got = nb08_findings.in_world_auc(names, metrics)
    assert got["02 egre"] == 0.95 and got["03 lite0-kl_ae"] == 0.85
    assert got["04 kl_ae"] == pytest.approx(0.8) and got["05 train_64"] == pytest.approx(0.8)  # recon sets excluded
    assert got["AEROBLADE (kl_ae+vq_ae)"] == 0.99 and got["mean LaRE (kl_ldm)"] == 0.3
    assert np.isnan(got["mean LaRE (vq_ldm)"]) and np.isnan(got["02 missing"])
