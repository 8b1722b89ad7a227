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

Limits: LaTeX in markdown is shown as written (MathJax would need a CDN); ipywidgets outputs
(``INTERACTIVE=True`` runs) render as nothing, since they need a live kernel.

The page lives in the run's figures folder, beside the notebooks' output folders, so the
links to each notebook's ``metrics.json`` are relative and survive copying the folder.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lare2lib import __version__
from lare2lib.core import paths
from lare2lib.core.plotting import METRICS_FILENAME, atomic_write
from lare2lib.pipeline.locations import figures_root, run_label

__all__ = [
    "REPORT_FILENAME",
    "IMAGE_STATUS_ID",
    "ReportError",
    "NotebookSection",
    "executed_notebooks",
    "render_notebook",
    "external_resources",
    "build_report",
]

REPORT_FILENAME = "index.html"
"""Name of the report inside the run's figures folder."""

IMAGE_STATUS_ID = "lare2-image-status"
"""Element whose ``data-total`` / ``data-decoded`` / ``data-state`` the image check fills in."""

EXECUTED_GLOB = "[0-9][0-9]_*.ipynb"
"""Executed pipeline notebooks in ``runs/<label>/`` (the runner's naming)."""

_SECTION_TEMPLATE = "lare2_section.html.j2"
# Only the cells of the lab template: its ``base.html.j2`` defines the cell markup, while the
# page head with the CDN scripts lives in ``index.html.j2``, which we do not extend.
_TEMPLATES = {_SECTION_TEMPLATE: "{%- extends 'base.html.j2' -%}"}
_LAB_CSS = ("static/index.css", "static/theme-light.css")


class ReportError(ValueError):
    """The report cannot be built as asked (no executed notebooks, a resource from the web)."""


@dataclass(frozen=True)
class NotebookSection:
    """One executed notebook, rendered."""

    stem: str
    """Notebook stem, e.g. ``01_lare``; also the prefix of its anchors in the page."""
    status: str
    """``completed``; ``failed`` (papermill recorded an exception); ``incomplete`` (no end
    time: still running, or killed)."""
    seconds: float | None
    """papermill's duration of the whole run (``None`` when incomplete)."""
    parameters: dict[str, Any]
    """The parameters papermill injected."""
    body: str
    """The cells as HTML, anchors prefixed with ``<stem>--``."""
    headings: list[tuple[int, str, str]] = field(default_factory=list)
    """``(level, anchor, text)`` of its level-1 and level-2 headings, for the contents."""


# -- where ------------------------------------------------------------------------------------


