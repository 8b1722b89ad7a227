"""The executed notebooks of a run, each rendered as one section of the HTML report.

nbconvert's HTML exporter with the JupyterLab look (``lab`` template) renders only the cells:
its page head, which loads require.js, MathJax and the widget manager from CDNs, is left out
(:func:`inline_css` gives the template's stylesheets to inline instead). Markdown images are
embedded as data URIs. Heading anchors get the notebook's stem as prefix, so they stay unique
across notebooks.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lare2lib.core import paths

__all__ = ["EXECUTED_GLOB", "NotebookSection", "executed_notebooks", "make_exporter",
           "render_notebook", "inline_css"]

EXECUTED_GLOB = "[0-9][0-9]_*.ipynb"
"""Executed pipeline notebooks in ``runs/<label>/`` (the runner's naming)."""

_SECTION_TEMPLATE = "lare2_section.html.j2"
# Only the cells of the lab template: its ``base.html.j2`` defines the cell markup, while the
# page head with the CDN scripts lives in ``index.html.j2``, which we do not extend.
_TEMPLATES = {_SECTION_TEMPLATE: "{%- extends 'base.html.j2' -%}"}
_LAB_CSS = ("static/index.css", "static/theme-light.css")


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


def executed_notebooks(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Executed pipeline notebooks in ``run_dir``, in numeric order."""
    found = Path(run_dir).glob(EXECUTED_GLOB)
    return sorted(found, key=lambda path: (int(path.name[:2]), path.name))


# -- rendering --------------------------------------------------------------------------------


def make_exporter() -> Any:
    """nbconvert's HTML exporter: lab template, cells only, markdown images embedded."""
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
    exporter = exporter or make_exporter()
    notebook = nbformat.read(path, as_version=4)
    # Markdown images are relative to the source notebook, not to its executed copy.
    resources = {"metadata": {"name": path.stem, "path": str(paths.notebooks_dir())}}
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    body = _prefix_anchors(body, path.stem)
    status, seconds = _status(notebook.metadata)
    parameters = dict(notebook.metadata.get("papermill", {}).get("parameters", {}))
    return NotebookSection(path.stem, status, seconds, parameters, body, _headings(body))


def inline_css(exporter: Any) -> str:
    """The lab template's stylesheets and its code highlighting, as inline ``<style>`` blocks."""
    import nbformat

    # Rendering an empty notebook yields the template's own helpers: ``include_css`` (reads a
    # stylesheet from the template folder) and the Pygments CSS of its highlight preprocessor.
    _, resources = exporter.from_notebook_node(nbformat.v4.new_notebook())
    parts = [str(resources["include_css"](name)) for name in _LAB_CSS]
    parts += [f"<style>{css}</style>" for css in resources["inlining"]["css"]]
    return "\n".join(parts)
