"""goalrt's modules import each other without cycles, and the layers point one way.

The graph holds the imports a module runs when it is imported: module-level
statements (also inside ``if``, ``try``, ``with`` and class bodies), not
those inside functions nor under ``if TYPE_CHECKING``. ``from a import b``
is an edge to ``a.b`` when that is a module, else to ``a``. The parent
packages Python imports first are not edges (every module would otherwise
reach ``goalrt/__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

# Read from the source tree, not imported: a cycle may make ``import goalrt`` itself fail.
ROOT = Path(__file__).resolve().parents[2] / "goalrt"

# Layers that must never be imported from below (module path prefix -> what it must not import).
FORBIDDEN = {"goalrt.worker": ("goalrt.gdl", "goalrt.cli")}

# The package's parts from the bottom up (docs/architecture.md): each may import only the parts before it.
LAYERS = (
    "errors",
    "durations",
    "tracing",
    "planner",
    "db",
    "log",
    "state",
    "goals",
    "memory",
    "actions",
    "worker",
    "gdl",
    "demo",
    "serve",
    "cli",
)


def modules(root: Path, package: str) -> dict[str, Path]:
    """Return every module of the package under ``root`` by dotted name."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], *, everywhere: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yield the import statements run on import (``everywhere``: every one, functions and TYPE_CHECKING too)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if everywhere or not _is_type_checking(node.test):
                yield from _import_nodes(node.body, everywhere=everywhere)
            yield from _import_nodes(node.orelse, everywhere=everywhere)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_nodes(block, everywhere=everywhere)
        elif isinstance(node, ast.With | ast.ClassDef) or (
            everywhere and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ):
            yield from _import_nodes(node.body, everywhere=everywhere)


def imports(name: str, path: Path, known: dict[str, Path], *, everywhere: bool = False) -> set[str]:
    """Return the modules of ``known`` that module ``name`` (at ``path``) imports."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path)).body, everywhere=everywhere):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        out.update(t for t in targets if t in known and t != name)
    return out


def import_graph(root: Path, package: str, *, everywhere: bool = False) -> dict[str, set[str]]:
    """Return module -> the package's modules it imports."""
    known = modules(root, package)
    return {name: imports(name, path, known, everywhere=everywhere) for name, path in known.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return one cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph is a few hundred modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """Return a shortest cycle through the component's first module (breadth-first within the component)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def test_goalrt_has_no_import_cycle() -> None:
    cycles = find_cycles(import_graph(ROOT, "goalrt"))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_worker_never_imports_gdl_or_the_cli() -> None:
    # Every import counts here, in functions and under TYPE_CHECKING too: GDL and the CLI sit above the worker.
    graph = import_graph(ROOT, "goalrt", everywhere=True)
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for layer, banned in FORBIDDEN.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if any(target == b or target.startswith(b + ".") for b in banned)
    )
    assert not wrong, "\n".join(wrong)


def _layer(module: str) -> int | None:
    part = module.split(".")[1] if "." in module else None
    return LAYERS.index(part) if part in LAYERS else None


def test_each_part_imports_only_the_parts_below_it() -> None:
    graph = import_graph(ROOT, "goalrt", everywhere=True)
    assert {m.split(".")[1] for m in graph if "." in m} <= {*LAYERS, "__main__"}, "a new part needs its place in LAYERS"
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if (low := _layer(module)) is not None and (high := _layer(target)) is not None and high > low
    )
    assert not wrong, "imports against the layers " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_the_check_names_a_cycle_it_is_shown(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.sub import b\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (pkg / "c.py").write_text("from pkg import a\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from . import d\n\ndef f():\n    import pkg.a\n")
    (pkg / "sub" / "d.py").write_text("import pkg.sub.b\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == set()  # under TYPE_CHECKING: not an edge
    assert graph["pkg.sub.b"] == {"pkg.sub.d"}  # inside a function: not an edge
    assert find_cycles(graph) == [["pkg.sub.b", "pkg.sub.d", "pkg.sub.b"]]
    assert import_graph(pkg, "pkg", everywhere=True)["pkg.a"] == {"pkg.c"}
