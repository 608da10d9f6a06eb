"""CLI commands for cluster-wide limits on actions: limits (list), limits set, limits drop."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from goalrt.cli.support import AppContext, ForkGroup, emit_json, json_option, pass_app, print_table
from goalrt.errors import InvalidGoalError

if TYPE_CHECKING:
    from goalrt.goals.goals import Limit


def _show(limit: Limit) -> str:
    parts = []
    if limit.max_concurrent is not None:
        parts.append(f"at most {limit.max_concurrent} at once")
    if limit.rate is not None:
        parts.append(f"{limit.rate} per {limit.per_seconds:g}s (burst {limit.burst or limit.rate})")
    scope = f" per {limit.key_arg}" if limit.key_arg else ""
    return f"{limit.action}{scope}: " + ", ".join(parts)


@click.group("limits", cls=ForkGroup, fork=True, invoke_without_command=True)
@json_option("Print one JSON object per line.")
@click.pass_context
def limits(ctx: click.Context, as_json: bool) -> None:
    """List cluster-wide limits on actions (set them with `limits set`)."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(AppContext)
    assert app is not None
    with app.goals() as goals:
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
    with app.goals() as goals:
        limit = goals.set_limit(action, concurrency=concurrency, rate=rate, per=per, burst=burst, key=key)
    click.echo(f"limit set: {_show(limit)}")


@limits.command("drop")
@click.argument("action")
@click.option("--key", default=None, metavar="ARG", help="The per-argument limit to drop.")
@pass_app
def limit_drop(app: AppContext, action: str, key: str | None) -> None:
    """Remove a limit on ACTION (goals it parked may run at once)."""
    with app.goals() as goals:
        dropped = goals.drop_limit(action, key)
    if not dropped:
        raise InvalidGoalError(f"no limit on {action}" + (f" per {key}" if key else ""))
    click.echo(f"limit dropped: {action}" + (f" per {key}" if key else ""))


COMMANDS = (limits,)
