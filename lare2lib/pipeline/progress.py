"""Live progress of a running notebook: which cell of how many, and the time elapsed.

papermill tells its ``NotebookExecutionManager`` when each cell starts (``cell_start``, called
by the engine's client before it executes the cell). :func:`progress_engine` registers
papermill's own nbclient engine, extended to forward those calls to a :class:`ProgressPrinter`;
a background ticker (:meth:`ProgressPrinter.ticking`) refreshes the elapsed time while a long
cell runs, so a notebook busy for half an hour in one cell still shows it is alive.

* On a TTY: one line, rewritten in place: ``01_lare: cell 3/12 · 01:05 elapsed``.
* Not a TTY (CI logs): that line as a heartbeat, at most every ``heartbeat`` seconds (0: never),
  so a log gets a line a minute rather than one per refresh.
* Either way, one line when the notebook ends: ``[lare2 run] 01_lare: ran in 65 s``.

papermill's own tqdm bar (``progress_bar=True``) is not used: it goes to stderr, shows no
notebook name and writes a line per update once it is not on a terminal.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["DEFAULT_HEARTBEAT", "TICK_SECONDS", "ENGINE_NAME", "ProgressPrinter",
           "progress_engine"]

DEFAULT_HEARTBEAT = 60.0
"""Seconds between heartbeat lines when the output is not a TTY (``lare2 run --heartbeat``)."""

TICK_SECONDS = 1.0
"""How often the ticker refreshes the elapsed time (a TTY line; a heartbeat that is due)."""

ENGINE_NAME = "lare2-progress"
"""Name under which :func:`progress_engine` registers the engine with papermill."""

_CLEAR_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line


class ProgressPrinter:
    """Prints the progress of one notebook to ``stream`` (default: ``sys.stdout``).

    ``clock`` (seconds, monotonic) and ``tty`` (default: ``stream.isatty()``) are there for
    tests. Safe to call from the engine and the ticker thread at once.
    """

    def __init__(
        self,
        notebook: str,
        stream: TextIO | None = None,
        *,
        heartbeat: float = DEFAULT_HEARTBEAT,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.notebook = notebook
        self.stream = stream if stream is not None else sys.stdout
        self.heartbeat = heartbeat
        self.clock = clock
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.tick_seconds = tick_seconds
        self._lock = threading.Lock()
        self._started = clock()
        self._last_heartbeat = self._started
        self._cell = 0  # 1-based number of the running cell; 0 before the first
        self._total = 0
        self._line_shown = False  # a TTY line is on screen, to be cleared before a full line

    def start(self, total_cells: int) -> None:
        """The notebook (``total_cells`` cells, markdown included) starts executing now."""
        with self._lock:
            self._started = self._last_heartbeat = self.clock()
            self._total, self._cell = total_cells, 0

    def cell_started(self, index: int | None) -> None:
        """Cell ``index`` (0-based, as papermill counts; ``None``: the next one) starts."""
        with self._lock:
            self._cell = index + 1 if index is not None else self._cell + 1
            self._refresh()

    def tick(self) -> None:
        """Refresh the elapsed time (TTY), or print a heartbeat if one is due (not a TTY)."""
        with self._lock:
            self._refresh()

    def finished(self, ok: bool, seconds: float) -> None:
        """The notebook ended after ``seconds``: clear the live line, print one final line."""
        with self._lock:
            if self._line_shown:
                self.stream.write(_CLEAR_LINE)
                self._line_shown = False
            verb = "ran in" if ok else "failed after"
            self.stream.write(f"[lare2 run] {self.notebook}: {verb} {seconds:.0f} s\n")
            self.stream.flush()

    def status_line(self) -> str:
        """``<notebook>: cell k/N · mm:ss elapsed`` (minutes keep counting past 59)."""
        minutes, seconds = divmod(int(self.clock() - self._started), 60)
        elapsed = f"{minutes:02d}:{seconds:02d}"
        return f"{self.notebook}: cell {self._cell}/{self._total} · {elapsed} elapsed"

    @contextmanager
    def ticking(self) -> Iterator[ProgressPrinter]:
        """Call :meth:`tick` every ``tick_seconds`` from a background thread while inside."""
        if not self.tty and self.heartbeat <= 0:
            yield self  # nothing would ever be printed between cells
            return
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.tick_seconds):
                self.tick()

        thread = threading.Thread(target=loop, name=f"lare2-progress-{self.notebook}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def _refresh(self) -> None:
        if self._total == 0:
            return  # not started yet (the kernel is starting)
        if self.tty:
            self.stream.write(_CLEAR_LINE + self.status_line())
            self._line_shown = True
        elif self.heartbeat > 0 and self.clock() - self._last_heartbeat >= self.heartbeat:
            self.stream.write(f"[lare2 run] {self.status_line()}\n")
            self._last_heartbeat = self.clock()
        else:
            return
        self.stream.flush()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@functools.cache
def progress_engine() -> str:
    """Register (once) papermill's nbclient engine that reports cell starts; return its name.

    Use it as ``papermill.execute_notebook(..., engine_name=progress_engine(),
    progress=printer)``: papermill hands unknown keyword arguments to the engine.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        """nbclient execution, with each ``cell_start`` also sent to ``progress``."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, progress=None, **kwargs):
            if progress is not None:
                _report_cells(nb_man, progress)
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE_NAME, ProgressEngine)
    return ENGINE_NAME


def _report_cells(nb_man: Any, progress: ProgressPrinter) -> None:
    """Make the execution manager ``nb_man`` tell ``progress`` about every cell it starts."""
    progress.start(len(nb_man.nb.cells))  # papermill runs every cell, markdown included
    record_start = nb_man.cell_start

    def cell_start(cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        record_start(cell, cell_index, **kwargs)  # papermill's bookkeeping first
        progress.cell_started(cell_index)

    nb_man.cell_start = cell_start
