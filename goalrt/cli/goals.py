"""CLI commands for goals: submit, list, get, cancel, resume."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from goalrt.cli.goal_input import handlers_option, load_handlers, parse_params
from goalrt.cli.support import (
    AppContext,
    ForkCommand,
    JsonParam,
    clip,
    emit_json,
    json_option,
    pass_app,
    print_table,
    show_json,
)
from goalrt.durations import parse_duration
from goalrt.errors import ConfigError, InvalidGoalError
from goalrt.goals.status import GoalStatus

if TYPE_CHECKING:
    from goalrt.goals.goals import GoalInfo


@click.command("submit", cls=ForkCommand)
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
@click.option(
    "--traceparent",
    default=None,
    metavar="TRACEPARENT",
    help="A W3C traceparent: the workers' spans for the goal continue this trace.",
)
@click.option("--wait", "wait", is_flag=True, help="Wait until the goal ends; print how (exit 1 unless complete).")
@click.option(
    "--timeout",
    default=None,
    metavar="DURATION",
    help="With --wait: give up waiting after this long (e.g. 30s; exit 1; the goal goes on).",
)
@json_option("Print {id, created} as JSON (with --wait, also status, result and error).")
@handlers_option
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
    traceparent: str | None,
    wait: bool,
    timeout: str | None,
    as_json: bool,
    handlers: tuple[str, ...],
) -> None:
    """Submit goal NAME with params (KEY=VALUE arguments and/or --params) and print its id.

    With --wait, wait until it ends (woken by the worker that ends it) and
    print its result or error; the exit code is 0 only if it completed.
    """
    if at is not None and delay is not None:
        raise click.UsageError("give --at or --delay, not both")
    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    wait_seconds = parse_duration(timeout, what="--timeout") if timeout is not None else None
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise ConfigError(f"invalid --at {at!r}: use an ISO 8601 time, e.g. 2026-11-21T10:00:00Z") from None
    seconds = parse_duration(delay, what="--delay") if delay is not None else None
    due = _deadline(deadline)
    if traceparent is not None:
        from goalrt import tracing

        problem = tracing.traceparent_problem(traceparent, "--traceparent")
        if problem is not None:
            raise ConfigError(problem)
    load_handlers(handlers)
    from goalrt.goals.registry import default_registry

    with app.goals(default_registry) as goals:
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
            traceparent=traceparent,
        )
        if not wait:
            if as_json:
                emit_json({"id": submitted.id, "created": submitted.created})
            else:
                click.echo(str(submitted.id))
            return
        if not as_json:
            click.echo(str(submitted.id))
        info = goals.wait(submitted.id, timeout=wait_seconds)
    if as_json:
        emit_json(
            {
                "id": submitted.id,
                "created": submitted.created,
                "status": info.status,
                "result": info.result,
                "error": info.last_error,
            }
        )
    elif info.status == GoalStatus.COMPLETE:
        click.echo(f"complete: {show_json(info.result)}")
    else:
        click.echo(f"{info.status}: {info.last_error or '-'}")
    if info.status != GoalStatus.COMPLETE:
        raise SystemExit(1)


def _deadline(text: str | None) -> datetime | float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return parse_duration(text, what="--deadline")


@click.command("list", cls=ForkCommand)
@click.option("--status", type=click.Choice([s.value for s in GoalStatus]), default=None, help="Only this status.")
@click.option("--name", default=None, help="Only goals of this type.")
@click.option("--waiting", is_flag=True, help="Only waiting goals, with what each waits for.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@json_option("Print one JSON object per line.")
@pass_app
def list_cmd(app: AppContext, status: str | None, name: str | None, waiting: bool, limit: int, as_json: bool) -> None:
    """List goals, newest first."""
    if waiting:
        if status is not None or name is not None:
            raise click.UsageError("--waiting lists every waiting goal: leave out --status and --name")
        _list_waiting(app, limit, as_json)
        return
    with app.goals() as goals:
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
                _shown_status(r.status, r.unserved_action),
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
    with app.goals() as goals:
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


@click.command("get", cls=ForkCommand)
@click.argument("goal_id", type=int)
@click.option("--tree", is_flag=True, help="Show the goal's tree of child goals instead.")
@json_option("Print the goal, its steps and its events as JSON.")
@pass_app
def get(app: AppContext, goal_id: int, tree: bool, as_json: bool) -> None:
    """Show goal ID: params, status, steps with attempts, result or error, and its events."""
    if tree:
        with app.goals() as goals:
            nodes = goals.tree(goal_id)
        if as_json:
            emit_json([n.to_json() for n in nodes])
            return
        for n in nodes:
            detail = n.last_error if n.status in ("failed", "cancelled") else None
            click.echo(f"{'  ' * n.depth}{n.id} {n.name} [{n.status}]" + (f"  {clip(detail, 60)}" if detail else ""))
        return
    with app.goals() as goals:
        info = goals.get(goal_id)
    if as_json:
        emit_json(info.to_json())
    else:
        _print_goal(info)


def _shown_status(status: str, unserved_action: str | None) -> str:
    """Return a goal's status as listed: with the action it waits for a worker to run, if any."""
    if unserved_action is None:
        return status
    return f"{status} (waiting for a worker that can run {unserved_action})"


