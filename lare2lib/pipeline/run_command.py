"""``lare2 run``: its arguments, the run, the summary table and the rebuilt HTML report."""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lare2lib.core import paths
from lare2lib.core.exit_codes import FAILURE, OK
from lare2lib.core.profiles import PROFILE_NAMES
from lare2lib.pipeline import runner
from lare2lib.pipeline.progress import DEFAULT_HEARTBEAT

__all__ = ["parse_assignments", "add_run_arguments", "run_command"]


def parse_assignments(assignments: Iterable[str]) -> dict[str, Any]:
    """``["EPOCHS=3", "NAME=abc"]`` → ``{"EPOCHS": 3, "NAME": "abc"}``.

    A value is read as a Python literal when it is one, else kept as text.
    """
    parsed = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise runner.RunnerError(f"parameter '{item}' is not of the form NAME=VALUE")
        try:
            parsed[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed[name] = text
    return parsed


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lare2 run`` (``lare2 run --help`` lists them)."""
    parser.add_argument(
        "notebooks", nargs="*", metavar="NOTEBOOK",
        help="notebooks to run, as 01, 01_lare or 01_lare.ipynb (default: all, in order)",
    )
    parser.add_argument(
        "--profile", default="mini", choices=PROFILE_NAMES,
        help="run profile (default: %(default)s)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (as the tests run)")
    parser.add_argument("--seed", type=int, default=0, help="root seed (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rerun even if nothing changed")
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
        help="extra notebook parameter (repeatable); VALUE is a Python literal or plain text",
    )
    parser.add_argument(
        "--cell-timeout", type=int, default=None, metavar="SECONDS",
        help=f"per-cell limit (default: {runner.SMOKE_CELL_TIMEOUT} smoke, {runner.CELL_TIMEOUT} otherwise)",
    )
    parser.add_argument(
        "--notebooks-dir", type=Path, default=None,
        help="folder of notebooks (default: <repo>/notebooks)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the notebooks and their parameters, run nothing"
    )
    parser.add_argument(
        "--heartbeat", type=_seconds, default=DEFAULT_HEARTBEAT, metavar="SECONDS",
        help="when the output is not a terminal (CI logs): a progress line at most every "
        "SECONDS while a notebook runs; 0 disables (default: %(default)g). On a terminal one "
        "line shows the running cell and the elapsed time",
    )
    parser.add_argument(
        "--no-report", action="store_true",
        help="do not rebuild the HTML report of the executed notebooks (<figures>/index.html)",
    )


def _seconds(text: str) -> float:
    """A ``--heartbeat`` value: seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a number of seconds, got {text}")
    return value


def run_command(args: argparse.Namespace) -> int:
    """``lare2 run``: run the notebooks, print the summary, rebuild the report; the exit code.

    :data:`~lare2lib.core.exit_codes.FAILURE` when a notebook failed or the report could not
    be built, :data:`~lare2lib.core.exit_codes.OK` otherwise. The runner and the report are
    looked up at call time (``runner.run_notebooks``), so tests can replace them.
    """
    if args.list:
        available = runner.discover_notebooks(args.notebooks_dir)
        print(_describe_notebooks(runner.resolve_notebooks(args.notebooks, available)))
        return OK
    results = runner.run_notebooks(
        args.notebooks,
        profile=args.profile,
        smoke=args.smoke,
        seed=args.seed,
        params=parse_assignments(args.param),
        force=args.force,
        timeout_per_cell=args.cell_timeout,
        notebooks_dir=args.notebooks_dir,
        heartbeat=args.heartbeat,
    )
    if not results:
        folder = args.notebooks_dir or paths.notebooks_dir()
        print(f"no notebooks matching {runner.NOTEBOOK_GLOB} in {folder}")
        return OK
    print(runner.format_summary(results))
    code = OK if all(result.ok for result in results) else FAILURE
    if not args.no_report:
        code = max(code, _write_report(args.profile, args.smoke))
    return code


# -- the HTML report of the run (lare2lib.pipeline.report) ------------------------------------


def _write_report(profile: str, smoke: bool) -> int:
    """Rebuild the run's ``index.html`` (also after a failure: it shows where the run stopped).

    Returns ``FAILURE``, with the reason on stderr, when it cannot be built; ``OK`` otherwise.
    """
    from lare2lib.pipeline.report import build_report

    try:
        print(f"[lare2 run] report: {build_report(profile, smoke=smoke)}")
    except Exception as exc:  # reported and reflected in the exit code, never swallowed
        print(f"[lare2 run] report not written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return FAILURE
    return OK


def _describe_notebooks(notebooks: Sequence[Path]) -> str:
    blocks = []
    for path in notebooks:
        lines = [path.stem]
        for name, info in runner.notebook_parameters(path).items():
            lines.append(
                f"  {name}: {info['inferred_type_name']} = {info['default']}  # {info['help']}"
            )
        blocks.append("\n".join(lines))
    return "\n".join(blocks) or "(no notebooks)"