def executed_notebooks(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Executed pipeline notebooks in ``run_dir``, in numeric order."""
    found = Path(run_dir).glob(EXECUTED_GLOB)
    return sorted(found, key=lambda path: (int(path.name[:2]), path.name))


# -- rendering --------------------------------------------------------------------------------


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        template_file=_SECTION_TEMPLATE,
        extra_loaders=[DictLoader(_TEMPLATES)],
        embed_images=True,  # markdown images → data URIs (outputs are inline already)
    )


def _status(metadata: dict[str, Any]) -> tuple[str, float | None]:
    papermill = metadata.get("papermill", {})
    if papermill.get("exception"):
        return "failed", papermill.get("duration")
    if papermill.get("end_time") is None and papermill:
        return "incomplete", None
    return "completed", papermill.get("duration")


_HEADING = re.compile(r'<h([1-6]) id="([^"]+)"')
_HEADING_TEXT = re.compile(r'<h([12]) id="([^"]+)">(.*?)(?:<a class="anchor-link"|</h\1>)', re.S)
_LOCAL_LINK = re.compile(r'href="#([^"]+)"')
_TAG = re.compile(r"<[^>]+>")


def _prefix_anchors(body: str, stem: str) -> str:
    """Make heading anchors unique across notebooks (every notebook has "Headline numbers")."""
    anchors = {match.group(2) for match in _HEADING.finditer(body)}
    body = _HEADING.sub(lambda m: f'<h{m.group(1)} id="{stem}--{m.group(2)}"', body)
    return _LOCAL_LINK.sub(
        lambda m: f'href="#{stem}--{m.group(1)}"' if m.group(1) in anchors else m.group(0), body
    )


def _headings(body: str) -> list[tuple[int, str, str]]:
    return [
        (int(level), anchor, html.unescape(_TAG.sub("", text)).strip())
        for level, anchor, text in _HEADING_TEXT.findall(body)
    ]


def render_notebook(path: str | os.PathLike[str], exporter: Any = None) -> NotebookSection:
    """Render one executed notebook's cells (figures embedded) as a :class:`NotebookSection`."""
    import nbformat

    path = Path(path)
    exporter = exporter or _exporter()
    notebook = nbformat.read(path, as_version=4)
    # Markdown images are relative to the source notebook, not to its executed copy.
    resources = {"metadata": {"name": path.stem, "path": str(paths.notebooks_dir())}}
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    body = _prefix_anchors(body, path.stem)
    status, seconds = _status(notebook.metadata)
    parameters = dict(notebook.metadata.get("papermill", {}).get("parameters", {}))
    return NotebookSection(path.stem, status, seconds, parameters, body, _headings(body))


# -- self-containedness -----------------------------------------------------------------------

_RESOURCE = re.compile(
    r"""(?:<(?:img|script|iframe|video|audio|source|embed|input)\b[^>]*?\bsrc\s*=\s*["']?"""
    r"""|<link\b[^>]*?\bhref\s*=\s*["']?|url\(\s*["']?|@import\s+["'])"""
    r"""((?:[a-z][a-z0-9+.-]*:)?//[^"')\s>]+)""",
    re.I,
)


def external_resources(page: str) -> list[str]:
    """URLs the page would *load* (scripts, styles, images, frames, CSS ``url()``/``@import``).

    Plain links (``<a href="https://...">``) are not resources: the browser fetches them only
    when clicked. ``data:`` URIs and relative paths are local.
    """
    return sorted(set(_RESOURCE.findall(page)))


# -- the page ---------------------------------------------------------------------------------

_PAGE_CSS = """
body.jp-Notebook { margin: 0; }
a.anchor-link { display: none; padding-left: 0.3em; text-decoration: none; }
:is(h1, h2, h3, h4):hover > a.anchor-link { display: inline; }
.jp-Collapser { display: none; }
.jp-InputArea, .jp-InputArea-editor { overflow: hidden; }
.lare2-layout { display: flex; align-items: flex-start; }
.lare2-nav { position: sticky; top: 0; max-height: 100vh; overflow-y: auto; flex: 0 0 19rem;
  padding: 1rem; box-sizing: border-box; border-right: 1px solid #ddd; background: #fafafa;
  font-size: 13px; }
.lare2-nav ol { padding-left: 1.1rem; margin: 0.2rem 0 0.8rem; }
.lare2-nav li { margin: 0.15rem 0; }
.lare2-main { flex: 1 1 auto; min-width: 0; padding: 1rem 2rem; }
.lare2-runs { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 13px; }
.lare2-runs th, .lare2-runs td { border: 1px solid #ddd; padding: 0.25rem 0.6rem;
  text-align: left; vertical-align: top; }
.lare2-runs code { font-size: 12px; }
.lare2-notebook { border-top: 3px solid #444; margin-top: 2.5rem; padding-top: 0.5rem; }
.lare2-notebook > header { font-size: 13px; color: #555; margin-bottom: 1rem; }
.lare2-status-completed { color: #1a7f37; }
.lare2-status-failed, .lare2-status-incomplete { color: #b42318; font-weight: bold; }
#lare2-image-status { font-size: 13px; color: #555; }
#lare2-image-status[data-state="broken"] { color: #b42318; font-weight: bold; }
@media (max-width: 60rem) { .lare2-layout { display: block; }
  .lare2-nav { position: static; max-height: none; border-right: none; } }
"""

# Runs once the page (and every data-URI image in it) has loaded: an image the browser could
# not decode has naturalWidth 0. (img.decode() is not used: under headless Chromium's virtual
# time it may not settle for images far below the fold, and it detects nothing more.)
_IMAGE_CHECK_JS = """
(function () {
  function settle(img) {
    var loaded = img.complete ? Promise.resolve() : new Promise(function (done) {
      img.addEventListener("load", done); img.addEventListener("error", done); });
    return loaded.then(function () {
        var ok = img.naturalWidth > 0 && img.naturalHeight > 0;
        img.setAttribute("data-decoded", ok ? "yes" : "no");
        img.setAttribute("data-natural-size", img.naturalWidth + "x" + img.naturalHeight);
        return ok; });
  }
  function check() {
    var images = Array.prototype.slice.call(document.images);
    Promise.all(images.map(settle)).then(function (results) {
      var decoded = results.filter(Boolean).length;
      var status = document.getElementById("%(status_id)s");
      status.setAttribute("data-total", String(images.length));
      status.setAttribute("data-decoded", String(decoded));
      status.setAttribute("data-state", decoded === images.length ? "ok" : "broken");
      status.textContent = decoded === images.length
        ? "All " + images.length + " figures decoded."
        : (images.length - decoded) + " of " + images.length + " figures did not decode.";
    });
  }
  if (document.readyState === "complete") { check(); } else { window.addEventListener("load", check); }
})();
""" % {"status_id": IMAGE_STATUS_ID}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _contents(sections: Sequence[NotebookSection]) -> str:
    items = []
    for section in sections:
        links = "".join(
            f'<li><a href="#{_e(anchor)}">{_e(text)}</a></li>'
            for level, anchor, text in section.headings
            if level == 2
        )
        items.append(
            f'<li><a href="#nb-{_e(section.stem)}"><b>{_e(section.stem)}</b></a> '
            f'<span class="lare2-status-{section.status}">{section.status}</span>'
            + (f"<ol>{links}</ol>" if links else "")
            + "</li>"
        )
    return "<ol>" + "".join(items) + "</ol>"


def _runs_table(sections: Sequence[NotebookSection], root: Path) -> str:
    rows = []
    for section in sections:
        title = next((text for level, _, text in section.headings if level == 1), "")
        metrics = root / section.stem / METRICS_FILENAME
        link = (
            f'<a href="{_e(section.stem)}/{METRICS_FILENAME}">metrics.json</a>'
            if metrics.is_file() else "–"
        )
        parameters = ", ".join(
            f"{name}={value!r}" for name, value in section.parameters.items() if name != "OUT_DIR"
        )
        rows.append(
            f'<tr><td><a href="#nb-{_e(section.stem)}">{_e(section.stem)}</a></td>'
            f"<td>{_e(title)}</td>"
            f'<td class="lare2-status-{section.status}">{section.status}</td>'
            f"<td>{_seconds(section.seconds)}</td><td><code>{_e(parameters)}</code></td>"
            f"<td>{link}</td></tr>"
        )
    head = "<tr><th>notebook</th><th>title</th><th>status</th><th>time</th>" \
           "<th>parameters</th><th>numbers</th></tr>"
    return f'<table class="lare2-runs">{head}{"".join(rows)}</table>'


def _section(section: NotebookSection) -> str:
    return (
        f'<section class="lare2-notebook" id="nb-{_e(section.stem)}">'
        f"<header><b>{_e(section.stem)}</b> · "
        f'<span class="lare2-status-{section.status}">{section.status}</span> · '
        f"{_seconds(section.seconds)}</header>\n{section.body}\n</section>"
    )


def _page(title: str, label: str, sections: Sequence[NotebookSection], css: str,
          root: Path) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{_e(title)}</title>
{css}
<style>{_PAGE_CSS}</style>
</head>
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<div class="lare2-layout">
<nav class="lare2-nav"><b>{_e(title)}</b>{_contents(sections)}</nav>
<main class="lare2-main">
<h1>{_e(title)}</h1>
<p>Run <code>{_e(label)}</code> · lare2lib {__version__} · {len(sections)} executed notebook(s),
in pipeline order. Figures and numbers are those of this run: read each notebook's markdown for
what they mean and where they stop. <span id="{IMAGE_STATUS_ID}" data-state="pending">Checking
figures…</span></p>
{_runs_table(sections, root)}
{"".join(_section(section) for section in sections)}
</main>
</div>
<script>{_IMAGE_CHECK_JS}</script>
</body>
</html>
"""


def _inline_css(exporter: Any) -> str:
    """The lab template's stylesheets and its code highlighting, as inline ``<style>`` blocks."""
    import nbformat

    # Rendering an empty notebook yields the template's own helpers: ``include_css`` (reads a
    # stylesheet from the template folder) and the Pygments CSS of its highlight preprocessor.
    _, resources = exporter.from_notebook_node(nbformat.v4.new_notebook())
    parts = [str(resources["include_css"](name)) for name in _LAB_CSS]
    parts += [f"<style>{css}</style>" for css in resources["inlining"]["css"]]
    return "\n".join(parts)


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
    :func:`lare2lib.core.paths.runs_dir`; ``label`` is :func:`lare2lib.pipeline.locations.run_label`) and writes
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
    exporter = _exporter()
    sections = [render_notebook(path, exporter) for path in notebooks]
    page = _page(title or f"lare2 · {label}", label, sections, _inline_css(exporter),
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
