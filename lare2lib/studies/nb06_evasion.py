"""Notebook 06's protocol: four detectors, three kinds of evasion, one threshold each.

The study is split by responsibility:

* :mod:`~lare2lib.studies.nb06_detectors`: :func:`load_detectors`, the EGRE detector and the
  reconstruction classifier from notebooks 02 and 03 when their checkpoints exist (else a small
  one trained here through the same library calls), plus the two training-free scores,
  AEROBLADE and mean-LaRE.
* :mod:`~lare2lib.studies.nb06_suite`: :class:`Suite` scores an
  :class:`~lare2lib.data.imagesets.ImageSet` with every detector's own pipeline (EGRE and
  mean-LaRE share one LaRE map per image when their settings agree). Every detector's
  **threshold** is set once, at :data:`FPR` on the clean held-out reals, as a deployed detector
  would be calibrated; the **detection rate** of an attacked fake set is the fraction above it
  (TPR) and the **AUC** is taken against the reals as they are in that experiment
  (post-processed with the fakes in the sweeps, clean for the attacks on fakes).
* :mod:`~lare2lib.studies.nb06_experiments`: :func:`postprocess_sweep`, :func:`artifact_removal`,
  :func:`pgd_sweep` run the three experiments;
* :mod:`~lare2lib.studies.nb06_findings`: :func:`most_graceful` names the detector that keeps most
  of its detection rate, :func:`findings_text` says it in words;
* :mod:`~lare2lib.studies.nb06_figures`: the notebook's figures.

This module holds what the notebook's run needs around them: the post-processing grid
(:func:`parse_grid`) and the section timer (:func:`timed`).
"""

from __future__ import annotations

import contextlib
import time

__all__ = ["parse_grid", "timed"]

def parse_grid(text: str) -> dict[str, tuple[float, ...]]:
    """``"jpeg:90,50;blur:1"`` → ``{"jpeg": (90.0, 50.0), "blur": (1.0,)}``."""
    from lare2lib.data.perturb import KINDS

    grid: dict[str, tuple[float, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, levels = part.partition(":")
        if kind not in KINDS or kind == "none" or not levels:
            raise ValueError(f"bad post-processing axis {part!r}: write kind:level,level with kind "
                             f"in {[k for k in KINDS if k != 'none']}")
        grid[kind] = tuple(float(v) for v in levels.split(","))
    return grid


@contextlib.contextmanager
def timed(record: dict[str, dict[str, float]], name: str):
    """Add the wall and CPU seconds (all threads of this process) of the block to ``record[name]``.

    On a shared machine the CPU seconds are the better measure of the work: wall time there is
    mostly waiting for a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        row = record.setdefault(name, {"wall": 0.0, "cpu": 0.0})
        row["wall"] += time.perf_counter() - wall
        row["cpu"] += time.process_time() - cpu