def _print_goal(info: GoalInfo) -> None:
    status = _shown_status(info.status, info.unserved_action)
    click.echo(f"goal {info.id}: {info.name}  [{status}]  priority {info.priority}")
    click.echo(f"params: {show_json(info.params)}")
    if info.key:
        click.echo(f"key: {info.key}")
    if info.lease_owner:
        click.echo(f"lease: {info.lease_owner}, epoch {info.lease_epoch}, until {info.lease_expires_at}")
    if info.parent_id:
        click.echo(f"parent: goal {info.parent_id} (step {info.parent_step})")
    if info.deadline_at:
        click.echo(f"deadline: {info.deadline_at}")
    if info.unserved_action:
        click.echo(
            f"waiting: no live worker can run {info.unserved_action} (none registered its handler); "
            "start one that has it"
        )
    if info.blocked_on:
        click.echo(f"blocked by limit {info.blocked_on} until a slot frees (at the latest {info.wake_at})")
    elif info.wake_at and info.status in ("pending", "active"):
        click.echo(f"not before: {info.wake_at}")
    if info.status == "complete":
        click.echo(f"result: {show_json(info.result)}")
    elif info.last_error:
        click.echo(f"last error: {info.last_error}")
    failures = [e.data for e in info.events if e.type == "step.failed" and isinstance(e.data, dict)]
    last = failures[-1] if failures else None
    if last is not None and isinstance(last.get("traceback"), str):
        click.echo(f"traceback of step {last.get('seq')} (attempt {last.get('attempt')}):")
        for line in last["traceback"].rstrip("\n").splitlines():
            click.echo(f"  {line}")
    click.echo("steps:")
    if info.steps:
        print_table(
            ("seq", "action", "args", "status", "attempts", "result / error"),
            [
                (
                    str(s.seq),
                    s.action if s.kind in ("action", "children") else f"{s.kind}: {s.action}".replace("wait ", ""),
                    clip(show_json(s.args), 40),
                    f"{s.status} {s.progress_text()}".rstrip() if s.status == "running" else s.status,
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


@click.command("cancel", cls=ForkCommand)
@click.argument("goal_id", type=int)
@click.option("--reason", default=None, metavar="TEXT", help="Why (recorded in the goal.cancelled event).")
@pass_app
def cancel(app: AppContext, goal_id: int, reason: str | None) -> None:
    """Cancel goal ID (pending, active or waiting); a running step is told to stop."""
    with app.goals() as goals:
        goals.cancel(goal_id, reason)
    click.echo(f"goal {goal_id} cancelled")


@click.command("resume", cls=ForkCommand)
@click.argument("goal_id", type=int)
@click.option("--data", "data", type=JsonParam(), required=True, metavar="JSON", help="The answer (a JSON object).")
@click.option("--by", "actor", default=None, metavar="WHO", help="Who answers (recorded in goal.resumed).")
@pass_app
def resume(app: AppContext, goal_id: int, data: object, actor: str | None) -> None:
    """Answer goal ID, waiting at an ask step; a wrong answer is refused and the goal keeps waiting."""
    if not isinstance(data, dict):
        raise InvalidGoalError("--data must be a JSON object")
    with app.goals() as goals:
        outcome = goals.resume(goal_id, data, actor=actor)
    click.echo(f"goal {goal_id} resumed: {outcome}")


@click.command("retry", cls=ForkCommand)
@click.argument("goal_id", type=int)
@click.option(
    "--from-step",
    "from_step",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Run again from step N (default: the first step of its last plan that did not complete).",
)
@click.option("--reason", default=None, metavar="TEXT", help="Why (recorded in the goal.retried event).")
@pass_app
def retry(app: AppContext, goal_id: int, from_step: int | None, reason: str | None) -> None:
    """Run failed or cancelled goal ID again: its steps from a step on, as a new plan."""
    with app.goals() as goals:
        first = goals.retry(goal_id, from_step=from_step, reason=reason)
    if first is None:
        click.echo(f"goal {goal_id} pending again (it will be planned anew)")
    else:
        click.echo(f"goal {goal_id} pending again, from step {first}")


COMMANDS = (submit, list_cmd, get, cancel, resume, retry)
