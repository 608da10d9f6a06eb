"""What conditions and effects mean on a state given as a plain path -> value mapping."""

from __future__ import annotations

from collections.abc import Mapping

from goalrt.errors import PlanningError
from goalrt.planner.actions import Delete, Effect, Set, merge_effects
from goalrt.planner.conditions import And, Bindings, Compare, Condition, Const, Exists, In, Not, Or, Path, Term, bind
from goalrt.planner.values import MISSING, Encoded, Scalar, compare, encode, is_number


def _value(term: Term, state: Mapping[str, Scalar]) -> Encoded:
    if isinstance(term, Path):
        if "{" in term.template:
            raise PlanningError(f"path {term} has an unbound template variable")
        return encode(state[term.template]) if term.template in state else MISSING
    if isinstance(term, Const):
        return encode(term.value)
    raise PlanningError(f"unbound parameter {term}")


def evaluate(condition: Condition, state: Mapping[str, Scalar]) -> bool:
    """Return whether a bound condition (no holes, no parameters) holds in ``state``."""
    if isinstance(condition, Compare):
        return compare(condition.op, _value(condition.left, state), _value(condition.right, state))
    if isinstance(condition, In):
        left = _value(condition.left, state)
        return any(compare("==", left, _value(o, state)) for o in condition.options)
    if isinstance(condition, Exists):
        return _value(condition.path, state) is not MISSING
    if isinstance(condition, Not):
        return not evaluate(condition.arg, state)
    if isinstance(condition, And):
        return all(evaluate(a, state) for a in condition.args)
    assert isinstance(condition, Or)
    return any(evaluate(a, state) for a in condition.args)


def holds(condition: Condition, state: Mapping[str, Scalar], bindings: Bindings | None = None) -> bool:
    """Return whether ``condition`` holds in ``state`` with its parameters and path holes bound by ``bindings``."""
    return evaluate(bind(condition, bindings or {}), state)


def apply_effects(effects: tuple[Effect, ...], state: Mapping[str, Scalar], where: str) -> dict[str, Scalar]:
    """Return a new state with bound ``effects`` applied (an increment of a non-number raises PlanningError).

    Effects on one path combine as ``merge_effects`` says: deletes first, then sets (the add wins).
    """
    out = dict(state)
    try:
        merged = merge_effects(effects)
    except PlanningError as exc:
        raise PlanningError(f"{where}: {exc}") from None
    for effect in merged:
        path = effect.path.template
        if isinstance(effect, Set):
            if not isinstance(effect.value, Const):
                raise PlanningError(f"{where}: set {path} to an unbound parameter {effect.value}")
            out[path] = effect.value.value
        elif isinstance(effect, Delete):
            out.pop(path, None)
        else:
            current = out.get(path, 0)
            if not is_number(current):
                raise PlanningError(f"{where}: cannot increment {path}: it holds {current!r}, not a number")
            out[path] = current + effect.by  # type: ignore[operator]
    return out
