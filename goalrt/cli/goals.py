"""CLI commands for goals: submit, list, get, cancel, worker, workers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from datetime import datetime
from typing import Any

import click

from goalrt.cli.support import (
    AppContext,
    F,
    JsonParam,
    clip,
    emit_json,
    fork_option,
    pass_app,
    print_table,
    show_json,
)
from goalrt.db.connect import connect
from goalrt.durations import parse_duration
from goalrt.errors import ConfigError, InvalidGoalError
from goalrt.goals.goals import GoalInfo, Goals, GoalStatus
from goalrt.goals.registry import default_registry, import_modules
from goalrt.state import forks

ENV_HANDLERS = "GOALRT_HANDLERS"


def _handlers_option(f: F) -> F:
    return click.option(
        "--handlers",
        "handlers",
        multiple=True,
        envvar=ENV_HANDLERS,
        metavar="MODULE",
        help="Import this module of action handlers and goal types (repeatable; default: $GOALRT_HANDLERS, "
        "comma-separated).",
    )(f)


def _load_handlers(handlers: tuple[str, ...]) -> None:
    modules = [m for item in handlers for m in item.split(",") if m.strip()]
    if modules:
        import_modules(modules)


def coerce_param(value: str, spec: dict[str, Any] | None) -> Any:
    """Return a ``key=value`` argument as JSON: kept as text when the field is a string, else parsed if it can be."""
    kinds = _kinds(spec)
    if kinds is not None and kinds <= {"string", "null"} and not (value == "null" and "null" in kinds):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _kinds(spec: dict[str, Any] | None) -> set[str] | None:
    if not isinstance(spec, dict):
        return None
    if isinstance(spec.get("type"), str):
        return {spec["type"]}
    if isinstance(spec.get("type"), list):
        return set(spec["type"])
    alternatives = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(alternatives, list):
        out: set[str] = set()
        for alt in alternatives:
            kinds = _kinds(alt)
            if kinds is None:
                return None
            out |= kinds
        return out
    return None


def parse_params(pairs: tuple[str, ...], base: Any, schema: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``--params JSON`` with ``key=value`` arguments (which win), typed by the goal's schema."""
    if base is not None and not isinstance(base, dict):
        raise InvalidGoalError("--params must be a JSON object")
    params = dict(base or {})
    properties = (schema or {}).get("properties") or {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"parameter {pair!r} is not key=value")
        params[key] = coerce_param(value, properties.get(key))
    return params


@click.command("submit")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--params", "params_json", type=JsonParam(), default=None, help="Params as a JSON object.")
@click.option("--priority", type=int, default=None, help="Higher runs first (default 0).")
@click.option("--at", "at", default=None, metavar="TIME", help="Not before this time (ISO 8601; no zone means UTC).")
@click.option("--delay", default=None, metavar="DURATION", help="Not before this long from now (e.g. 30s, 5m).")
@click.option("--key", default=None, metavar="KEY", help="Idempotency key: the same key returns the same goal.")
@click.option(
    "--deadline",
    default=None,
    metavar="TIME|DURATION",
    help="Fail with deadline_exceeded if not done by then (ISO 8601 time, or e.g. 1h from now).",
)
@click.option("--partition-key", default=None, metavar="KEY", help="Place the goal (workers serve partitions).")
@click.option("--json", "as_json", is_flag=True, help="Print {id, created} as JSON.")
@_handlers_option
@fork_option
@pass_app
def submit(
    app: AppContext,
    name: str,
    pairs: tuple[str, ...],
    params_json: Any,
    priority: int | None,
    at: str | None,
    delay: str | None,
    key: str | None,
    deadline: str | None,
    partition_key: str | None,
    as_json: bool,
    handlers: tuple[str, ...],
) -> None:
    """Submit goal NAME with params (KEY=VALUE arguments and/or --params) and print its id."""
    if at is not None and delay is not None:
        raise click.UsageError("give --at or --delay, not both")
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise ConfigError(f"invalid --at {at!r}: use an ISO 8601 time, e.g. 2026-11-21T10:00:00Z") from None
    seconds = parse_duration(delay, what="--delay") if delay is not None else None
    due = _deadline(deadline)
    _load_handlers(handlers)
    with Goals.connect(app.url, fork=app.fork, registry=default_registry) as goals:
        if name in default_registry.goal_types:
            goals.register()
        params = parse_params(pairs, params_json, goals.params_schema(name))
        submitted = goals.submit(
            name,
            params,
            priority=priority,
            at=when,
            delay=seconds,
            key=key,
            deadline=due,
            partition_key=partition_key,
        )
    if as_json:
        emit_json({"id": submitted.id, "created": submitted.created})
    else:
        click.echo(str(submitted.id))


def _deadline(text: str | None) -> datetime | float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return parse_duration(text, what="--deadline")


