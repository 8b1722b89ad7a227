"""Memory of this process and its children (DataLoader workers), sampled in a thread.

Measured as PSS (proportional set size: each shared page split among the processes sharing
it) where the platform reports it, else RSS. Summing the RSS of a parent and its forked
workers would count every copy-on-write page once per process. ``psutil`` comes with
accelerate (a project dependency); the ``/proc`` fallback counts this process only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


def _footprint(process) -> int:
    import psutil

    try:
        return process.memory_full_info().pss  # Linux
    except (AttributeError, psutil.AccessDenied):  # no PSS on this platform: resident set size
        return process.memory_info().rss


def rss_mb(children: bool = True) -> float:
    """Memory in MB (PSS, else RSS) of this process, plus its live children when ``children``."""
    try:
        import psutil
    except ImportError:  # Linux fallback: resident pages of this process from /proc
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    process = psutil.Process()
    total = _footprint(process)
    if children:
        for child in process.children(recursive=True):
            try:
                total += _footprint(child)
            except psutil.Error:  # a worker that just exited
                pass
    return total / 2**20


class MemorySampler:
    """Samples ``(seconds, progress(), rss_mb)`` every ``interval`` seconds while running.

    ``progress`` is any cheap counter (e.g. ``lambda: len(store)``); ``peak_mb`` is the largest
    RSS seen. Use as a context manager around the measured work.
    """

    def __init__(self, progress: Callable[[], float] = lambda: 0, interval: float = 0.5):
        self.progress, self.interval = progress, interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak_mb(self) -> float:
        return max((s["rss_mb"] for s in self.samples), default=0.0)

    def sample(self) -> None:
        self.samples.append({"seconds": time.perf_counter() - self._start,
                             "progress": float(self.progress()), "rss_mb": rss_mb()})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self._start = time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
