"""Problems found in GDL sources, and how they are shown: ``file:line:column: message``, the line, a caret."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from goalrt.gdl.ast import Pos


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong, at a place in a source file."""

    pos: Pos
    message: str


# The most of a source line shown under a problem.
_SHOWN = 100


def render(problem: Problem, sources: Mapping[str, str]) -> str:
    """Return the problem as ``file:line:column: message`` followed by its source line and a caret under the column."""
    head = f"{problem.pos}: {problem.message}"
    text = sources.get(problem.pos.file)
    if text is None:
        return head
    # split, not splitlines: the end of a file that ends with a newline is an empty last line.
    lines = text.split("\n")
    if not 1 <= problem.pos.line <= len(lines):
        return head
    # Tabs become one space so the caret lines up whatever the tab width.
    line = lines[problem.pos.line - 1].rstrip("\r").replace("\t", " ")
    column = max(problem.pos.column, 1) - 1
    if len(line) > _SHOWN:
        # A 5000-character line is shown as the window around the column, never in full.
        start = max(0, min(column - _SHOWN // 4, len(line) - _SHOWN))
        line = ("…" if start else "") + line[start : start + _SHOWN] + ("…" if start + _SHOWN < len(line) else "")
        column = column - start + (1 if start else 0)
    return f"{head}\n    {line}\n    {' ' * column}^"


def render_all(problems: Iterable[Problem], sources: Mapping[str, str]) -> list[str]:
    """Return every problem rendered, sorted by file, line, column, without duplicates."""
    return [render(p, sources) for p in sorted(set(problems))]
