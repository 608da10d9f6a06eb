"""The worker's calls of the SQL functions: typed by ``goalrt.worker.protocol``, retried on a lost connection.

Every call runs a named query of ``sql/queries/goals.sql`` on the worker's
pool. A call that fails because the connection, the server or the client
state broke waits and tries again (PostgreSQL restarts,
pg_terminate_backend); an error the database raised on purpose is raised as
goalrt's error. A batch the database refuses is split so that only the bad
item is answered ``Rejected`` and the others go through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from goalrt.db.connect import asyncpg_dsn, setup_async_connection
from goalrt.db.resources import queries
from goalrt.errors import GoalrtError, translate
from goalrt.goals import done
from goalrt.worker.protocol import (
    ClaimedGoal,
    CompletionAnswer,
    CompletionOutcome,
    FailItem,
    PlanAnswer,
    PlanItem,
    PlanOutcome,
    Rejected,
    StepItem,
)

log = logging.getLogger("goalrt.worker")

# SQLSTATE classes after which the same call can succeed later: connection
# exceptions, operator intervention (shutdown, restart, terminated backend),
# insufficient resources (too many connections), transaction rollback
# (serialization failure, deadlock).
_TRANSIENT_SQLSTATES = ("08", "57", "53", "40")

Answer = TypeVar("Answer")


def is_connection_error(exc: BaseException) -> bool:
    """Whether retrying the same call later can succeed: the connection, the server or the client state broke.

    Errors the database raised on purpose (goalrt's GR codes, bad data) and
    bad arguments from our side are not: retrying them would loop forever.
    """
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_TRANSIENT_SQLSTATES)
    if isinstance(exc, asyncpg.exceptions._base.DataError | asyncpg.exceptions._base.ClientConfigurationError):
        return False
    return isinstance(
        exc,
        OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.exceptions._base.InternalClientError,
    )


async def connect_pool(url: str, size: int, stopping: asyncio.Event) -> asyncpg.Pool | None:
    """Return a pool of ``size`` connections at most; wait for the server while it is unreachable (log once).

    None when ``stopping`` is set while waiting.
    """
    delay = 0.1
    warned = False
    while not stopping.is_set():
        try:
            pool = await asyncpg.create_pool(
                asyncpg_dsn(url), min_size=1, max_size=size, init=setup_async_connection, timeout=10
            )
            assert pool is not None
            return pool
        except Exception as exc:
            if not is_connection_error(exc):
                raise translate(exc) from exc
            if not warned:
                log.warning("worker: cannot connect (%s); waiting for the server", exc)
                warned = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stopping.wait()
            delay = min(delay * 2, 5.0)
    return None


class WorkerDatabase:
    """One worker's SQL calls over its pool."""

    def __init__(self, pool: asyncpg.Pool, schema: str, worker_id: str, on_retry: Callable[[], None]) -> None:
        self.pool = pool
        self._q = queries("goals", schema)
        self._done_channel = done.done_channel(schema)
        # Notifications of ended goals still being sent (kept so they are not collected mid-flight).
        self._notifying: set[asyncio.Task[None]] = set()
        self._id = worker_id
        # Counts the calls retried after a lost connection (the worker's stats).
        self._on_retry = on_retry

    def query(self, name: str) -> str:
        """The text of a named query of ``sql/queries/goals.sql``, for this worker's schema."""
        return self._q[name]

    async def retrying(self, what: str, attempt: Callable[[], Awaitable[Answer]], *, retry: bool = True) -> Answer:
        """Return what ``attempt`` returns; on a lost connection wait and run it again (unless ``retry`` is False).

        An error the database raised on purpose is raised as goalrt's error.
        Each retry is counted (the worker's stats) and logged.
        """
        delay = 0.05
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not retry or not is_connection_error(exc):
                    raise translate(exc) from exc
                self._on_retry()
                log.warning(
                    "worker %s: database unavailable during %s (%s); retrying in %.2fs", self._id, what, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def call(self, name: str, *args: Any, retry: bool = True) -> list[asyncpg.Record]:
        """Run a named query; on a lost connection wait and try again (unless ``retry`` is False)."""

        async def attempt() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(self._q[name], *args)
                return rows

        return await self.retrying(name, attempt, retry=retry)

    async def start_step(self, goal_id: int, epoch: int, seq: int, start: Callable[[], Awaitable[None]]) -> bool:
        """Run ``start`` (it starts a step's handler) under the goal's start lock if the step may still start.

        One step alone, waiting for the lock (``StartGates`` starts most
        steps many at a time and sends here those whose goal's end is in
        progress).

        ``step_start_v1`` takes the lock and checks that the goal still runs
        step ``seq`` under this worker's lease at ``epoch`` and that no
        ancestor ended; ending a goal waits for that lock. So a cancel
        commits either before the check (False: ``start`` is not called) or
        after the handler began. The lock is given back once ``start``
        returned (or with the connection, if it is lost then).
        """
        started = False

        async def attempt() -> bool:
            nonlocal started
            try:
                async with self.pool.acquire() as conn:
                    if not await conn.fetchval(self._q["step_start"], self._id, goal_id, epoch, seq):
                        return False
                    started = True
                    await start()
                    await conn.fetchval(self._q["step_started"], goal_id)
            except Exception as exc:
                if started and is_connection_error(exc):  # the handler began; the lock ended with the connection
                    return True
                raise
            return True

        return await self.retrying("step_start", attempt)

    async def gdl_current(self) -> tuple[int, Mapping[str, Any]] | None:
        """Return the newest stored GDL version and its definitions, or None when none was loaded."""
        rows = await self.call("gdl_current")
        return None if not rows else (rows[0]["version"], rows[0]["definitions"])

    async def gdl_version(self) -> int | None:
        """Return the newest stored GDL version (None when none was loaded): a cheap check before ``gdl_current``."""
        rows = await self.call("gdl_version")
        version: int | None = rows[0][0]
        return version

    async def claim(
        self,
        limit: int,
        lease: float,
        goal_types: Sequence[str],
        buckets: Sequence[int] | None,
        count: int | None,
        takeover: float,
    ) -> list[ClaimedGoal]:
        """Claim up to ``limit`` runnable goals of ``goal_types`` (``claim_goals_v3``)."""
        rows = await self.call("goals_claim", self._id, limit, lease, list(goal_types), buckets, count, takeover)
        return [ClaimedGoal.of(row) for row in rows]

    async def progress(self, goal_id: int, epoch: int, seq: int, fraction: float, message: str | None) -> bool:
        """Store a running step's progress (``step_progress_v1``); False when the lease is not held."""
        rows = await self.call("step_progress", self._id, goal_id, epoch, seq, fraction, message, retry=False)
        return bool(rows[0][0])

    async def fail(self, items: Sequence[FailItem]) -> None:
        """Fail goals this worker holds (``fail_goals_v1``)."""
        await self.call("goals_fail", self._id, [item.as_json() for item in items])
        self.notify_done([item.goal_id for item in items])

    def notify_done(self, goal_ids: Sequence[int]) -> None:
        """Tell waiters (``Goals.wait``) that these goals may have ended, after the commit that ended them.

        Sent in the background on a connection of the pool, outside any
        transaction (a NOTIFY inside a writing one would serialize commits);
        best effort: a waiter that misses it re-checks on its own.
        """
        if not goal_ids:
            return

        async def send() -> None:
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    for payload in done.done_payloads(sorted(set(goal_ids))):
                        await conn.execute(self._q["goals_done_notify"], self._done_channel, payload)

        task = asyncio.get_running_loop().create_task(send())
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def heartbeat(self, leases: Sequence[tuple[int, int]], seconds: float) -> set[int]:
        """Extend the leases (goal id, epoch) still held; return the goal ids whose lease was extended."""
        rows = await self.call("leases_heartbeat", self._id, [g for g, _ in leases], [e for _, e in leases], seconds)
        return {row["goal_id"] for row in rows}

    async def release(self, leases: Sequence[tuple[int, int]]) -> int:
        """Give up the leases (goal id, epoch); return how many were still held."""
        rows = await self.call("leases_release", self._id, [g for g, _ in leases], [e for _, e in leases])
        return len(rows)

    async def plan(self, items: list[PlanItem], lease: float) -> dict[int, PlanAnswer | Rejected]:
        """Store plans (``plan_goals_v1``); answer each goal."""
        answers = await self._batch("goals_plan", items, lease, PlanAnswer.of)
        done = PlanOutcome.COMPLETE
        self.notify_done([g for g, a in answers.items() if isinstance(a, PlanAnswer) and a.outcome is done])
        return answers

    async def complete(self, items: list[StepItem], lease: float) -> dict[int, CompletionAnswer | Rejected]:
        """Commit steps' outcomes (``complete_steps_v1``); answer each goal."""
        answers = await self._batch("steps_complete", items, lease, CompletionAnswer.of)
        ended = (CompletionOutcome.COMPLETE, CompletionOutcome.FAILED)
        self.notify_done([g for g, a in answers.items() if isinstance(a, CompletionAnswer) and a.outcome in ended])
        return answers

    async def _batch(
        self,
        query: str,
        items: Sequence[PlanItem | StepItem],
        lease: float,
        answer: Callable[[asyncpg.Record], Answer],
    ) -> dict[int, Answer | Rejected]:
        """Send a batch of items; an item the database refuses is answered alone."""
        try:
            rows = await self.call(query, self._id, [item.as_json() for item in items], lease)
        except GoalrtError as exc:  # call() retries what is transient; this is not (e.g. a child of an unknown type)
            if len(items) == 1:
                # Answer it, so its goal fails clearly.
                return {items[0].goal_id: Rejected(items[0].goal_id, str(exc))}
            answers: dict[int, Answer | Rejected] = {}
            for item in items:  # find the bad one; the others go through
                answers.update(await self._batch(query, [item], lease, answer))
            return answers
        return {row["goal_id"]: answer(row) for row in rows}


__all__ = ["WorkerDatabase", "connect_pool", "is_connection_error"]
