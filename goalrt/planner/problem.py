"""A planning problem: object types, objects, the state, action schemas and the goal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from goalrt.errors import PlanningError
from goalrt.planner.actions import ActionSchema
from goalrt.planner.conditions import (
    CONDITION_TYPES,
    TRUE,
    Condition,
    condition_from_json,
    condition_to_json,
    variables,
)
from goalrt.planner.values import NAME, SEGMENT, Scalar, check_path, check_scalar


def _check_object(name: object, where: str) -> str:
    """Return ``name`` if it can name an object (one path segment), else raise naming ``where``."""
    if not isinstance(name, str) or not SEGMENT.fullmatch(name):
        raise PlanningError(f"{where}: invalid object name {name!r} (one path segment: letters, digits, _ : @ -)")
    return name


@dataclass(frozen=True, slots=True, init=False)
class ObjectType:
    """A type of object; ``keys_under`` lists state prefixes whose next segment names an object of this type.

    ``ObjectType("Order", keys_under="orders")`` draws ``o1`` and ``o2`` from
    the paths ``orders.o1.status`` and ``orders.o2.total``. With a ``parent``
    the type is a subtype: its objects are objects of the parent (and of the
    parent's parent, ...) too, so a parameter of the parent's type takes them.
    """

    name: str
    keys_under: tuple[str, ...]
    parent: str | None

    def __init__(self, name: str, keys_under: str | Iterable[str] = (), *, parent: str | None = None) -> None:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PlanningError(f"invalid type name {name!r}: use letters, digits, _ and - (not first)")
        if parent is not None and (not isinstance(parent, str) or not NAME.fullmatch(parent)):
            raise PlanningError(f"type {name}: invalid parent type name {parent!r}")
        prefixes = (keys_under,) if isinstance(keys_under, str) else tuple(keys_under)
        for prefix in prefixes:
            check_path(prefix, f"type {name} keys_under")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "keys_under", prefixes)
        object.__setattr__(self, "parent", parent)

    def to_json(self) -> dict[str, Any]:
        """Return the type as JSON (``parent`` only when it has one)."""
        out: dict[str, Any] = {"name": self.name, "keys_under": list(self.keys_under)}
        if self.parent is not None:
            out["parent"] = self.parent
        return out


@dataclass(frozen=True, slots=True)
class GoalParam:
    """A goal parameter: ``{name}`` in the goal is ``value``; with a type, the value is also an object of it."""

    name: str
    value: Scalar
    type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise PlanningError(f"invalid goal parameter name {self.name!r}: use letters, digits, _ and - (not first)")
        check_scalar(self.value, f"goal parameter {self.name}")
        if self.type is not None:
            _check_object(self.value, f"goal parameter {self.name} of type {self.type}")

    def to_json(self) -> dict[str, Any]:
        """Return the parameter as JSON."""
        return {"name": self.name, "value": self.value, "type": self.type}


@dataclass(frozen=True, init=False)
class Problem:
    """Everything ``plan`` needs: reach a state where ``goal`` holds from ``state`` using ``actions``.

    Each action parameter ranges over the objects of its type: those listed in
    ``objects``, the values of typed ``goal_params``, and the keys found in
    ``state`` under the type's ``keys_under`` prefixes.
    """

    types: tuple[ObjectType, ...]
    state: Mapping[str, Scalar]
    actions: tuple[ActionSchema, ...]
    goal: Condition
    objects: Mapping[str, tuple[str, ...]]
    goal_params: tuple[GoalParam, ...]

    def __init__(
        self,
        *,
        types: Iterable[ObjectType] = (),
        state: Mapping[str, Scalar] | None = None,
        actions: Iterable[ActionSchema] = (),
        goal: Condition = TRUE,
        objects: Mapping[str, Iterable[str]] | None = None,
        goal_params: Iterable[GoalParam] = (),
    ) -> None:
        type_list = tuple(types)
        known: set[str] = set()
        for t in type_list:
            if not isinstance(t, ObjectType):
                raise PlanningError(f"expected an ObjectType, got {t!r}")
            if t.name in known:
                raise PlanningError(f"type {t.name} declared twice")
            known.add(t.name)
        _check_hierarchy(type_list)

        def check_type(name: object, where: str) -> None:
            if name not in known:
                raise PlanningError(f"{where}: unknown type {name!r}")

        values: dict[str, Scalar] = {}
        for path, value in (state or {}).items():
            values[check_path(path, "state")] = check_scalar(value, f"state {path}")
        objs: dict[str, tuple[str, ...]] = {}
        for type_name, names in (objects or {}).items():
            check_type(type_name, "objects")
            if isinstance(names, str):
                raise PlanningError(f"objects of {type_name} must be a list of names, got {names!r}")
            objs[type_name] = tuple(_check_object(n, f"objects of {type_name}") for n in names)
        action_list = tuple(actions)
        names_seen: set[str] = set()
        for action in action_list:
            if not isinstance(action, ActionSchema):
                raise PlanningError(f"expected an ActionSchema, got {action!r}")
            if action.name in names_seen:
                raise PlanningError(f"action {action.name} declared twice")
            names_seen.add(action.name)
            for param_name, type_name in action.params:
                check_type(type_name, f"action {action.name} parameter {param_name}")
        params = tuple(goal_params)
        param_names: set[str] = set()
        for param in params:
            if not isinstance(param, GoalParam):
                raise PlanningError(f"expected a GoalParam, got {param!r}")
            if param.name in param_names:
                raise PlanningError(f"goal parameter {param.name} given twice")
            param_names.add(param.name)
            if param.type is not None:
                check_type(param.type, f"goal parameter {param.name}")
        if not isinstance(goal, CONDITION_TYPES):
            raise PlanningError(f"goal: expected a condition, got {goal!r}")
        unbound = sorted(variables(goal) - param_names)
        if unbound:
            raise PlanningError(f"goal: unbound template variable {{{unbound[0]}}} (not a goal parameter)")
        object.__setattr__(self, "types", type_list)
        object.__setattr__(self, "state", MappingProxyType(values))
        object.__setattr__(self, "actions", action_list)
        object.__setattr__(self, "goal", goal)
        object.__setattr__(self, "objects", MappingProxyType(objs))
        object.__setattr__(self, "goal_params", params)

    @property
    def bindings(self) -> dict[str, Scalar]:
        """Return the goal parameters as a name -> value mapping."""
        return {p.name: p.value for p in self.goal_params}

    def objects_of(self, type_name: str) -> tuple[str, ...]:
        """Return the objects of a type or a subtype of it, sorted: declared, typed goal parameters, state keys."""
        family = _family(self.types, type_name)
        found = {name for t in sorted(family) for name in self.objects.get(t, ())}
        found.update(str(p.value) for p in self.goal_params if p.type in family)
        for t in self.types:
            if t.name not in family:
                continue
            for prefix in t.keys_under:
                start = prefix + "."
                found.update(path[len(start) :].split(".", 1)[0] for path in self.state if path.startswith(start))
        return tuple(sorted(found))

    def to_json(self) -> dict[str, Any]:
        """Return the problem as JSON (state and objects with sorted keys)."""
        return {
            "types": [t.to_json() for t in self.types],
            "objects": {k: list(self.objects[k]) for k in sorted(self.objects)},
            "state": {k: self.state[k] for k in sorted(self.state)},
            "actions": [a.to_json() for a in self.actions],
            "goal": condition_to_json(self.goal),
            "goal_params": [p.to_json() for p in self.goal_params],
        }

    @classmethod
    def from_json(cls, data: Any) -> Problem:
        """Return the problem a JSON object stands for, or raise PlanningError naming what is wrong."""
        if not isinstance(data, dict):
            raise PlanningError(f"a problem is a JSON object, got {data!r}")
        unknown = sorted(set(data) - {"types", "objects", "state", "actions", "goal", "goal_params"})
        if unknown:
            raise PlanningError(f"problem: unknown key {unknown[0]!r}")
        types = []
        for t in _list(data, "types"):
            if not isinstance(t, dict) or set(t) - {"name", "keys_under", "parent"} or "name" not in t:
                raise PlanningError(f"a type is {{'name', 'keys_under', 'parent'}}, got {t!r}")
            types.append(ObjectType(t["name"], t.get("keys_under", ()), parent=t.get("parent")))
        params = []
        for p in _list(data, "goal_params"):
            if not isinstance(p, dict) or set(p) - {"name", "value", "type"} or {"name", "value"} - set(p):
                raise PlanningError(f"a goal parameter is {{'name', 'value', 'type'}}, got {p!r}")
            params.append(GoalParam(p["name"], p["value"], p.get("type")))
        objects = data.get("objects", {})
        state = data.get("state", {})
        if not isinstance(objects, dict) or not isinstance(state, dict):
            raise PlanningError("problem: objects and state must be JSON objects")
        return cls(
            types=types,
            objects=objects,
            state=state,
            actions=[ActionSchema.from_json(a) for a in _list(data, "actions")],
            goal=condition_from_json(data["goal"]) if "goal" in data else TRUE,
            goal_params=params,
        )


def _check_hierarchy(types: tuple[ObjectType, ...]) -> None:
    """Raise if a type's parent is not declared or the parents form a cycle."""
    parents = {t.name: t.parent for t in types}
    for t in types:
        if t.parent is not None and t.parent not in parents:
            raise PlanningError(f"type {t.name}: unknown parent type {t.parent!r}")
    for t in types:
        chain = [t.name]
        parent = t.parent
        while parent is not None:
            chain.append(parent)
            if parent == t.name:
                raise PlanningError(f"type {t.name}: its parent types form a cycle: {' -> '.join(chain)}")
            if parent in chain[:-1]:
                break  # a cycle not through t: reported for a type on it
            parent = parents[parent]


def _family(types: tuple[ObjectType, ...], type_name: str) -> frozenset[str]:
    """Return ``type_name`` and every type below it (its subtypes, their subtypes, ...)."""
    family = {type_name}
    grew = True
    while grew:
        below = {t.name for t in types if t.parent in family}
        grew = not below <= family
        family |= below
    return frozenset(family)


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise PlanningError(f"problem: {key} must be a list, got {value!r}")
    return value
