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

Modules: :mod:`~lare2lib.pipeline.locations` (where outputs go), :mod:`~lare2lib.pipeline.stamps`
(change detection), :mod:`~lare2lib.pipeline.execute` (one notebook through papermill) and
:mod:`~lare2lib.pipeline.progress` (live progress). After the notebooks, ``lare2 run``
(:mod:`~lare2lib.pipeline.run_command`, not :func:`run_notebooks`) rebuilds the run's HTML report,
``<figures>/index.html`` (:func:`lare2lib.pipeline.report.build_report`); ``--no-report`` skips it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lare2lib.core import paths
from lare2lib.core.plotting import to_jsonable
from lare2lib.core.profiles import get_profile
from lare2lib.pipeline import stamps
from lare2lib.pipeline.execute import RunResult, execute_notebook
from lare2lib.pipeline.locations import output_dir, run_label
from lare2lib.pipeline.progress import DEFAULT_HEARTBEAT, ProgressPrinter

__all__ = [
    "RunnerError",
    "discover_notebooks",
    "resolve_notebooks",
    "notebook_parameters",
    "run_notebooks",
    "format_summary",
]

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
"""Pipeline notebooks: a two-digit order prefix, an underscore, a name."""

RUNS_LAST = ("07_figures",)
"""Notebooks that summarise all the others (07 redraws every notebook's figures, 08's too), so
they run after every numbered notebook whatever their number."""

STANDARD_PARAMETERS = ("PROFILE", "SMOKE", "SEED", "OUT_DIR")
"""Parameters the runner fills in itself for every notebook that declares them."""

SMOKE_CELL_TIMEOUT = 900
"""Per-cell limit of smoke runs: any cell slower than this on tiny data is a bug."""

CELL_TIMEOUT = 3 * 3600
"""Per-cell limit of real runs (mini on a CPU loads committed weights; ``full`` runs on a GPU)."""

DEFAULT_TQDM_MININTERVAL = "5"
"""Seconds between progress-bar updates in executed notebooks, so outputs stay small."""


class RunnerError(ValueError):
    """An unknown notebook or parameter, with the valid choices in the message."""


# -- finding notebooks and their parameters ---------------------------------------------------


def discover_notebooks(folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """Pipeline notebooks in ``folder`` (default ``<repo>/notebooks``), in numeric order, those
    of :data:`RUNS_LAST` at the end."""
    folder = Path(folder) if folder is not None else paths.notebooks_dir()
    return sorted(folder.glob(NOTEBOOK_GLOB),
                  key=lambda path: (path.stem in RUNS_LAST, int(path.name[:2]), path.name))


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
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    sources = [stamps.cell_source(cell) for cell in tagged]
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
    heartbeat: float = DEFAULT_HEARTBEAT,
) -> list[RunResult]:
    """Execute the chosen notebooks (default: all) in numeric order; stop at the first failure.

    ``timeout_per_cell`` defaults to :data:`SMOKE_CELL_TIMEOUT` or :data:`CELL_TIMEOUT`.
    ``runs_root`` defaults to :func:`lare2lib.core.paths.runs_dir`. Unknown profiles, notebooks or
    parameters raise before anything runs. ``verbose`` prints what happens, with live progress
    of the running notebook (:class:`~lare2lib.pipeline.progress.ProgressPrinter`; on a
    terminal that is not a TTY, a line every ``heartbeat`` seconds, none when 0).
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
    library_hash = stamps.library_sha256()

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
            "notebook_sha256": stamps.notebook_sha256(path),
            "library_sha256": library_hash,
            "profile_hash": profile_config.config_hash(),
            "parameters": to_jsonable(parameters),
            "upstream_metrics": stamps.upstream_metrics(path, available, label, out_root),
        }
        stamp_path = run_dir / f"{path.stem}.stamp.json"
        if not force and stamps.up_to_date(stamp_path, inputs, executed, out_dir):
            results.append(RunResult(path.stem, "skipped", 0.0, executed, out_dir))
            _say(verbose, f"[lare2 run] {path.stem}: unchanged, skipped")
            continue
        _say(verbose, f"[lare2 run] {path.stem}: running ({label}) → {executed}")
        progress = ProgressPrinter(path.stem, heartbeat=heartbeat) if verbose else None
        result = execute_notebook(path, executed, out_dir, parameters, timeout, progress)
        if result.ok:
            stamps.write_stamp(stamp_path, inputs, out_dir)
        else:
            stamp_path.unlink(missing_ok=True)
        results.append(result)
    return results


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

