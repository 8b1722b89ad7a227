"""Where a run's outputs go: its label, each notebook's ``OUT_DIR``, the figures folder.

The runner writes there and the report reads from there, so both take the rule from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from lare2lib.core import paths

__all__ = ["run_label", "output_dir", "figures_root"]


def run_label(profile: str, smoke: bool) -> str:
    """Name of a run's folder under ``runs/``: the profile, with ``-smoke`` for smoke runs."""
    return f"{profile}-smoke" if smoke and profile != "smoke" else profile


def output_dir(stem: str, label: str, out_root: str | os.PathLike[str] | None = None) -> Path:
    """A notebook's ``OUT_DIR``.

    The default ``mini`` run writes to ``figures/<stem>/`` (the committed results). Other runs
    write to ``runs/<label>/figures/<stem>/`` so a smoke or partial run never overwrites them;
    ``out_root`` puts them in ``<out_root>/<stem>/`` instead.
    """
    if out_root is not None:
        return Path(out_root) / stem
    if label == "mini":
        return paths.figures_dir(stem)
    return paths.runs_dir() / label / "figures" / stem


def figures_root(label: str, out_root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding one output folder per notebook for run ``label``."""
    return output_dir("_", label, out_root).parent
