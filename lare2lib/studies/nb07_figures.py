"""Notebook 07's registry of paper-style figures, redrawn from the other notebooks' ``metrics.json``.

:data:`FIGURES` lists every figure with the notebooks it reads; :func:`draw_available` draws
those whose notebooks have run and says why it left the others out; :func:`render` saves one.
The figures themselves live in one module per upstream notebook (``nb07_lare`` … ``nb07_wild``,
and ``nb07_overview`` across 01–03), with the helpers they share in ``nb07_common``;
:func:`headline_rows` and :func:`findings` gather each module's numbers and sentences.

Upstream notebooks are found by their two-digit number, so a renamed ``04_…`` still matches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lare2lib.studies import nb07_egre, nb07_evasion, nb07_lare, nb07_matrices, nb07_recon, nb07_wild
from lare2lib.studies.nb07_common import MissingMetrics, by_number, need
from lare2lib.studies.nb07_overview import overview_figure

__all__ = ["PaperFigure", "FIGURES", "figure_spec", "draw_figure", "draw_available", "render",
           "headline_rows", "findings"]


# -- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperFigure:
    """One figure of notebook 07 and where its numbers come from."""

    name: str
    """File stem of the saved figure (PNG + PDF)."""
    numbers: tuple[str, ...]
    """Upstream notebooks it reads, by number; all are needed unless ``any_of``."""
    draw: Callable[[Mapping[str, Mapping[str, Any]]], Any]
    """``{stem: metrics}`` of the available notebooks → figure (raises :class:`MissingMetrics`)."""
    caption: str
    """One line for the notebook's text."""
    any_of: bool = False
    """Drawn when at least one of ``numbers`` has run (its missing panels are noted)."""


def _single(name: str, number: str, draw: Callable[[Mapping[str, Any]], Any], caption: str,
            key: str | None = None) -> PaperFigure:
    """A figure of one notebook: ``draw`` gets its metrics (or only ``metrics[key]``)."""

    def from_notebook(metrics_by_notebook: Mapping[str, Mapping[str, Any]]):
        stem, metrics = by_number(metrics_by_notebook, number)
        return draw(need(metrics, key, stem) if key else metrics)

    return PaperFigure(name, (number,), from_notebook, caption)


FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("overview_auc", ("01", "02", "03"), overview_figure,
                "AUC per generator of each detector family", any_of=True),
    _single("loss_vs_timestep", "01", nb07_lare.timestep_loss_figure,
            "single-step loss over t, real vs generated (LaRE Fig. 1b)"),
    _single("cost", "01", nb07_lare.cost_figure,
            "seconds per image and measured speed-ups (LaRE vs DIRE)"),
    _single("egre_ablation", "02", nb07_egre.ablation_figure, "EGRE ablations, mean ± std over seeds"),
    _single("reconstruction_tpr", "03", nb07_recon.reconstruction_figure,
            "reconstruction detector: TPR @ 0.1 % FPR and AUC, 1 vs 10 tries; AEROBLADE AP"),
    _single("robustness", "03", nb07_recon.robustness_figure,
            "robustness of the reconstruction detector to post-processing", key="robustness"),
    _single("autoencoder_family", "04", nb07_matrices.autoencoder_family_figure,
            "train autoencoder × test set"),
    _single("residual_spectra", "04", nb07_matrices.residual_spectra_figure,
            "reconstruction residual spectra per autoencoder"),
    _single("training_resolution", "05", nb07_matrices.resolution_figure,
            "train resolution × test resolution"),
    _single("postprocessing", "06", nb07_evasion.postprocessing_figure,
            "detectors under post-processing sweeps (detection rate at the clean 5 % FPR threshold)"),
    _single("evasion", "06", nb07_evasion.evasion_figure,
            "artifact-removal attack and PGD budget curves with PSNR"),
    _single("in_the_wild", "08", nb07_wild.wild_figure,
            "every detector on real generators' images: identical processing vs as shipped"),
)
"""Every figure of notebook 07, in the order it shows them."""


