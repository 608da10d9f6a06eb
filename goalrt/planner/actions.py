"""Effects and action schemas: what an action needs, what it changes, what it costs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from goalrt.errors import PlanningError
from goalrt.planner.conditions import (
    CONDITION_TYPES,
    TRUE,
    Condition,
    Const,
    Path,
    Term,
    Var,
    condition_from_json,
    condition_to_json,
    path_of,
    term_from_json,
    term_to_json,
    variables,
)
from goalrt.planner.values import NAME, Scalar, check_scalar, is_number


@dataclass(frozen=True, slots=True, init=False)
class Set:
    """Set the path to a constant or to a parameter's value."""

    path: Path
    value: Const | Var

    def __init__(self, path: object, value: object) -> None:
        if isinstance(value, Path):
            raise PlanningError(f"set {path}: the value must be a constant or a parameter, got path {value}")
        object.__setattr__(self, "path", path_of(path))
        object.__setattr__(
            self, "value", value if isinstance(value, Const | Var) else Const(check_scalar(value, "set"))
        )

    def __str__(self) -> str:
        return f"{self.path} = {self.value}"


@dataclass(frozen=True, slots=True, init=False)
class Delete:
    """Remove the path from the state."""

    path: Path

    def __init__(self, path: object) -> None:
        object.__setattr__(self, "path", path_of(path))

    def __str__(self) -> str:
        return f"delete {self.path}"


@dataclass(frozen=True, slots=True, init=False)
class Increment:
    """Add a constant number to the path (an absent path counts as 0)."""

    path: Path
    by: int | float

    def __init__(self, path: object, by: object) -> None:
        target = path_of(path)
        if not is_number(by) or not math.isfinite(by):  # type: ignore[arg-type]
            raise PlanningError(f"increment of {target} by {by!r}: not a number")
        object.__setattr__(self, "path", target)
        object.__setattr__(self, "by", by)

    def __str__(self) -> str:
        return f"{self.path} += {self.by}"


Effect: TypeAlias = Set | Delete | Increment


def effect_to_json(effect: Effect) -> dict[str, Any]:
    """Return an effect as JSON, shaped like a goalrt state change (op, path, value or by)."""
    if isinstance(effect, Set):
        return {"op": "set", "path": effect.path.template, "value": term_to_json(effect.value)}
    if isinstance(effect, Delete):
        return {"op": "delete", "path": effect.path.template}
    return {"op": "inc", "path": effect.path.template, "by": effect.by}


_EFFECT_KEYS = {"set": {"op", "path", "value"}, "delete": {"op", "path"}, "inc": {"op", "path", "by"}}


def effect_from_json(data: Any) -> Effect:
    """Return the effect a JSON object stands for, or raise PlanningError naming what is wrong."""
    if not isinstance(data, dict) or data.get("op") not in _EFFECT_KEYS:
        raise PlanningError(f"an effect is an object with op 'set', 'delete' or 'inc', got {data!r}")
    if set(data) != _EFFECT_KEYS[data["op"]]:
        raise PlanningError(f"effect {data['op']!r} needs exactly the keys {sorted(_EFFECT_KEYS[data['op']])}")
    if data["op"] == "set":
        value: Term = term_from_json(data["value"])
        return Set(data["path"], value)
    if data["op"] == "delete":
        return Delete(data["path"])
    return Increment(data["path"], data["by"])


def _combine(first: Effect, second: Effect) -> Effect:
    """Return the one effect two effects on the same path amount to (STRIPS: deletes first, then the rest)."""
    if isinstance(first, Increment) and isinstance(second, Increment):
        return Increment(first.path, first.by + second.by)
    if isinstance(first, Increment) or isinstance(second, Increment):
        raise PlanningError(
            f"an increment and another change of {first.path} (an increment combines only with increments)"
        )
    if isinstance(first, Delete):
        return second
    if isinstance(second, Delete) or first.value == second.value:
        return first
    raise PlanningError(f"two effects set {first.path}, to {first.value} and to {second.value}")


def merge_effects(effects: Iterable[Effect]) -> tuple[Effect, ...]:
    """Return effects as one per path, sorted by path, or raise PlanningError naming a conflict.

    STRIPS semantics: an action's deletes apply first, then its sets, so a
    ``Delete`` and a ``Set`` of one path leave the set value (the add wins).
    The same effect twice is one; increments of one path add up. Two sets of
    different values, or an increment with a set or delete, conflict.
    """
    by_path: dict[str, Effect] = {}
    for effect in effects:
        key = effect.path.template
        known = by_path.get(key)
        by_path[key] = effect if known is None else _combine(known, effect)
    return tuple(by_path[key] for key in sorted(by_path))


