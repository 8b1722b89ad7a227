"""One self-contained HTML page of every executed notebook of a run: ``<figures>/index.html``.

``lare2 run`` leaves the executed copies in ``runs/<label>/NN_name.ipynb`` (figures embedded as
PNG outputs). :func:`build_report` turns them into a single page a student can open from disk:

* a table of contents: one row per notebook (status, duration, parameters) with links to its
  sections (the notebook's ``#`` and ``##`` headings), then one ``<section>`` per notebook;
* cells rendered by nbconvert's HTML exporter with the JupyterLab look (``lab`` template), but
  only the cell markup: the template's page head, which loads require.js, MathJax and the
  widget manager from CDNs, is replaced by our own head with the CSS *inlined*. Markdown
  images are embedded as data URIs (``embed_images``). The page loads nothing from the
  network; :func:`external_resources` checks that, and :func:`build_report` refuses to write a
  page that would (an image linked from the web in a markdown cell, say);
* a small inline script that, once the page has loaded, marks every ``<img>`` with
  ``data-decoded="yes"|"no"`` and its natural size, and summarises the count in the element
  ``#lare2-image-status`` (what ``tests/test_report.py`` reads from headless Chromium).

Reading and rendering the executed notebooks is :mod:`~lare2lib.pipeline.report_sections`;
the page around them, its styles and checks, :mod:`~lare2lib.pipeline.report_page`.

Limits: LaTeX in markdown is shown as written (MathJax would need a CDN); ipywidgets outputs
(``INTERACTIVE=True`` runs) render as nothing, since they need a live kernel.

The page lives in the run's figures folder, beside the notebooks' output folders, so the
links to each notebook's ``metrics.json`` are relative and survive copying the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from lare2lib.core import paths
from lare2lib.core.plotting import atomic_write
from lare2lib.pipeline.locations import figures_root, run_label
from lare2lib.pipeline.report_page import external_resources, page_html
from lare2lib.pipeline.report_sections import (
    EXECUTED_GLOB,
    executed_notebooks,
    inline_css,
    make_exporter,
    render_notebook,
)

__all__ = ["REPORT_FILENAME", "ReportError", "build_report"]

REPORT_FILENAME = "index.html"
"""Name of the report inside the run's figures folder."""


class ReportError(ValueError):
    """The report cannot be built as asked (no executed notebooks, a resource from the web)."""


def build_report(
    profile_name: str = "mini",
    smoke: bool = False,
    *,
    runs_root: str | os.PathLike[str] | None = None,
    out_root: str | os.PathLike[str] | None = None,
    out_path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write the HTML report of run ``(profile_name, smoke)``; return its path.

    Reads ``<runs_root>/<label>/NN_*.ipynb`` (``runs_root`` defaults to
    :func:`lare2lib.core.paths.runs_dir`; ``label`` is
    :func:`lare2lib.pipeline.locations.run_label`) and writes
    ``<figures root of the run>/index.html`` (``figures/index.html`` for the default ``mini``
    run, ``runs/<label>/figures/index.html`` otherwise, ``<out_root>/index.html`` when the run
    used ``out_root``) unless ``out_path`` says otherwise. Failed and incomplete notebooks are
    included and flagged, so the page also shows where a run stopped.
    """
    from lare2lib.core.profiles import get_profile

    get_profile(profile_name, smoke=smoke)  # validates the name, with the valid ones listed
    label = run_label(profile_name, smoke)
    run_dir = Path(runs_root if runs_root is not None else paths.runs_dir()) / label
    notebooks = executed_notebooks(run_dir)
    if not notebooks:
        raise ReportError(
            f"no executed notebooks ({EXECUTED_GLOB}) in {run_dir}; run them first with "
            f"`lare2 run --profile {profile_name}{' --smoke' if smoke else ''}`"
        )
    root = figures_root(label, out_root)
    target = Path(out_path) if out_path is not None else root / REPORT_FILENAME
    exporter = make_exporter()
    sections = [render_notebook(path, exporter) for path in notebooks]
    page = page_html(title or f"lare2 · {label}", label, sections, inline_css(exporter),
                     target.parent)
    external = external_resources(page)
    if external:
        raise ReportError(
            f"the report would load {len(external)} resource(s) from the network, e.g. "
            f"{external[:3]}; embed them (a local image beside the notebook) or remove them"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return target


if __name__ == "__main__":  # python -m lare2lib.pipeline.report [PROFILE] [--smoke]: rebuild, no rerun
    import sys

    names = [arg for arg in sys.argv[1:] if arg != "--smoke"]
    print(build_report(names[0] if names else "mini", smoke="--smoke" in sys.argv[1:]))
