"""Notebook 01's analysis (lare2lib.studies.nb01_lare), figures (nb01_figures) and cost measurement
(nb01_cost), on a tiny random LDM in the mini-world layout and a few random 32 px images."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from lare2lib.core.profiles import LareConfig
from lare2lib.data import imagesets
from lare2lib.data.imagesets import ImageSet
from lare2lib.signals import set_maps
from lare2lib.signals.lare import LareExtractor
from lare2lib.studies import nb01_cost, nb01_figures, nb01_lare
from lare2lib.studies.common import study_config

matplotlib.use("Agg")  # figures are built and closed, never shown

CLASSES = ("cat", "coffee", "rocket")
CONFIG = LareConfig(timestep=200, ensemble=2, image_size=32, prompt="class", batch_size=4)


@pytest.fixture(scope="module")
def ldm(tmp_path_factory):
    from lare2lib.models.ldm import load_ldm
    from lare2lib.models.tiny import make_tiny_mini_ldm

    folder = make_tiny_mini_ldm(tmp_path_factory.mktemp("weights") / "mini", class_names=CLASSES)
    return load_ldm(str(folder))


def image_set(name: str, count: int, seed: int, size: int = 32) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return ImageSet(name, pixels, torch.arange(count) % len(CLASSES),
                    [f"{name}/{k}" for k in range(count)])


@pytest.fixture(scope="module")
def sets():
    return {"real": image_set("real", 5, 0), "kl_ldm": image_set("kl_ldm", 4, 1)}


# -- AUC ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("real", "generated", "expected"), [
    ([2.0, 3.0, 4.0], [0.5, 1.0], 1.0),        # every generated image below every real one
    ([0.5, 1.0], [2.0, 3.0, 4.0], 0.0),        # the premise reversed
    ([1.0, 3.0], [2.0, 4.0], 0.25),            # one of four pairs ordered as the premise says
    ([1.0, 2.0], [1.0, 2.0], 0.5),             # identical scores: ties count half
])
def test_auc_counts_pairs_where_generated_is_lower(real, generated, expected):
    assert nb01_lare.lare_auc(np.array(real), np.array(generated)) == expected


def test_auc_agrees_with_sklearn_on_negated_scores():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    real, generated = rng.gamma(2.0, size=40), rng.gamma(1.5, size=30)
    labels = np.r_[np.zeros(40), np.ones(30)]
    expected = roc_auc_score(labels, -np.r_[real, generated])
    assert nb01_lare.lare_auc(real, generated) == pytest.approx(expected)


def test_bootstrap_interval_brackets_the_auc_and_shrinks_with_more_images():
    rng = np.random.default_rng(1)
    small = nb01_lare.lare_auc_interval(rng.normal(1, 1, 20), rng.normal(0, 1, 20), resamples=300)
    large = nb01_lare.lare_auc_interval(rng.normal(1, 1, 500), rng.normal(0, 1, 500), resamples=300)
    for result in (small, large):
        assert result["low"] <= result["auc"] <= result["high"]
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 2
    assert 0.70 < large["auc"] < 0.82  # P(N(0,1) < N(1,1)) = Φ(1/√2) ≈ 0.76
    seeded = [nb01_lare.lare_auc_interval([1, 2, 3], [0, 2], resamples=50, seed=3) for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_auc_table_has_one_row_per_generator():
    scores = {"real": np.array([3.0, 4.0]), "a": np.array([1.0, 2.0]), "b": np.array([5.0, 6.0])}
    table = nb01_lare.auc_table(scores, resamples=50)
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "auc"] == 1.0 and table.loc["b", "auc"] == 0.0


# -- maps, curves, ensemble -----------------------------------------------------------------
def test_set_maps_equal_the_extractor_on_the_same_images(ldm, sets):
    real = sets["real"]
    maps = set_maps.lare_maps(ldm, real, CLASSES, CONFIG, seed=2, batch_size=2)
    prompts = set_maps.set_prompts(real, CLASSES, ldm.class_names)
    expected = LareExtractor(ldm, CONFIG, seed=2)(real.pixels.float() / 127.5 - 1, real.ids,
                                                   prompts)
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)
    assert prompts[:2] == ["a photo of a cat", "a photo of a coffee"]


def test_set_pixels_squash_like_the_released_code_when_sizes_differ():
    from PIL import Image

    from lare2lib.signals.lare import pixels_from_image

    images = image_set("x", 2, 0, size=48)
    expected = torch.stack([pixels_from_image(Image.fromarray(p.permute(1, 2, 0).numpy()), 32)
                            for p in images.pixels])
    torch.testing.assert_close(set_maps.set_pixels(images, 32), expected)
    same = set_maps.set_pixels(images, 48)
    assert same.shape == (2, 3, 48, 48) and same.min() >= -1 and same.max() <= 1


def test_first_k_draws_average_to_the_k_draw_map(ldm, sets):
    """The ensemble study's premise: draws 1..K of the per-draw errors are LaRE's K draws."""
    errors = nb01_lare.draw_errors(ldm, sets["real"], CLASSES, draws=4, config=CONFIG, seed=1)
    assert errors.shape == (5, 4, 4, 4, 4)
    maps = set_maps.lare_maps(ldm, sets["real"], CLASSES, CONFIG, seed=1)  # K = 2
    torch.testing.assert_close(errors[:, :2].mean(1), maps, rtol=1e-5, atol=1e-6)


def test_ensemble_study_reports_noise_only_where_two_halves_exist():
    generator = torch.Generator().manual_seed(0)
    signal = torch.rand(6, 1, 2, 3, 3, generator=generator) * 4
    errors = {"real": signal + torch.rand(6, 8, 2, 3, 3, generator=generator),
              "gen": signal * 0.5 + torch.rand(6, 8, 2, 3, 3, generator=generator)}
    study = nb01_lare.ensemble_study(errors, [1, 4, 8])
    real = study[study.set == "real"].set_index("K")
    assert real.loc[8, ["split_half_corr", "noise_ratio"]].isna().all()  # 16 draws needed
    assert real.loc[4, "split_half_corr"] > real.loc[1, "split_half_corr"]
    assert real.loc[4, "noise_ratio"] < real.loc[1, "noise_ratio"]
    assert study[study.set == "gen"]["auc"].notna().all() and real["auc"].isna().all()


def test_loss_curves_have_one_row_per_image_and_timestep(ldm, sets):
    curves = nb01_lare.loss_curves(ldm, sets, CLASSES, [50, 200, 900], batch_size=3)
    assert len(curves) == (5 + 4) * 3 and (curves["loss"] > 0).all()
    summary = nb01_lare.curve_summary(curves)
    assert list(summary["set"].unique()) == ["real", "kl_ldm"]  # the caller's order is kept
    gap = nb01_lare.curve_gap(summary)
    real_at_200 = curves.query("set == 'real' and t == 200")["loss"].mean()
    gen_at_200 = curves.query("set == 'kl_ldm' and t == 200")["loss"].mean()
    assert gap.loc[200, "kl_ldm"] == pytest.approx(real_at_200 - gen_at_200)
    assert set(nb01_lare.curve_dict(summary)["real"]) == {50, 200, 900}


def test_subsample_is_seeded_sorted_and_complete_when_asked_for_all():
    images = image_set("x", 10, 0)
    picked = imagesets.subsample(images, 4, seed=5)
    assert picked.ids == imagesets.subsample(images, 4, seed=5).ids
    assert picked.ids != imagesets.subsample(images, 4, seed=6).ids
    assert picked.ids == sorted(picked.ids, key=images.ids.index)
    assert imagesets.subsample(images, 0).ids == images.ids == imagesets.subsample(images, 99).ids


def test_figures_are_built(ldm, sets):
    import matplotlib.pyplot as plt

    maps = {name: set_maps.lare_maps(ldm, images, CLASSES, CONFIG) for name, images in sets.items()}
    scores = {name: m.mean(dim=(1, 2, 3)).numpy() for name, m in maps.items()}
    summary = nb01_lare.curve_summary(nb01_lare.loss_curves(ldm, sets, CLASSES, [100, 500]))
    errors = {name: nb01_lare.draw_errors(ldm, s, CLASSES, 4, CONFIG) for name, s in sets.items()}
    figures = [
        nb01_figures.map_gallery({name: (sets[name], maps[name]) for name in sets}, per_set=2),
        nb01_figures.auc_figure(scores, nb01_lare.auc_table(scores, resamples=20)),
        nb01_figures.timestep_figure(summary, "tiny"),
        nb01_figures.ensemble_figure(nb01_lare.ensemble_study(errors, [1, 2]), errors["real"][0], [1, 2]),
        nb01_figures.single_map_figure(ldm, sets["real"], 7, CLASSES, CONFIG),
    ]
    assert len(figures[0].axes) == 4 * 6 + 1  # 4 rows × (image, 4 channels, mean) + colourbar
    for figure in figures:
        plt.close(figure)


# -- cost ---------------------------------------------------------------------------------
def test_measure_keeps_the_fastest_timed_run_after_warm_up():
    calls = []
    timing = nb01_cost.measure("x", lambda: calls.append(1), images=10, repeats=3, warmup=2)
    assert len(calls) == 5 and len(timing.seconds) == 3
    assert timing.images_per_second == 10 / min(timing.seconds)
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        nb01_cost.measure("x", lambda: None, images=1, repeats=0)


def test_compare_costs_times_every_variant_on_the_same_images(ldm, sets, tmp_path):
    real = sets["real"]
    records = nb01_cost.write_png_records(real.pixels, real.ids,
                                         [CLASSES[i] for i in real.class_index], tmp_path)
    report = nb01_cost.compare_costs(ldm, records, CONFIG, batch_size=4, dire_steps=2,
                                    dire_images=2, per_image_images=3, repeats=1, warmup=0,
                                    progress=False)
    assert set(report.timings) == set(nb01_cost.VARIANTS)
    assert report.timings["dire"].images == 2 and report.timings["per_image"].images == 3
    assert report.timings["driver"].images == len(records)
    ratios = report.ratios()
    assert ratios["extraction_vs_bare_ratio"] == pytest.approx(
        report.ips("driver") / report.ips("bare"))
    assert all(value > 0 for value in ratios.values())
    assert report.to_dict()["settings"]["dire_network_passes"] == 4
    plt_figure = nb01_figures.cost_figure(report)
    assert "LaRE/DIRE" in plt_figure.axes[0].get_title()


def test_interleaved_repeats_time_every_variant_in_each_round():
    order = []
    plan = {"a": (lambda: order.append("a"), 4), "b": (lambda: order.append("b"), 2)}
    timings = nb01_cost.measure_interleaved(plan, repeats=2, warmup=1)
    assert order == ["a", "b", "a", "b", "a", "b"]  # warm-ups, then round-robin
    assert {name: t.images for name, t in timings.items()} == {"a": 4, "b": 2}
    assert all(len(t.seconds) == 2 for t in timings.values())


# -- the study's config ---------------------------------------------------------------------------
def test_lare_auc_interval_matches_an_independent_stratified_bootstrap():
    """Same resamples as a plain loop over numpy's generator (reals, then generated, per resample)."""
    rng = np.random.default_rng(5)
    real, generated = rng.gamma(2.0, size=23), rng.gamma(1.6, size=17)
    ours = nb01_lare.lare_auc_interval(real, generated, resamples=200, seed=4)
    draw = np.random.default_rng(4)
    values = []
    for _ in range(200):
        r, g = real[draw.integers(0, 23, 23)], generated[draw.integers(0, 17, 17)]
        values.append(((g[:, None] < r[None, :]).sum() + 0.5 * (g[:, None] == r[None, :]).sum()) / (23 * 17))
    assert (ours["low"], ours["high"]) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12)
    assert list(ours) == ["auc", "low", "high", "level", "resamples", "n_real", "n_generated"]


