"""How goals and actions declare what the planner needs: conditions, preconditions, effects, limits.

    @goalrt.action("payment.charge", params={"o": "Order"}, pre="orders.{o}.status == 'created'",
                   effects=[Set("orders.{o}.status", "paid")], cost=2)
    async def charge(args, ctx): ...

    goalrt.achieve("checkout", "orders.{order}.status == 'shipped'", params=Checkout,
                   types=[ObjectType("Order", keys_under="orders")], param_types={"order": "Order"})

These are declarations only: the registry stores them. What the worker does
with them (plan from the state, check before each step, re-plan) is in
``goalrt.worker.planning`` and ``goalrt.worker.planner_bridge``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from goalrt.errors import PlanningError
from goalrt.planner import TRUE, ActionSchema, Budget, Condition, Effect, ObjectType, cond


def condition_of(value: Condition | str | None, where: str) -> Condition:
    """Return a condition from its object or its text (``cond`` syntax)."""
    if value is None:
        return TRUE
    if isinstance(value, str):
        try:
            return cond(value)
        except PlanningError as exc:
            raise PlanningError(f"{where}: {exc}") from None
    return value


def action_schema(
    name: str,
    params: Mapping[str, str] | None,
    pre: Condition | str | None,
    effects: Iterable[Effect],
    cost: float | None,
) -> ActionSchema:
    """Return the planning schema of an action declared with ``@goalrt.action(..., pre=, effects=)``."""
    return ActionSchema(
        name, dict(params or {}), condition_of(pre, f"action {name}"), list(effects), 1 if cost is None else cost
    )


@dataclass(frozen=True, slots=True)
class Achieve:
    """How a goal type is planned: the condition to reach, the types of objects, and the limits."""

    condition: Condition
    types: tuple[ObjectType, ...] = ()
    objects: Mapping[str, Sequence[str]] = field(default_factory=dict)
    param_types: Mapping[str, str] = field(default_factory=dict)
    max_replans: int = 3
    budget: Budget = field(default_factory=lambda: Budget(max_expansions=100_000))
    # Keep the condition true: after reaching it, wait for a change of the
    # paths it reads, and act again when it breaks (the goal never completes).
    maintain: bool = False
    # Plan only with these actions (GDL's `actions` clause and app scoping); None: any the types allow.
    actions: frozenset[str] | None = None


__all__ = ["Achieve", "action_schema", "condition_of"]
