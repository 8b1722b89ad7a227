"""Notebook 07's figures, drawn from synthetic metrics in the upstream notebooks' schemas."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")  # this test process only; notebooks keep their inline backend

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lare2lib.core.plotting import write_metrics
from lare2lib.studies import (nb07_common, nb07_egre, nb07_evasion, nb07_figures, nb07_lare,
                              nb07_matrices, nb07_overview, nb07_recon)

GENERATORS = ("kl_ldm", "vq_ldm", "kl_ldm_fast")
TIMESTEPS = ("20", "200", "600", "980")


def metrics01() -> dict:
    """01_lare's keys as notebooks/01_lare.py writes them (JSON: t as text)."""
    sets = ("real", *GENERATORS)
    curve = {name: {t: 1.1 - 0.01 * i - 0.0001 * int(t) for t in TIMESTEPS}
             for i, name in enumerate(sets)}
    timings = {name: {"images": 8, "images_per_second": ips, "seconds": [8 / ips], "spread": 0.0}
               for name, ips in {"lare": 10.0, "dire": 1.6, "driver": 4.9, "bare": 4.6,
                                 "per_image": 1.3}.items()}
    return {
        "timestep": 200,
        "lare_auc": {g: {"auc": 0.6 + 0.05 * i, "low": 0.5, "high": 0.8, "level": 0.95,
                         "n_real": 8, "n_generated": 8} for i, g in enumerate(GENERATORS)},
        "timestep_curve": {"kl_ldm": curve, "vq_ldm_own": {k: curve[k] for k in ("real", "vq_ldm")}},
        "cost": {"timings": timings, "lare_vs_dire_speedup": 6.3},
        "lare_vs_dire_speedup": 6.3,
        "batched_vs_per_image_speedup": 3.6,
        "extraction_vs_bare_ratio": 1.05,
    }


def _cell(mean: float) -> dict:
    return {"mean": mean, "std": 0.02, "n": 3}


def metrics02() -> dict:
    """02_egre_ablations: variant → test set (+ "mean") → {acc, ap, auc} → {mean, std, n}."""
    variants = {"backbone": 0.7, "esr": 0.8, "egre": 0.9}
    return {
        "seeds": [0, 1, 2],
        "ablation": {
            variant: {s: {"acc": _cell(base - 0.1), "ap": _cell(base), "auc": _cell(base)}
                      for s in (*GENERATORS, "mean")}
            for variant, base in variants.items()
        },
    }


def metrics03() -> dict:
    """03_ae_reconstruction: TPR / AUC per generator and tries, AEROBLADE AP, robustness."""
    def tries(value):
        return {"1_try": {"value": value, "ci": [value - 0.1, value + 0.05]},
                "10_tries": {"value": value + 0.05, "ci": [value - 0.05, value + 0.08]}}

    return {
        "tpr_at_0.1pct_fpr": {g: tries(0.3 + 0.1 * i) for i, g in enumerate(GENERATORS)},
        "auc": {g: tries(0.8 + 0.05 * i) for i, g in enumerate(GENERATORS)},
        "aeroblade_ap": {g: 0.7 + 0.1 * i for i, g in enumerate(GENERATORS)},
        "robustness": {
            "jpeg": {q: {g: 0.5 + q_i * 0.1 for g in GENERATORS}
                     for q_i, q in enumerate(("50", "70", "90", "100"))},
            "resize": {"none": {g: 0.9 for g in GENERATORS}, "0.5": {g: 0.6 for g in GENERATORS}},
        },
        "seconds": 12.0,
    }


def metrics04() -> dict:
    """04_autoencoder_family as the notebook writes it: ``matrix`` cells and residual profiles."""
    matrix = {ae: {s: {"auc": 0.5 + 0.1 * i + 0.05 * j, "tpr@0.1%": 0.1 * i + 0.02 * j,
                       "tpr@0.1%_ci": [0.0, 0.3]}
                   for j, s in enumerate(GENERATORS)} for i, ae in enumerate(("kl_ae", "vq_ae"))}
    spectra = {ae: {"frequency": [0.0, 0.125, 0.25, 0.5], "log_magnitude": [1.0, 0.3, 0.1, 0.01]}
               for ae in ("kl_ae", "vq_ae")}
    return {"matrix": matrix, "residual_spectra": spectra}


