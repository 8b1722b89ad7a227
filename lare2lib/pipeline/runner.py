"""Run the notebooks in numeric order through papermill, skipping those whose inputs are unchanged.

The notebooks *are* the pipeline: ``notebooks/NN_name.ipynb`` run in ``NN`` order, each writing
figures and ``metrics.json`` to its output folder and data to :func:`lare2lib.core.paths.data_dir`
for the ones after it. Each run injects the standard parameters

``PROFILE``  profile name (``mini``, ``smoke`` or ``full``)
``SMOKE``    tiny budgets (tests, CI)
``SEED``     root seed
``OUT_DIR``  the notebook's output folder

plus any ``-p NAME=VALUE`` the user gave, checked against the parameters the notebook declares
(``papermill --help-notebook`` shows the same list). Executed copies go to
``runs/<label>/<notebook>.ipynb``, outside the source tree.

A notebook is skipped when a stamp beside its executed copy shows that nothing it depends on
changed: its cells, the library sources (and the committed weights manifest), its parameters,
the ``metrics.json`` of every notebook before it, and its own ``metrics.json`` still being the
one it wrote. ``force=True`` reruns regardless.

After the notebooks, ``lare2 run`` (not :func:`run_notebooks`) rebuilds the run's HTML report,
``<figures>/index.html`` (:func:`lare2lib.pipeline.report.build_report`); ``--no-report`` skips it.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lare2lib.core import paths
from lare2lib.core.plotting import METRICS_FILENAME, to_jsonable
from lare2lib.core.profiles import PROFILE_NAMES, get_profile
from lare2lib.pipeline.locations import output_dir, run_label

__all__ = [
    "RunResult",
    "RunnerError",
    "discover_notebooks",
    "resolve_notebooks",
    "notebook_parameters",
    "run_notebooks",
    "format_summary",
]

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
"""Pipeline notebooks: a two-digit order prefix, an underscore, a name."""

STANDARD_PARAMETERS = ("PROFILE", "SMOKE", "SEED", "OUT_DIR")
"""Parameters the runner fills in itself for every notebook that declares them."""

KERNEL_NAME = "python3"
"""The kernel of the Python running the runner (ipykernel maps ``python3`` to sys.executable)."""

START_TIMEOUT = 180
"""Seconds to wait for a kernel to start; generous because CI machines may be busy."""

SMOKE_CELL_TIMEOUT = 900
"""Per-cell limit of smoke runs: any cell slower than this on tiny data is a bug."""

CELL_TIMEOUT = 3 * 3600
"""Per-cell limit of real runs (mini on a CPU loads committed weights; ``full`` runs on a GPU)."""

DEFAULT_TQDM_MININTERVAL = "5"
"""Seconds between progress-bar updates in executed notebooks, so outputs stay small."""


class RunnerError(ValueError):
    """An unknown notebook or parameter, with the valid choices in the message."""


@dataclass(frozen=True)
class RunResult:
    """What happened to one notebook."""

    notebook: str
    """Notebook stem, e.g. ``01_lare``."""
    status: str
    """``ran``; ``skipped`` (inputs unchanged); ``failed``; ``blocked`` (an earlier one failed)."""
    seconds: float
    """Wall time of the execution (0 when skipped or blocked)."""
    executed: Path
    """The executed copy (``runs/<label>/<stem>.ipynb``); holds the error when failed."""
    out_dir: Path
    """Where the notebook wrote its figures and ``metrics.json``."""
    error: str | None = None
    """One-line reason when ``failed``."""

    @property
    def ok(self) -> bool:
        return self.status in ("ran", "skipped")


# -- finding notebooks and their parameters ---------------------------------------------------


def discover_notebooks(folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """Pipeline notebooks in ``folder`` (default ``<repo>/notebooks``), in numeric order."""
    folder = Path(folder) if folder is not None else paths.notebooks_dir()
    return sorted(folder.glob(NOTEBOOK_GLOB), key=lambda path: (int(path.name[:2]), path.name))


def resolve_notebooks(names: Iterable[str] | None, available: Sequence[Path]) -> list[Path]:
    """The notebooks meant by ``names``, in numeric order.

    A name may be the number (``01``), the stem (``01_lare``) or the file name
    (``01_lare.ipynb`` or its ``.py`` twin). ``None`` or no names means all of them. The
    order of ``names`` does not matter: the pipeline order does.
    """
    names = list(names or [])
    if not names:
        return list(available)
    chosen = set()
    for name in names:
        matches = [path for path in available if _matches(name, path)]
        if len(matches) != 1:
            problem = "unknown" if not matches else "ambiguous"
            raise RunnerError(
                f"{problem} notebook '{name}'; valid notebooks: "
                f"{', '.join(path.stem for path in available) or '(none found)'}"
            )
        chosen.add(matches[0])
    return [path for path in available if path in chosen]


def _matches(name: str, path: Path) -> bool:
    key = Path(name).name
    key = re.sub(r"\.(ipynb|py)$", "", key)
    return key == path.stem or key == path.stem[:2]


def notebook_parameters(notebook: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The notebook's ``parameters`` cell as papermill reads it: name → type, default, help.

    papermill silently drops a line it cannot parse (it logs a warning); such a parameter
    would then never be injected, so it is an error here.
    """
    import papermill

    unparseable = _unparseable_parameter_lines(Path(notebook))
    if unparseable:
        raise RunnerError(
            f"notebook {notebook}: papermill cannot parse parameter line(s) {unparseable}: "
            f"a line may hold only one '=' (keep '=' out of the help comment)"
        )
    try:
        return papermill.inspect_notebook(str(notebook))
    except ValueError as exc:
        if "kernel name" not in str(exc):
            raise
        raise RunnerError(
            f"notebook {notebook} has no kernelspec; add one with "
            f"`jupytext --set-kernel python3 {notebook}`"
        ) from exc


