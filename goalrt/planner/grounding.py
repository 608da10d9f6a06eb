"""Grounding: bind every action schema's parameters to the objects of their types, giving ground operators.

Conditions are normalized on the way: negations pushed down to comparisons,
nested and/or flattened, comparisons between constants (``{a} != {b}`` once
bound) folded to true or false, and the parts of every and/or sorted by their
text. A ground action whose precondition folds to false is dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from goalrt.errors import PlanningError
from goalrt.planner.actions import bind_effect, check_cost
from goalrt.planner.conditions import (
    FALSE,
    TRUE,
    And,
    Compare,
    Condition,
    Const,
    Exists,
    In,
    Not,
    Or,
    Path,
    bind,
    conjuncts,
)
from goalrt.planner.operators import GroundOp, ground_name
from goalrt.planner.problem import Problem
from goalrt.planner.values import compare, encode, sort_key

_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPPOSITE = {"==": "!=", "!=": "=="}


def normalize(condition: Condition) -> Condition:
    """Return a bound condition in canonical negation normal form, constants folded."""
    return _nnf(condition, negate=False)


def _nnf(condition: Condition, negate: bool) -> Condition:
    if isinstance(condition, Not):
        return _nnf(condition.arg, not negate)
    if isinstance(condition, And | Or):
        conjunction = isinstance(condition, And) != negate
        return _join(conjunction, [_nnf(a, negate) for a in condition.args])
    atom = _atom(condition)
    if not negate:
        return atom
    if atom == TRUE:
        return FALSE
    if atom == FALSE:
        return TRUE
    if isinstance(atom, Compare) and atom.op in _OPPOSITE:
        return Compare(_OPPOSITE[atom.op], atom.left, atom.right)
    return Not(atom)


def _atom(condition: Condition) -> Condition:
    if isinstance(condition, Compare):
        left, right, op = condition.left, condition.right, condition.op
        if isinstance(left, Const) and isinstance(right, Const):
            return TRUE if compare(op, encode(left.value), encode(right.value)) else FALSE
        if isinstance(left, Const) or (
            isinstance(left, Path) and isinstance(right, Path) and left.template > right.template
        ):
            left, right, op = right, left, _FLIP[op]
        return Compare(op, left, right)
    if isinstance(condition, In):
        options = sorted({sort_key(o.value): o for o in condition.options if isinstance(o, Const)}.items())
        if isinstance(condition.left, Const):
            value = encode(condition.left.value)
            return TRUE if any(compare("==", value, encode(o.value)) for _, o in options) else FALSE
        if not options:
            return FALSE
        if len(options) == 1:
            return Compare("==", condition.left, options[0][1])
        return In(condition.left, [o for _, o in options])
    assert isinstance(condition, Exists)
    return condition


def _join(conjunction: bool, parts: list[Condition]) -> Condition:
    unit, absorbing = (TRUE, FALSE) if conjunction else (FALSE, TRUE)
    kind = And if conjunction else Or
    flat: dict[str, Condition] = {}
    for part in parts:
        if part == absorbing:
            return absorbing
        for item in part.args if isinstance(part, kind) else (part,):
            flat.setdefault(str(item), item)
    if not flat:
        return unit
    ordered = [flat[key] for key in sorted(flat)]
    return ordered[0] if len(ordered) == 1 else kind(*ordered)


@dataclass(frozen=True)
class Grounding:
    """The ground operators of a problem, and what was left out and why."""

    ops: tuple[GroundOp, ...]
    excluded: tuple[GroundOp, ...]
    # (action, reason) for each schema with no ground instance at all.
    empty: tuple[tuple[str, str], ...]


def ground_actions(
    problem: Problem, exclude: frozenset[str] = frozenset(), penalties: Mapping[str, float] | None = None
) -> Grounding:
    """Return every ground operator of ``problem`` sorted by name, minus those named in ``exclude``.

    ``penalties`` adds a cost to the named ground operators.
    """
    extra = {name: check_cost(p, f"penalty of {name}") for name, p in (penalties or {}).items()}
    ops: list[GroundOp] = []
    excluded: list[GroundOp] = []
    empty: list[tuple[str, str]] = []
    for schema in problem.actions:
        names = [p for p, _ in schema.params]
        domains = [problem.objects_of(t) for _, t in schema.params]
        missing = [t for (_, t), d in zip(schema.params, domains, strict=True) if not d]
        if missing:
            empty.append((schema.name, f"type {missing[0]} has no objects"))
            continue
        count = 0
        for combo in itertools.product(*domains):
            bindings = dict(zip(names, combo, strict=True))
            try:
                pre = normalize(bind(schema.pre, bindings))
                effects = tuple(
                    sorted((bind_effect(e, bindings) for e in schema.effects), key=lambda e: e.path.template)
                )
            except PlanningError as exc:
                raise PlanningError(f"action {schema.name}: {exc}") from None
            if pre == FALSE:
                continue
            count += 1
            name = ground_name(schema.name, combo)
            op = GroundOp(
                name, schema.name, tuple(bindings.items()), conjuncts(pre), effects, schema.cost + extra.get(name, 0)
            )
            (excluded if name in exclude else ops).append(op)
        if not count:
            empty.append((schema.name, "its precondition is false for every combination of parameters"))
    ops.sort(key=lambda op: op.name)
    excluded.sort(key=lambda op: op.name)
    return Grounding(tuple(ops), tuple(excluded), tuple(empty))