@click.command("list")
@click.option("--status", type=click.Choice([s.value for s in GoalStatus]), default=None, help="Only this status.")
@click.option("--name", default=None, help="Only goals of this type.")
@click.option("--waiting", is_flag=True, help="Only waiting goals, with what each waits for.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@fork_option
@pass_app
def list_cmd(app: AppContext, status: str | None, name: str | None, waiting: bool, limit: int, as_json: bool) -> None:
    """List goals, newest first."""
    if waiting:
        if status is not None or name is not None:
            raise click.UsageError("--waiting lists every waiting goal: leave out --status and --name")
        _list_waiting(app, limit, as_json)
        return
    with Goals.connect(app.url, fork=app.fork) as goals:
        rows = goals.list(status=status, name=name, limit=limit)
    if as_json:
        for row in rows:
            emit_json(row.to_json())
        return
    print_table(
        ("id", "name", "status", "priority", "step", "claims", "created", "last error"),
        [
            (
                str(r.id),
                r.name,
                r.status,
                str(r.priority),
                "" if r.step_seq is None else str(r.step_seq),
                str(r.claims),
                r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                clip(r.last_error or "", 50),
            )
            for r in rows
        ],
    )


def _list_waiting(app: AppContext, limit: int, as_json: bool) -> None:
    with Goals.connect(app.url, fork=app.fork) as goals:
        rows = goals.waiting(limit=limit)
    if as_json:
        for row in rows:
            emit_json(row.to_json())
        return
    print_table(
        ("id", "name", "step", "waits for", "since", "timeout"),
        [
            (
                str(w.id),
                w.name,
                str(w.seq),
                clip(w.describe(), 60),
                "" if w.waiting_since is None else w.waiting_since.strftime("%Y-%m-%d %H:%M:%S"),
                "" if w.timeout_at is None or w.kind == "sleep" else w.timeout_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for w in rows
        ],
    )


@click.command("get")
@click.argument("goal_id", type=int)
@click.option("--tree", is_flag=True, help="Show the goal's tree of child goals instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the goal, its steps and its events as JSON.")
@fork_option
@pass_app
def get(app: AppContext, goal_id: int, tree: bool, as_json: bool) -> None:
    """Show goal ID: params, status, steps with attempts, result or error, and its events."""
    if tree:
        with Goals.connect(app.url, fork=app.fork) as goals:
            nodes = goals.tree(goal_id)
        if as_json:
            emit_json([n.to_json() for n in nodes])
            return
        for n in nodes:
            detail = n.last_error if n.status in ("failed", "cancelled") else None
            click.echo(f"{'  ' * n.depth}{n.id} {n.name} [{n.status}]" + (f"  {clip(detail, 60)}" if detail else ""))
        return
    with Goals.connect(app.url, fork=app.fork) as goals:
        info = goals.get(goal_id)
    if as_json:
        emit_json(info.to_json())
    else:
        _print_goal(info)


def _print_goal(info: GoalInfo) -> None:
    click.echo(f"goal {info.id}: {info.name}  [{info.status}]  priority {info.priority}")
    click.echo(f"params: {show_json(info.params)}")
    if info.key:
        click.echo(f"key: {info.key}")
    if info.lease_owner:
        click.echo(f"lease: {info.lease_owner}, epoch {info.lease_epoch}, until {info.lease_expires_at}")
    if info.parent_id:
        click.echo(f"parent: goal {info.parent_id} (step {info.parent_step})")
    if info.deadline_at:
        click.echo(f"deadline: {info.deadline_at}")
    if info.blocked_on:
        click.echo(f"blocked by limit {info.blocked_on} until a slot frees (at the latest {info.wake_at})")
    elif info.wake_at and info.status in ("pending", "active"):
        click.echo(f"not before: {info.wake_at}")
    if info.status == "complete":
        click.echo(f"result: {show_json(info.result)}")
    elif info.last_error:
        click.echo(f"last error: {info.last_error}")
    click.echo("steps:")
    if info.steps:
        print_table(
            ("seq", "action", "args", "status", "attempts", "result / error"),
            [
                (
                    str(s.seq),
                    s.action if s.kind in ("action", "children") else f"{s.kind}: {s.action}".replace("wait ", ""),
                    clip(show_json(s.args), 40),
                    s.status,
                    str(s.attempts),
                    clip(s.error or ("" if s.result is None else show_json(s.result)), 50),
                )
                for s in info.steps
            ],
        )
    else:
        click.echo("  (not planned yet)")
    planned = [e.data for e in info.events if e.type == "goal.planned" and isinstance(e.data, dict)]
    if any("planner" in p or p.get("reason") for p in planned):
        click.echo("plans:")
        for p in planned:
            detail = p.get("planner") or {}
            ops = ", ".join(detail.get("ops") or [s.get("action", "?") for s in p.get("steps") or []]) or "(none)"
            cost = f"cost {detail['cost']:g}: " if isinstance(detail.get("cost"), int | float) else ""
            why = f" - {detail['why']}" if detail.get("why") else ""
            click.echo(f"  plan {p.get('plan_no')} ({p.get('reason') or 'initial'}){why}: {cost}{ops}")
    click.echo("events:")
    print_table(
        ("pos", "type", "data"),
        [(str(e.pos), e.type, clip(show_json(e.data), 80)) for e in info.events],
    )


@click.command("cancel")
@click.argument("goal_id", type=int)
@click.option("--reason", default=None, metavar="TEXT", help="Why (recorded in the goal.cancelled event).")
@fork_option
@pass_app
def cancel(app: AppContext, goal_id: int, reason: str | None) -> None:
    """Cancel goal ID (pending, active or waiting); a running step is told to stop."""
    with Goals.connect(app.url, fork=app.fork) as goals:
        goals.cancel(goal_id, reason)
    click.echo(f"goal {goal_id} cancelled")


@click.command("worker")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=10, show_default=True, help="Steps at once.")
@_handlers_option
@click.option("--name", default=None, help="A name for this worker (default host:pid).")
@click.option("--lease", default="30s", show_default=True, help="Lease length; heartbeats renew it every third.")
@click.option("--poll", default="1s", show_default=True, help="Poll interval when no notification arrives.")
@click.option("--grace", default="30s", show_default=True, help="On SIGTERM, how long running steps may finish.")
@click.option(
    "--partitions",
    default=None,
    metavar="B,B/N",
    help="Serve only these buckets of N partitions (e.g. 0,1/4 or 0-3/16), and goals without a partition key.",
)
@click.option(
    "--takeover",
    default="10s",
    show_default=True,
    help="A worker without --partitions takes goals of a served partition after they wait this long.",
)
@click.option("--only", multiple=True, metavar="NAME", help="Claim only goals of this type (repeatable).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@fork_option
@pass_app
def worker(
    app: AppContext,
    concurrency: int,
    handlers: tuple[str, ...],
    name: str | None,
    lease: str,
    poll: str,
    grace: str,
    partitions: str | None,
    takeover: str,
    only: tuple[str, ...],
    log_level: str,
) -> None:
    """Run a worker: claim goals and run their steps until SIGTERM/SIGINT (then drain and exit 0)."""
    from goalrt.gdl.runtime import current
    from goalrt.worker.worker import Partitions, Worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _load_handlers(handlers)
    url = app.url
    with connect(url) as conn:
        schema = forks.schema_for(conn, app.fork)
        if not default_registry.goal_types and current(conn, schema) is None:
            raise ConfigError(
                "no goal types registered: give --handlers MODULE (or set $GOALRT_HANDLERS), "
                "or load GDL definitions with `goalrt gdl load`"
            )
    w = Worker(
        url,
        default_registry,
        concurrency=concurrency,
        name=name,
        lease=parse_duration(lease, what="--lease"),
        poll=parse_duration(poll, what="--poll"),
        grace=parse_duration(grace, what="--grace"),
        schema=schema,
        partitions=None if partitions is None else Partitions.parse(partitions),
        only=[n for item in only for n in item.split(",") if n] or None,
        takeover=parse_duration(takeover, what="--takeover"),
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.request_stop)
        await w.run()

    asyncio.run(main())
    s = w.stats
    click.echo(
        f"worker {w.id} (pid {os.getpid()}) exited: {s.claimed} claims, {s.steps} steps, {s.completed} goals "
        f"completed, {s.failed} failed, {s.retried} retries, {s.refused} refused, {s.released} released",
        err=True,
    )
    stuck = [t.name for t in threading.enumerate() if t.name.startswith("goalrt-action") and t.is_alive()]
    if stuck:
        # A sync handler still running past the grace period cannot be
        # stopped (threads cannot be killed), and its goal has been released:
        # exit without waiting for it, as a drained worker should.
        click.echo(f"worker {w.id}: leaving {len(stuck)} handler thread(s) still running", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@fork_option
@pass_app
def workers(app: AppContext, as_json: bool) -> None:
    """List registered worker processes and when each was last seen."""
    with Goals.connect(app.url, fork=app.fork) as goals:
        rows = goals.workers()
    if as_json:
        for row in rows:
            emit_json(row)
        return
    print_table(
        ("id", "host", "pid", "concurrency", "last seen", "goal types"),
        [
            (
                r["id"],
                r["hostname"],
                str(r["pid"]),
                str(r["concurrency"]),
                f"{r['seconds_since_seen']:.1f}s ago",
                clip(", ".join(r["goal_types"]), 40),
            )
            for r in rows
        ],
    )


COMMANDS = (submit, list_cmd, get, cancel, worker, workers)
