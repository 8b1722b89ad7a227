"""The package's shape, checked from its source with ``ast`` (nothing is imported).

* no import cycle between lare2lib modules, counting imports inside functions;
* method packages (core, data, models, world, signals, detectors, eval) never import a study
  (``lare2lib.studies``) or the pipeline (``lare2lib.pipeline``): the method does not know who
  studies it;
* no module imports another module's private (``_name``) attribute;
* every module is at most ``MAX_LINES`` long.

``PENDING`` lists what is not there yet, by name: each entry must still be a violation (a test
fails once it is fixed, so the list only shrinks).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lare2lib"
MAX_LINES = 400
METHOD_PACKAGES = ("core", "data", "models", "world", "signals", "detectors", "eval")
APPLICATION_PACKAGES = ("studies", "pipeline")
ENTRY_POINTS = {"lare2lib.__main__"}
"""Modules allowed to import anything: ``python -m lare2lib`` dispatches to the pipeline."""

PENDING: dict[str, set] = {
    "long": set(),
    "cycles": set(),
    "method_imports_application": set(),
    "private_imports": set(),
}
"""Known violations still to fix (kept empty once Architecture v2 is complete)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(importer: str, node: ast.ImportFrom, is_package: bool) -> str:
    """Absolute module of ``from ... import`` (relative imports resolved against ``importer``)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported attribute or None, line)`` of every lare2lib import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names
                      if alias.name.startswith("lare2lib")]
        elif isinstance(node, ast.ImportFrom):
            module = resolve(name, node, path.name == "__init__.py")
            if not module.startswith("lare2lib"):
                continue
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                # `from pkg import sub` imports the module pkg.sub, not an attribute of pkg.
                found.append((submodule, None, node.lineno) if submodule in known
                             else (module, alias.name, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    table = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in table.items():
        for target, _, _ in imports_of(name, path, set(table)):
            while target not in table and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in table and target != name:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components with more than one module are the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [component for component in components if len(component) > 1]


def stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in METHOD_PACKAGES) else None


def long_modules() -> set[str]:
    return {name for name, path in modules().items()
            if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES}


def cycles() -> set[frozenset[str]]:
    return {frozenset(component) for component in strongly_connected(import_graph())}


def method_imports_application() -> set[tuple[str, str]]:
    graph = import_graph()
    return {(name, target) for name, targets in graph.items() for target in targets
            if stage(name) in METHOD_PACKAGES and stage(target) in APPLICATION_PACKAGES
            and name not in ENTRY_POINTS}


def private_imports() -> set[tuple[str, str]]:
    table = modules()
    found = set()
    for name, path in table.items():
        for module, attribute, _ in imports_of(name, path, set(table)):
            if attribute and attribute.startswith("_") and not attribute.startswith("__"):
                found.add((name, f"{module}.{attribute}"))
    return found


def test_the_graph_sees_imports_inside_functions(tmp_path):
    source = "def f():\n    from lare2lib.core import paths\n    import lare2lib.eval.metrics\n"
    (tmp_path / "m.py").write_text(source)
    found = {target for target, _, _ in imports_of("lare2lib.x.m", tmp_path / "m.py",
                                                   {"lare2lib.core.paths"})}
    assert found == {"lare2lib.core.paths", "lare2lib.eval.metrics"}


def test_tarjan_finds_a_three_module_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [{"a", "b", "c"}]


def test_every_stage_is_a_sub_package():
    top_level = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert not top_level, f"modules outside a stage sub-package: {sorted(top_level)}"
    for stage_name in METHOD_PACKAGES + APPLICATION_PACKAGES:
        assert (PACKAGE / stage_name / "__init__.py").is_file(), stage_name


def test_no_import_cycle():
    found = cycles() - PENDING["cycles"]
    assert not found, "import cycles (imports inside functions count): " + "; ".join(
        " <-> ".join(sorted(component)) for component in found)


def test_method_modules_never_import_studies_or_the_pipeline():
    found = method_imports_application() - PENDING["method_imports_application"]
    assert not found, "method → study/pipeline imports: " + ", ".join(
        f"{a} imports {b}" for a, b in sorted(found))


def test_no_private_name_crosses_a_module_boundary():
    found = private_imports() - PENDING["private_imports"]
    assert not found, "private names imported from another module (make them public): " + \
        ", ".join(f"{a} ← {b}" for a, b in sorted(found))


def test_every_module_is_short():
    found = long_modules() - PENDING["long"]
    assert not found, f"modules over {MAX_LINES} lines (split them by responsibility): {sorted(found)}"


@pytest.mark.parametrize("kind", sorted(PENDING))
def test_pending_entries_are_still_violations(kind):
    current = {"long": long_modules, "cycles": cycles,
               "method_imports_application": method_imports_application,
               "private_imports": private_imports}[kind]()
    fixed = PENDING[kind] - current
    assert not fixed, f"fixed, remove from PENDING[{kind!r}]: {sorted(map(str, fixed))}"
