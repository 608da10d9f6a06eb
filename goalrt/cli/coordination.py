"""CLI commands for coordination: resume a goal waiting for an answer; cluster-wide limits."""

from __future__ import annotations

import click

from goalrt.cli.support import AppContext, JsonParam, emit_json, fork_option, pass_app, print_table
from goalrt.errors import InvalidGoalError
from goalrt.goals.goals import Goals, Limit


@click.command("resume")
@click.argument("goal_id", type=int)
@click.option("--data", "data", type=JsonParam(), required=True, metavar="JSON", help="The answer (a JSON object).")
@click.option("--by", "actor", default=None, metavar="WHO", help="Who answers (recorded in goal.resumed).")
@fork_option
@pass_app
def resume(app: AppContext, goal_id: int, data: object, actor: str | None) -> None:
    """Answer goal ID, waiting at an ask step; a wrong answer is refused and the goal keeps waiting."""
    if not isinstance(data, dict):
        raise InvalidGoalError("--data must be a JSON object")
    with Goals.connect(app.url, fork=app.fork) as goals:
        outcome = goals.resume(goal_id, data, actor=actor)
    click.echo(f"goal {goal_id} resumed: {outcome}")


def _show(limit: Limit) -> str:
    parts = []
    if limit.max_concurrent is not None:
        parts.append(f"at most {limit.max_concurrent} at once")
    if limit.rate is not None:
        parts.append(f"{limit.rate} per {limit.per_seconds:g}s (burst {limit.burst or limit.rate})")
    scope = f" per {limit.key_arg}" if limit.key_arg else ""
    return f"{limit.action}{scope}: " + ", ".join(parts)


@click.group("limits", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@fork_option
@click.pass_context
def limits(ctx: click.Context, as_json: bool) -> None:
    """List cluster-wide limits on actions (set them with `limits set`)."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(AppContext)
    assert app is not None
    with Goals.connect(app.url, fork=app.fork) as goals:
        rows = goals.limits()
    if as_json:
        for row in rows:
            emit_json(row.to_json())
        return
    print_table(
        ("action", "per", "concurrency", "rate", "running", "parked"),
        [
            (
                r.action,
                r.key_arg or "-",
                "" if r.max_concurrent is None else str(r.max_concurrent),
                "" if r.rate is None else f"{r.rate}/{r.per_seconds:g}s",
                str(r.running),
                str(r.parked),
            )
            for r in rows
        ],
    )


@limits.command("set")
@click.argument("action")
@click.option("--concurrency", type=click.IntRange(1), default=None, help="At most this many running at once.")
@click.option("--rate", type=click.IntRange(1), default=None, help="At most this many starts per --per seconds.")
@click.option("--per", type=click.FloatRange(min=0, min_open=True), default=None, help="The rate's interval (s).")
@click.option("--burst", type=click.IntRange(1), default=None, help="The token bucket's size (default --rate).")
@click.option("--key", default=None, metavar="ARG", help="A separate limit for each value of this argument.")
@fork_option
@pass_app
def limit_set(
    app: AppContext,
    action: str,
    concurrency: int | None,
    rate: int | None,
    per: float | None,
    burst: int | None,
    key: str | None,
) -> None:
    """Set a limit on ACTION, enforced across every worker."""
    with Goals.connect(app.url, fork=app.fork) as goals:
        limit = goals.set_limit(action, concurrency=concurrency, rate=rate, per=per, burst=burst, key=key)
    click.echo(f"limit set: {_show(limit)}")


@limits.command("drop")
@click.argument("action")
@click.option("--key", default=None, metavar="ARG", help="The per-argument limit to drop.")
@fork_option
@pass_app
def limit_drop(app: AppContext, action: str, key: str | None) -> None:
    """Remove a limit on ACTION (goals it parked may run at once)."""
    with Goals.connect(app.url, fork=app.fork) as goals:
        dropped = goals.drop_limit(action, key)
    if not dropped:
        raise InvalidGoalError(f"no limit on {action}" + (f" per {key}" if key else ""))
    click.echo(f"limit dropped: {action}" + (f" per {key}" if key else ""))


COMMANDS = (resume, limits)
