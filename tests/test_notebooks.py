"""Notebooks as tests.

For every ``notebooks/NN_*.ipynb``:

* its parameters are what papermill can inspect, and include the standard ones, each typed and
  described (``papermill --help-notebook`` shows them);
* its jupytext twin ``NN_*.py`` (percent format) has the same cells, and the ``parameters`` tag
  survives in both;
* it is committed without outputs or execution counts;
* it runs under papermill in smoke mode, in numeric order, offline, with per-cell timeouts,
  and leaves ``metrics.json`` in its ``OUT_DIR`` (marked ``notebooks``).

The checks themselves are tested on tiny notebooks generated here, so the harness is proven even
before the first real notebook exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.cli import jupytext as jupytext_cli

from lare2lib.core import paths
from lare2lib.core.plotting import METRICS_FILENAME
from lare2lib.data import wild_templates
from lare2lib.pipeline import runner

REQUIRED_PARAMETERS = ("PROFILE", "SMOKE", "SEED", "OUT_DIR", "INTERACTIVE")
PAIRED_FORMATS = "ipynb,py:percent"

CELL_TIMEOUT = 600
"""Seconds any one cell may take in a smoke run."""

NOTEBOOK_TIMEOUT = 1200
"""Seconds a whole smoke notebook may take (kernel start included)."""

NOTEBOOKS = runner.discover_notebooks()


def _ids(path: Path) -> str:
    return path.stem


# -- the checks ---------------------------------------------------------------------------------


def check_parameters(notebook: Path) -> None:
    parameters = runner.notebook_parameters(notebook)
    missing = [name for name in REQUIRED_PARAMETERS if name not in parameters]
    assert not missing, f"{notebook.name}: parameters cell lacks {missing}"
    untyped = [name for name, info in parameters.items() if info["inferred_type_name"] == "None"]
    assert not untyped, f"{notebook.name}: annotate the type of {untyped} (e.g. `SEED: int = 0`)"
    undocumented = [name for name, info in parameters.items() if not info["help"].strip()]
    assert not undocumented, (
        f"{notebook.name}: give {undocumented} an inline comment (papermill shows it as help)"
    )


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def _parameter_cells(notebook: nbformat.NotebookNode) -> list[int]:
    return [
        index for index, cell in enumerate(notebook.cells)
        if "parameters" in cell.metadata.get("tags", [])
    ]


def check_pairing(notebook: Path) -> None:
    twin = notebook.with_suffix(".py")
    assert twin.is_file(), f"{notebook.name} has no paired {twin.name}: run `make sync`"
    from_ipynb, from_py = jupytext.read(notebook), jupytext.read(twin)
    assert _cells(from_ipynb) == _cells(from_py), (
        f"{notebook.name} and {twin.name} differ: run `make sync` (jupytext --sync)"
    )
    assert len(_parameter_cells(from_ipynb)) == 1, f"{notebook.name}: one cell tagged `parameters`"
    assert _parameter_cells(from_py) == _parameter_cells(from_ipynb), (
        f"{twin.name} lost the `parameters` tag (a cell_metadata_filter of '-all' deletes it)"
    )


def check_clean(notebook: Path) -> None:
    content = nbformat.read(notebook, as_version=4)
    dirty = [
        index for index, cell in enumerate(content.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{notebook.name}: cells {dirty} carry outputs or execution counts; commit it cleared "
        f"(`jupyter nbconvert --clear-output --inplace {notebook}`)"
    )


def run_smoke(notebook: Path, figures: Path, runs: Path, profile: str = "mini",
              params: dict[str, str] | None = None) -> Path:
    """Run one notebook in smoke mode as the runner would; return its OUT_DIR."""
    [result] = runner.run_notebooks(
        [notebook.stem], profile=profile, smoke=True, force=True, timeout_per_cell=CELL_TIMEOUT,
        params=params, out_root=figures, runs_root=runs, notebooks_dir=notebook.parent, verbose=False,
    )
    assert result.status == "ran", f"{notebook.name} failed: {result.error} (see {result.executed})"
    assert (result.out_dir / METRICS_FILENAME).is_file(), f"{notebook.name} wrote no metrics.json"
    return result.out_dir


# -- the real notebooks -------------------------------------------------------------------------


def test_jupytext_config_pairs_with_percent_scripts():
    from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file

    config_file = find_jupytext_configuration_file(str(paths.notebooks_dir()))
    assert config_file is not None, "notebooks/ needs a jupytext configuration"
    config = load_jupytext_configuration_file(config_file)
    formats = config.formats if isinstance(config.formats, str) else ";".join(config.formats)
    assert formats == PAIRED_FORMATS
    assert "-all" != (config.cell_metadata_filter or "").strip()


def test_every_script_has_its_notebook():
    scripts = sorted(paths.notebooks_dir().glob("[0-9][0-9]_*.py"))
    orphans = [script.name for script in scripts if not script.with_suffix(".ipynb").is_file()]
    assert not orphans, f"{orphans} have no .ipynb twin: run `make sync`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids)
def test_parameters_are_typed_and_described(notebook):
    check_parameters(notebook)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids)
def test_paired_script_agrees(notebook):
    check_pairing(notebook)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids)
def test_committed_without_outputs(notebook):
    check_clean(notebook)


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    """One data folder shared by all smoke runs (later notebooks read what earlier ones built)."""
    root = tmp_path_factory.mktemp("notebook-smoke")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LARE2_DATA_DIR", str(root / "data"))
        yield {"figures": root / "figures", "runs": root / "runs", "failed": []}


@pytest.mark.notebooks
@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids)
def test_notebook_runs_in_smoke_mode(notebook, smoke_world):
    if smoke_world["failed"]:
        pytest.skip(f"an earlier notebook failed: {smoke_world['failed']}")
    if notebook.stem == "08_in_the_wild" and wild_templates.missing_packages():
        pytest.skip(f"notebook 08 needs the PyPI wheels {', '.join(wild_templates.missing_packages())} "
                    "(pip install -e '.[wild]'; `make install` includes them)")
    try:
        run_smoke(notebook, smoke_world["figures"], smoke_world["runs"])
    except AssertionError:
        smoke_world["failed"].append(notebook.stem)
        raise
    if notebook.stem == "07_figures":
        # Every upstream notebook ran just before: each paper figure must find its numbers in
        # what they wrote (a schema drift between a notebook and paperfigs fails here).
        written = json.loads((smoke_world["figures"] / "07_figures" / METRICS_FILENAME).read_text())
        skipped = dict(written["metrics"]["skipped"])
        if wild_templates.missing_packages():  # 08 was skipped above, so its figure is too
            skipped.pop("in_the_wild", None)
        assert skipped == {}, skipped


def _full_parameters(world) -> dict[str, dict[str, str]]:
    """Notebook → the parameters that point it at the tiny-full fixture (the GenImage folder,
    its val-class mapping, and folders cut from it where a notebook reads plain folders)."""
    from lare2lib.models.tiny_full import GENIMAGE_SUBSETS

    root = world.genimage_root
    sdv4, midjourney = root / GENIMAGE_SUBSETS["sdv4"], root / GENIMAGE_SUBSETS["midjourney"]
    genimage = {"GENIMAGE_ROOT": str(root), "VAL_CLASSES": str(world.val_classes)}
    return {
        "00_mini_world": genimage,
        "01_lare": genimage,
        "02_egre_ablations": genimage,
        # the fixture has no VGG16 weights for LPIPS (the release's AEROBLADE distance)
        "03_ae_reconstruction": genimage | {"AEROBLADE_DISTANCE": "backbone"},
        "04_autoencoder_family": {"REAL_TRAIN_DIR": str(sdv4 / "train" / "nature"),
                                  "REAL_TEST_DIR": str(sdv4 / "val" / "nature"),
                                  "FAKE_DIRS": f"sdv4={sdv4 / 'val' / 'ai'},midjourney={midjourney / 'val' / 'ai'}"},
        "05_training_resolution": {"PHOTO_DIR": str(sdv4 / "train" / "nature"), "LEVELS": "256,native"},
        "06_evasion": genimage,
        "08_in_the_wild": {"AEROBLADE_DISTANCE": "backbone"},
    }


FULL_NOTEBOOKS = ("00_mini_world", "01_lare", "02_egre_ablations", "03_ae_reconstruction", "04_autoencoder_family",
                  "05_training_resolution", "06_evasion", "08_in_the_wild", "07_figures")
"""The notebooks that run the paper's setting (``PROFILE="full"``) end to end on the fixture, in
order, in one data folder (03 reads 02's EGRE rows; 06 attacks 02 and 03's detectors; 08 scores
what 02-05 trained; 07 draws what they all wrote)."""

FULL_ONLY_KEYS = {"00_mini_world": {"genimage", "unit_seconds", "unit_missing", "estimated_hours"}}
"""Notebooks whose full run writes other keys than their mini run: 00 builds the mini world in mini
and takes stock of GenImage, the weights and the later notebooks' cost in full."""


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One data folder shared by the full-profile runs on the tiny-full fixture."""
    root = tmp_path_factory.mktemp("notebook-full")
    return {"root": root, "failed": []}


@pytest.mark.notebooks
@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("stem", FULL_NOTEBOOKS)
def test_notebook_runs_with_the_full_profile_on_the_tiny_fixture(stem, tiny_full_world, smoke_world, full_run,
                                                                 monkeypatch):
    """Hub ids resolved from the fixture's cache (offline), GenImage read from its folder; the
    metrics carry the keys of the mini smoke run (when that ran first in this session)."""
    if stem == "08_in_the_wild" and wild_templates.missing_packages():
        pytest.skip(f"notebook 08 needs the PyPI wheels {', '.join(wild_templates.missing_packages())}")
    if full_run["failed"]:
        pytest.skip(f"an earlier full-profile notebook failed: {full_run['failed']}")
    for name, value in tiny_full_world.environment().items():
        monkeypatch.setenv(name, value)  # the kernel reads HF_HOME at its first HF import
    root = full_run["root"]
    monkeypatch.setenv("LARE2_DATA_DIR", str(root / "data"))
    try:
        out_dir = run_smoke(paths.notebooks_dir() / f"{stem}.ipynb", root / "figures", root / "runs",
                            profile="full", params=_full_parameters(tiny_full_world).get(stem, {}))
    except Exception:
        full_run["failed"].append(stem)
        raise
    full = json.loads((out_dir / METRICS_FILENAME).read_text())
    assert "full" in json.dumps(full["metrics"].get("profile"))
    if stem == "08_in_the_wild":  # it found what 02-05 trained here, and the full training-free ones
        assert {"02", "04", "05"} <= {label[:2] for label in full["metrics"]["detectors"]}
        assert any("stable-diffusion-v1-5" in label for label in full["metrics"]["scoring_seconds"])
    if stem == "07_figures":  # every figure whose notebooks ran here is drawn
        ran = {name[:2] for name in FULL_NOTEBOOKS} - {"07"}
        missing = {figure: why for figure, why in full["metrics"]["skipped"].items()
                   if not set(why.split("notebook(s) ")[-1].removesuffix(" not run").split(", ")) - ran}
        assert missing == {}, missing
    if stem == "00_mini_world":  # every unit measured on the fixture's models, so every estimate is a number
        assert FULL_ONLY_KEYS[stem] <= set(full["metrics"]) and full["metrics"]["unit_missing"] == {}
        assert all(row["total"] is not None for row in full["metrics"]["estimated_hours"].values())
        return
    mini_file = smoke_world["figures"] / stem / METRICS_FILENAME
    if not mini_file.is_file():
        pytest.skip(f"metrics keys not compared: the mini smoke run of {stem} did not run first")
    mini = json.loads(mini_file.read_text())
    assert sorted(full["metrics"]) == sorted(mini["metrics"])


# -- the harness, on generated notebooks ---------------------------------------------------------


@pytest.fixture
def paired(tmp_path, make_notebook):
    """A generated notebook in a folder with the project's jupytext config, paired by jupytext."""
    folder = tmp_path / "notebooks"
    notebook = make_notebook(folder, "01_tiny")
    shutil.copy(paths.notebooks_dir() / "jupytext.toml", folder / "jupytext.toml")
    assert jupytext_cli(["--quiet", "--sync", str(notebook)]) == 0
    return notebook


