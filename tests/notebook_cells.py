"""Reading a notebook's ``.py`` twin with ``ast``: its parameters cell and its ``study_config`` call.

Shared by the config tests of the study notebooks (``test_nb0N_config.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path


def parameter_cell(notebook: Path) -> ast.Module:
    """The cell tagged ``parameters`` of a jupytext percent notebook, parsed."""
    text = notebook.read_text()
    start = text.index('# %% tags=["parameters"]')
    end = text.index("\n# %%", start + 1)
    return ast.parse(text[start:end])


def study_config_call(notebook: Path) -> ast.Call:
    """The notebook's one ``study_config(...)`` call (asserts there is exactly one)."""
    tree = ast.parse(notebook.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "study_config"]
    assert len(calls) == 1, f"{notebook.name} builds its config with one study_config call"
    return calls[0]
