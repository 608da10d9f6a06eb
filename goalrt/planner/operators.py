"""Ground operators: an action schema with every parameter bound, and applying them to a state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from goalrt.errors import PlanningError
from goalrt.planner.actions import Effect, check_cost, effect_from_json, effect_to_json
from goalrt.planner.conditions import And, Condition, condition_from_json, condition_to_json
from goalrt.planner.semantics import apply_effects, evaluate
from goalrt.planner.values import Scalar


def ground_name(action: str, args: Iterable[Scalar]) -> str:
    """Return the name of a ground action: ``payment.charge(o1)``, ``move(rooma, roomb)``."""
    return f"{action}({', '.join(str(a) for a in args)})"


@dataclass(frozen=True, slots=True)
class GroundOp:
    """An action with its parameters bound: immutable, with preconditions and effects in canonical order.

    ``pre`` holds the conjuncts of the bound precondition sorted by their text;
    ``effects`` hold one effect per path, sorted by path (grounding merges a
    delete and a set of one path into the set: STRIPS's delete-then-add). Both mention concrete paths only, so the
    runtime can check ``op.applicable(state)`` before running a step.
    """

    name: str
    action: str
    args: tuple[tuple[str, Scalar], ...]
    pre: tuple[Condition, ...]
    effects: tuple[Effect, ...]
    cost: float

    @property
    def bindings(self) -> dict[str, Scalar]:
        """Return the arguments as a parameter -> value mapping."""
        return dict(self.args)

    @property
    def precondition(self) -> Condition:
        """Return the precondition as one condition."""
        return self.pre[0] if len(self.pre) == 1 else And(*self.pre)

    def applicable(self, state: Mapping[str, Scalar]) -> bool:
        """Return whether every precondition holds in ``state``."""
        return all(evaluate(c, state) for c in self.pre)

    def to_json(self) -> dict[str, Any]:
        """Return the operator as JSON."""
        return {
            "name": self.name,
            "action": self.action,
            "args": dict(self.args),
            "pre": [condition_to_json(c) for c in self.pre],
            "effects": [effect_to_json(e) for e in self.effects],
            "cost": self.cost,
        }

    @classmethod
    def from_json(cls, data: Any) -> GroundOp:
        """Return the operator a JSON object stands for."""
        keys = {"name", "action", "args", "pre", "effects", "cost"}
        if not isinstance(data, dict) or set(data) != keys:
            raise PlanningError(f"a ground action is an object with the keys {sorted(keys)}, got {data!r}")
        if not isinstance(data["args"], dict) or not isinstance(data["pre"], list):
            raise PlanningError(f"ground action {data['name']}: args must be an object and pre a list")
        if not isinstance(data["effects"], list):
            raise PlanningError(f"ground action {data['name']}: effects must be a list")
        return cls(
            name=str(data["name"]),
            action=str(data["action"]),
            args=tuple(data["args"].items()),
            pre=tuple(condition_from_json(c) for c in data["pre"]),
            effects=tuple(effect_from_json(e) for e in data["effects"]),
            cost=check_cost(data["cost"], f"ground action {data['name']}"),
        )

    def __str__(self) -> str:
        return self.name


def apply(op: GroundOp, state: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """Return the state after ``op``'s effects (its preconditions are not checked; see ``GroundOp.applicable``)."""
    return apply_effects(op.effects, state, op.name)


class _Stepped(Protocol):
    """What ``simulate`` needs of a plan (``goalrt.planner.results.Plan``, which imports this module)."""

    @property
    def steps(self) -> tuple[GroundOp, ...]: ...


def simulate(state: Mapping[str, Scalar], plan: _Stepped | Iterable[GroundOp]) -> dict[str, Scalar]:
    """Return the state after running ``plan`` step by step from ``state``; raise if a precondition fails."""
    steps: Iterable[GroundOp] = plan.steps if hasattr(plan, "steps") else plan
    current = dict(state)
    for number, op in enumerate(steps, 1):
        for condition in op.pre:
            if not evaluate(condition, current):
                raise PlanningError(f"step {number} {op.name}: precondition {condition} does not hold")
        current = apply(op, current)
    return current
