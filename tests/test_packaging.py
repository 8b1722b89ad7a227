"""Packaging stays consistent: pyproject, environment.yml, Makefile, README, CI entry point."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from lare2lib.core import paths

ROOT = paths.repo_root()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())

PINNED = {"torch": "==2.14.1", "torchvision": "==0.29.1"}
"""Exact versions the results were produced with (the issue fixes them)."""


def _requirements(group: list[str]) -> dict[str, Requirement]:
    return {Requirement(line).name.lower(): Requirement(line) for line in group}


def _conda_entries() -> tuple[list[str], list[str]]:
    """(conda package specs, pip lines) of environment.yml."""
    conda, pip = [], []
    for entry in ENVIRONMENT["dependencies"]:
        if isinstance(entry, dict):
            pip.extend(entry.get("pip", []))
        else:
            conda.append(entry)
    return conda, pip


@pytest.mark.parametrize("name, specifier", PINNED.items())
def test_torch_pins(name, specifier):
    requirement = _requirements(PYPROJECT["project"]["dependencies"])[name]
    assert str(requirement.specifier) == specifier


def test_conda_python_satisfies_requires_python():
    conda, _ = _conda_entries()
    python = [spec for spec in conda if re.match(r"python\b", spec)]
    assert len(python) == 1, f"environment.yml must pin one python, found {python}"
    version = re.sub(r"^python\s*=*\s*", "", python[0])
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert version in requires, f"python={version} does not satisfy requires-python {requires}"


def test_conda_installs_the_project_through_pip():
    conda, pip = _conda_entries()
    assert "pip" in conda
    assert pip == ["-e .[dev]"]
    # Everything else comes from pyproject.toml: no second list of dependencies to drift.
    assert sorted(conda) == sorted(["pip", next(s for s in conda if s.startswith("python"))])


def test_dev_extra_has_the_test_tools():
    dev = _requirements(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert {"pytest", "pytest-timeout", "pyyaml", "packaging"} <= set(dev)
    assert "timeout" in PYPROJECT["tool"]["pytest"]["ini_options"]


def test_console_script_points_at_cli_main():
    assert PYPROJECT["project"]["scripts"]["lare2"] == "lare2lib.pipeline.cli:main"


def test_notebook_marker_is_registered():
    markers = PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]
    assert any(marker.startswith("notebooks:") for marker in markers)


def test_readme_opens_with_exactly_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```\w*\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make reproduce", "make test"]
    assert readme.index("make lab") > readme.index(first_block)


def test_makefile_has_the_documented_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("reproduce", "test", "lab", "sync", "clean-venv", "help"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile lacks '{target}'"
    assert "lare2 run --profile $(PROFILE)" in makefile
    assert "PROFILE ?= mini" in makefile
    assert re.search(r"pytest -x -q -ra", makefile)


def test_ci_runs_the_test_command():
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert re.search(r"^exec make test$", text, re.M)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_installs_only_when_pyproject_changes(tmp_path):
    """Dry-run `make test` against a fake venv: the stamp named after pyproject's hash decides."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stamp_hash = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]

    def dry_run() -> str:
        result = subprocess.run(
            ["make", "-n", "-C", str(ROOT), "test", f"VENV={venv}"],
            capture_output=True, text=True, check=True,
        )
        return result.stdout

    assert "pip install" in dry_run()
    (venv / f".lare2-installed-{stamp_hash}").touch()
    cached = dry_run()
    assert "pip install" not in cached and "pytest" in cached
    (venv / f".lare2-installed-{stamp_hash}").rename(venv / ".lare2-installed-0123456789abcdef")
    assert "pip install" in dry_run()  # a stamp of an older pyproject.toml does not count


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("bench_*.py")))
def test_bench_scripts_start(script):
    """Every benchmark at least imports and parses its arguments (bench_lare once did not: a
    stray import above ``from __future__`` made it a SyntaxError nobody ran into)."""
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