def metrics05() -> dict:
    # Text keys in JSON order ("128" < "32" < "64" < "native"): numbers must sort as numbers,
    # the named level after them.
    levels = ("128", "32", "64", "native")
    side = {"32": 32, "64": 64, "128": 128, "native": 256}
    return {"matrix": {r: {c: {"auc": 1.0 - abs(side[r] - side[c]) / 200, "tpr@0.1%": 0.1}
                           for c in levels} for r in levels}}


def metrics06() -> dict:
    return {
        "postprocess": {"blur": {s: {"egre": {"tpr": 0.9 - float(s) / 10, "auc": 0.9, "fpr": 0.05},
                                     "recon": {"tpr": 0.8, "auc": 0.8, "fpr": 0.05}}
                                 for s in ("0", "1", "2")}},
        "clean": {"egre": {"tpr": 0.95, "auc": 0.99, "fpr": 0.05}},
        "postprocess_mean_tpr": {"egre": 0.8},
        "artifact_removal": {"egre": {"before": 0.9, "after": 0.6},
                             "recon": {"before": 0.95, "after": 0.7}},
        "pgd": {"egre": {"epsilon": [0, 1, 2, 4], "auc": [0.9, 0.7, 0.5, 0.3],
                         "psnr": [None, 48.0, 42.0, 36.0]}},
    }


def metrics08() -> dict:
    """08_in_the_wild's keys as nb08_report.metrics_record writes them."""
    def row(auc):
        return {"auc": auc, "auc_ci": [auc - 0.1, auc + 0.1], "ap": auc, "ap_ci": [0.4, 0.9],
                "tpr": 0.1, "tpr_ci": [0.0, 0.3], "n_fake": 56, "n_real": 65, "seeds": 1}

    def condition(shift):
        return {name: {"all": {"all": row(auc + shift)}, "vae_family": {"flux2-32ch": row(auc)}}
                for name, auc in (("02 egre", 0.55), ("AEROBLADE (TAEF2)", 0.75), ("mean LaRE (kl_ldm)", 0.3))}

    return {"conditions": {"controlled": condition(0.0), "as_shipped": condition(0.1)},
            "verdicts": {"02 egre": "chance", "AEROBLADE (TAEF2)": "transfers", "mean LaRE (kl_ldm)": "inverted"},
            "set": {"n_fake": 56, "n_real": 65}}


ALL = {"01_lare": metrics01(), "02_egre_ablations": metrics02(), "03_ae_reconstruction": metrics03(),
       "04_autoencoder_family": metrics04(), "05_training_resolution": metrics05(),
       "06_evasion": metrics06(), "08_in_the_wild": metrics08()}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig) -> str:
    return " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


# -- every figure from complete metrics --------------------------------------------------------


def test_every_registered_figure_draws_from_complete_metrics():
    drawn, skipped = nb07_figures.draw_available(ALL)
    assert skipped == {}
    assert list(drawn) == [spec.name for spec in nb07_figures.FIGURES]
    assert drawn["overview_auc"][1] == ["01_lare", "02_egre_ablations", "03_ae_reconstruction"]
    assert drawn["evasion"][1] == ["06_evasion"]
    assert drawn["in_the_wild"][1] == ["08_in_the_wild"]


def test_in_the_wild_figure_and_sentence_read_08():
    fig = nb07_figures.draw_figure("in_the_wild", {"08_in_the_wild": metrics08()})[0]
    assert "AEROBLADE (TAEF2)" in _texts(fig)
    [sentence] = nb07_figures.findings({"08_in_the_wild": metrics08()})
    assert "1 of 3 detectors transfer" in sentence and "best AEROBLADE (TAEF2), AUC 0.75 [0.65, 0.85]" in sentence
    rows = nb07_figures.headline_rows({"08_in_the_wild": metrics08()})
    assert {r["set"] for r in rows} == {"02 egre", "AEROBLADE (TAEF2)", "mean LaRE (kl_ldm)"}
    with pytest.raises(nb07_common.MissingMetrics):
        nb07_figures.draw_figure("in_the_wild", {"08_in_the_wild": {"conditions": {}}})


