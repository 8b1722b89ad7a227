"""The notebook runner on tiny generated notebooks: order, parameters, skipping, failures."""

from __future__ import annotations

import json

import nbformat
import pytest

from lare2lib.core import paths
from lare2lib.core.plotting import read_metrics, write_metrics
from lare2lib.core.profiles import ProfileError
from lare2lib.pipeline import locations, run_command, runner, stamps
from lare2lib.pipeline.execute import RunResult


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Temporary notebook/figure/run folders; the library hash pinned to a constant.

    Pinning keeps these tests about the notebooks: library files being edited while the tests
    run would otherwise (correctly) trigger reruns. Its effect is tested on its own below.
    """
    monkeypatch.setattr(stamps, "library_sha256", lambda: "library-v1")
    return {name: tmp_path / name for name in ("notebooks", "figures", "runs")}


def _run(folders, *names, **kwargs):
    kwargs.setdefault("smoke", True)
    return runner.run_notebooks(
        names or None,
        out_root=folders["figures"],
        runs_root=folders["runs"],
        notebooks_dir=folders["notebooks"],
        verbose=False,
        **kwargs,
    )


def _statuses(results):
    return [(result.notebook, result.status) for result in results]


# -- without a kernel ---------------------------------------------------------------------------


def test_discovery_is_numeric_and_ignores_other_files(folders, make_notebook):
    for stem in ("10_last", "02_second", "00_first"):
        make_notebook(folders["notebooks"], stem)
    (folders["notebooks"] / "scratch.ipynb").write_text("{}")
    (folders["notebooks"] / "02_second.py").write_text("")
    found = runner.discover_notebooks(folders["notebooks"])
    assert [path.stem for path in found] == ["00_first", "02_second", "10_last"]


def test_the_summary_notebook_runs_after_every_other(folders, make_notebook):
    for stem in ("08_in_the_wild", "07_figures", "06_evasion"):
        make_notebook(folders["notebooks"], stem)
    found = runner.discover_notebooks(folders["notebooks"])
    assert [path.stem for path in found] == ["06_evasion", "08_in_the_wild", "07_figures"]
    assert runner.RUNS_LAST == ("07_figures",)


@pytest.mark.parametrize("name", ["02", "02_second", "02_second.ipynb", "notebooks/02_second.py"])
def test_notebook_name_forms(folders, make_notebook, name):
    available = [make_notebook(folders["notebooks"], stem) for stem in ("00_first", "02_second")]
    assert runner.resolve_notebooks([name], available) == [available[1]]


def test_selection_follows_pipeline_order(folders, make_notebook):
    available = [make_notebook(folders["notebooks"], s) for s in ("00_a", "01_b", "02_c")]
    assert runner.resolve_notebooks(["02", "00"], available) == [available[0], available[2]]
    assert runner.resolve_notebooks(None, available) == available


def test_unknown_notebook_lists_valid_ones(folders, make_notebook):
    available = [make_notebook(folders["notebooks"], s) for s in ("00_a", "01_b")]
    expected = r"unknown notebook '07'; valid notebooks: 00_a, 01_b"
    with pytest.raises(runner.RunnerError, match=expected):
        runner.resolve_notebooks(["07"], available)


def test_unknown_parameter_lists_the_notebook_parameters(folders, make_notebook):
    make_notebook(folders["notebooks"], "01_tiny")
    with pytest.raises(runner.RunnerError) as error:
        _run(folders, params={"EPOCHS": 3})
    message = str(error.value)
    assert "'EPOCHS'" in message
    for name in ("INTERACTIVE", "OUT_DIR", "PROFILE", "SCALE", "SEED", "SMOKE"):
        assert name in message
    assert not folders["runs"].exists()  # refused before running anything


def test_parameter_type_is_checked(folders, make_notebook):
    make_notebook(folders["notebooks"], "01_tiny")
    with pytest.raises(runner.RunnerError, match="'SCALE' of 01_tiny expects int, got 'three'"):
        _run(folders, params={"SCALE": "three"})


def test_unknown_profile_is_refused(folders, make_notebook):
    make_notebook(folders["notebooks"], "01_tiny")
    with pytest.raises(ProfileError, match="valid profiles"):
        _run(folders, profile="huge")


def test_parameter_line_papermill_would_drop_is_refused(folders, make_notebook):
    """papermill skips a line with two '=' (here one hides in the comment) with only a warning."""
    line = 'CACHE: str = ""  # cache folder ("" = default)'
    make_notebook(folders["notebooks"], "01_tiny", extra_parameters=(line,))
    with pytest.raises(runner.RunnerError, match="only one '='") as error:
        _run(folders)
    assert line in str(error.value)


def test_missing_kernelspec_is_explained(folders, make_notebook):
    path = make_notebook(folders["notebooks"], "01_tiny")
    notebook = nbformat.read(path, as_version=4)
    del notebook.metadata["kernelspec"]
    nbformat.write(notebook, path)
    with pytest.raises(runner.RunnerError, match="jupytext --set-kernel python3"):
        runner.notebook_parameters(path)


@pytest.mark.parametrize(
    "assignment, expected",
    [("N=3", 3), ("X=0.5", 0.5), ("FLAG=True", True), ("NAME=kl_ae", "kl_ae"),
     ("T=(1, 2)", (1, 2)), ("PATH=/tmp/a b", "/tmp/a b"), ("E=", "")],
)
def test_parse_assignments(assignment, expected):
    name = assignment.partition("=")[0]
    assert run_command.parse_assignments([assignment]) == {name: expected}


@pytest.mark.parametrize("bad", ["NOEQUALS", "1X=2", "=3"])
def test_parse_assignments_rejects_malformed(bad):
    with pytest.raises(runner.RunnerError, match="NAME=VALUE"):
        run_command.parse_assignments([bad])


def test_output_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("LARE2_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("LARE2_RUNS_DIR", str(tmp_path / "runs"))
    assert locations.run_label("mini", smoke=False) == "mini"
    assert locations.run_label("mini", smoke=True) == "mini-smoke"
    assert locations.run_label("smoke", smoke=True) == "smoke"
    assert locations.output_dir("01_lare", "mini") == paths.figures_dir("01_lare")
    full = tmp_path / "runs" / "full" / "figures" / "01_lare"
    assert locations.output_dir("01_lare", "full") == full
    elsewhere = locations.output_dir("01_lare", "full", out_root=tmp_path / "x")
    assert elsewhere == tmp_path / "x" / "01_lare"


def test_notebook_hash_ignores_outputs(folders, make_notebook):
    path = make_notebook(folders["notebooks"], "01_tiny")
    before = stamps.notebook_sha256(path)
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[2].outputs = [nbformat.v4.new_output("stream", text="hello")]
    notebook.cells[2].execution_count = 4
    nbformat.write(notebook, path)
    assert stamps.notebook_sha256(path) == before
    notebook.cells[2].source += "\n# edited"
    nbformat.write(notebook, path)
    assert stamps.notebook_sha256(path) != before


def test_summary_table():
    runs, figures = paths.runs_dir(), paths.figures_dir()
    results = [
        RunResult("00_mini_world", "ran", 12.34, runs / "a.ipynb", figures),
        RunResult("01_lare", "failed", 1.0, runs / "b.ipynb", figures, "ValueError: bad"),
    ]
    lines = runner.format_summary(results).splitlines()
    assert lines[0].split() == ["notebook", "status", "seconds"]
    assert lines[1].split()[:3] == ["00_mini_world", "ran", "12.3"]
    assert "ValueError: bad" in lines[2] and "b.ipynb" in lines[2]


# -- with a kernel (a few seconds each) ---------------------------------------------------------


@pytest.mark.slow
def test_runs_skips_and_reruns(folders, make_notebook):
    make_notebook(folders["notebooks"], "01_tiny")
    metrics_root = folders["figures"]

    first = _run(folders, seed=1)
    assert _statuses(first) == [("01_tiny", "ran")]
    metrics = read_metrics("01_tiny", root=metrics_root)
    assert metrics["value"] == 2 and metrics["smoke"] is True and metrics["profile"] == "mini"
    assert metrics["cwd"] == str(paths.repo_root())
    executed = nbformat.read(first[0].executed, as_version=4)
    assert first[0].executed == folders["runs"] / "mini-smoke" / "01_tiny.ipynb"
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "SEED = 1" in injected[0].source
    stamp = json.loads((folders["runs"] / "mini-smoke" / "01_tiny.stamp.json").read_text())
    assert set(stamp["inputs"]) == {
        "notebook_sha256", "library_sha256", "profile_hash", "parameters", "upstream_metrics"
    }
    assert stamp["inputs"]["parameters"]["SEED"] == 1 and stamp["metrics_sha256"] is not None

    assert _statuses(_run(folders, seed=1)) == [("01_tiny", "skipped")]
    assert _statuses(_run(folders, seed=1, params={"SCALE": 3})) == [("01_tiny", "ran")]
    assert read_metrics("01_tiny", root=metrics_root)["value"] == 6
    assert _statuses(_run(folders, seed=1, params={"SCALE": 3})) == [("01_tiny", "skipped")]
    assert _statuses(_run(folders, seed=1, params={"SCALE": 3}, force=True)) == [("01_tiny", "ran")]


def test_changed_source_or_deleted_outputs_rerun(folders, make_notebook):
    make_notebook(folders["notebooks"], "01_tiny")
    assert _statuses(_run(folders)) == [("01_tiny", "ran")]

    (folders["figures"] / "01_tiny" / "metrics.json").unlink()
    assert _statuses(_run(folders)) == [("01_tiny", "ran")]

    new_body = "from lare2lib.core.plotting import write_metrics\nwrite_metrics(OUT_DIR, {'v': 1})\n"
    make_notebook(folders["notebooks"], "01_tiny", body=new_body)
    assert _statuses(_run(folders)) == [("01_tiny", "ran")]
    assert read_metrics("01_tiny", root=folders["figures"]) == {"v": 1}


def test_library_change_reruns(folders, make_notebook, monkeypatch):
    make_notebook(folders["notebooks"], "01_tiny")
    assert _statuses(_run(folders)) == [("01_tiny", "ran")]
    monkeypatch.setattr(stamps, "library_sha256", lambda: "library-v2")
    assert _statuses(_run(folders)) == [("01_tiny", "ran")]


def test_library_hash_covers_sources_and_weights_manifest(tmp_path, monkeypatch):
    package = tmp_path / "lare2lib"
    (package / "weights" / "mini").mkdir(parents=True)
    (package / "stage.py").write_text("A = 1\n")
    monkeypatch.setattr(paths, "package_dir", lambda: package)
    monkeypatch.setattr(paths, "weights_dir", lambda: package / "weights")
    hashes = [stamps.library_sha256()]
    (package / "stage.py").write_text("A = 2\n")
    hashes.append(stamps.library_sha256())
    (package / "weights" / "mini" / "manifest.json").write_text("{}")
    hashes.append(stamps.library_sha256())
    (package / "notes.txt").write_text("not a source file")
    hashes.append(stamps.library_sha256())
    assert len(set(hashes[:3])) == 3 and hashes[3] == hashes[2]


@pytest.mark.slow
def test_upstream_metrics_change_reruns_downstream(folders, make_notebook):
    make_notebook(folders["notebooks"], "00_up")
    make_notebook(folders["notebooks"], "01_down")
    assert _statuses(_run(folders)) == [("00_up", "ran"), ("01_down", "ran")]
    assert _statuses(_run(folders, "01")) == [("01_down", "skipped")]

    write_metrics(folders["figures"] / "00_up", {"value": 99})
    assert _statuses(_run(folders, "01")) == [("01_down", "ran")]


def test_failure_stops_the_pipeline(folders, make_notebook):
    make_notebook(folders["notebooks"], "00_broken", body="1 / 0")
    make_notebook(folders["notebooks"], "01_after")
    results = _run(folders)
    assert _statuses(results) == [("00_broken", "failed"), ("01_after", "blocked")]
    assert results[0].error.startswith("ZeroDivisionError")
    assert results[0].executed.is_file()  # the executed copy shows the traceback
    assert not (folders["runs"] / "mini-smoke" / "00_broken.stamp.json").exists()
    assert not (folders["figures"] / "01_after" / "metrics.json").exists()