def smoke_profile():
    from lare2lib.core.profiles import get_profile

    return get_profile("mini", smoke=True)


SMOKE_SHRUNK = {name: value for name, value in vars(nb01_lare.Config.smoke()).items()
                if value != getattr(nb01_lare.Config(), name)}


def test_smoke_budget_shrinks_the_mini_defaults():
    assert set(SMOKE_SHRUNK) >= {"n_images", "bootstrap", "cost_images", "curve_timesteps"}
    assert study_config(nb01_lare.Config, smoke_profile()) == nb01_lare.Config.smoke()


@pytest.mark.parametrize("name", sorted(SMOKE_SHRUNK))
def test_an_explicit_parameter_wins_over_the_smoke_budget(name):
    default = getattr(nb01_lare.Config(), name)
    config = study_config(nb01_lare.Config, smoke_profile(), **{name: default})
    assert getattr(config, name) == default != getattr(nb01_lare.Config.smoke(), name)
    others = {k for k in SMOKE_SHRUNK if k != name}
    assert all(getattr(config, k) == getattr(nb01_lare.Config.smoke(), k) for k in others)


def test_config_parses_its_grids_and_refuses_garbage():
    config = nb01_lare.Config(curve_timesteps="20, 200,980", ensemble_sizes="1,4")
    assert config.timesteps == [20, 200, 980] and config.ks == [1, 4]
    assert config.lare_config(CONFIG).prompt == "class"
    with pytest.raises(ValueError, match="comma-separated integers"):
        nb01_lare.parse_ints("20,two hundred")
    with pytest.raises(TypeError, match="no parameter 'n_imgs'"):
        study_config(nb01_lare.Config, smoke_profile(), n_imgs=3)