def test_timestep_curve_plots_t_in_numeric_order():
    fig = nb07_lare.timestep_loss_figure(metrics01())
    ax_common, ax_own = fig.axes
    assert len(ax_common.get_lines()) == 4 + 1  # four sets plus the marked t
    real = next(line for line in ax_common.get_lines() if line.get_label() == "real")
    np.testing.assert_array_equal(real.get_xdata(), [20, 200, 600, 980])
    assert ax_own.get_title() == "scored by vq_ldm_own"


def test_cost_bars_are_seconds_per_image():
    fig = nb07_lare.cost_figure(metrics01())
    ax_time, ax_ratio = fig.axes[:2]
    widths = {t.get_text(): p.get_width() for t, p in zip(ax_time.get_yticklabels(), ax_time.patches)}
    assert widths["LaRE (batched)"] == pytest.approx(0.1)
    assert widths["DIRE-style"] == pytest.approx(1 / 1.6)
    assert [p.get_width() for p in ax_ratio.patches] == pytest.approx([6.3, 3.6, 1.05])


def test_ablation_bars_carry_means_and_seed_std():
    fig = nb07_egre.ablation_figure(metrics02())
    assert [ax.get_title() for ax in fig.axes] == ["ACC @ 0.5", "AP", "AUC"]
    heights = sorted({round(p.get_height(), 6) for p in fig.axes[2].patches})
    assert heights == [0.7, 0.8, 0.9]
    # 3 variants × 4 test sets (the generators, then "mean" last) per panel.
    assert len(fig.axes[2].patches) == 12
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()][-1] == "mean"
    assert "3 seed(s)" in _texts(fig)


def test_reconstruction_panels_and_intervals():
    fig = nb07_recon.reconstruction_figure(metrics03())
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["TPR @ 0.1 % FPR", "ROC AUC", "AEROBLADE AP (training-free)"]
    tpr = [p.get_height() for p in fig.axes[0].patches]
    assert tpr == pytest.approx([0.3, 0.4, 0.5, 0.35, 0.45, 0.55])  # 1 try, then 10 tries


def test_reconstruction_draws_roc_points_when_present():
    metrics = metrics03() | {"roc": {"kl_ldm": {"fpr": [0, 0.001, 0.1, 1], "tpr": [0, 0.4, 0.9, 1]}}}
    fig = nb07_recon.reconstruction_figure(metrics)
    assert fig.axes[-1].get_title() == "ROC" and fig.axes[-1].get_xscale() == "log"


def test_robustness_levels_numeric_and_named():
    fig = nb07_recon.robustness_figure(metrics03()["robustness"])
    jpeg, resize = fig.axes[:2]
    line = jpeg.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [50, 70, 90, 100])
    np.testing.assert_allclose(line.get_ydata(), [0.5, 0.6, 0.7, 0.8])
    # "none" is not a number: categorical axis, the reference level first.
    assert [t.get_text() for t in resize.get_xticklabels()] == ["none", "0.5"]
    np.testing.assert_allclose(resize.get_lines()[0].get_ydata(), [0.9, 0.6])


