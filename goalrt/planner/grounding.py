"""Grounding: bind every action schema's parameters to the objects of their types, giving ground operators.

Conditions are normalized on the way: negations pushed down to comparisons,
nested and/or flattened, comparisons between constants (``{a} != {b}`` once
bound) folded to true or false, and the parts of every and/or sorted by their
text. A ground action whose precondition folds to false is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
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
        self.dead: dict[tuple[str, ...], bool] = {}

    def key(self, combo: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        return tuple(combo[i] for i in self.positions)

    def alive(
        self, part: Condition, prefix: list[str], names: list[str], dead: Callable[[Condition], bool] | None
    ) -> int:
        """0 if the conjunct is false once bound, 1 if ``dead`` says it is false for good, else 2 (can hold)."""
        key = self.key(prefix)
        bound = self.cache.get(key)
        if bound is None:
            try:
                bindings = {names[i]: prefix[i] for i in self.positions}
                bound = self.cache[key] = conjuncts(normalize(bind(part, bindings)))
            except PlanningError:
                return 2  # raised again, in the order of the conjuncts, when the whole binding is checked
        if bound == (FALSE,):
            return 0
        if dead is None:
            return 2
        verdict = self.dead.get(key)
        if verdict is None:
            verdict = self.dead[key] = any(dead(c) for c in bound)  # type: ignore[attr-defined]
        return 1 if verdict else 2


def _combos(
    names: list[str],
    domains: list[tuple[str, ...]],
    parts: list[tuple[Condition, _Part]],
    dead: Callable[[Condition], bool] | None,
    cuts: list[int],
) -> Iterator[tuple[str, ...]]:
    """Yield the combinations of ``itertools.product(*domains)``, in its order, less those a conjunct rules out.

    A conjunct is checked once its last parameter is bound; ``cuts[0]`` counts
    the prefixes that ``dead`` (not a conjunct false once bound) cut off.
    """
    at: list[list[tuple[Condition, _Part]]] = [[] for _ in range(len(names) + 1)]
    for part, memo in parts:
        at[memo.positions[-1] + 1 if memo.positions else 0].append((part, memo))
    prefix: list[str] = []

    def viable(depth: int) -> bool:
        for part, memo in at[depth]:
            verdict = memo.alive(part, prefix, names, dead)
            if verdict < 2:
                cuts[0] += verdict
                return False
        return True

    def extend(depth: int) -> Iterator[tuple[str, ...]]:
        if depth == len(names):
            yield tuple(prefix)
            return
        for value in domains[depth]:
            prefix.append(value)
            if viable(depth + 1):
                yield from extend(depth + 1)
            prefix.pop()

    if viable(0):
        yield from extend(0)


def ground_actions(
    problem: Problem,
    exclude: frozenset[str] = frozenset(),
    penalties: Mapping[str, float] | None = None,
    dead: Callable[[Condition], bool] | None = None,
) -> Grounding:
    """Return every ground operator of ``problem`` sorted by name, minus those named in ``exclude``.

    ``penalties`` adds a cost to the named ground operators. Each conjunct of a
    precondition and each effect is bound and normalized once per combination
    of the parameters *it* uses, not once per ground action: ``stack(b, c)``
    binds ``blocks.{b}.on == 'hand'`` once per block, not once per pair.

    ``dead`` (optional) says of a bound, normalized conjunct that it is false
    for good (false on paths no action can change). The parameters are bound
    one at a time, in order, and a conjunct is checked as soon as its last
    parameter is bound, so a false one cuts every combination that extends
    the binding: ``take-image(s, d, i, m)`` with ``on-board(i, s)`` false
    never enumerates a ``d`` or an ``m``. The operators so left out are the
    ones ``compile_task`` would set aside anyway; those named in ``exclude``
    are never cut (an explanation names them).
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
        cut = dead if dead is not None and not any(n.startswith(schema.name + "(") for n in exclude) else None
        count = 0
        cuts = [0]
        try:
            for combo in _combos(names, domains, parts, cut, cuts):
                bindings = dict(zip(names, combo, strict=True))
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
        if not count and not cuts[0]:  # those cut would have been grounded, then set aside
            empty.append((schema.name, "its precondition is false for every combination of parameters"))
    ops.sort(key=lambda op: op.name)
    excluded.sort(key=lambda op: op.name)
    return Grounding(tuple(ops), tuple(excluded), tuple(empty))
