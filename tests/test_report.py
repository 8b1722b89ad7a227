"""The HTML report: built by `lare2 run` from executed notebooks, self-contained, every figure
decoding in a real browser (headless Chromium; skipped only when it is not installed)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from conftest import STANDARD_PARAMETER_LINES

from lare2lib.core.profiles import ProfileError
from lare2lib.pipeline import cli, report, report_page, report_sections

FIGURES_BODY = """\
import matplotlib.pyplot as plt
import pandas as pd
from lare2lib.core.plotting import write_metrics

for k in range(2):
    fig, ax = plt.subplots(figsize=(2.5, 1.8))
    ax.plot([0, 1, 2], [k, 1 - k, k], marker="o")
    ax.set_title(f"figure {k}")
    plt.show()
display(pd.DataFrame({"auc": [0.5, 0.9]}, index=["real", "fake"]))
write_metrics(OUT_DIR, {"figures": 2})
"""
FIGURES_PER_RUN = 2
"""PNG outputs of the tiny figures notebook: the browser must decode exactly these."""

FAILING_BODY = 'raise RuntimeError("deliberate failure for the report test")'

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_TIMEOUT = 180
"""Seconds for one headless page dump (the machine is shared and busy)."""


def _notebook(folder: Path, stem: str, cells: list, executed: bool = False) -> Path:
    """A notebook with the standard parameters cell; ``executed`` adds papermill metadata."""
    parameters = nbformat.v4.new_code_cell("\n".join(STANDARD_PARAMETER_LINES))
    parameters.metadata["tags"] = ["parameters"]
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if executed:
        metadata["papermill"] = {"parameters": {"PROFILE": "mini"}, "exception": None,
                                 "duration": 1.5, "end_time": "2026-01-01T00:00:01"}
    notebook = nbformat.v4.new_notebook(cells=[parameters, *cells], metadata=metadata)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.ipynb"
    nbformat.write(notebook, path)
    return path


def _markdown(text: str):
    return nbformat.v4.new_markdown_cell(text)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`lare2 run --smoke` on two tiny notebooks (the second fails), runs and figures in tmp."""
    root = tmp_path_factory.mktemp("report")
    notebooks = root / "notebooks"
    _notebook(notebooks, "01_figures", [
        _markdown("# 01 · Figures\nTwo tiny plots.\n\n## Headline numbers\nNone."),
        nbformat.v4.new_code_cell(FIGURES_BODY),
    ])
    _notebook(notebooks, "02_broken", [
        _markdown("# 02 · Broken\n\n## Headline numbers\nNever reached."),
        nbformat.v4.new_code_cell(FAILING_BODY),
    ])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LARE2_RUNS_DIR", str(root / "runs"))
        patch.setenv("LARE2_FIGURES_DIR", str(root / "figures"))
        code = cli.main(["run", "--smoke", "--notebooks-dir", str(notebooks)])
    page = root / "runs" / "mini-smoke" / "figures" / report.REPORT_FILENAME
    return {"code": code, "page": page, "root": root}


# -- built by `lare2 run`, from the executed copies ---------------------------------------------


def test_lare2_run_writes_the_report_beside_the_run_figures(run):
    assert run["code"] == 1  # 02_broken failed: the run fails, the report is still written
    assert run["page"].is_file()
    assert (run["page"].parent / "01_figures" / "metrics.json").is_file()


def test_report_has_contents_sections_and_flags_the_failure(run):
    page = run["page"].read_text(encoding="utf-8")
    for stem in ("01_figures", "02_broken"):
        assert f'<section class="lare2-notebook" id="nb-{stem}">' in page
    assert '<td class="lare2-status-failed">failed</td>' in page
    assert '<td class="lare2-status-completed">completed</td>' in page
    assert "deliberate failure for the report test" in page  # the traceback is shown
    assert 'href="01_figures/metrics.json"' in page  # relative: survives copying the folder
    assert "02_broken/metrics.json" not in page  # it wrote none
    # Every in-page link of the contents lands on an element of the page.
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    links = re.findall(r'href="#([^"]+)"', page)
    assert links and not [link for link in links if link not in ids]
    # Each notebook's "Headline numbers" heading got its own anchor.
    assert page.count('id="01_figures--Headline-numbers"') == 1
    assert page.count('id="02_broken--Headline-numbers"') == 1


def test_report_is_self_contained(run):
    page = run["page"].read_text(encoding="utf-8")
    assert report_page.external_resources(page) == []
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link\b", page)
    assert "mathjax" not in page.lower() and "require.min.js" not in page
    images = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', page)
    assert len(images) == FIGURES_PER_RUN
    assert all(src.startswith("data:image/png;base64,") for src in images)


@pytest.mark.parametrize("flags, built", [([], True), (["--no-report"], False)])
def test_lare2_run_rebuilds_the_report_unless_told_not_to(monkeypatch, tmp_path, flags, built):
    from lare2lib.pipeline import runner
    from lare2lib.pipeline.execute import RunResult

    done = RunResult("01_x", "skipped", 0.0, tmp_path / "01_x.ipynb", tmp_path)
    monkeypatch.setattr(runner, "run_notebooks", lambda *args, **kwargs: [done])
    calls = []
    monkeypatch.setattr(report, "build_report",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or tmp_path / "i.html")
    assert cli.main(["run", "--profile", "full", *flags]) == 0
    assert calls == ([(("full",), {"smoke": False})] if built else [])


