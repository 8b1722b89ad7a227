"""The ``lare2`` command: help lists the commands, bad input is one clear line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lare2lib.core.exit_codes import USAGE_ERROR
from lare2lib.pipeline import cli

LARE2 = Path(sys.executable).with_name("lare2")
ENTRY_POINTS = {"console script": [str(LARE2)], "python -m": [sys.executable, "-m", "lare2lib"]}


def _call(argv, capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_help_lists_every_command(entry):
    if not Path(entry[0]).exists():
        pytest.fail(f"{entry[0]} is missing: install the project with `pip install -e .[dev]`")
    result = subprocess.run([*entry, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name, (_, _, help_text) in cli.COMMANDS.items():
        assert name in result.stdout
        assert help_text.split()[0] in result.stdout


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from lare2lib.pipeline import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'papermill', 'matplotlib')\n"
        "         if m in sys.modules]\n"
        "print('heavy:', ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "heavy: "


def test_run_help_shows_options(capsys):
    code, out, _ = _call(["run", "--help"], capsys)
    assert code == 0
    for option in ("--profile", "--smoke", "--seed", "--force", "--param", "NOTEBOOK"):
        assert option in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["frobnicate"], ["'frobnicate'", "run", "extract", "env"]),
        (["run", "--profile", "huge"], ["'huge'", "mini", "smoke", "full"]),
        (["env", "--profile", "huge"], ["'huge'", "mini", "smoke", "full"]),
        (["run", "--seed", "abc"], ["--seed", "'abc'"]),
        ([], ["COMMAND"]),
    ],
)
def test_bad_arguments_are_one_line(argv, expected, capsys):
    code, out, err = _call(argv, capsys)
    assert code == USAGE_ERROR
    assert out == "" and len(err.strip().splitlines()) == 1, err
    for fragment in expected:
        assert fragment in err


@pytest.fixture
def tiny_notebooks(tmp_path, make_notebook):
    folder = tmp_path / "notebooks"
    make_notebook(folder, "00_first")
    make_notebook(folder, "01_second")
    return folder


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["07"], ["unknown notebook '07'", "00_first, 01_second"]),
        (["-p", "EPOCHS=3"], ["unknown parameter 'EPOCHS'", "SCALE", "INTERACTIVE"]),
        (["-p", "SCALE=big"], ["'SCALE'", "expects int"]),
        (["-p", "SCALE"], ["NAME=VALUE"]),
    ],
)
def test_bad_notebook_input_is_one_line(tiny_notebooks, extra, expected, capsys):
    code, out, err = _call(["run", "--notebooks-dir", str(tiny_notebooks), *extra], capsys)
    assert code == USAGE_ERROR
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out
    for fragment in expected:
        assert fragment in err


def test_run_list_shows_parameters(tiny_notebooks, capsys):
    code, out, _ = _call(["run", "--notebooks-dir", str(tiny_notebooks), "--list", "01"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "01_second"
    assert "SCALE: int = 1  # multiplies the metric" in out


def test_unavailable_command_is_explained(monkeypatch, capsys):
    monkeypatch.setitem(
        cli.COMMANDS, "ghost",
        ("lare2lib.ghost:add_arguments", "lare2lib.ghost:main", "not written yet"),
    )
    code, _, err = _call(["ghost"], capsys)
    assert code == 1
    assert "lare2lib.ghost" in err and "Traceback" not in err
    # The other commands keep working.
    assert _call(["run", "--help"], capsys)[0] == 0


def test_env_prints_json(capsys):
    code, out, _ = _call(["env", "--profile", "mini"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["profile"] == "mini" and "torch" in report["packages"]


def test_version(capsys):
    from lare2lib import __version__

    code, out, _ = _call(["--version"], capsys)
    assert code == 0 and __version__ in out


# -- the environment report behind `lare2 env` --------------------------------------------------


def _by_reference(report_weights):
    return {entry["reference"]: entry for entry in report_weights}


def test_mini_weights_are_looked_up_in_the_committed_folder(tmp_path, monkeypatch):
    from lare2lib.core import environment, paths

    (tmp_path / "mini" / "kl_ae").mkdir(parents=True)
    (tmp_path / "mini" / "kl_ae" / "config.json").write_text("{}")
    (tmp_path / "mini" / "vq_ae").mkdir()  # an empty folder is not a model
    monkeypatch.setattr(paths, "weights_dir", lambda: tmp_path)
    weights = _by_reference(environment.required_weights("mini"))
    assert weights["mini:kl_ae"]["present"] and weights["mini:kl_ae"]["source"] == "committed"
    assert not weights["mini:vq_ae"]["present"]
    assert not weights["mini:kl_ldm"]["present"]
    assert weights["mini:kl_ldm"]["location"] == str(tmp_path / "mini" / "kl_ldm")


def test_full_weights_are_looked_up_in_the_local_hub_cache_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from lare2lib.core import environment

    repo_cache = tmp_path / "models--stable-diffusion-v1-5--stable-diffusion-v1-5"
    snapshot = repo_cache / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    weights = _by_reference(environment.required_weights("full"))
    assert weights["stable-diffusion-v1-5/stable-diffusion-v1-5"]["present"]
    vae = weights["stabilityai/stable-diffusion-2-1:vae"]
    assert vae["source"] == "hub" and not vae["present"] and "vae/config.json" in vae["location"]
    clip = weights["resnet50_clip.openai"]
    assert clip["source"] == "timm" and clip["location"] == "hf://timm/resnet50_clip.openai"
    assert not clip["present"]


def test_environment_report_is_complete_json():
    from lare2lib.core import environment

    report = json.loads(json.dumps(environment.environment_report("mini")))
    assert set(environment.REPORTED_PACKAGES) <= set(report["packages"])
    assert report["packages"]["torch"] is not None
    assert {"cuda_available", "cuda_device_count", "mps_available", "torch_threads"} <= set(
        report["device"]
    )
    assert set(report["taef2"]) == {"present", "location"}
    roles = {entry["role"] for entry in report["weights"]}
    assert roles == {"ldm", "recon_autoencoder", "aeroblade_autoencoder", "egre_backbone",
                     "recon_classifier"}
