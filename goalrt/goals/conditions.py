"""Goals declared by a condition: the bridge between the registry, the state and the planner.

    @goalrt.action("payment.charge", params={"o": "Order"}, pre="orders.{o}.status == 'created'",
                   effects=[Set("orders.{o}.status", "paid")], cost=2)
    async def charge(args, ctx): ...

    goalrt.achieve("checkout", "orders.{order}.status == 'shipped'", params=Checkout,
                   types=[ObjectType("Order", keys_under="orders")], param_types={"order": "Order"})

A worker that takes such a goal reads the state, asks the planner for the
cheapest sequence of actions that makes the condition true, and records the
plan (``goal.planned`` with its cost, its steps and the versions of the
state it read). Before each step it checks the step's preconditions and the
goal's condition against the current state and re-plans when the state
drifted (or completes at once when the condition already holds); a step that
fails for good is excluded and the goal re-planned, at most ``max_replans``
times. The declared effects of an action are applied with its completion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goalrt.errors import PlanningError
from goalrt.planner import (
    TRUE,
    ActionSchema,
    And,
    Budget,
    Compare,
    Condition,
    Delete,
    Effect,
    Exists,
    GoalParam,
    In,
    Increment,
    NoPlan,
    Not,
    ObjectType,
    Or,
    Path,
    Plan,
    Problem,
    Set,
    cond,
    holds,
    plan,
)
from goalrt.planner.actions import bind_effect
from goalrt.planner.conditions import Const, bind
from goalrt.planner.operators import ground_name
from goalrt.state.state import Change

if TYPE_CHECKING:
    from goalrt.goals.registry import Registry

SCALARS = (str, int, float, bool, type(None))


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


# The step that ends each plan of a maintained goal, after its watch: the
# worker re-plans when it reaches it (it is never run as an action).
RECHECK = "goalrt.recheck"


def watch_steps(achieve: Achieve, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the steps that end a maintained goal's plan: wait for a change of a path the condition reads."""
    goal = bind(achieve.condition, {k: v for k, v in params.items() if isinstance(v, SCALARS)})
    paths = sorted(set(_paths((goal,))))
    where = [{"changes": [{"path": p}]} for p in paths] or [{}]
    return [
        {"kind": "event", "action": "watch", "args": {"event": "state.changed", "where": where, "since": "wait"}},
        {"action": RECHECK, "args": {}},
    ]


def scalar_state(entries: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Return the paths whose values the planner can reason about (JSON scalars)."""
    return {path: value for path, value in entries if isinstance(value, SCALARS)}


def problem_for(achieve: Achieve, registry: Registry, params: Mapping[str, Any], state: Mapping[str, Any]) -> Problem:
    """Return the planning problem of a goal: its condition from ``state`` with the registry's planned actions."""
    goal_params = [
        GoalParam(name, value, achieve.param_types.get(name) if isinstance(value, str) else None)
        for name, value in sorted(params.items())
        if isinstance(value, SCALARS)
    ]
    # The actions this goal can plan with: those whose parameters are of types it knows.
    known = {t.name for t in achieve.types} | set(achieve.objects) | set(achieve.param_types.values())
    actions = [
        a.schema
        for _, a in sorted(registry.actions.items())
        if a.schema is not None
        and all(t in known for _, t in a.schema.params)
        and (achieve.actions is None or a.name in achieve.actions)
    ]
    return Problem(
        types=achieve.types,
        state=state,
        actions=actions,
        goal=achieve.condition,
        objects={k: tuple(v) for k, v in achieve.objects.items()},
        goal_params=goal_params,
    )


def make_plan(
    achieve: Achieve,
    registry: Registry,
    params: Mapping[str, Any],
    state: Mapping[str, Any],
    exclude: Iterable[str] = (),
) -> Plan | NoPlan:
    """Return the cheapest plan for the goal from ``state`` without the excluded ground actions."""
    return plan(problem_for(achieve, registry, params, state), achieve.budget, exclude=frozenset(exclude))


def plan_steps(
    result: Plan, achieve: Achieve | None = None, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Return the plan as goal steps (action and bound arguments) for ``plan_goals_v1``.

    A maintained goal's plan ends with its watch (see ``watch_steps``).
    """
    steps = [{"action": op.action, "args": op.bindings} for op in result.steps]
    if achieve is not None and achieve.maintain:
        steps += watch_steps(achieve, params or {})
    return steps


def plan_detail(
    result: Plan, achieve: Achieve, params: Mapping[str, Any], versions: Mapping[str, int], reason: str
) -> dict[str, Any]:
    """Return what ``goal.planned`` records beside the steps: cost, ground actions, the state versions read."""
    goal = bind(achieve.condition, {k: v for k, v in params.items() if isinstance(v, SCALARS)})
    read = sorted({p for op in result.steps for p in _paths(op.pre)} | set(_paths((goal,))))
    return {
        "reason": reason,
        "cost": result.cost,
        "ops": [op.name for op in result.steps],
        "expanded": result.expanded,
        "versions": {p: versions.get(p) for p in read},
    }


def _paths(conditions: Iterable[Condition]) -> list[str]:
    """Return the concrete paths the conditions read."""
    out: list[str] = []
    for c in conditions:
        if isinstance(c, Compare):
            terms: tuple[Any, ...] = (c.left, c.right)
        elif isinstance(c, In):
            terms = (c.left, *c.options)
        elif isinstance(c, Exists):
            terms = (c.path,)
        elif isinstance(c, And | Or):
            out.extend(_paths(c.args))
            continue
        elif isinstance(c, Not):
            out.extend(_paths((c.arg,)))
            continue
        else:
            continue
        out.extend(t.template for t in terms if isinstance(t, Path) and "{" not in t.template)
    return out


def ground_op_name(schema: ActionSchema, args: Mapping[str, Any]) -> str:
    """Return the ground action name of a step (``payment.charge(o1)``)."""
    return ground_name(schema.name, [args.get(p) for p, _ in schema.params])


def bound(schema: ActionSchema, args: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the step's bindings when they cover every parameter of the schema, else None."""
    if not all(p in args and isinstance(args[p], SCALARS) for p, _ in schema.params):
        return None
    return {p: args[p] for p, _ in schema.params}


def precondition_holds(schema: ActionSchema, args: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    """Return whether the step's precondition holds in ``state``."""
    bindings = bound(schema, args)
    return bindings is not None and holds(schema.pre, state, bindings)


def goal_holds(achieve: Achieve, params: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    """Return whether the goal's condition holds in ``state``."""
    return holds(achieve.condition, state, {k: v for k, v in params.items() if isinstance(v, SCALARS)})


def effect_changes(schema: ActionSchema, args: Mapping[str, Any]) -> list[Change]:
    """Return the declared effects of a step as state changes (none when its arguments do not bind them)."""
    bindings = bound(schema, args)
    if bindings is None:
        return []
    changes = []
    for effect in schema.effects:
        e = bind_effect(effect, bindings)
        path = e.path.template
        if isinstance(e, Set):
            assert isinstance(e.value, Const)
            changes.append(Change.set(path, e.value.value))
        elif isinstance(e, Delete):
            changes.append(Change.delete(path))
        elif isinstance(e, Increment):
            changes.append(Change.inc(path, e.by))
    return changes


__all__ = [
    "Achieve",
    "action_schema",
    "condition_of",
    "effect_changes",
    "goal_holds",
    "ground_op_name",
    "make_plan",
    "plan_detail",
    "plan_steps",
    "precondition_holds",
    "problem_for",
    "scalar_state",
]