def test_a_report_that_cannot_be_built_fails_the_run(monkeypatch, tmp_path, capsys):
    from lare2lib.pipeline import runner
    from lare2lib.pipeline.execute import RunResult

    done = RunResult("01_x", "ran", 1.0, tmp_path / "01_x.ipynb", tmp_path)
    monkeypatch.setattr(runner, "run_notebooks", lambda *args, **kwargs: [done])
    monkeypatch.setenv("LARE2_RUNS_DIR", str(tmp_path / "empty"))
    assert cli.main(["run", "--smoke"]) == 1
    assert "report not written: ReportError: no executed notebooks" in capsys.readouterr().err


# -- the building blocks, without a kernel ------------------------------------------------------


def test_external_resources_finds_loads_not_links():
    page = (
        '<img src="https://example.org/a.png"><script src="//cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="http://example.org/s.css">'
        '<style>@import "https://fonts.example.org/f.css"; a { background: url(https://e.org/b.png) }</style>'
        '<a href="https://arxiv.org/abs/2403.17465">the paper</a>'
        '<img src="data:image/png;base64,AAAA"><img src="01_lare/fig.png">'
    )
    assert report_page.external_resources(page) == [
        "//cdn.example.org/x.js", "http://example.org/s.css", "https://e.org/b.png",
        "https://example.org/a.png", "https://fonts.example.org/f.css",
    ]


def test_build_report_refuses_a_figure_from_the_web(tmp_path):
    runs = tmp_path / "runs" / "mini"
    _notebook(runs, "01_web", [_markdown("# Web\n![logo](https://example.org/logo.png)")],
              executed=True)
    with pytest.raises(report.ReportError, match="example.org/logo.png"):
        report.build_report("mini", runs_root=tmp_path / "runs", out_root=tmp_path / "figures")
    assert not (tmp_path / "figures" / report.REPORT_FILENAME).exists()


def test_build_report_explains_what_is_missing(tmp_path):
    with pytest.raises(report.ReportError, match="lare2 run --profile full --smoke"):
        report.build_report("full", smoke=True, runs_root=tmp_path)
    with pytest.raises(ProfileError, match="mini"):
        report.build_report("huge", runs_root=tmp_path)


def test_report_location_and_order_follow_the_runner(tmp_path):
    runs = tmp_path / "runs" / "mini"
    for stem in ("10_last", "02_second"):
        _notebook(runs, stem, [_markdown(f"# {stem}\n## Setup\ntext")], executed=True)
    (runs / "scratch.ipynb").write_text("{}")  # not a pipeline notebook: ignored
    written = report.build_report("mini", runs_root=tmp_path / "runs",
                                  out_root=tmp_path / "figures")
    assert written == tmp_path / "figures" / report.REPORT_FILENAME
    page = written.read_text(encoding="utf-8")
    assert page.index('id="nb-02_second"') < page.index('id="nb-10_last"')
    assert 'href="#10_last--Setup"' in page and 'id="10_last--Setup"' in page
    assert '<td class="lare2-status-completed">completed</td>' in page


def test_unfinished_notebook_is_flagged(tmp_path):
    runs = tmp_path / "runs" / "mini"
    path = _notebook(runs, "03_running", [_markdown("# 03")], executed=True)
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.papermill.update(end_time=None, duration=None)
    nbformat.write(notebook, path)
    assert report_sections.render_notebook(path).status == "incomplete"


# -- in a real browser ---------------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class _Dom(HTMLParser):
    """The attributes of every <img> and of the status element of a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.status: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "img":
            self.images.append(attributes)
        if attributes.get("id") == report_page.IMAGE_STATUS_ID:
            self.status = attributes


def _browser_dom(page: Path, profile_dir: Path) -> _Dom:
    """Load ``page`` in headless Chromium (no network use) and parse the DOM after scripts ran."""
    chromium = _chromium()
    if chromium is None:
        reason = "chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
        if os.environ.get("LARE2_REQUIRE_BROWSER") == "1":  # .ci/run installed it: must run
            pytest.fail(f"LARE2_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile_dir}", "--dump-dom", "--virtual-time-budget=60000",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Dom()
    dom.feed(result.stdout)
    return dom


def test_every_figure_decodes_in_chromium(run, tmp_path):
    dom = _browser_dom(run["page"], tmp_path / "chromium")
    assert len(dom.images) == FIGURES_PER_RUN
    for image in dom.images:
        assert image.get("data-decoded") == "yes", image.get("data-natural-size")
        width, height = (int(v) for v in image["data-natural-size"].split("x"))
        assert width > 0 and height > 0
    assert dom.status.get("data-state") == "ok"
    assert dom.status.get("data-decoded") == dom.status.get("data-total") == str(FIGURES_PER_RUN)


def test_browser_check_catches_a_broken_figure(run, tmp_path):
    page = run["page"].read_text(encoding="utf-8")
    garbage = base64.b64encode(b"not a PNG " * 20).decode()
    broken = re.sub(r'(<img\b[^>]*\bsrc="data:image/png;base64,)[^"]+', rf"\g<1>{garbage}",
                    page, count=1)
    assert broken != page
    copy = tmp_path / report.REPORT_FILENAME
    copy.write_text(broken, encoding="utf-8")
    dom = _browser_dom(copy, tmp_path / "chromium")
    assert [image.get("data-decoded") for image in dom.images] == ["no", "yes"]
    assert dom.status.get("data-state") == "broken"
    assert dom.status.get("data-decoded") == "1" and dom.status.get("data-total") == "2"
