"""Handlers that misbehave, in-process: a handler fails its step, never the worker, and never holds it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg

from goalrt import ActionContext, AsyncGoals, Change, Registry, Result, Retry, Step, Worker
from tests.integration.test_worker import until_finished, wait_for, with_worker

ONCE = Retry(max_attempts=1)


def one_step(registry: Registry, goal: str, action: str) -> None:
    @registry.goal(goal)
    def steps(p: Any) -> list[Step]:
        return [Step(action)]


def test_a_result_nested_too_deep_fails_its_step_clearly(db_url: str, conn: psycopg.Connection) -> None:
    registry = Registry()
    one_step(registry, "deep", "deep")
    one_step(registry, "deep-change", "deep-change")

    def nest(levels: int) -> Any:
        value: Any = []
        for _ in range(levels):
            value = [value]
        return value

    @registry.action("deep", retry=ONCE)
    async def deep(args: Any, ctx: ActionContext) -> Any:
        return nest(100_000)

    @registry.action("deep-change", retry=ONCE)
    def deep_change(args: Any, ctx: ActionContext) -> Result:
        return Result(1, changes=[Change.set("deep.path", nest(101))])

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        a = (await goals.submit("deep", {})).id
        b = (await goals.submit("deep-change", {})).id
        first, second = await until_finished(goals, a, b)
        assert first.status == "failed"
        assert first.last_error == (
            "deep: the result of action deep is not JSON: JSON nested deeper than 100 levels (goalrt's limit)"
        )
        assert second.status == "failed"
        assert second.last_error is not None and "nested deeper than 100" in second.last_error
        assert worker.stats.claimed == 2  # not released and claimed again

    asyncio.run(with_worker(db_url, registry, body))
    assert conn.execute("SELECT count(*) FROM goalrt.state").fetchone() == (0,)


def test_a_handler_raising_its_own_cancellation_fails_its_step(db_url: str) -> None:
    registry = Registry()
    one_step(registry, "own-cancel", "own-cancel")

    @registry.action("own-cancel", retry=ONCE)
    async def own_cancel(args: Any, ctx: ActionContext) -> None:
        raise asyncio.CancelledError

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("own-cancel", {})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "failed"
        assert info.last_error == "own-cancel: handler raised CancelledError()"

    asyncio.run(with_worker(db_url, registry, body))


def test_a_handler_ignoring_its_cancellation_still_times_out(db_url: str) -> None:
    registry = Registry()
    one_step(registry, "stubborn", "stubborn")
    let_go = threading.Event()

    @registry.action("stubborn", timeout=0.3, retry=ONCE)
    async def stubborn(args: Any, ctx: ActionContext) -> None:
        while not let_go.is_set():
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                continue

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("stubborn", {})).id
        try:
            (info,) = await until_finished(goals, gid)
            assert info.status == "failed"
            assert info.last_error == "stubborn: timed out after 0.3s"
            assert worker.handler_calls.running == 1  # abandoned, still going
        finally:
            let_go.set()  # so that the test's loop can end
        await wait_for(lambda: asyncio.sleep(0, worker.handler_calls.running == 0))

    asyncio.run(with_worker(db_url, registry, body))


def test_handler_state_reads_survive_lost_connections(db_url: str, conn: psycopg.Connection) -> None:
    """Concurrent handlers reading ``ctx.state`` while their connections are terminated: every read retries."""
    registry = Registry()
    reads = 25

    @registry.goal("reader")
    def reader(p: Any) -> list[Step]:
        return [Step("read-async"), Step("read-sync")]

    @registry.action("read-async", retry=ONCE)
    async def read_async(args: Any, ctx: ActionContext) -> int:
        for _ in range(reads):
            assert await ctx.state.value("shared.value") == 7  # type: ignore[misc]
            await asyncio.sleep(0.01)
        return reads

    @registry.action("read-sync", retry=ONCE)
    def read_sync(args: Any, ctx: ActionContext) -> int:
        for _ in range(reads):
            assert ctx.state.value("shared.value") == 7
            assert isinstance(ctx.state.list("shared.*"), list)
            threading.Event().wait(0.01)
        return reads

    conn.execute(
        "SELECT goalrt.change_state(%s::jsonb, 'test', '{}')", ('[{"op":"set","path":"shared.value","value":7}]',)
    )

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        ids = [(await goals.submit("reader", {})).id for _ in range(12)]
        # Terminate every other backend of the database (the worker's, and the
        # test client's, which is not used again) until the goals end.
        with psycopg.connect(db_url, autocommit=True) as killer:
            terminated = 0
            for i in range(1200):
                if i < 40:  # 40 rounds of terminations, then let the goals end
                    rows = killer.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchall()
                    terminated += len(rows)
                ended = killer.execute(
                    "SELECT status, last_error FROM goalrt.goals WHERE id = ANY(%s) "
                    "AND status IN ('complete', 'failed', 'cancelled')",
                    (ids,),
                ).fetchall()
                if len(ended) == len(ids):
                    break
                await asyncio.sleep(0.1)
        assert terminated > 0
        assert ended == [("complete", None)] * len(ids), ended

    asyncio.run(with_worker(db_url, registry, body, concurrency=6))
