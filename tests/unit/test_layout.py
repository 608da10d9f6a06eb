"""The floor plan holds: small modules, and no public name that nothing uses.

A public name (no leading underscore) at the top of a goalrt module is used
when another goalrt module, the package's ``__all__`` or the module itself
(beyond its definition) or an alembic revision names it, or when it is decorated (a click command, a
registered handler: the decorator is its use). Anything else is dead code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "goalrt"
MAX_LINES = 500


def modules() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def public_definitions(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not node.decorator_list:
                names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


def test_no_module_is_over_500_lines() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): text.count("\n") for p, text in modules().items()}
    over = {p: n for p, n in long.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by job): {over}"


def test_every_public_name_is_used() -> None:
    texts = modules()
    # The alembic revisions ship with the package and call into it.
    users = {**texts, **{p: p.read_text(encoding="utf-8") for p in (REPO / "migrations").rglob("*.py")}}
    unused = []
    for path, text in texts.items():
        for name in public_definitions(ast.parse(text)):
            pattern = re.compile(rf"\b{re.escape(name)}\b")
            if len(pattern.findall(text)) > 1:
                continue
            if any(pattern.search(other) for p, other in users.items() if p != path):
                continue
            unused.append(f"{path.relative_to(PACKAGE.parent)}:{name}")
    assert not unused, f"public names nothing uses (remove them, or use them): {unused}"


def test_no_asyncio_wait_for() -> None:
    """``asyncio.wait_for`` on Python 3.11 drops a cancellation that arrives as the awaited thing ends.

    The worker's listener lost its cancel that way when its connection was
    terminated at the moment the worker stopped, and reconnected forever (the
    worker's stop hung). ``asyncio.timeout`` keeps the cancellation.
    """
    users = [str(p.relative_to(REPO)) for p, text in modules().items() if re.search(r"\bwait_for\(", text)]
    assert not users, f"use `async with asyncio.timeout(...)` instead of asyncio.wait_for in {users}"


def test_no_asyncio_wait_for_in_tests_or_benches() -> None:
    """The same in the tests and benches (which stop workers and cancel their own tasks)."""
    here = Path(__file__).resolve()
    files = [p for d in ("tests", "bench") for p in sorted((REPO / d).rglob("*.py")) if p.resolve() != here]
    users = [str(p.relative_to(REPO)) for p in files if "asyncio.wait_for(" in p.read_text(encoding="utf-8")]
    assert not users, f"use `async with asyncio.timeout(...)` instead of asyncio.wait_for in {users}"
