"""Compile GDL conditions and terms into the planner's, checking the parameters and wildcards they use.

A term that is exactly ``{p}`` is the parameter's value (``Var``); any other
name is a path, whose holes must be parameters in scope. In a policy each
``*`` segment becomes a variable of its own (``orders.*.amount`` reads
``orders.{_1}.amount``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from goalrt.errors import PlanningError
from goalrt.gdl import ast
from goalrt.planner import FALSE, TRUE, And, Compare, Condition, Const, Exists, In, Not, Or, Path, Term, Var

_HOLE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass
class Scope:
    """What a condition may refer to: parameters, and in a policy the wildcards it introduces."""

    params: Mapping[str, str]
    wildcards: dict[str, str] | None = None
    no_params: str = "no parameters"


class Expressions:
    """Compile conditions and terms, recording each problem through ``fail`` (and going on)."""

    def __init__(self, fail: Callable[[ast.Pos, str], None]) -> None:
        self.fail = fail

    def path(self, name: ast.Name, scope: Scope) -> Path:
        """Return the path a name stands for, its holes checked and a policy's ``*`` segments made variables."""
        text = name.text
        for match in _HOLE.finditer(text):
            if match.group(1) not in scope.params:
                self.fail(
                    _shift(name.pos, match.start()),
                    f"unbound variable {{{match.group(1)}}} in {text} ({_in_words(scope)})",
                )
        if "*" in text.split("."):
            if scope.wildcards is None:
                self.fail(name.pos, f"{text}: '*' is allowed only in policies")
                return Path("invalid")
            else:
                segments = text.split(".")
                for i, segment in enumerate(segments):
                    if segment == "*":
                        prefix = ".".join(segments[:i])
                        if not prefix or "*" in prefix.split(".") or "{" in prefix:
                            self.fail(name.pos, f"{text}: '*' needs a plain prefix (e.g. orders.*.amount)")
                            return Path("invalid")
                        var = scope.wildcards.setdefault(prefix, f"_{len(scope.wildcards) + 1}")
                        segments[i] = "{" + var + "}"
                text = ".".join(segments)
        try:
            return Path(text)
        except PlanningError as exc:
            self.fail(name.pos, str(exc))
            return Path("invalid")

    def term(self, term: ast.Term, scope: Scope) -> Term:
        """Return the term: a constant, a parameter (exactly ``{p}``) or a path."""
        if isinstance(term, ast.Literal):
            return self.const(term)
        var = _HOLE.fullmatch(term.text)
        if var is not None:
            if var.group(1) not in scope.params:
                self.fail(term.pos, f"unbound variable {term.text} ({_in_words(scope)})")
            return Var(var.group(1))
        return self.path(term, scope)

    def const(self, literal: ast.Literal) -> Const:
        """Return the constant, recording a number out of range."""
        try:
            return Const(literal.value)
        except PlanningError:
            self.fail(literal.pos, f"number {literal.value!r} is out of range")
            return Const(0)

    def cond(self, node: ast.Cond, scope: Scope) -> Condition:
        """Return the planner condition a GDL condition stands for (``TRUE`` where it cannot be built)."""
        try:
            return self._cond_unchecked(node, scope)
        except PlanningError as exc:
            self.fail(node.pos, str(exc))
            return TRUE

    def _cond_unchecked(self, node: ast.Cond, scope: Scope) -> Condition:
        if isinstance(node, ast.Compare):
            return Compare(node.op, self.term(node.left, scope), self.term(node.right, scope))
        if isinstance(node, ast.Member):
            options = []
            for option in node.options:
                if isinstance(option, ast.Name) and _HOLE.fullmatch(option.text) is None:
                    self.fail(option.pos, f"'in' lists constants or parameters, not a path ({option.text})")
                    continue
                options.append(self.term(option, scope))
            return In(self.term(node.left, scope), options)
        if isinstance(node, ast.ExistsCond):
            return Exists(self.path(node.path, scope))
        if isinstance(node, ast.AllOf):
            return And(*(self.cond(p, scope) for p in node.parts))
        if isinstance(node, ast.AnyOf):
            return Or(*(self.cond(p, scope) for p in node.parts))
        if isinstance(node, ast.Negation):
            return Not(self.cond(node.arg, scope))
        return TRUE if node.value else FALSE

    def value(self, term: ast.Term, scope: Scope, where: str) -> Const | Var:
        """Return an effect's value: a constant or a parameter, never a path."""
        if isinstance(term, ast.Name) and _HOLE.fullmatch(term.text) is None:
            self.fail(term.pos, f"{where}: the value must be a constant or a parameter ({{name}}), not a path")
            return Const(None)
        value = self.term(term, scope)
        assert isinstance(value, Const | Var)
        return value


def _in_words(scope: Scope) -> str:
    """Return the parameters in scope in words, for messages about an unbound variable."""
    if not scope.params:
        return scope.no_params
    return "parameters: " + ", ".join(scope.params)


def _shift(pos: ast.Pos, offset: int) -> ast.Pos:
    return ast.Pos(pos.file, pos.line, pos.column + offset)


__all__ = ["Expressions", "Scope"]
