"""The bridge between the runtime and the pure planner: registry actions and state in, goal steps out.

- ``problem_for`` / ``make_plan``: a goal declared by a condition (``Achieve``),
  the registry's planned actions and the current state become a planner
  ``Problem``, and its cheapest plan;
- ``plan_steps`` / ``plan_detail`` / ``watch_steps``: a plan becomes the goal's
  steps for ``plan_goals_v1`` and what ``goal.planned`` records beside them;
- ``goal_holds`` / ``precondition_holds`` / ``ground_op_name``: the checks the
  worker makes before each step (``goalrt.worker.planning`` decides what follows;
  ``goalrt.worker.state_reads`` says which paths they and the planner read);
- ``effect_changes``: an action's declared effects as the state changes its
  completion applies.

Pure functions: no database, no event loop (the search runs in a thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from goalrt.goals.conditions import Achieve
from goalrt.goals.registry import Registry
from goalrt.planner import (
    ActionSchema,
    And,
    Compare,
    Condition,
    Delete,
    Exists,
    GoalParam,
    In,
    Increment,
    NoPlan,
    Not,
    Or,
    Path,
    Plan,
    Problem,
    Set,
    holds,
    plan,
)
from goalrt.planner.actions import bind_effect, merge_effects
from goalrt.planner.conditions import Const, bind
from goalrt.planner.operators import ground_name
from goalrt.state.state import Change

SCALARS = (str, int, float, bool, type(None))


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


def planned_actions(achieve: Achieve, registry: Registry) -> list[ActionSchema]:
    """Return the actions a goal plans with, by name: those whose parameters are of types it knows."""
    known = {t.name for t in achieve.types} | set(achieve.objects) | set(achieve.param_types.values())
    return [
        a.schema
        for _, a in sorted(registry.actions.items())
        if a.schema is not None
        and all(t in known for _, t in a.schema.params)
        and (achieve.actions is None or a.name in achieve.actions)
    ]


def problem_for(achieve: Achieve, registry: Registry, params: Mapping[str, Any], state: Mapping[str, Any]) -> Problem:
    """Return the planning problem of a goal: its condition from ``state`` with the registry's planned actions."""
    goal_params = [
        GoalParam(name, value, achieve.param_types.get(name) if isinstance(value, str) else None)
        for name, value in sorted(params.items())
        if isinstance(value, SCALARS)
    ]
    return Problem(
        types=achieve.types,
        state=state,
        actions=planned_actions(achieve, registry),
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
        "reason": str(reason),
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
    # One change per path, as the planner applied them: deletes first, then sets (merge_effects).
    for e in merge_effects(bind_effect(effect, bindings) for effect in schema.effects):
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
    "RECHECK",
    "effect_changes",
    "goal_holds",
    "ground_op_name",
    "make_plan",
    "plan_detail",
    "plan_steps",
    "planned_actions",
    "precondition_holds",
    "problem_for",
    "scalar_state",
    "watch_steps",
]
