"""The package's layers, read from the source with ``ast``: no import cycle, no upward import.

Every ``import`` counts, at module level or inside a function (a function-level import is
still a dependency, only a later one); imports under ``if TYPE_CHECKING:`` do not, since
they never run. docs/ARCHITECTURE.md describes the layers; this list is their one
definition. A module belongs to the longest prefix that names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rqjobs"

#: lowest first; a module may import from its own layer and the ones before it
LAYERS: list[list[str]] = [
    [
        "rqjobs.exceptions",
        "rqjobs.defaults",
        "rqjobs.keys",
        "rqjobs.hostpid",
        "rqjobs.status",
        "rqjobs.timeparse",
        "rqjobs.private",
        "rqjobs.redact",
        # the dashboard's search language: parsing only, the store runs it
        "rqjobs.search",
    ],
    # a schedule's spec is part of the config (validated when the file is read)
    ["rqjobs.config", "rqjobs.schedules.spec"],
    # the registry is a plain lookup table the broker's job class reads; the decorator fills it
    ["rqjobs.store", "rqjobs.migrations", "rqjobs.broker", "rqjobs.tasks.registry"],
    ["rqjobs.runtime"],
    ["rqjobs.tasks"],
    [
        "rqjobs.checks",
        "rqjobs.submit",
        "rqjobs.dependencies",
        "rqjobs.api",
        "rqjobs.bulk",
        "rqjobs.queries",
        "rqjobs.stats",
        "rqjobs.follow",
        # paused queues and concurrency limits: what the operator sets, what the worker reads
        "rqjobs.flow",
        "rqjobs.worker.process",
        "rqjobs.worker.liveness",
        "rqjobs.worker.listing",
    ],
    # the schedule ticker and operator actions enqueue through the api; the worker runs the ticker
    ["rqjobs.reconcile", "rqjobs.schedules"],
    # rq_worker, health, horse_exit (a horse that exited 0 without an outcome), supervisor, pool
    ["rqjobs.worker"],
    ["rqjobs.web"],
    ["rqjobs.cli", "rqjobs.__main__", "rqjobs"],
]

#: SQL is built in the store only (and in the schema migrations)
SQL_PACKAGES = ("sqlalchemy", "alembic")
SQL_HOMES = ("rqjobs.store", "rqjobs.migrations")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str, known: frozenset[str] = frozenset()) -> set[str]:
    """Every module ``module`` imports when it runs (absolute names); ``known``: rqjobs' modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from rqjobs.store import schema` names the submodule rqjobs.store.schema;
            # `from rqjobs.store.models import Task` names rqjobs.store.models
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(submodules or {base})
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = frozenset(paths)
    return {
        module: {name for name in _imports(path, module, known) if name in paths and name != module}
        for module, path in paths.items()
    }


def _layer(module: str) -> int:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best[0]


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = walk(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import rqjobs.cli\n"
        "def f():\n    from rqjobs.api import enqueue_task\n"
    )
    found = _imports(source, "m")
    assert "rqjobs.api" in found and "rqjobs.cli" not in found


def test_only_the_store_builds_sql() -> None:
    offenders = sorted(
        f"{module} imports {name}"
        for module, path in ((_module_name(p), p) for p in PACKAGE.rglob("*.py"))
        if not module.startswith(SQL_HOMES)
        for name in _imports(path, module)
        if name.split(".")[0] in SQL_PACKAGES
    )
    assert offenders == []


def test_no_module_over_500_lines() -> None:
    long = {_module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