def _unparseable_parameter_lines(notebook: Path) -> list[str]:
    """Lines of the ``parameters`` cell with more than one ``=``, which papermill skips."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    sources = [_source(c) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    lines = (line.strip() for source in sources for line in source.splitlines())
    return [line for line in lines if not line.startswith("#") and line.count("=") > 1]


def _validate_parameters(
    notebooks: Sequence[Path], extra: Mapping[str, Any]
) -> dict[Path, dict[str, dict[str, Any]]]:
    """Declared parameters per notebook; every extra name must be declared by one of them."""
    declared = {path: notebook_parameters(path) for path in notebooks}
    for name, value in extra.items():
        owners = [path for path in notebooks if name in declared[path]]
        if not owners:
            valid = sorted({param for params in declared.values() for param in params})
            stems = ", ".join(path.stem for path in notebooks)
            raise RunnerError(
                f"unknown parameter '{name}' for notebook(s) {stems}; "
                f"valid parameters: {', '.join(valid)}"
            )
        for path in owners:
            _check_type(path.stem, name, value, declared[path][name]["inferred_type_name"])
    return declared


_SIMPLE_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_type(notebook: str, name: str, value: Any, type_name: str) -> None:
    expected = _SIMPLE_TYPES.get(type_name)
    mismatched = expected and (
        not isinstance(value, expected) or (type_name != "bool" and isinstance(value, bool))
    )
    if mismatched:
        raise RunnerError(
            f"parameter '{name}' of {notebook} expects {type_name}, "
            f"got {value!r} ({type(value).__name__})"
        )


# -- change detection ---------------------------------------------------------------------------


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str | None:
    return _sha256_bytes(path.read_bytes()) if path.is_file() else None


def _notebook_sha256(path: Path) -> str:
    """Hash of the cells' types and sources: outputs saved by JupyterLab do not count."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = [(cell["cell_type"], _source(cell)) for cell in notebook.get("cells", [])]
    return _sha256_bytes(json.dumps(cells).encode())


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def library_sha256() -> str:
    """Hash of every ``lare2lib`` source file and the committed mini weights manifest."""
    package = paths.package_dir()
    files = sorted(package.rglob("*.py"))
    manifest = paths.weights_dir() / "mini" / "manifest.json"
    if manifest.is_file():
        files.append(manifest)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- running ------------------------------------------------------------------------------------