def _check_same_path(effects: tuple[Effect, ...]) -> None:
    """Raise on effects with the same path template that conflict whatever the arguments.

    Two sets whose values involve a parameter may agree for some arguments:
    grounding decides those, per ground action.
    """
    seen: dict[str, Effect] = {}
    for effect in effects:
        known = seen.get(effect.path.template)
        if known is None:
            seen[effect.path.template] = effect
        elif not (
            isinstance(known, Set) and isinstance(effect, Set) and Var in (type(known.value), type(effect.value))
        ):
            seen[effect.path.template] = _combine(known, effect)


def effect_variables(effect: Effect) -> frozenset[str]:
    """Return the parameter names an effect refers to."""
    names = set(effect.path.variables)
    if isinstance(effect, Set) and isinstance(effect.value, Var):
        names.add(effect.value.name)
    return frozenset(names)


def check_cost(cost: object, where: str) -> float:
    """Return ``cost`` if it is a finite number >= 0, else raise naming ``where``."""
    if not is_number(cost) or not math.isfinite(cost) or cost < 0:  # type: ignore[operator, arg-type]
        raise PlanningError(f"{where}: cost must be a finite number >= 0, got {cost!r}")
    return cost  # type: ignore[return-value]


@dataclass(frozen=True, slots=True, init=False)
class ActionSchema:
    """An action with typed parameters: grounded once per combination of objects of those types.

    ``params`` maps each parameter name to its type, in order (the order of the
    arguments in a ground action's name, e.g. ``move(rooma, roomb)``).
    """

    name: str
    params: tuple[tuple[str, str], ...]
    pre: Condition
    effects: tuple[Effect, ...]
    cost: float

    def __init__(
        self,
        name: str,
        params: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        pre: Condition = TRUE,
        effects: Iterable[Effect] = (),
        cost: float = 1,
    ) -> None:
        if not isinstance(name, str) or not all(NAME.fullmatch(part) for part in name.split(".")):
            raise PlanningError(
                f"invalid action name {name!r}: use dot-separated names of letters, digits, _ and - "
                "(e.g. payment.charge, drive-truck)"
            )
        pairs = tuple(params.items()) if isinstance(params, Mapping) else tuple(params)
        seen: set[str] = set()
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise PlanningError(f"action {name}: a parameter is a (name, type) pair, got {pair!r}")
            Var(pair[0])  # validates the name
            if pair[0] in seen:
                raise PlanningError(f"action {name}: parameter {pair[0]} declared twice")
            seen.add(pair[0])
        effects = tuple(effects)
        for effect in effects:
            if not isinstance(effect, Set | Delete | Increment):
                raise PlanningError(f"action {name}: expected an effect (Set, Delete, Increment), got {effect!r}")
        try:
            _check_same_path(effects)
        except PlanningError as exc:
            raise PlanningError(f"action {name}: {exc}") from None
        used = variables(_check_condition(pre, f"action {name}")).union(*(effect_variables(e) for e in effects))
        unbound = sorted(used - seen)
        if unbound:
            raise PlanningError(f"action {name}: unbound template variable {{{unbound[0]}}} (not a parameter)")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", pairs)
        object.__setattr__(self, "pre", pre)
        object.__setattr__(self, "effects", effects)
        object.__setattr__(self, "cost", check_cost(cost, f"action {name}"))

    def to_json(self) -> dict[str, Any]:
        """Return the schema as JSON."""
        return {
            "name": self.name,
            "params": [{"name": n, "type": t} for n, t in self.params],
            "pre": condition_to_json(self.pre),
            "effects": [effect_to_json(e) for e in self.effects],
            "cost": self.cost,
        }

    @classmethod
    def from_json(cls, data: Any) -> ActionSchema:
        """Return the schema a JSON object stands for."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise PlanningError(f"an action is an object with a 'name', got {data!r}")
        unknown = sorted(set(data) - {"name", "params", "pre", "effects", "cost"})
        if unknown:
            raise PlanningError(f"action {data['name']}: unknown key {unknown[0]!r}")
        params = data.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, dict) and set(p) == {"name", "type"} for p in params):
            raise PlanningError(f"action {data['name']}: params must be a list of {{'name', 'type'}} objects")
        effects = data.get("effects", [])
        if not isinstance(effects, list):
            raise PlanningError(f"action {data['name']}: effects must be a list")
        return cls(
            data["name"],
            [(p["name"], p["type"]) for p in params],
            condition_from_json(data["pre"]) if "pre" in data else TRUE,
            [effect_from_json(e) for e in effects],
            data.get("cost", 1),
        )


def _check_condition(condition: object, where: str) -> Condition:
    if not isinstance(condition, CONDITION_TYPES):
        raise PlanningError(f"{where}: expected a condition, got {condition!r}")
    return condition


def bind_effect(effect: Effect, bindings: Mapping[str, Scalar]) -> Effect:
    """Return the effect with its path and value bound."""
    path = effect.path.bind(bindings)
    if isinstance(effect, Set):
        value = effect.value
        return Set(path, Const(bindings[value.name]) if isinstance(value, Var) else value)
    if isinstance(effect, Delete):
        return Delete(path)
    return Increment(path, effect.by)