def test_harness_accepts_a_good_notebook(paired):
    assert paired.with_suffix(".py").read_text().count("# %%") == 3
    check_parameters(paired)
    check_pairing(paired)
    check_clean(paired)


def test_harness_runs_a_notebook(paired, tmp_path):
    out_dir = run_smoke(paired, tmp_path / "figures", tmp_path / "runs")
    assert out_dir == tmp_path / "figures" / "01_tiny"


@pytest.mark.parametrize(
    "line, problem",
    [
        ("EPOCHS = 3  # passes over the data", "annotate the type of \\['EPOCHS'\\]"),
        ("EPOCHS: int = 3", "inline comment"),
        ('EPOCHS: int = 3  # passes ("" = auto)', "only one '='"),  # papermill would drop it
    ],
)
def test_harness_rejects_badly_declared_parameters(tmp_path, make_notebook, line, problem):
    notebook = make_notebook(tmp_path, "01_tiny", extra_parameters=(line,))
    with pytest.raises((AssertionError, runner.RunnerError), match=problem):
        check_parameters(notebook)


def test_harness_rejects_missing_standard_parameter(tmp_path, make_notebook):
    notebook = make_notebook(tmp_path, "01_tiny")
    content = nbformat.read(notebook, as_version=4)
    content.cells[1].source = content.cells[1].source.replace("INTERACTIVE", "SHOW_WIDGETS")
    nbformat.write(content, notebook)
    with pytest.raises(AssertionError, match="lacks \\['INTERACTIVE'\\]"):
        check_parameters(notebook)


def test_harness_rejects_a_stale_twin(paired):
    script = paired.with_suffix(".py")
    script.write_text(script.read_text() + "\n# %%\nprint('only in the script')\n")
    with pytest.raises(AssertionError, match="make sync"):
        check_pairing(paired)


def test_harness_rejects_a_lost_parameters_tag(paired):
    script = paired.with_suffix(".py")
    script.write_text(script.read_text().replace('tags=["parameters"]', ""))
    with pytest.raises(AssertionError, match="lost the `parameters` tag"):
        check_pairing(paired)


def test_harness_rejects_outputs(paired):
    content = nbformat.read(paired, as_version=4)
    content.cells[2].outputs = [nbformat.v4.new_output("stream", text="42\n")]
    nbformat.write(content, paired)
    with pytest.raises(AssertionError, match="cells \\[2\\]"):
        check_clean(paired)
