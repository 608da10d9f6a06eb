# The source of goalrt/goals/goals.py: edit this file, then run tools/async_to_sync.py.
"""Goals: submit, inspect, list and cancel them (asynchronous API, asyncpg).

    async with await AsyncGoals.connect() as goals:
        submitted = await goals.submit("checkout", {"order": "o1", "amount": 20}, key="order-o1")
        info = await goals.get(submitted.id)       # info.status: "pending", then "active", "complete"
        await goals.cancel(submitted.id, reason="customer asked")

Every operation is one goalrt SQL function (``submit_goal``, ``cancel_goal``,
...), so psql users get the same rules. When the client knows the goal type
(a ``Registry`` with it), params are validated with pydantic first and the
error names the field; the database checks them again against the JSON
Schema that workers registered.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Self

from goalrt import tracing
from goalrt.db.async_client import AsyncClient
from goalrt.db.driver import AsyncConnection
from goalrt.db.jsontext import check
from goalrt.db.resources import MAIN_SCHEMA
from goalrt.errors import GoalNotFoundError, GoalWaitTimeoutError, InvalidGoalError
from goalrt.goals import done
from goalrt.goals.health import Finished, History, QueueFigures, history_of
from goalrt.goals.model import GoalInfo as GoalInfo
from goalrt.goals.model import (
    GoalSpec,
    limit_options,
    prepared_items,
    prepared_params,
    submit_options,
    traced_items,
    worker_info,
)
from goalrt.goals.model import GoalStatus as GoalStatus
from goalrt.goals.model import GoalSummary as GoalSummary
from goalrt.goals.model import Limit as Limit
from goalrt.goals.model import StepInfo as StepInfo
from goalrt.goals.model import StepStatus as StepStatus
from goalrt.goals.model import Submitted as Submitted
from goalrt.goals.model import TreeNode as TreeNode
from goalrt.goals.model import Waiting as Waiting
from goalrt.goals.registry import Registry
from goalrt.goals.schedules import Schedule as Schedule
from goalrt.goals.schedules import schedule_options


class AsyncGoals(AsyncClient):
    """Submit and inspect goals over one connection (main line or a fork)."""

    _group = "goals"

    def __init__(
        self,
        conn: AsyncConnection,
        *,
        schema: str = MAIN_SCHEMA,
        owns_connection: bool = False,
        registry: Registry | None = None,
    ) -> None:
        super().__init__(conn, schema=schema, owns_connection=owns_connection)
        self.registry = registry

    @classmethod
    async def connect(
        cls, url: str | None = None, *, fork: str | None = None, registry: Registry | None = None
    ) -> Self:
        """Open a client on ``url`` (default: GOALRT_DATABASE_URL or the embedded server).

        With ``fork``, the client acts on that fork instead of the main line;
        with ``registry``, params of the goal types it knows are validated before submitting.
        """
        goals = await super().connect(url, fork=fork)
        goals.registry = registry
        return goals

    async def register(self, registry: Registry | None = None) -> builtins.list[str]:
        """Store the goal types of ``registry`` (default: this client's) with their params' JSON Schema."""
        registry = registry or self.registry
        names = sorted(registry.goal_types) if registry else []
        if registry:
            for name in names:
                schema = self._db.json(registry.goal_types[name].params_schema())
                await self._run("goal_type_register", (name, schema))
        return names

    async def params_schema(self, name: str) -> dict[str, Any] | None:
        """Return the registered JSON Schema of a goal type's params (None if unknown)."""
        rows = await self._run("goal_type_schema", (name,))
        return rows[0][0] if rows else None

    async def submit(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        at: datetime | str | None = None,
        delay: float | None = None,
        key: str | None = None,
        parent: int | None = None,
        partition_key: str | None = None,
        deadline: datetime | str | float | timedelta | None = None,
        traceparent: str | None = None,
    ) -> Submitted:
        """Submit a goal; with ``key``, a second submit returns the first goal (``created`` False).

        With tracing on, the submit is a span (``goalrt.submit``) of the current
        trace, and the workers' spans for the goal are its children. A
        ``traceparent`` (W3C) given here is carried instead: the workers'
        spans continue that trace, whether tracing is on here or not.
        """
        options = submit_options(
            priority=priority,
            at=at,
            delay=delay,
            key=key,
            parent=parent,
            partition_key=partition_key,
            deadline=deadline,
            traceparent=traceparent,
        )
        with tracing.span("goalrt.submit", {"goalrt.goal_type": name}, kind="producer") as span:
            if span is not None and traceparent is None:
                options["traceparent"] = tracing.current_traceparent()
            params = prepared_params(self.registry, name, params)
            rows = await self._run("goal_submit", (name, self._db.json(params), self._db.json(options)))
            submitted = Submitted(int(rows[0][0]), bool(rows[0][1]))
            if span is not None:
                span.set_attributes({"goalrt.goal_id": submitted.id, "goalrt.created": submitted.created})
        return submitted

    async def submit_many(self, goals: Iterable[GoalSpec]) -> builtins.list[Submitted]:
        """Submit ``(name, params, options)`` triples in one transaction (options as in ``submit_options``).

        With tracing on, each goal without a ``traceparent`` of its own carries the submit span's.
        """
        with tracing.span("goalrt.submit", kind="producer") as span:
            items = prepared_items(self.registry, goals)
            if span is not None:
                items = traced_items(items, tracing.current_traceparent())
            rows = await self._run("goals_submit", (self._db.json(items),))
            submitted = [Submitted(int(r[0]), bool(r[1])) for r in rows]
            if span is not None:
                span.set_attributes({"goalrt.goal_ids": [s.id for s in submitted]})
        return submitted

    async def get(self, goal_id: int) -> GoalInfo:
        """Return a goal with its steps and its events in log order."""
        row = await self._run("goal_get", (goal_id,))
        if not row:
            raise GoalNotFoundError(f"goal {goal_id} does not exist")
        if not self._db.in_transaction():
            await self._run("clock_tick")
        steps = await self._run("goal_steps", (goal_id,))
        events = await self._run("goal_events", (goal_id,))
        return GoalInfo.from_rows(row[0], steps, events)

    async def list(
        self, *, status: str | None = None, name: str | None = None, limit: int = 50
    ) -> builtins.list[GoalSummary]:
        """Return goals, newest first."""
        if status is not None and status not in GoalStatus.__members__.values():
            raise InvalidGoalError(f"unknown status {status!r}: use one of {', '.join(GoalStatus)}")
        rows = await self._run("goals_list", (status, name, limit))
        return [GoalSummary.from_row(r) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Return how many goals have each status."""
        rows = await self._run("goals_count")
        return {status: int(n) for status, n in rows}

    async def workers(self) -> builtins.list[dict[str, Any]]:
        """Return the registered worker processes (seconds_since_seen tells which are alive)."""
        rows = await self._run("workers_list")
        return [worker_info(row) for row in rows]

    async def cancel(self, goal_id: int, reason: str | None = None) -> None:
        """Cancel a goal that has not finished (a finished one is refused with InvalidTransitionError)."""
        await self._run("goal_cancel", (goal_id, reason))
        if not self._db.in_transaction():
            # After the commit (never inside a caller's transaction): wakes whoever waits for it.
            await self._run("goals_done_notify", (done.done_channel(self.schema), str(goal_id)))

    async def retry(self, goal_id: int, *, from_step: int | None = None, reason: str | None = None) -> int | None:
        """Run a failed or cancelled goal again; return the sequence number of its first new step.

        Its steps from ``from_step`` on (default: the first step of its last
        plan that did not complete) are copied as a new plan with fresh
        attempts; a goal never planned returns None and is planned anew. A
        goal that is not failed or cancelled, or is a child goal, raises
        ``InvalidTransitionError``.
        """
        rows = await self._run("goal_retry", (goal_id, from_step, reason))
        first: int | None = rows[0][2]
        return first

    async def wait(self, goal_id: int, *, timeout: float | None = None, poll: float = 1.0) -> GoalInfo:
        """Wait until a goal has ended (complete, failed or cancelled); return it with its steps and events.

        Woken by the notification a worker (or this client's ``cancel``) sends
        after the commit that ended a goal; a goal ended another way (SQL by
        hand) is seen at the next re-check, every ``poll`` seconds. Raises
        ``GoalWaitTimeoutError`` when ``timeout`` seconds pass first (the goal
        goes on). Needs a connection outside any transaction, like ``follow``.
        """
        if timeout is not None and not timeout >= 0:
            raise InvalidGoalError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        if not poll > 0:
            raise InvalidGoalError(f"poll must be a number of seconds > 0, got {poll!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._db.listen((done.done_channel(self.schema),)) as listener:
            while True:
                # Re-read after LISTEN took effect: an end committed before it is seen here, one after it wakes us.
                row = await self._run("goal_get", (goal_id,))
                if not row:
                    raise GoalNotFoundError(f"goal {goal_id} does not exist")
                if GoalStatus(row[0][3]).finished:
                    return await self.get(goal_id)
                left = poll if deadline is None else min(poll, deadline - time.monotonic())
                if left <= 0:
                    raise GoalWaitTimeoutError(
                        f"goal {goal_id} is still {row[0][3]} after {timeout:g} s (it goes on; wait again or cancel it)"
                    )
                await listener.wait(left, None, notify=True)

    async def resume(self, goal_id: int, data: Mapping[str, Any], *, actor: str | None = None) -> str:
        """Answer a goal waiting at an ``ask`` step; return what the goal did next.

        A wrong answer raises ``InvalidGoalError`` naming the field, and the goal keeps waiting.
        """
        try:
            check(data)
        except (TypeError, ValueError) as exc:
            raise InvalidGoalError(f"resume data is not JSON goalrt can send: {exc}") from None
        rows = await self._run("goal_resume", (goal_id, self._db.json(dict(data)), actor))
        return str(rows[0][1])

    async def tree(self, goal_id: int) -> builtins.list[TreeNode]:
        """Return the goal and its descendants, depth first."""
        rows = await self._run("goal_tree", (goal_id,))
        if not rows:
            raise GoalNotFoundError(f"goal {goal_id} does not exist")
        return [TreeNode(*row) for row in rows]

    async def waiting(self, *, limit: int = 50) -> builtins.list[Waiting]:
        """Return the waiting goals, newest first, with what each waits for."""
        rows = await self._run("goals_waiting", (limit,))
        return [Waiting(*row) for row in rows]

    async def set_limit(
        self,
        action: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
        burst: int | None = None,
        key: str | None = None,
    ) -> Limit:
        """Set a cluster-wide limit on an action (per value of the argument ``key`` when given)."""
        options = limit_options(concurrency=concurrency, rate=rate, per=per, burst=burst, key=key)
        rows = await self._run("limit_set", (action, self._db.json(options)))
        return Limit(*rows[0])

    async def drop_limit(self, action: str, key: str | None = None) -> bool:
        """Remove a limit; return whether there was one."""
        rows = await self._run("limit_drop", (action, key or ""))
        return bool(rows[0][0])

    async def limits(self) -> builtins.list[Limit]:
        """Return the limits, with how many steps hold a slot and how many goals are parked on each."""
        rows = await self._run("limits_list")
        return [Limit(*row) for row in rows]

    async def set_schedule(
        self,
        name: str,
        goal: str,
        params: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "UTC",
        catch_up: str = "latest",
        enabled: bool = True,
        next_at: datetime | None = None,
    ) -> Schedule:
        """Set (or replace) a schedule: each tick of ``cron`` (in ``timezone``) or of ``every`` submits the goal once.

        ``catch_up`` says what happens to ticks missed while no worker ran:
        ``all`` submits each, ``latest`` the newest, ``skip`` none (but a
        tick at most a minute late). ``next_at`` sets the first tick (default:
        the first after now). A schedule that GDL installed is changed by
        loading GDL (or by an admin).
        """
        options = schedule_options(
            cron=cron, every=every, timezone=timezone, catch_up=catch_up, enabled=enabled, next_at=next_at
        )
        params = prepared_params(self.registry, goal, params)
        rows = await self._run("schedule_set", (name, goal, self._db.json(params), self._db.json(options)))
        return Schedule.from_row(rows[0])

    async def drop_schedule(self, name: str) -> bool:
        """Remove a schedule; return whether there was one (the goals it submitted stay)."""
        rows = await self._run("schedule_drop", (name,))
        return bool(rows[0][0])

    async def schedules(self) -> builtins.list[Schedule]:
        """Return the schedules by name, each with its next runs (``Schedule.next_runs``)."""
        rows = await self._run("schedules_list")
        return [Schedule.from_row(row) for row in rows]

    async def figures(self) -> QueueFigures:
        """Return the queue's figures now: backlog, waiting, parked, expired leases, the clock's lag."""
        rows = await self._run("queue_figures")
        return QueueFigures.from_row(rows[0])

    async def finished(self, window: float = 300.0, newest: int = 10_000) -> builtins.list[Finished]:
        """Return, by status, the goals among the ``newest`` that ended in the last ``window`` seconds.

        Bounded however many goals there are: only the newest ``newest`` (by
        id) are looked at. Each status has its count and the seconds from
        submit to end (p50, p95, p99, max).
        """
        rows = await self._run("goals_recent_figures", (newest, window))
        return [Finished.from_row(row) for row in rows]

    async def per_minute(self, minutes: int = 60, newest: int = 10_000) -> History:
        """Return each of the last ``minutes`` minutes (the current one last): goals ended by status, time taken.

        Bounded as ``finished`` is: only the newest ``newest`` goals (by id)
        are looked at (``History.cut`` says whether that left out goals that
        could have ended in the window). Each minute has how many goals ended
        in it by status, and the seconds from submit to end (p50, p95) of
        those that completed.
        """
        rows = await self._run("goals_per_minute", (newest, minutes))
        return history_of(rows)

    async def unserved(self, first: int = 1000) -> int:
        """Return how many of the first ``first`` runnable goals (claim order) no live worker can run the step of."""
        rows = await self._run("goals_unserved", (first,))
        return int(rows[0][0])

    async def wake_due(self, max_count: int = 1000) -> int:
        """Act on what is due now (timers, timeouts, deadlines); workers do this on every claim."""
        rows = await self._run("timers_wake", (max_count,))
        return int(rows[0][0])


# The model names imported ``as`` themselves are re-exported: the rest of goalrt imports them from here.
__all__ = ["AsyncGoals"]
