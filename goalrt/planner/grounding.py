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
from goalrt.planner.actions import Effect, bind_effect, check_cost, effect_variables, merge_effects
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
    variables,
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


def _canonical(parts: list[Condition], text: dict[Condition, str]) -> tuple[Condition, ...] | None:
    """Return conjuncts deduplicated and sorted by their text (None if one is false), as ``normalize`` would."""
    keyed: dict[str, Condition] = {}
    for part in parts:
        if part == FALSE:
            return None
        key = text.get(part)
        if key is None:
            key = text[part] = str(part)
        keyed.setdefault(key, part)
    return tuple(keyed[k] for k in sorted(keyed))


@dataclass(frozen=True)
class Grounding:
    """The ground operators of a problem, and what was left out and why."""

    ops: tuple[GroundOp, ...]
    excluded: tuple[GroundOp, ...]
    # (action, reason) for each schema with no ground instance at all.
    empty: tuple[tuple[str, str], ...]


def split(condition: Condition) -> list[Condition]:
    """Return the top-level conjuncts of a condition, negations pushed through and/or first."""
    if isinstance(condition, And):
        return [part for arg in condition.args for part in split(arg)]
    if isinstance(condition, Not) and isinstance(condition.arg, Or):
        return [part for arg in condition.arg.args for part in split(Not(arg))]
    if isinstance(condition, Not) and isinstance(condition.arg, Not):
        return split(condition.arg.arg)
    return [condition]


class _Part:
    """One top-level conjunct (or effect) of a schema, bound once per combination of the parameters it uses."""

    def __init__(self, names: list[str], used: frozenset[str]) -> None:
        self.positions = [i for i, name in enumerate(names) if name in used]
        self.cache: dict[tuple[str, ...], object] = {}

    def key(self, combo: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(combo[i] for i in self.positions)


def ground_actions(
    problem: Problem, exclude: frozenset[str] = frozenset(), penalties: Mapping[str, float] | None = None
) -> Grounding:
    """Return every ground operator of ``problem`` sorted by name, minus those named in ``exclude``.

    ``penalties`` adds a cost to the named ground operators. Each conjunct of a
    precondition and each effect is bound and normalized once per combination
    of the parameters *it* uses, not once per ground action: ``stack(b, c)``
    binds ``blocks.{b}.on == 'hand'`` once per block, not once per pair.
    """
    extra = {name: check_cost(p, f"penalty of {name}") for name, p in (penalties or {}).items()}
    objects = {t: problem.objects_of(t) for t in sorted({t for a in problem.actions for _, t in a.params})}
    ops: list[GroundOp] = []
    excluded: list[GroundOp] = []
    empty: list[tuple[str, str]] = []
    text: dict[Condition, str] = {}
    for schema in problem.actions:
        names = [p for p, _ in schema.params]
        domains = [objects[t] for _, t in schema.params]
        missing = [t for (_, t), d in zip(schema.params, domains, strict=True) if not d]
        if missing:
            empty.append((schema.name, f"type {missing[0]} has no objects"))
            continue
        parts = [(part, _Part(names, variables(part))) for part in split(schema.pre)]
        effects = [(effect, _Part(names, effect_variables(effect))) for effect in schema.effects]
        count = 0
        for combo in itertools.product(*domains):
            bindings = dict(zip(names, combo, strict=True))
            try:
                pre: list[Condition] = []
                for part, memo in parts:
                    key = memo.key(combo)
                    bound = memo.cache.get(key)
                    if bound is None:
                        bound = memo.cache[key] = conjuncts(normalize(bind(part, bindings)))
                    if bound == (FALSE,):
                        break
                    pre.extend(bound)  # type: ignore[arg-type]
                else:
                    bound_effects: list[Effect] = []
                    for effect, memo in effects:
                        key = memo.key(combo)
                        done = memo.cache.get(key)
                        if done is None:
                            done = memo.cache[key] = bind_effect(effect, bindings)
                        bound_effects.append(done)  # type: ignore[arg-type]
                    pre_sorted = _canonical(pre, text)
                    if pre_sorted is None:
                        continue
                    count += 1
                    name = ground_name(schema.name, combo)
                    try:
                        merged = merge_effects(bound_effects)
                    except PlanningError as exc:
                        raise PlanningError(
                            f"ground action {name}: {exc}; a precondition false for these arguments "
                            "(such as {a} != {b}) leaves it out"
                        ) from None
                    op = GroundOp(
                        name, schema.name, tuple(bindings.items()), pre_sorted, merged, schema.cost + extra.get(name, 0)
                    )
                    (excluded if name in exclude else ops).append(op)
            except PlanningError as exc:
                raise PlanningError(f"action {schema.name}: {exc}") from None
        if not count:
            empty.append((schema.name, "its precondition is false for every combination of parameters"))
    ops.sort(key=lambda op: op.name)
    excluded.sort(key=lambda op: op.name)
    return Grounding(tuple(ops), tuple(excluded), tuple(empty))
