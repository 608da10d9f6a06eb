"""CLI commands for running goalrt: health (is it working?) and metrics (how is it doing?)."""

from __future__ import annotations

import click

from goalrt.cli.support import AppContext, ForkCommand, emit_json, json_option, pass_app, print_table
from goalrt.durations import parse_duration
from goalrt.errors import ConfigError, GoalrtError


def _seconds(value: str, option: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command("health", cls=ForkCommand)
@click.option("--max-wait", default="60s", show_default=True, help="Warn when a runnable goal has waited longer.")
@json_option("Print the checks as JSON.")
@pass_app
def health(app: AppContext, max_wait: str, as_json: bool) -> None:
    """Check that goalrt works here: the database, its schema, workers, the backlog, leases and the clock.

    One line per check (ok, warn or fail); exit 1 when any fails.
    """
    from goalrt.db.migrate import check_migrated
    from goalrt.goals.health import Check, Level, alive_workers, queue_checks

    wait = _seconds(max_wait, "--max-wait")
    checks: list[Check] = []
    try:
        check_migrated(app.url)
        checks.append(Check("database", Level.OK, "reachable and migrated"))
        with app.goals() as goals:
            figures = goals.figures()
            alive = alive_workers(goals.workers())
            checks += queue_checks(figures, alive, goals.unserved(), max_wait=wait)
    except ConfigError:
        raise
    except GoalrtError as exc:
        checks.append(Check("database", Level.FAIL, (str(exc).strip().splitlines() or [type(exc).__name__])[0]))
    failed = [c for c in checks if c.level is Level.FAIL]
    if as_json:
        emit_json(
            {"ok": not failed, "checks": [{"name": c.name, "level": c.level.value, "detail": c.detail} for c in checks]}
        )
    else:
        for c in checks:
            click.echo(f"{c.level.value:4s}  {c.name:9s} {c.detail}")
    if failed:
        raise SystemExit(1)


@click.command("metrics", cls=ForkCommand)
@click.option("--window", default="5m", show_default=True, help="How far back recent goals count.")
@click.option(
    "--newest",
    type=click.IntRange(1, 1_000_000),
    default=10_000,
    show_default=True,
    help="Look at this many of the newest goals at most (bounds the query).",
)
@json_option("Print the figures as JSON.")
@pass_app
def metrics(app: AppContext, window: str, newest: int, as_json: bool) -> None:
    """Print goals by status, recent throughput and submit-to-end times, the backlog, workers and the clock."""
    from goalrt.goals.health import alive_workers

    seconds = _seconds(window, "--window")
    with app.goals() as goals:
        counts = goals.counts()
        figures = goals.figures()
        finished = goals.finished(seconds, newest)
        alive = alive_workers(goals.workers())
    if as_json:
        emit_json(
            {
                "goals": counts,
                "window_seconds": seconds,
                "finished": [
                    {
                        "status": f.status,
                        "count": f.count,
                        "per_second": f.count / seconds,
                        "p50": f.p50,
                        "p95": f.p95,
                        "p99": f.p99,
                        "max": f.max,
                    }
                    for f in finished
                ],
                "runnable": figures.runnable,
                "oldest_runnable_seconds": figures.oldest_runnable,
                "waiting": figures.waiting,
                "parked": figures.parked,
                "lease_expired": figures.expired,
                "workers_alive": alive,
                "head": figures.head,
                "unpositioned": figures.unpositioned,
                "tick_lag_seconds": figures.tick_lag,
            }
        )
        return
    click.echo("goals: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    click.echo(f"ended in the last {window} (among the newest {newest}), seconds from submit to end:")
    if finished:
        print_table(
            ("status", "goals", "per second", "p50", "p95", "p99", "max"),
            [
                (
                    f.status,
                    str(f.count),
                    f"{f.count / seconds:.2f}",
                    f"{f.p50:.3f}",
                    f"{f.p95:.3f}",
                    f"{f.p99:.3f}",
                    f"{f.max:.3f}",
                )
                for f in finished
            ],
        )
    else:
        click.echo("  none")
    click.echo(
        f"backlog: {figures.runnable} runnable (oldest due {figures.oldest_runnable:.1f}s ago), "
        f"{figures.waiting} waiting, {figures.parked} parked, {figures.expired} with an expired lease"
    )
    click.echo(f"workers: {alive} alive")
    click.echo(f"log: head {figures.head}, {figures.unpositioned} to position (lag {figures.tick_lag:.1f}s)")


COMMANDS = (health, metrics)
