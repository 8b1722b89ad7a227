"""Where things live, resolved from the package itself (never from the working directory).

papermill runs a notebook in the caller's directory and JupyterLab in the notebook's, so a
relative path like ``"../data"`` means different things in the two. Every path in the project
comes from here instead. Environment variables override the defaults so that CI, a cluster
job or a user with a big scratch disk can move the heavy folders without editing code:

``LARE2_DATA_DIR``     caches, the built mini world, feature stores (default ``<repo>/data``)
``LARE2_FIGURES_DIR``  notebook outputs (default ``<repo>/figures``)
``LARE2_RUNS_DIR``     executed notebook copies (default ``<repo>/runs``)
``LARE2_TAEF2_DIR``    optional TAEF2 weights (default: ``<repo>/../shared/weights/taef2`` if present)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "repo_root",
    "package_dir",
    "data_dir",
    "figures_dir",
    "runs_dir",
    "notebooks_dir",
    "weights_dir",
    "taef2_dir",
]


def package_dir() -> Path:
    """The installed ``lare2lib`` package folder."""
    return Path(__file__).resolve().parent.parent  # lare2lib/core/paths.py → lare2lib/


def repo_root() -> Path:
    """The checkout that holds ``pyproject.toml`` next to ``lare2lib/`` (editable installs).

    Falls back to the current directory for a non-editable install, where there is no repo.
    """
    candidate = package_dir().parent
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd().resolve()


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    return _env_path("LARE2_DATA_DIR", repo_root() / "data")


def figures_dir(notebook: str | None = None) -> Path:
    base = _env_path("LARE2_FIGURES_DIR", repo_root() / "figures")
    return base / notebook if notebook else base


def runs_dir() -> Path:
    return _env_path("LARE2_RUNS_DIR", repo_root() / "runs")


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def weights_dir() -> Path:
    """Committed weights of the mini world (safetensors + manifest), shipped with the package."""
    return package_dir() / "weights"


def taef2_dir() -> Path | None:
    """The optional TAEF2 folder, or None when it is not on this machine.

    Studies that use it skip cleanly when this returns None; the weights are never copied
    into the project.
    """
    value = os.environ.get("LARE2_TAEF2_DIR")
    candidates = [Path(value).expanduser()] if value else []
    candidates.append(repo_root().parent / "shared" / "weights" / "taef2")
    for path in candidates:
        if (path / "taef2_encoder.pth").is_file() and (path / "taef2_decoder.pth").is_file():
            return path.resolve()
    return None