def run_notebooks(
    names: Iterable[str] | None = None,
    profile: str = "mini",
    smoke: bool = False,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    force: bool = False,
    timeout_per_cell: int | None = None,
    out_root: str | os.PathLike[str] | None = None,
    *,
    notebooks_dir: str | os.PathLike[str] | None = None,
    runs_root: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> list[RunResult]:
    """Execute the chosen notebooks (default: all) in numeric order; stop at the first failure.

    ``timeout_per_cell`` defaults to :data:`SMOKE_CELL_TIMEOUT` or :data:`CELL_TIMEOUT`.
    ``runs_root`` defaults to :func:`lare2lib.core.paths.runs_dir`. Unknown profiles, notebooks or
    parameters raise before anything runs.
    """
    profile_config = get_profile(profile, smoke=smoke, seed=seed)  # validates the name
    available = discover_notebooks(notebooks_dir)
    selected = resolve_notebooks(names, available)
    extra = dict(params or {})
    declared = _validate_parameters(selected, extra)
    label = run_label(profile, smoke)
    run_dir = Path(runs_root if runs_root is not None else paths.runs_dir()) / label
    timeout = timeout_per_cell or (SMOKE_CELL_TIMEOUT if smoke else CELL_TIMEOUT)
    os.environ.setdefault("TQDM_MININTERVAL", DEFAULT_TQDM_MININTERVAL)
    library_hash = library_sha256()

    results: list[RunResult] = []
    for path in selected:
        out_dir = output_dir(path.stem, label, out_root)
        executed = run_dir / f"{path.stem}.ipynb"
        if results and not results[-1].ok:
            results.append(RunResult(path.stem, "blocked", 0.0, executed, out_dir))
            continue
        standard = {"PROFILE": profile, "SMOKE": smoke, "SEED": seed, "OUT_DIR": str(out_dir)}
        parameters = {
            name: value for name, value in {**standard, **extra}.items() if name in declared[path]
        }
        inputs = {
            "notebook_sha256": _notebook_sha256(path),
            "library_sha256": library_hash,
            "profile_hash": profile_config.config_hash(),
            "parameters": to_jsonable(parameters),
            "upstream_metrics": _upstream_metrics(path, available, label, out_root),
        }
        stamp_path = run_dir / f"{path.stem}.stamp.json"
        if not force and _up_to_date(stamp_path, inputs, executed, out_dir):
            results.append(RunResult(path.stem, "skipped", 0.0, executed, out_dir))
            _say(verbose, f"[lare2 run] {path.stem}: unchanged, skipped")
            continue
        _say(verbose, f"[lare2 run] {path.stem}: running ({label}) → {executed}")
        result = _execute(path, executed, out_dir, parameters, timeout)
        if result.ok:
            stamp = {"inputs": inputs, "metrics_sha256": _sha256_file(out_dir / METRICS_FILENAME)}
            _write_json(stamp_path, stamp)
        else:
            stamp_path.unlink(missing_ok=True)
        results.append(result)
    return results


def _upstream_metrics(
    path: Path, available: Sequence[Path], label: str, out_root: Any
) -> dict[str, str | None]:
    """Hash of each earlier notebook's ``metrics.json`` (``None`` when it has none yet)."""
    earlier = available[: available.index(path)]
    return {
        other.stem: _sha256_file(output_dir(other.stem, label, out_root) / METRICS_FILENAME)
        for other in earlier
    }


def _up_to_date(stamp_path: Path, inputs: Mapping[str, Any], executed: Path, out_dir: Path) -> bool:
    stamp = _read_json(stamp_path)
    return (
        stamp is not None
        and stamp.get("inputs") == json.loads(json.dumps(inputs))
        and executed.is_file()
        and stamp.get("metrics_sha256") == _sha256_file(out_dir / METRICS_FILENAME)
    )


def _execute(
    path: Path, executed: Path, out_dir: Path, parameters: Mapping[str, Any], timeout: int
) -> RunResult:
    import papermill

    executed.parent.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(path),
            str(executed),
            parameters=dict(parameters),
            kernel_name=KERNEL_NAME,
            start_timeout=START_TIMEOUT,
            execution_timeout=timeout,
            cwd=str(paths.repo_root()),
            progress_bar=False,
        )
    except Exception as exc:  # any failure of the notebook is reported, never swallowed
        error = _describe_failure(exc)
    seconds = time.perf_counter() - start
    status = "failed" if error else "ran"
    return RunResult(path.stem, status, seconds, executed, out_dir, error)