def test_findings_are_composed_from_the_tables():
    import pandas as pd

    from lare2lib.studies import nb01_figures

    auc = pd.DataFrame({"auc": [0.7, 0.3, 0.5], "low": [0.6, 0.2, 0.4], "high": [0.8, 0.4, 0.6]},
                       index=["kl_ldm", "vq_ldm", "kl_ldm_fast"])
    gap = pd.DataFrame({"kl_ldm": [0.1, 0.3, -0.1], "vq_ldm": [-0.1, -0.2, -0.3]}, index=[20, 200, 600])
    study = pd.DataFrame([{"K": 1, "set": "real", "split_half_corr": 0.4},
                          {"K": 4, "set": "real", "split_half_corr": 0.8},
                          {"K": 4, "set": "kl_ldm", "auc": 0.7}])
    ratios = {"lare_vs_dire_speedup": 9.64, "batched_vs_per_image_speedup": 3.0, "extraction_vs_bare_ratio": 0.93}
    text = nb01_figures.findings(auc, gap, study, ratios, 200)
    assert "It holds (interval above ½) for kl_ldm;" in text and "reversed (interval below ½) for vq_ldm." in text
    assert "kl_ldm: 2 of 3 timesteps (largest gap at t = 200)" in text and "vq_ldm: 0 of 3" in text
    assert "0.40 at K = 1 and 0.80 at K = 4" in text and "9.6× as fast" in text and "keeps 0.93" in text


