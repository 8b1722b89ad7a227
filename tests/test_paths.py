"""Paths come from the package and the environment, never from the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from lare2lib.core import paths

ENV_FOLDERS = [
    ("LARE2_DATA_DIR", paths.data_dir, "data"),
    ("LARE2_FIGURES_DIR", paths.figures_dir, "figures"),
    ("LARE2_RUNS_DIR", paths.runs_dir, "runs"),
]


def test_repo_root_holds_the_project():
    root = paths.repo_root()
    assert (root / "pyproject.toml").is_file()
    assert (root / "lare2lib" / "core" / "paths.py").is_file()
    assert paths.package_dir() == root / "lare2lib"
    assert paths.notebooks_dir() == root / "notebooks"
    assert paths.weights_dir() == root / "lare2lib" / "weights"


def test_paths_do_not_depend_on_cwd(tmp_path, monkeypatch):
    before = [paths.repo_root(), paths.data_dir(), paths.notebooks_dir()]
    monkeypatch.chdir(tmp_path)
    assert [paths.repo_root(), paths.data_dir(), paths.notebooks_dir()] == before


@pytest.mark.parametrize("variable, function, default_name", ENV_FOLDERS)
def test_default_folders_are_in_the_repo(variable, function, default_name, monkeypatch):
    monkeypatch.delenv(variable, raising=False)
    assert function() == paths.repo_root() / default_name


@pytest.mark.parametrize("variable, function, default_name", ENV_FOLDERS)
def test_environment_overrides(variable, function, default_name, tmp_path, monkeypatch):
    monkeypatch.setenv(variable, str(tmp_path / "elsewhere"))
    assert function() == tmp_path / "elsewhere"


def test_overrides_expand_user_and_resolve(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("LARE2_DATA_DIR", "~/scratch/../big")
    assert paths.data_dir() == Path("/home/someone/big")


def test_tests_write_outside_the_checkout():
    """conftest points every output folder to a temporary one."""
    root = paths.repo_root()
    for function in (paths.data_dir, paths.figures_dir, paths.runs_dir):
        assert root not in function().parents


def test_figures_dir_per_notebook(monkeypatch, tmp_path):
    monkeypatch.setenv("LARE2_FIGURES_DIR", str(tmp_path))
    assert paths.figures_dir("01_lare") == tmp_path / "01_lare"
    assert paths.figures_dir() == tmp_path


def _fake_taef2(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("taef2_encoder.pth", "taef2_decoder.pth"):
        (folder / name).write_bytes(b"")
    return folder


def test_taef2_from_environment(tmp_path, monkeypatch):
    folder = _fake_taef2(tmp_path / "taef2")
    monkeypatch.setenv("LARE2_TAEF2_DIR", str(folder))
    assert paths.taef2_dir() == folder.resolve()


def test_taef2_ignores_incomplete_folder(tmp_path, monkeypatch):
    incomplete = tmp_path / "taef2"
    incomplete.mkdir()
    (incomplete / "taef2_encoder.pth").write_bytes(b"")
    monkeypatch.setenv("LARE2_TAEF2_DIR", str(incomplete))
    found = paths.taef2_dir()
    # Either absent, or the optional copy beside the project: never the incomplete folder.
    assert found is None or (found != incomplete and (found / "taef2_decoder.pth").is_file())
