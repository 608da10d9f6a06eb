"""PDDL text as s-expressions: nested lists of atoms, each with its line and column, errors as FILE:LINE:COL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from goalrt.errors import PlanningError

if TYPE_CHECKING:
    from lark import Lark

_GRAMMAR = Path(__file__).with_name("pddl.lark")
# The tokens of pddl.lark (its WS is [ \t\f\r\n]); anything else is left to lark, which names the error.
_TOKEN = re.compile(r"([ \t\f\r]+)|(\n)|(;[^\n]*)|(\()|(\))|([^\s();]+)")


@dataclass(frozen=True, slots=True)
class Atom:
    """A name, ``?variable``, ``:keyword``, ``-`` or number, lowercased (PDDL is case-insensitive)."""

    text: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class List:
    """A parenthesized list; ``line``/``column`` are those of its ``(``."""

    items: tuple[Atom | List, ...]
    line: int
    column: int


Item = Atom | List


class Source:
    """One PDDL file: its name for messages and its top-level list."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.root = _parse(name, text)

    def error(self, at: Item | None, message: str) -> PlanningError:
        """Return the one-line error ``FILE:LINE:COL: message`` at ``at`` (the file's start when None)."""
        line, column = (1, 1) if at is None else (at.line, at.column)
        return PlanningError(f"{self.name}:{line}:{column}: {message}")


@cache
def _parser() -> Lark:
    from lark import Lark

    return Lark(_GRAMMAR.read_text(encoding="utf-8"), parser="lalr", lexer="basic", maybe_placeholders=False)


def _parse(name: str, text: str) -> List:
    """Pair the parentheses of a well-formed file in one pass; let the lark grammar read (and reject) any other."""
    return _fast(text) or _parse_lark(name, text)


def _fast(text: str) -> List | None:
    """The file's one top-level list as the grammar reads it, or None if it is not exactly one list."""
    stack: list[tuple[list[Item], int, int]] = []
    root: List | None = None
    line, start, pos, end = 1, 0, 0, len(text)
    match = _TOKEN.match
    while pos < end:
        token = match(text, pos)
        if token is None:
            return None
        kind = token.lastindex
        if kind == 2:
            line, start = line + 1, token.end()
        elif kind == 4:
            if root is not None:
                return None
            stack.append(([], line, pos - start + 1))
        elif kind == 5:
            if not stack:
                return None
            items, at_line, at_column = stack.pop()
            done = List(tuple(items), at_line, at_column)
            if stack:
                stack[-1][0].append(done)
            else:
                root = done
        elif kind == 6:
            if not stack:
                return None
            stack[-1][0].append(Atom(token.group().lower(), line, pos - start + 1))
        pos = token.end()
    return root if not stack else None


def _parse_lark(name: str, text: str) -> List:
    from lark import Token, Tree
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    def build(tree: Tree[Token]) -> List:
        first = tree.children[0]
        assert isinstance(first, Token)
        items: list[Item] = []
        for child in tree.children[1:-1]:
            if isinstance(child, Tree):
                items.append(build(child))
            else:
                items.append(Atom(child.value.lower(), child.line or 0, child.column or 0))
        return List(tuple(items), first.line or 0, first.column or 0)

    try:
        tree = _parser().parse(text)
    except UnexpectedToken as exc:
        token = exc.token
        if token.type == "$END":
            raise _unclosed(name, text) from None
        what = "')'" if token.type == "RPAR" else repr(str(token))
        expected = "the end of the file" if exc.expected == {"$END"} else "'('"
        raise PlanningError(f"{name}:{exc.line}:{exc.column}: unexpected {what}; expected {expected}") from None
    except UnexpectedCharacters as exc:  # pragma: no cover - ATOM takes every character but ( ) ; and spaces
        raise PlanningError(f"{name}:{exc.line}:{exc.column}: unexpected character {exc.char!r}") from None
    except UnexpectedInput as exc:
        raise PlanningError(f"{name}:{exc.line}:{exc.column}: {exc}") from None
    body = tree.children[0]
    assert isinstance(body, Tree)
    return build(body)


def _unclosed(name: str, text: str) -> PlanningError:
    """The error for a file that ends inside a list: name the ``(`` left open (or say the file is empty)."""
    opened: list[tuple[int, int]] = []
    for token in _parser().lex(text):
        if token.type == "LPAR":
            opened.append((token.line or 0, token.column or 0))
        elif token.type == "RPAR" and opened:
            opened.pop()
    if not opened:
        return PlanningError(f"{name}:1:1: expected '(': the file holds no PDDL")
    line, column = opened[-1]
    end = text.count("\n") + 1
    return PlanningError(f"{name}:{line}:{column}: this '(' is never closed; expected ')' before the end (line {end})")