def figure_spec(name: str) -> PaperFigure:
    """The registered figure called ``name`` (the valid names in the error otherwise)."""
    for spec in FIGURES:
        if spec.name == name:
            return spec
    raise KeyError(f"no paper figure '{name}'; valid: {', '.join(s.name for s in FIGURES)}")


def draw_figure(spec: PaperFigure | str, metrics_by_notebook: Mapping[str, Mapping[str, Any]]):
    """``(figure, [source stems])`` of one figure; :class:`MissingMetrics` when it cannot be
    drawn from what has run (the message says why). Any other error is a bug and propagates."""
    spec = figure_spec(spec) if isinstance(spec, str) else spec
    sources = [found[0] for n in spec.numbers if (found := by_number(metrics_by_notebook, n))]
    absent = [n for n in spec.numbers if not by_number(metrics_by_notebook, n)]
    if not sources or (absent and not spec.any_of):
        raise MissingMetrics(f"notebook(s) {', '.join(absent)} not run")
    return spec.draw(metrics_by_notebook), sources


def draw_available(metrics_by_notebook: Mapping[str, Mapping[str, Any]],
                   figures: Sequence[PaperFigure] = FIGURES):
    """Draw every figure whose notebooks have run.

    Returns ``(drawn, skipped)``: ``drawn`` is ``{name: (figure, [source stems])}`` in order,
    ``skipped`` is ``{name: reason}`` (a notebook not run, or a quantity it did not write).
    """
    drawn, skipped = {}, {}
    for spec in figures:
        try:
            drawn[spec.name] = draw_figure(spec, metrics_by_notebook)
        except MissingMetrics as exc:
            skipped[spec.name] = str(exc)
    return drawn, skipped


def render(name: str, metrics_by_notebook: Mapping[str, Mapping[str, Any]],
           out_dir: str | Path, formats: Sequence[str] = ("png", "pdf")):
    """Draw figure ``name`` and save it to ``out_dir`` (:func:`lare2lib.core.plotting.save_figure`).

    Returns ``(figure or None, record)``; the record, for 07's ``metrics.json``, is
    ``{"from": [stems], "files": [names]}`` when drawn and ``{"skipped": reason}`` otherwise.
    The figure is left open, so the notebook shows it after it was saved.
    """
    from lare2lib.core.plotting import save_figure

    try:
        fig, sources = draw_figure(name, metrics_by_notebook)
    except MissingMetrics as exc:
        return None, {"skipped": str(exc)}
    files = save_figure(fig, out_dir, name, formats=formats)
    return fig, {"from": sources, "files": [path.name for path in files]}


# -- headline numbers and the answers in words ----------------------------------------------


NOTEBOOK_MODULES = {"01": nb07_lare, "02": nb07_egre, "03": nb07_recon, "04": nb07_matrices,
                    "05": nb07_matrices, "06": nb07_evasion, "08": nb07_wild}
"""Notebook number → the module holding its ``headline_rows(stem, metrics)`` (rows of 07's table)
and ``findings(stem, metrics)`` (its sentences)."""


def headline_rows(metrics_by_notebook: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The numbers the figures stand on, one row each: notebook, quantity, set, value, interval.

    For 07's table and ``metrics.json``; rows of notebooks that have not run are absent.
    """
    return [row for stem, metrics in metrics_by_notebook.items() if stem[:2] in NOTEBOOK_MODULES
            for row in NOTEBOOK_MODULES[stem[:2]].headline_rows(stem, metrics)]


def findings(metrics_by_notebook: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One sentence per headline result, numbers read from the metrics (nothing hard-coded)."""
    return [line for stem, metrics in metrics_by_notebook.items() if stem[:2] in NOTEBOOK_MODULES
            for line in NOTEBOOK_MODULES[stem[:2]].findings(stem, metrics)]
