"""CLI command ``goalrt plan``: plan a goal declared by a condition without running anything (dry run, what-if)."""

from __future__ import annotations

from typing import Any

import click

from goalrt.cli.goal_input import handlers_option, load_handlers, parse_params
from goalrt.cli.support import AppContext, ForkCommand, JsonParam, emit_json, json_option, pass_app
from goalrt.errors import ConfigError, GoalrtError


@click.command("plan", cls=ForkCommand)
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--params", "params_json", type=JsonParam(), default=None, help="Params as a JSON object.")
@click.option("--at", default=None, metavar="POS|TIME", help="Plan from the state as it was here (default: now).")
@click.option("--explain", is_flag=True, help="Show what each step changes, or why there is no plan.")
@json_option("Print the plan (or why there is none) as JSON.")
@handlers_option
@pass_app
def plan_cmd(
    app: AppContext,
    name: str,
    pairs: tuple[str, ...],
    params_json: Any,
    at: str | None,
    explain: bool,
    as_json: bool,
    handlers: tuple[str, ...],
) -> None:
    """Plan goal NAME (declared by a condition) from the current or a past state; run nothing.

    Exits 1 when there is no plan, after printing why.
    """
    from goalrt.goals.registry import default_registry
    from goalrt.planner import NoPlan
    from goalrt.worker.planner_bridge import make_plan, scalar_state

    load_handlers(handlers)
    goal_type = default_registry.goal_types.get(name)
    if goal_type is None:
        known = ", ".join(sorted(default_registry.goal_types)) or "none (give --handlers MODULE)"
        raise ConfigError(f"unknown goal type {name!r}: known: {known}")
    if goal_type.achieve is None:
        raise ConfigError(f"goal {name} lists its steps; only a goal declared by a condition is planned")
    params = goal_type.normalized(parse_params(pairs, params_json, goal_type.params_schema()))
    with app.state() as state:
        entries = state.list(at=at)
    result = make_plan(goal_type.achieve, default_registry, params, scalar_state((e.path, e.value) for e in entries))
    if as_json:
        emit_json({"name": name, "params": params, "found": not isinstance(result, NoPlan), **result.to_json()})
    elif explain or isinstance(result, NoPlan):
        click.echo(result.explain())
    else:
        steps = ", ".join(op.name for op in result.steps) or "nothing to do: the goal already holds"
        click.echo(f"plan (cost {result.cost:g}): {steps}")
    if isinstance(result, NoPlan):
        raise GoalrtError(f"no plan for {name}: {result.message}")


COMMANDS = (plan_cmd,)
