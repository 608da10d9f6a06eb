"""CLI commands for schedules: schedules list (the default), schedules set, schedules drop."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from goalrt.cli.goal_input import parse_params
from goalrt.cli.support import AppContext, ForkGroup, JsonParam, emit_json, json_option, pass_app, print_table
from goalrt.durations import parse_duration
from goalrt.errors import ConfigError, InvalidGoalError

if TYPE_CHECKING:
    from goalrt.goals.goals import Schedule


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _next(schedule: Schedule, count: int) -> str:
    if not schedule.enabled:
        return "paused" + (f": {schedule.last_error}" if schedule.last_error else "")
    return ", ".join(_when(t) for t in schedule.next_runs(count))


@click.group("schedules", cls=ForkGroup, fork=True, invoke_without_command=True)
@click.pass_context
def schedules(ctx: click.Context) -> None:
    """List, set and drop schedules: each tick submits its goal once (`schedules` alone lists them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(schedules_list)


@schedules.command("list")
@click.option("--next", "count", type=click.IntRange(1, 100), default=3, show_default=True, help="Next runs to show.")
@json_option("Print one JSON object per line.")
@pass_app
def schedules_list(app: AppContext, count: int = 3, as_json: bool = False) -> None:
    """List the schedules with their next runs (UTC), last tick and counts."""
    with app.goals() as goals:
        rows = goals.schedules()
    if as_json:
        for row in rows:
            emit_json({**row.to_json(), "next_runs": [t.isoformat() for t in row.next_runs(count)]})
        return
    print_table(
        ("name", "goal", "when", "catch_up", "next runs (UTC)", "last tick", "fired", "skipped", "source"),
        [
            (
                s.name,
                s.goal,
                s.timing.describe(),
                s.catch_up,
                _next(s, count),
                _when(s.last_tick),
                str(s.fired),
                str(s.skipped),
                "manual" if s.gdl_version is None else f"gdl v{s.gdl_version}",
            )
            for s in rows
        ],
    )
    errors = [s for s in rows if s.last_error and s.enabled]
    for s in errors:
        click.echo(f"{s.name}: last tick refused: {s.last_error}")


@schedules.command("set")
@click.argument("name")
@click.argument("goal")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--cron", default=None, metavar="EXPR", help='A cron expression, e.g. "0 9 * * 1-5" or @daily.')
@click.option("--every", default=None, metavar="DURATION", help="Or a fixed interval, e.g. 15m (ticks at :00, :15...).")
@click.option("--timezone", default="UTC", show_default=True, help="The time zone the cron is read in.")
@click.option(
    "--catch-up",
    type=click.Choice(["skip", "latest", "all"]),
    default="latest",
    show_default=True,
    help="Ticks missed while no worker ran: submit all, the latest only, or skip them.",
)
@click.option("--params", "params_json", type=JsonParam(), default=None, help="Params as a JSON object.")
@click.option("--paused", is_flag=True, help="Set it without running it (set again without --paused to start).")
@pass_app
def schedule_set(
    app: AppContext,
    name: str,
    goal: str,
    pairs: tuple[str, ...],
    cron: str | None,
    every: str | None,
    timezone: str,
    catch_up: str,
    params_json: Any,
    paused: bool,
) -> None:
    """Set schedule NAME: each tick of --cron or --every submits goal GOAL with these params, once."""
    if (cron is None) == (every is None):
        raise click.UsageError("give --cron or --every (one of them)")
    seconds = parse_duration(every, what="--every") if every is not None else None
    if seconds is not None and seconds != int(seconds):
        raise ConfigError(f"--every {every}: use whole seconds")
    with app.goals() as goals:
        params = parse_params(pairs, params_json, goals.params_schema(goal))
        schedule = goals.set_schedule(
            name, goal, params, cron=cron, every=seconds, timezone=timezone, catch_up=catch_up, enabled=not paused
        )
    runs = schedule.next_runs(1)
    when = f"; first run {_when(runs[0])}" if runs else " (paused)"
    click.echo(f"schedule set: {name} submits {goal} {schedule.timing.describe()}{when}")


@schedules.command("drop")
@click.argument("name")
@pass_app
def schedule_drop(app: AppContext, name: str) -> None:
    """Remove schedule NAME (the goals it submitted stay)."""
    with app.goals() as goals:
        dropped = goals.drop_schedule(name)
    if not dropped:
        raise InvalidGoalError(f"no schedule {name}")
    click.echo(f"schedule dropped: {name}")


COMMANDS = (schedules,)