def _describe_failure(exc: Exception) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}"


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(message, flush=True)


def format_summary(results: Sequence[RunResult]) -> str:
    """A plain-text table: notebook, status, seconds (and the error of a failed one)."""
    width = max([len("notebook"), *(len(result.notebook) for result in results)])
    lines = [f"{'notebook':<{width}}  {'status':<7}  {'seconds':>8}"]
    for result in results:
        line = f"{result.notebook:<{width}}  {result.status:<7}  {result.seconds:>8.1f}"
        if result.error:
            line += f"  {result.error}  (see {result.executed})"
        lines.append(line)
    return "\n".join(lines)


# -- `lare2 run` --------------------------------------------------------------------------------


def parse_assignments(assignments: Iterable[str]) -> dict[str, Any]:
    """``["EPOCHS=3", "NAME=abc"]`` → ``{"EPOCHS": 3, "NAME": "abc"}``.

    A value is read as a Python literal when it is one, else kept as text.
    """
    parsed = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise RunnerError(f"parameter '{item}' is not of the form NAME=VALUE")
        try:
            parsed[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed[name] = text
    return parsed


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
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
        help=f"per-cell limit (default: {SMOKE_CELL_TIMEOUT} smoke, {CELL_TIMEOUT} otherwise)",
    )
    parser.add_argument(
        "--notebooks-dir", type=Path, default=None,
        help="folder of notebooks (default: <repo>/notebooks)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the notebooks and their parameters, run nothing"
    )
    parser.add_argument(
        "--no-report", action="store_true",
        help="do not rebuild the HTML report of the executed notebooks (<figures>/index.html)",
    )


def run_command(args: argparse.Namespace) -> int:
    if args.list:
        available = discover_notebooks(args.notebooks_dir)
        print(_describe_notebooks(resolve_notebooks(args.notebooks, available)))
        return 0
    results = run_notebooks(
        args.notebooks,
        profile=args.profile,
        smoke=args.smoke,
        seed=args.seed,
        params=parse_assignments(args.param),
        force=args.force,
        timeout_per_cell=args.cell_timeout,
        notebooks_dir=args.notebooks_dir,
    )
    if not results:
        folder = args.notebooks_dir or paths.notebooks_dir()
        print(f"no notebooks matching {NOTEBOOK_GLOB} in {folder}")
        return 0
    print(format_summary(results))
    code = 0 if all(result.ok for result in results) else 1
    if not args.no_report:
        code = max(code, _write_report(args.profile, args.smoke))
    return code


# -- the HTML report of the run (lare2lib.pipeline.report) -----------------------------------------------


def _write_report(profile: str, smoke: bool) -> int:
    """Rebuild the run's ``index.html`` (also after a failure: it shows where the run stopped).

    Returns 1, with the reason on stderr, when it cannot be built; 0 otherwise.
    """
    import sys

    from lare2lib.pipeline.report import build_report

    try:
        print(f"[lare2 run] report: {build_report(profile, smoke=smoke)}")
    except Exception as exc:  # reported and reflected in the exit code, never swallowed
        print(f"[lare2 run] report not written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _describe_notebooks(notebooks: Sequence[Path]) -> str:
    blocks = []
    for path in notebooks:
        lines = [path.stem]
        for name, info in notebook_parameters(path).items():
            lines.append(
                f"  {name}: {info['inferred_type_name']} = {info['default']}  # {info['help']}"
            )
        blocks.append("\n".join(lines))
    return "\n".join(blocks) or "(no notebooks)"
