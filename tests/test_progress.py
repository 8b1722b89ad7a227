"""Live progress of `lare2 run`: the printer on a fake clock and stream, then one real notebook.

Times in the expected lines come from the fake clock, never from the wall clock.
"""

from __future__ import annotations

import io
import re
import threading

import nbformat
import pytest

from lare2lib.core.exit_codes import OK, USAGE_ERROR
from lare2lib.pipeline import cli, runner
from lare2lib.pipeline.execute import RunResult, execute_notebook
from lare2lib.pipeline.progress import DEFAULT_HEARTBEAT, ProgressPrinter

CLEAR = "\r\x1b[K"


class FakeClock:
    """``clock()`` returns ``now``; ``step`` seconds are added after every call."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_tty_prints_a_heartbeat_at_most_every_heartbeat_seconds():
    clock, stream = FakeClock(), io.StringIO()
    printer = ProgressPrinter("01_x", stream, heartbeat=60, clock=clock)
    assert not printer.tty
    printer.start(5)
    printer.cell_started(0)
    clock.now = 30
    printer.tick()
    assert stream.getvalue() == ""  # nothing due yet
    clock.now = 61
    printer.tick()
    clock.now = 90
    printer.cell_started(1)  # 29 s after the last heartbeat: nothing
    clock.now = 125
    printer.tick()
    printer.finished(True, 125.4)
    assert stream.getvalue().splitlines() == [
        "[lare2 run] 01_x: cell 1/5 · 01:01 elapsed",
        "[lare2 run] 01_x: cell 2/5 · 02:05 elapsed",
        "[lare2 run] 01_x: ran in 125 s",
    ]


def test_heartbeat_zero_prints_only_the_final_line():
    clock, stream = FakeClock(), io.StringIO()
    printer = ProgressPrinter("01_x", stream, heartbeat=0, clock=clock)
    printer.start(2)
    for now, cell in ((0, 0), (3600, 1)):
        clock.now = now
        printer.cell_started(cell)
        printer.tick()
    printer.finished(False, 3700)
    assert stream.getvalue() == "[lare2 run] 01_x: failed after 3700 s\n"


def test_a_tty_gets_one_rewritten_line_then_the_final_line():
    clock, stream = FakeClock(), TtyStream()
    printer = ProgressPrinter("02_y", stream, heartbeat=60, clock=clock)
    assert printer.tty  # detected from the stream
    printer.tick()
    assert stream.getvalue() == ""  # not started: the kernel is still starting
    printer.start(3)
    printer.cell_started(0)
    clock.now = 5
    printer.tick()
    clock.now = 3725  # minutes keep counting past the hour
    printer.cell_started(2)
    printer.finished(True, 3725)
    output = stream.getvalue()
    assert output.count("\n") == 1 and output.endswith("\n")
    assert output.split(CLEAR) == [
        "",
        "02_y: cell 1/3 · 00:00 elapsed",
        "02_y: cell 1/3 · 00:05 elapsed",
        "02_y: cell 3/3 · 62:05 elapsed",
        "[lare2 run] 02_y: ran in 3725 s\n",
    ]


def test_ticking_calls_tick_from_a_thread_until_left():
    ticked = threading.Event()

    class Recording(ProgressPrinter):
        def tick(self) -> None:
            ticked.set()

    printer = Recording("01_x", io.StringIO(), tty=True, tick_seconds=0.01)
    with printer.ticking():
        assert ticked.wait(10)
    assert not [t for t in threading.enumerate() if t.name == "lare2-progress-01_x"]


def _three_cell_notebook(folder):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in ("x = 1", "y = x + 1", "print(y)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )
    path = folder / "03_tiny.ipynb"
    nbformat.write(notebook, path)
    return path


def test_a_real_notebook_reports_each_cell_then_its_duration(tmp_path):
    path = _three_cell_notebook(tmp_path)
    stream = io.StringIO()
    # Every clock reading is 100 s after the previous one, so each cell start is a heartbeat;
    # the ticker never fires (tick_seconds is longer than the run), so the lines are exact.
    printer = ProgressPrinter("03_tiny", stream, heartbeat=60, clock=FakeClock(step=100),
                              tty=False, tick_seconds=3600)
    executed = tmp_path / "runs" / "03_tiny.ipynb"
    result = execute_notebook(path, executed, tmp_path / "out", {}, 60, printer)
    assert result.status == "ran", result.error
    lines = stream.getvalue().splitlines()
    cells = [re.fullmatch(r"\[lare2 run\] 03_tiny: cell (\d+)/3 · \d\d:\d\d elapsed", line)
             for line in lines[:-1]]
    assert [match.group(1) for match in cells if match] == ["1", "2", "3"] and all(cells)
    assert re.fullmatch(r"\[lare2 run\] 03_tiny: ran in \d+ s", lines[-1])
    outputs = nbformat.read(executed, as_version=4).cells[2].outputs
    assert outputs[0]["text"] == "2\n"  # the engine still executes and saves as papermill's


@pytest.mark.parametrize("argv, expected", [([], DEFAULT_HEARTBEAT), (["--heartbeat", "5"], 5.0),
                                            (["--heartbeat", "0"], 0.0)])
def test_lare2_run_passes_the_heartbeat(monkeypatch, tmp_path, argv, expected):
    calls = []
    done = RunResult("01_x", "skipped", 0.0, tmp_path / "01_x.ipynb", tmp_path)
    monkeypatch.setattr(runner, "run_notebooks",
                        lambda *args, **kwargs: calls.append(kwargs) or [done])
    assert cli.main(["run", "--no-report", *argv]) == OK
    assert calls[0]["heartbeat"] == expected


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_lare2_run_rejects_a_bad_heartbeat(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--heartbeat", value])
    assert exit_info.value.code == USAGE_ERROR
    assert "--heartbeat: must be 0 (off) or a number of seconds" in capsys.readouterr().err
