"""The report's HTML page: contents, the table of runs, one section per notebook, the checks.

The page is self-contained: styles are inlined, figures are data URIs and a small inline
script, once the page has loaded, marks every ``<img>`` with ``data-decoded="yes"|"no"`` and
its natural size, and summarises the count in the element :data:`IMAGE_STATUS_ID` (what
``tests/test_report.py`` reads from headless Chromium). :func:`external_resources` lists what a
page would load from the network (nothing, for a page :func:`page_html` built from local data).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lare2lib import __version__
from lare2lib.core.plotting import METRICS_FILENAME
from lare2lib.pipeline.report_sections import NotebookSection

__all__ = ["IMAGE_STATUS_ID", "external_resources", "page_html"]

IMAGE_STATUS_ID = "lare2-image-status"
"""Element whose ``data-total`` / ``data-decoded`` / ``data-state`` the image check fills in."""


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


def page_html(title: str, label: str, sections: Sequence[NotebookSection], css: str,
              root: Path) -> str:
    """The whole page; ``css`` is inlined as given, ``root`` holds the notebooks' output folders."""
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
