"""A handler never starts once the cancel of its goal has committed.

The worker hands a step to its handler some time after the database
started the step (a claim, a plan, a completion's ``continue``): a goal
declared by a condition first reads the state to check the step is still
the way to the goal. The test holds that read up (it locks
``goalrt.state_data``) after the database started the step's second attempt,
cancels the goal meanwhile, and then lets the read go on: the second attempt
must not start.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg

from goalrt import ActionContext, AsyncGoals, Registry, Retry, Worker
from goalrt.planner import Set
from tests.integration.test_worker import wait_for, with_worker


def lamp(starts: list[int], go: threading.Event) -> Registry:
    """A goal whose one step fails at its first attempt (after ``go``) and is retried."""
    registry = Registry()
    registry.achieve("light", "lamp.on == true")

    @registry.action(
        "lamp.switch",
        pre="lamp.on != true",
        effects=[Set("lamp.on", True)],
        retry=Retry(max_attempts=3, backoff=0.05, jitter=0),
    )
    def switch(args: dict[str, Any], ctx: ActionContext) -> None:
        starts.append(ctx.attempt)
        if ctx.attempt == 1:
            go.wait(30)
            raise RuntimeError("the lamp flickers")

    return registry


def waiting_on_a_lock(conn: psycopg.Connection[Any], blocker: int) -> bool:
    """Whether some other session of this database waits for a lock that ``blocker`` holds."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND %s = ANY(pg_blocking_pids(pid))",
        (blocker,),
    ).fetchone()
    return bool(row and row[0])


def test_no_attempt_starts_after_the_cancel_committed(db_url: str, conn: psycopg.Connection[Any]) -> None:
    starts: list[int] = []
    go = threading.Event()
    registry = lamp(starts, go)

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("light", {})).id
        await wait_for(lambda: asyncio.sleep(0, starts == [1]))
        # While the first attempt runs, hold up every read of the state.
        with psycopg.connect(db_url) as holder:
            holder.execute("LOCK TABLE goalrt.state_data IN ACCESS EXCLUSIVE MODE")
            go.set()
            # The retry's claim started attempt 2; the worker now reads the state before running it.
            blocker = holder.info.backend_pid
            await wait_for(lambda: asyncio.to_thread(waiting_on_a_lock, conn, blocker))
            assert conn.execute("SELECT status FROM goalrt.goal_steps WHERE goal_id = %s", (gid,)).fetchone() == (
                "running",
            )
            await goals.cancel(gid, "stop")
            holder.rollback()
        await wait_for(lambda: asyncio.sleep(0, gid not in worker.held))
        info = await goals.get(gid)
        assert info.status == "cancelled"
        assert starts == [1], "attempt 2 started after the cancel of its goal had returned"

    asyncio.run(with_worker(db_url, registry, body))
