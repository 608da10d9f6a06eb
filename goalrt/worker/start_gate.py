"""Handlers start under their goals' start locks, taken for many steps per round trip.

Ending a goal takes its start lock shared until the end commits
(``end_goal``); a worker holds it exclusively while it checks that a step
may still start and starts its handler. So no handler starts once the end
(a cancel, say) of its goal or of an ancestor has committed.

The locks are session locks, so one connection of the worker's pool is
kept for them. Steps that start at about the same time share a round trip
(``step_start_v2``: each goal's lock is tried, never waited for, and the
step checked), and so do the unlocks once their handlers have begun. A goal
whose lock another transaction holds (its end is in progress) is started
alone by ``WorkerDatabase.start_step``, on another connection, which waits
for that end: the gate's connection never waits while it holds locks, so it
cannot deadlock with an end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from goalrt.worker.batcher import Batcher
from goalrt.worker.database import WorkerDatabase, is_connection_error

log = logging.getLogger("goalrt.worker")

# The answer for a step whose goal's lock another transaction holds.
_BUSY = -1


@dataclasses.dataclass(frozen=True)
class _Start:
    goal_id: int
    epoch: int
    seq: int


@dataclasses.dataclass(frozen=True)
class _Held:
    goal_id: int
    session: int  # which gate connection took the lock (a lost connection took its locks with it)


class StartGates:
    """The start locks of one worker's steps, on a connection of its own."""

    def __init__(self, db: WorkerDatabase, worker_id: str, *, max_batch: int) -> None:
        self._db = db
        self._id = worker_id
        self._conn: Any = None
        self._session = 0
        self._use = asyncio.Lock()
        self._locks: Batcher[_Start, int] = Batcher(self._lock, max_batch=max_batch)
        self._unlocks: Batcher[_Held, bool] = Batcher(self._unlock, max_batch=max_batch)

    def start(self) -> None:
        self._locks.start()
        self._unlocks.start()

    async def stop(self, timeout: float) -> None:
        await self._locks.stop(timeout=timeout)
        await self._unlocks.stop(timeout=timeout)
        async with self._use:
            await self._drop()

    async def run(self, goal_id: int, epoch: int, seq: int, start: Callable[[], Awaitable[None]]) -> bool:
        """Run ``start`` (it starts a step's handler) under the goal's start lock if the step may still start.

        False when it may not (the goal or an ancestor ended, or the lease
        was lost): ``start`` was not called.
        """
        session = await self._db.retrying("step_start", lambda: self._locks.submit(_Start(goal_id, epoch, seq)))
        if session is None:
            return False
        if session == _BUSY:
            return await self._db.start_step(goal_id, epoch, seq, start)
        try:
            await start()
        finally:
            try:
                await self._unlocks.submit(_Held(goal_id, session))
            except Exception as exc:
                # The connection is gone, and its locks with it; anything else is logged, not raised
                # (the handler has begun either way).
                if not is_connection_error(exc):
                    log.warning("worker %s: goal %s: giving back its start lock failed: %s", self._id, goal_id, exc)
        return True

    async def _connection(self) -> Any:
        if self._conn is None:
            self._conn = await self._db.pool.acquire()
            self._session += 1
        return self._conn

    async def _drop(self) -> None:
        """Give the connection back to the pool: its reset (or its end) releases every lock it holds."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._db.pool.release(conn)

    async def _lock(self, items: list[_Start]) -> dict[int, int]:
        items = sorted(items, key=lambda i: i.goal_id)
        async with self._use:
            conn = await self._connection()
            try:
                rows = await conn.fetch(
                    self._db.query("step_start_many"),
                    self._id,
                    [i.goal_id for i in items],
                    [i.epoch for i in items],
                    [i.seq for i in items],
                )
            except BaseException:
                # A failed call may have taken some locks (session locks outlive an error): drop them all.
                await self._drop()
                raise
            session = self._session
        return {r["goal_id"]: session if r["outcome"] == "start" else _BUSY for r in rows if r["outcome"] != "refused"}

    async def _unlock(self, items: list[_Held]) -> dict[int, bool]:
        async with self._use:
            ids = sorted(i.goal_id for i in items if i.session == self._session)
            if ids and self._conn is not None:
                try:
                    await self._conn.fetch(self._db.query("step_started_many"), ids)
                except BaseException:
                    await self._drop()
                    raise
        return {}


__all__ = ["StartGates"]
