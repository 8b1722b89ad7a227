"""Executing one notebook through papermill, with live progress on the terminal."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lare2lib.core import paths
from lare2lib.pipeline.progress import ProgressPrinter, progress_engine

__all__ = ["KERNEL_NAME", "START_TIMEOUT", "RunResult", "execute_notebook", "describe_failure"]

KERNEL_NAME = "python3"
"""The kernel of the Python running the runner (ipykernel maps ``python3`` to sys.executable)."""

START_TIMEOUT = 180
"""Seconds to wait for a kernel to start; generous because CI machines may be busy."""


@dataclass(frozen=True)
class RunResult:
    """What happened to one notebook."""

    notebook: str
    """Notebook stem, e.g. ``01_lare``."""
    status: str
    """``ran``; ``skipped`` (inputs unchanged); ``failed``; ``blocked`` (an earlier one failed)."""
    seconds: float
    """Wall time of the execution (0 when skipped or blocked)."""
    executed: Path
    """The executed copy (``runs/<label>/<stem>.ipynb``); holds the error when failed."""
    out_dir: Path
    """Where the notebook wrote its figures and ``metrics.json``."""
    error: str | None = None
    """One-line reason when ``failed``."""

    @property
    def ok(self) -> bool:
        """Whether the notebook's outputs are current (it ran, or was unchanged)."""
        return self.status in ("ran", "skipped")


def execute_notebook(
    path: Path,
    executed: Path,
    out_dir: Path,
    parameters: Mapping[str, Any],
    timeout: int,
    progress: ProgressPrinter | None = None,
) -> RunResult:
    """Run notebook ``path`` through papermill into ``executed``, from the repository root.

    ``timeout`` is the per-cell limit in seconds. With ``progress``, papermill's engine reports
    each cell's start to it and a ticker refreshes the elapsed time (:mod:`.progress`); its
    last line gives the same duration as the result. A failure of the notebook is returned as
    status ``failed`` with a one-line reason, never raised.
    """
    import papermill

    executed.parent.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = {"engine_name": progress_engine(), "progress": progress} if progress else {}
    start = time.perf_counter()
    error = None
    try:
        with progress.ticking() if progress else nullcontext():
            papermill.execute_notebook(
                str(path),
                str(executed),
                parameters=dict(parameters),
                kernel_name=KERNEL_NAME,
                start_timeout=START_TIMEOUT,
                execution_timeout=timeout,
                cwd=str(paths.repo_root()),
                progress_bar=False,
                **engine,
            )
    except Exception as exc:  # any failure of the notebook is reported, never swallowed
        error = describe_failure(exc)
    seconds = time.perf_counter() - start
    if progress:
        progress.finished(error is None, seconds)
    status = "failed" if error else "ran"
    return RunResult(path.stem, status, seconds, executed, out_dir, error)


def describe_failure(exc: Exception) -> str:
    """One line for a failed run: the notebook's exception (``ename: evalue``) or papermill's."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}"
