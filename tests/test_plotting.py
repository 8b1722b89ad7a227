"""Figures and metrics are written atomically, deterministically and as plain JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from matplotlib.figure import Figure

from lare2lib.core import plotting


def _figure() -> Figure:
    """A figure built with the object API (no pyplot, no backend involved)."""
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0.2, 0.9, 0.4], label="auc")
    ax.set_title("deterministic")
    ax.legend()
    return fig


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_saving_twice_is_byte_identical(tmp_path, fmt):
    fig = _figure()
    first = plotting.save_figure(fig, tmp_path / "a", "curve", formats=(fmt,))[0].read_bytes()
    time.sleep(1.1)  # PDF dates have one-second resolution: make a timestamp leak visible
    second = plotting.save_figure(fig, tmp_path / "b", "curve", formats=(fmt,))[0].read_bytes()
    assert first == second
    assert b"CreationDate" not in first and b"Matplotlib v" not in first


def test_save_figure_writes_each_format_and_no_temporary_files(tmp_path):
    written = plotting.save_figure(_figure(), tmp_path, "curve")
    assert [path.name for path in written] == ["curve.png", "curve.pdf"]
    assert written[0].read_bytes().startswith(b"\x89PNG")
    assert written[1].read_bytes().startswith(b"%PDF")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["curve.pdf", "curve.png"]


def test_interrupted_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    fig = _figure()
    good = plotting.save_figure(fig, tmp_path, "curve", formats=("png",))[0]
    before = good.read_bytes()

    def half_written_then_crash(path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", half_written_then_crash)
    with pytest.raises(OSError, match="disk full"):
        plotting.save_figure(fig, tmp_path, "curve", formats=("png",))
    assert good.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["curve.png"]


def test_set_theme_uses_colour_blind_palette():
    import matplotlib as mpl
    import seaborn as sns

    plotting.set_theme()
    cycle = [mpl.colors.to_hex(c["color"]) for c in mpl.rcParams["axes.prop_cycle"]]
    assert cycle == sns.color_palette("colorblind").as_hex()


def test_plotting_never_selects_a_backend(tmp_path):
    """Under papermill the kernel's inline backend must stay in charge of capturing figures."""
    code = (
        "import sys, matplotlib\n"
        "from matplotlib.figure import Figure\n"
        "import lare2lib.core.plotting as plotting\n"
        "plotting.set_theme()\n"
        "plotting.save_figure(Figure(), sys.argv[1], 'empty', formats=('png',))\n"
        "print(matplotlib.rcParams._get_backend_or_none())\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


def test_metrics_round_trip_with_numpy_and_nan(tmp_path):
    metrics = {
        "b_auc": np.float32(0.75),
        "a_count": np.int64(3),
        "nan_metric": float("nan"),
        "inf_metric": np.float64("inf"),
        "per_class": {"real": np.array([1.0, 2.0]), "fake": (0.5, math.nan)},
        "flag": np.bool_(True),
    }
    path = plotting.write_metrics(tmp_path / "01_lare", metrics)
    text = path.read_text()
    payload = json.loads(text)
    assert payload["notebook"] == "01_lare"
    assert list(payload["metrics"]) == sorted(payload["metrics"])
    assert "NaN" not in text and "Infinity" not in text
    assert plotting.read_metrics("01_lare", root=tmp_path) == {
        "a_count": 3,
        "b_auc": 0.75,
        "flag": True,
        "inf_metric": None,
        "nan_metric": None,
        "per_class": {"fake": [0.5, None], "real": [1.0, 2.0]},
    }


def test_metrics_are_byte_stable(tmp_path):
    metrics = {"z": 1, "a": [np.float64(0.1)]}
    first = plotting.write_metrics(tmp_path, metrics, notebook="x").read_bytes()
    second = plotting.write_metrics(tmp_path, dict(reversed(metrics.items())), notebook="x")
    assert second.read_bytes() == first


def test_read_metrics_defaults_to_figures_dir_and_explains_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LARE2_FIGURES_DIR", str(tmp_path))
    plotting.write_metrics(tmp_path / "02_egre", {"acc": 0.5})
    assert plotting.read_metrics("02_egre") == {"acc": 0.5}
    with pytest.raises(FileNotFoundError, match="lare2 run 03_missing"):
        plotting.read_metrics("03_missing")


def test_unserialisable_metric_is_named(tmp_path):
    with pytest.raises(TypeError, match="object"):
        plotting.write_metrics(tmp_path, {"model": object()})