def test_file_decoding_check_separates_the_release_from_the_corrections(tiny_kl_ldm, tmp_path):
    """An EXIF-rotated file read the release's way is a different image; corrected, nearly the same."""
    import dataclasses

    from test_lare import CONFIG

    from lare2lib.studies import nb01_decoding

    ramp = torch.linspace(0, 255, 32).to(torch.uint8)  # a vertical gradient: rotation changes it
    pixels = torch.stack([torch.stack([ramp[:, None].expand(32, 32)] * 3) // (k + 1) for k in range(3)])
    images = ImageSet("real", pixels, torch.zeros(3, dtype=torch.long), ["a", "b", "c"])
    cases = nb01_decoding.write_cases(images, tmp_path)
    assert sorted(cases.case.unique()) == ["alpha", "exif"] and len(cases) == 6
    from PIL import Image

    with Image.open(cases.path[0]) as stored:
        assert stored.getexif()[0x0112] == 6 and stored.size == (pixels.shape[3], pixels.shape[2])
    config = dataclasses.replace(CONFIG, prompt="photo")
    table = nb01_decoding.decoding_table(tiny_kl_ldm, cases, dict.fromkeys(images.ids, "a photo"), config)
    change = table.set_index(["case", "setting"])["relative_change"]
    assert change["exif", "corrected"] < 0.5 * change["exif", "release"]
    assert change["alpha", "release"] > 0 and change["alpha", "corrected"] > 0
    assert change["alpha", "release"] != pytest.approx(change["alpha", "corrected"])
