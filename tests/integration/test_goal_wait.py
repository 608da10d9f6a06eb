"""Waiting for a goal to end: woken by the notification sent after the commit that ended it (issue 19, item 4).

Each test that a notification must wake waits with no timeout and a re-check
only every 10 minutes, under a 30-second guard: if nothing notified, the wait
would sleep past the guard, which fails the test (seen failing with the
worker's and the client's notifications switched off).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest

from goalrt import ActionContext, AsyncGoals, Goals, GoalWaitTimeoutError, PermanentError, Registry, Step, Worker
from goalrt.errors import GoalNotFoundError, InvalidGoalError

FAST = {"poll": 0.05, "lease": 5.0}
SLOW_POLL = 600.0
GUARD = 30.0


def registry() -> Registry:
    reg = Registry()

    @reg.goal("job")
    def job(p: dict[str, Any]) -> list[Step]:
        return [Step("work", dict(p))]

    @reg.action("work")
    async def work(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        if args.get("fail"):
            raise PermanentError("told to fail")
        await asyncio.sleep(float(args.get("sleep", 0)))
        return {"done": args.get("n")}

    return reg


async def run_worker(url: str, reg: Registry) -> tuple[Worker, asyncio.Task[Any]]:
    worker = Worker(url, reg, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    return worker, task


async def stop(worker: Worker, task: asyncio.Task[Any]) -> None:
    worker.request_stop()
    async with asyncio.timeout(30):
        await task


def test_a_worker_completing_the_goal_wakes_the_wait(db_url: str) -> None:
    asyncio.run(_test_a_worker_completing_the_goal_wakes_the_wait(db_url))


async def _test_a_worker_completing_the_goal_wakes_the_wait(db_url: str) -> None:
    reg = registry()
    worker, task = await run_worker(db_url, reg)
    try:
        async with await AsyncGoals.connect(db_url, registry=reg) as goals:
            submitted = await goals.submit("job", {"n": 7, "sleep": 0.3})
            async with asyncio.timeout(GUARD):
                info = await goals.wait(submitted.id, poll=SLOW_POLL)
            assert info.status == "complete" and info.result == {"done": 7}
            assert info.events[-1].type == "goal.completed"
            failed = await goals.submit("job", {"fail": True})
            async with asyncio.timeout(GUARD):
                info = await goals.wait(failed.id, poll=SLOW_POLL)
            assert info.status == "failed" and "told to fail" in (info.last_error or "")
    finally:
        await stop(worker, task)


def test_many_waiters_on_many_goals_each_get_their_own(db_url: str) -> None:
    asyncio.run(_test_many_waiters_on_many_goals_each_get_their_own(db_url))


async def _test_many_waiters_on_many_goals_each_get_their_own(db_url: str) -> None:
    reg = registry()
    worker, task = await run_worker(db_url, reg)
    try:
        async with await AsyncGoals.connect(db_url, registry=reg) as goals:
            ids = [(await goals.submit("job", {"n": i, "sleep": 0.05 * (i % 3)})).id for i in range(12)]

        async def one(goal_id: int) -> Any:
            async with await AsyncGoals.connect(db_url) as mine:
                return (await mine.wait(goal_id, poll=SLOW_POLL)).result

        async with asyncio.timeout(GUARD):
            results = await asyncio.gather(*(one(i) for i in ids))
        assert results == [{"done": i} for i in range(12)]
    finally:
        await stop(worker, task)


def test_a_cancel_by_another_client_wakes_the_wait(db_url: str) -> None:
    asyncio.run(_test_a_cancel_by_another_client_wakes_the_wait(db_url))


async def _test_a_cancel_by_another_client_wakes_the_wait(db_url: str) -> None:
    async with await AsyncGoals.connect(db_url, registry=registry()) as goals:
        await goals.register()
        submitted = await goals.submit("job", {"n": 1})

        async def cancel_soon() -> None:
            await asyncio.sleep(0.3)
            async with await AsyncGoals.connect(db_url) as other:
                await other.cancel(submitted.id, "not needed")

        canceller = asyncio.create_task(cancel_soon())
        async with asyncio.timeout(GUARD):
            info = await goals.wait(submitted.id, poll=SLOW_POLL)
        await canceller
        assert info.status == "cancelled"


def test_an_end_by_hand_in_sql_is_seen_by_the_re_check(db_url: str, conn: psycopg.Connection) -> None:
    asyncio.run(_test_an_end_by_hand_in_sql_is_seen_by_the_re_check(db_url, conn))


async def _test_an_end_by_hand_in_sql_is_seen_by_the_re_check(db_url: str, conn: psycopg.Connection) -> None:
    async with await AsyncGoals.connect(db_url, registry=registry()) as goals:
        await goals.register()
        submitted = await goals.submit("job", {"n": 1})

        def cancel_by_hand() -> None:
            time.sleep(0.3)
            conn.execute("SELECT goalrt.cancel_goal(%s, 'by hand')", (submitted.id,))

        thread = threading.Thread(target=cancel_by_hand)
        thread.start()
        info = await goals.wait(submitted.id, timeout=20, poll=0.2)
        thread.join()
        assert info.status == "cancelled"


def test_a_timeout_leaves_the_goal_alone(db_url: str) -> None:
    asyncio.run(_test_a_timeout_leaves_the_goal_alone(db_url))


async def _test_a_timeout_leaves_the_goal_alone(db_url: str) -> None:
    async with await AsyncGoals.connect(db_url, registry=registry()) as goals:
        await goals.register()
        submitted = await goals.submit("job", {"n": 1})
        with pytest.raises(GoalWaitTimeoutError, match=f"goal {submitted.id} is still pending after 0.2 s"):
            await goals.wait(submitted.id, timeout=0.2)
        assert (await goals.get(submitted.id)).status == "pending"
        with pytest.raises(GoalNotFoundError):
            await goals.wait(987654, timeout=1)
        for bad in ({"timeout": -1.0}, {"timeout": float("nan")}, {"poll": 0.0}):
            with pytest.raises(InvalidGoalError):
                await goals.wait(submitted.id, **bad)


def test_the_sync_client_waits_too(db_url: str) -> None:
    reg = registry()
    with Goals.connect(db_url, registry=reg) as goals:
        goals.register()
        submitted = goals.submit("job", {"n": 3})
    got: list[Any] = []

    def wait() -> None:
        with Goals.connect(db_url) as mine:
            got.append(mine.wait(submitted.id, poll=SLOW_POLL))

    # A daemon thread: if no notification came, it would sleep past the guard (the test fails, nothing hangs).
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()

    async def work() -> None:
        worker, task = await run_worker(db_url, reg)
        try:
            await asyncio.to_thread(waiter.join, GUARD)
        finally:
            await stop(worker, task)

    asyncio.run(work())
    assert not waiter.is_alive(), "the wait was not woken"
    assert got[0].status == "complete" and got[0].result == {"done": 3}
