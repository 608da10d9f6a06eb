"""Decide that a condition can never hold, so the compiler can refuse a policy (or a goal) that is always false.

The check is sound, not complete: ``never_holds`` answers True only when no
state makes the condition true, and False when it cannot tell. The condition
is put in negation normal form and expanded into a disjunction of
conjunctions (at most 256 of them; beyond that it gives up). A
conjunction is impossible when a literal between constants is false or when
the literals that read one path alone admit no value for it. For one path the
literals only compare with constants, so finitely many candidate values decide
it exactly: absent, null, true, false, every constant, the midpoints between
neighbouring numbers and beyond the extremes, and each string followed by
``\\x00`` (the least string above it). Literals over two paths are ignored.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Final

from goalrt.errors import PlanningError
from goalrt.planner.conditions import And, Compare, Condition, Const, Exists, In, Not, Or, Path, Term, Var, bind
from goalrt.planner.semantics import holds
from goalrt.planner.values import Scalar

_MAX_DISJUNCTS: Final = 256
_ABSENT: Final = object()


class _TooBig(Exception):
    pass


def never_holds(condition: Condition) -> bool:
    """Return True if no state makes ``condition`` (without parameters) true."""
    terms = list(_terms(condition))
    if any(isinstance(t, Var) for t in terms):
        return False
    # Each path hole ({o}) stands for one key, named after itself: distinct holes
    # may be the same key in a real state, which only adds constraints, so an
    # impossibility found with distinct keys holds for equal ones too.
    holes = {name: name for t in terms if isinstance(t, Path) for name in t.variables}
    try:
        disjuncts = _dnf(_nnf(bind(condition, holes), positive=True))
    except (_TooBig, PlanningError):
        return False
    return all(_impossible(conj) for conj in disjuncts)


def _terms(condition: Condition) -> Iterator[Term]:
    if isinstance(condition, Compare):
        yield condition.left
        yield condition.right
    elif isinstance(condition, In):
        yield condition.left
        yield from condition.options
    elif isinstance(condition, Exists):
        yield condition.path
    elif isinstance(condition, Not):
        yield from _terms(condition.arg)
    else:
        for arg in condition.args:
            yield from _terms(arg)


def _nnf(condition: Condition, *, positive: bool) -> Condition:
    if isinstance(condition, Not):
        return _nnf(condition.arg, positive=not positive)
    if isinstance(condition, And):
        parts = tuple(_nnf(a, positive=positive) for a in condition.args)
        return And(*parts) if positive else Or(*parts)
    if isinstance(condition, Or):
        parts = tuple(_nnf(a, positive=positive) for a in condition.args)
        return Or(*parts) if positive else And(*parts)
    return condition if positive else Not(condition)


def _dnf(condition: Condition) -> list[tuple[Condition, ...]]:
    if isinstance(condition, Or):
        out: list[tuple[Condition, ...]] = []
        for arg in condition.args:
            out.extend(_dnf(arg))
            if len(out) > _MAX_DISJUNCTS:
                raise _TooBig
        return out
    if isinstance(condition, And):
        result: list[tuple[Condition, ...]] = [()]
        for arg in condition.args:
            result = [left + right for left in result for right in _dnf(arg)]
            if len(result) > _MAX_DISJUNCTS:
                raise _TooBig
        return result
    return [(condition,)]


def _paths(literal: Condition) -> set[str]:
    return {t.template for t in _terms(literal) if isinstance(t, Path)}


def _impossible(conjunction: tuple[Condition, ...]) -> bool:
    by_path: dict[str, list[Condition]] = {}
    for literal in conjunction:
        paths = _paths(literal)
        if not paths:
            if not holds(literal, {}):
                return True
        elif len(paths) == 1:
            by_path.setdefault(next(iter(paths)), []).append(literal)
    return any(not _satisfiable(path, literals) for path, literals in by_path.items())


def _satisfiable(path: str, literals: list[Condition]) -> bool:
    for value in _candidates(literals):
        state: dict[str, Scalar] = {} if value is _ABSENT else {path: value}  # type: ignore[dict-item]
        if all(holds(literal, state) for literal in literals):
            return True
    return False


def _candidates(literals: list[Condition]) -> list[object]:
    constants = [t.value for lit in literals for t in _terms(lit) if isinstance(t, Const)]
    numbers = sorted({float(c) for c in constants if isinstance(c, int | float) and not isinstance(c, bool)})
    numbers = [n for n in numbers if math.isfinite(n)]
    strings = sorted({c for c in constants if isinstance(c, str)})
    out: list[object] = [_ABSENT, None, True, False, ""]
    out.extend(constants)
    if numbers:
        out.extend([numbers[0] - 1, numbers[-1] + 1])
        out.extend((a + b) / 2 for a, b in itertools.pairwise(numbers))
    else:
        out.append(0)
    out.extend(s + "\x00" for s in strings)
    return out


__all__ = ["never_holds"]