def test_resolution_matrix_sorts_resolutions_as_numbers():
    fig = nb07_matrices.resolution_figure(metrics05())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["32", "64", "128", "native"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32", "64", "128", "native"]
    grid = ax.get_images()[0].get_array()
    np.testing.assert_allclose(np.diag(grid), 1.0)  # train = test resolution
    assert grid[0, 2] == pytest.approx(1 - 96 / 200)
    assert [a.get_title() for a in fig.axes if a.get_images()] == ["AUC", "TPR @ 0.1 % FPR"]


def test_postprocessing_draws_06s_detection_rate():
    fig, _ = nb07_figures.draw_figure("postprocessing", {"06_evasion": metrics06()})
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()
             if not line.get_label().startswith("_")}
    np.testing.assert_allclose(lines["egre"], [0.95, 0.9, 0.8, 0.7])  # clean first
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["clean", "0", "1", "2"]
    colours = [line.get_color() for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert len(set(colours)) == len(colours) == 2  # one colour per detector
    assert fig.axes[0].get_ylabel() == "TPR"


def test_matrix_leaves_missing_cells_blank():
    fig = nb07_matrices.matrix_figure({"AUC": {"a": {"x": 0.7}, "b": {"x": None, "y": 0.9}}},
                                  row_label="train", column_label="test")
    grid = fig.axes[0].get_images()[0].get_array()
    assert grid.shape == (2, 2) and np.isnan(grid.filled(np.nan)[0, 1])
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["0.70", "0.90"]


def test_evasion_panels_follow_what_06_wrote():
    full = nb07_evasion.evasion_figure(metrics06())
    assert [ax.get_title() for ax in full.axes if ax.get_title()][:3] == [
        "artifact-removal attack", "PGD attack", "what the attack costs"]
    pgd_only = nb07_evasion.evasion_figure({"pgd": metrics06()["pgd"]})
    assert len([ax for ax in pgd_only.axes if ax.get_visible()]) == 2


# -- what is missing is left out, never faked --------------------------------------------------


def test_figures_of_notebooks_not_run_are_skipped_with_a_reason():
    drawn, skipped = nb07_figures.draw_available({"01_lare": metrics01()})
    assert set(drawn) == {"overview_auc", "loss_vs_timestep", "cost"}
    assert skipped["egre_ablation"] == "notebook(s) 02 not run"
    assert skipped["evasion"] == "notebook(s) 06 not run"


def test_overview_leaves_out_panels_of_missing_notebooks_with_a_note():
    fig = nb07_overview.overview_figure({"01_lare": metrics01(), "03_ae_reconstruction": metrics03()})
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 2 and "[01_lare]" in titles[0] and "[03_ae_reconstruction]" in titles[1]
    assert "Not shown: 02 (EGRE (mean over seeds)): not run" in _texts(fig)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([0.6, 0.65, 0.7])  # 01's own numbers, nothing else


def test_missing_quantity_is_reported_not_drawn():
    partial = {"03_ae_reconstruction": {k: v for k, v in metrics03().items() if k != "robustness"}}
    drawn, skipped = nb07_figures.draw_available(partial)
    assert "reconstruction_tpr" in drawn
    assert skipped["robustness"] == "03_ae_reconstruction metrics.json has no 'robustness'"
    with pytest.raises(nb07_common.MissingMetrics, match="no 'ablation'"):
        nb07_egre.ablation_figure({"seeds": [0]})


def test_null_values_are_gaps():
    metrics = metrics02()
    metrics["ablation"]["egre"]["vq_ldm"]["auc"] = {"mean": None, "std": None, "n": 0}
    fig = nb07_egre.ablation_figure(metrics, metric_names=("auc",))
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sum(np.isnan(heights)) == 1


def test_a_bug_is_not_mistaken_for_a_missing_notebook():
    broken = {"01_lare": metrics01() | {"timestep_curve": {"kl_ldm": {"real": {"20": "high"}}}}}
    with pytest.raises(ValueError):
        nb07_figures.draw_available(broken)


# -- reading the upstream folders -------------------------------------------------------------


def test_available_metrics_reads_run_folders_by_number(tmp_path):
    write_metrics(tmp_path / "01_lare", metrics01())
    write_metrics(tmp_path / "04_ae_family_renamed", metrics04())
    (tmp_path / "02_egre_ablations").mkdir()  # ran and failed: no metrics.json
    found = nb07_common.available_metrics(tmp_path)
    assert list(found) == ["01_lare", "04_ae_family_renamed"]
    assert found["01_lare"]["lare_auc"]["kl_ldm"]["auc"] == pytest.approx(0.6)
    assert list(nb07_common.available_metrics(tmp_path, numbers=("04",))) == ["04_ae_family_renamed"]
    drawn, _ = nb07_figures.draw_available(found)
    assert drawn["autoencoder_family"][1] == ["04_ae_family_renamed"]


def test_headline_rows_are_json_and_cover_each_notebook():
    rows = nb07_figures.headline_rows(ALL)
    json.dumps(rows)
    notebooks = {row["notebook"] for row in rows}
    assert notebooks == set(ALL)
    family = [r for r in rows if r["quantity"] == "AUC, trained on autoencoder vq_ae" and r["set"] == "kl_ldm"]
    assert [r["value"] for r in family] == [pytest.approx(0.6)]
    clean = [r for r in rows if r["notebook"] == "06_evasion" and r["set"] == "egre"]
    assert [r["value"] for r in clean] == [0.95, 0.8]
    tpr = [r for r in rows if r["quantity"] == "TPR@0.1%FPR 1 try" and r["set"] == "kl_ldm"]
    assert tpr == [{"notebook": "03_ae_reconstruction", "quantity": "TPR@0.1%FPR 1 try",
                    "set": "kl_ldm", "value": 0.3, "low": pytest.approx(0.2), "high": 0.35}]


def test_render_saves_before_showing_and_records_sources(tmp_path):
    fig, record = nb07_figures.render("cost", {"01_lare": metrics01()}, tmp_path)
    assert fig is not None
    assert record == {"from": ["01_lare"], "files": ["cost.png", "cost.pdf"]}
    assert (tmp_path / "cost.png").stat().st_size > 0 and (tmp_path / "cost.pdf").is_file()
    fig, record = nb07_figures.render("evasion", {"01_lare": metrics01()}, tmp_path)
    assert fig is None and record == {"skipped": "notebook(s) 06 not run"}
    assert not (tmp_path / "evasion.png").exists()
    with pytest.raises(KeyError, match="valid: overview_auc"):
        nb07_figures.render("nonsense", {}, tmp_path)


def test_findings_read_their_numbers_from_the_metrics():
    lines = nb07_figures.findings({"01_lare": metrics01(), "02_egre_ablations": metrics02()})
    text = "\n".join(lines)
    assert "kl_ldm 0.60 [0.50, 0.80]" in text
    assert "6.3× faster than the DIRE-style baseline" in text
    assert "egre 0.90 ± 0.02, esr 0.80 ± 0.02, backbone 0.70 ± 0.02" in text
    assert "egre leads esr by 0.10, more than the seeds' standard deviation" in text
    assert "Reconstruction" not in text  # 03 has not run: nothing is said about it
    changed = metrics01() | {"lare_vs_dire_speedup": 2.5}
    assert "2.5× faster" in "\n".join(nb07_figures.findings({"01_lare": changed}))
    assert nb07_figures.findings({}) == []


CROWDED = ["kl_ldm", "kl_ldm_fast", "vq_ldm", "recon_kl_ae", "recon_vq_ae", "recon_taef2", "recon_sd_vae"]
"""Every generator and reconstruction set 03 may score: the most labels a panel gets."""


def _labels_overlap(fig, ax) -> list[str]:
    """Texts of the tick labels of ``ax`` that touch another one (after drawing)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [label for label in ax.get_xticklabels() if label.get_text()]
    boxes = [label.get_window_extent(renderer) for label in labels]
    assert len(boxes) == len(CROWDED)
    return [labels[k].get_text() for k, a in enumerate(boxes)
            if any(a.overlaps(b) for j, b in enumerate(boxes) if j != k)]


def _crowded_metrics03() -> dict:
    metrics = metrics03()
    metrics["auc"] = {g: {"1_try": {"value": 0.5 + 0.05 * i, "ci": [0.4, 0.9]}} for i, g in enumerate(CROWDED)}
    metrics["tpr_at_0.1pct_fpr"] = metrics["auc"]
    metrics["aeroblade_ap"] = {g: 0.7 for g in CROWDED}
    return metrics


def test_overview_labels_of_a_crowded_panel_do_not_overlap():
    """The 03 panel holds every reconstruction set and generator: its labels must stay legible."""
    fig = nb07_overview.overview_figure({"01_lare": metrics01(), "03_ae_reconstruction": _crowded_metrics03()})
    assert _labels_overlap(fig, fig.axes[1]) == []


def test_reconstruction_labels_of_crowded_panels_do_not_overlap():
    fig = nb07_recon.reconstruction_figure(_crowded_metrics03())
    for ax in fig.axes[:3]:  # TPR, AUC, AEROBLADE AP; the ROC panel has no category labels
        assert _labels_overlap(fig, ax) == [], ax.get_title()


def test_findings_of_the_matrices_read_the_matrix_the_notebooks_write():
    lines = nb07_figures.findings({"04_autoencoder_family": metrics04(), "05_training_resolution": metrics05()})
    assert "04_autoencoder_family: AUC from 0.50 (kl_ae → kl_ldm) to 0.70 (vq_ae → kl_ldm_fast)." in lines
    assert any(line.startswith("04_autoencoder_family: TPR @ 0.1 % FPR from 0.00") for line in lines)
    # ties go to the first cell in the file's order; the synthetic AUC falls below 0 far off the diagonal
    assert "05_training_resolution: AUC from -0.12 (32 → native) to 1.00 (128 → 128)." in lines
