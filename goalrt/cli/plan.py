"""CLI command ``goalrt plan``: plan a goal declared by a condition without running anything (dry run, what-if)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from goalrt.cli.goal_input import handlers_option, load_handlers, parse_params
from goalrt.cli.support import AppContext, ForkCommand, JsonParam, emit_json, json_option, pass_app
from goalrt.errors import ConfigError, GoalrtError

if TYPE_CHECKING:
    from goalrt.goals.registry import Registry


@click.command("plan", cls=ForkCommand)
@click.argument("name", required=False)
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--params", "params_json", type=JsonParam(), default=None, help="Params as a JSON object.")
@click.option("--at", default=None, metavar="POS|TIME", help="Plan from the state as it was here (default: now).")
@click.option("--explain", is_flag=True, help="Show what each step changes, or why there is no plan.")
@json_option("Print the plan (or why there is none) as JSON.")
@handlers_option
@click.option(
    "--pddl",
    nargs=2,
    default=None,
    metavar="DOMAIN PROBLEM",
    help="Plan a PDDL task (STRIPS) from these two files instead of a goal; needs no database.",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="With --pddl: the most nodes to expand.",
)
@click.option("--cpu", type=click.FloatRange(min=0, min_open=True), default=None, help="With --pddl: CPU seconds.")
@pass_app
def plan_cmd(
    app: AppContext,
    name: str | None,
    pairs: tuple[str, ...],
    params_json: Any,
    at: str | None,
    explain: bool,
    as_json: bool,
    handlers: tuple[str, ...],
    pddl: tuple[str, str] | None,
    budget: int,
    cpu: float | None,
) -> None:
    """Plan goal NAME (declared by a condition) from the current or a past state; run nothing.

    With --pddl DOMAIN PROBLEM, plan that PDDL task instead (no NAME, no database).
    Exits 1 when there is no plan, after printing why.
    """
    if pddl is not None:
        if name is not None or pairs or params_json is not None or at is not None or handlers:
            raise click.UsageError("--pddl takes no goal NAME, params, --at or --handlers")
        _plan_pddl(pddl, budget, cpu, explain=explain, as_json=as_json)
        return
    if name is None:
        raise click.UsageError("missing argument NAME (or give --pddl DOMAIN PROBLEM)")
    from goalrt.goals.registry import default_registry
    from goalrt.planner import NoPlan
    from goalrt.worker.planner_bridge import make_plan, scalar_state

    load_handlers(handlers)
    registry = default_registry
    if name not in registry.goal_types:
        # A goal GDL declared: plan it with the definitions workers plan with (the newest loaded version).
        registry = _with_gdl(app, registry)
    goal_type = registry.goal_types.get(name)
    if goal_type is None:
        known = ", ".join(sorted(registry.goal_types)) or "none (give --handlers MODULE, or load GDL)"
        raise ConfigError(f"unknown goal type {name!r}: known: {known}")
    if goal_type.achieve is None:
        raise ConfigError(f"goal {name} lists its steps; only a goal declared by a condition is planned")
    params = goal_type.normalized(parse_params(pairs, params_json, goal_type.params_schema()))
    with app.state() as state:
        entries = state.list(at=at)
    result = make_plan(goal_type.achieve, registry, params, scalar_state((e.path, e.value) for e in entries))
    if as_json:
        emit_json({"name": name, "params": params, "found": not isinstance(result, NoPlan), **result.to_json()})
    elif explain or isinstance(result, NoPlan):
        click.echo(result.explain())
    else:
        steps = ", ".join(op.name for op in result.steps) or "nothing to do: the goal already holds"
        click.echo(f"plan (cost {result.cost:g}): {steps}")
    if isinstance(result, NoPlan):
        raise GoalrtError(f"no plan for {name}: {result.message}")


def _with_gdl(app: AppContext, handlers: Registry) -> Registry:
    """Return ``handlers`` with the goal types and actions of the newest loaded GDL version (as a worker has them)."""
    from goalrt.db import schemas
    from goalrt.db.connect import connect
    from goalrt.gdl.runtime import current
    from goalrt.worker.definitions import registry_for

    with connect(app.url) as conn:
        defs = current(conn, schemas.schema_for(conn, app.fork))
    return handlers if defs is None else registry_for(defs.body, handlers)


def _plan_pddl(files: tuple[str, str], budget: int, cpu: float | None, *, explain: bool, as_json: bool) -> None:
    """Plan a PDDL task: print the plan as PDDL steps, ``(action arg ...)``, under the search figures."""
    from goalrt.planner import Budget, NoPlan, plan
    from goalrt.planner.pddl import load_pddl, to_problem

    task = load_pddl(*files)
    result = plan(to_problem(task), Budget(max_expansions=budget, cpu_seconds=cpu))
    if as_json:
        where = {"domain": task.domain.name, "problem": task.name, "found": not isinstance(result, NoPlan)}
        emit_json({**where, **result.to_json()})
    elif explain or isinstance(result, NoPlan):
        click.echo(result.explain())
    else:
        click.echo(
            f"plan: {result.length} steps, cost {result.cost:g} (minimum); {result.expanded} expanded, "
            f"{result.generated} generated, {result.ground_actions} ground actions, {result.seconds * 1000:.1f} ms"
        )
        for op in result.steps:
            click.echo(f"({' '.join([op.action, *(str(v) for _, v in op.args)])})")
    if isinstance(result, NoPlan):
        raise GoalrtError(f"no plan for {task.name}: {result.message}")


COMMANDS = (plan_cmd,)
