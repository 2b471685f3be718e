"""The package's import graph: the modules that other modules lean on (vendor
differences, options, rules, checks) must not be in an import cycle, lazy imports
inside functions included; only ``if TYPE_CHECKING:`` imports are left out."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_tasks_db"

#: Modules no cycle may pass through.
OUTSIDE_ANY_CYCLE = [
    "db",
    "conf",
    "validation",
    "backoff",
    "framework",
    "checks",
    "code_schedules",
    "routers",
    "bulk",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports at run time."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for statement in branch.body
        for node in ast.walk(statement)
    }
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package[: len(package) - (node.level - 1)] + (node.module or "").split(".")
        target = ".".join(part for part in base if part)
        for alias in node.names:
            name = f"{target}.{alias.name}".strip(".")
            found.add(name if name in modules else target)
    return found & modules


def graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) - {module_name(p)} for p in paths}


def reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(edges[start])
    while todo:
        current = todo.pop()
        if current == goal:
            return True
        if current not in seen:
            seen.add(current)
            todo.extend(edges.get(current, ()))
    return False


def test_the_graph_sees_lazy_imports() -> None:
    edges = graph()
    assert "transitions" in edges["models"]  # Task.cancel() imports it inside the method
    assert "stopping" not in edges["db"]  # under TYPE_CHECKING only


@pytest.mark.parametrize("module", OUTSIDE_ANY_CYCLE)
def test_no_import_cycle_passes_through(module: str) -> None:
    edges = graph()
    assert not reaches(edges, module, module), f"{module} imports itself through others"
