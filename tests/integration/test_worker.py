"""The worker in this process (asyncio): steps, retries, failures, timeouts, cancel, drain, order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel, Field

from goalrt import (
    ActionContext,
    AsyncGoals,
    Change,
    GoalInfo,
    Goals,
    PermanentError,
    Registry,
    Result,
    Retry,
    Step,
    Worker,
)

FAST = {"poll": 0.05, "lease": 5.0}


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def until_finished(goals: AsyncGoals, *ids: int, timeout: float = 30.0) -> list[GoalInfo]:
    async def done() -> bool:
        infos = [await goals.get(i) for i in ids]
        return all(info.status in ("complete", "failed", "cancelled") for info in infos)

    await wait_for(done, timeout)
    return [await goals.get(i) for i in ids]


async def with_worker(
    url: str, registry: Registry, body: Callable[[AsyncGoals, Worker], Awaitable[Any]], **options: Any
) -> Worker:
    """Run a worker while ``body`` runs, then drain it."""
    worker = Worker(url, registry, **{**FAST, **options})
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(url, registry=registry) as goals:
            await body(goals, worker)
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task
    return worker


class Order(BaseModel):
    order: str
    amount: float = Field(gt=0)


def checkout_registry(calls: list[tuple[str, str, int]]) -> Registry:
    registry = Registry()

    @registry.goal("checkout", params=Order)
    def checkout(p: Order) -> list[Step]:
        return [Step("pay", {"order": p.order, "amount": p.amount}), Step("ship", {"order": p.order})]

    @registry.action("pay")
    async def pay(args: dict[str, Any], ctx: ActionContext) -> Result:
        calls.append(("pay", ctx.idempotency_key, ctx.attempt))
        return Result(
            {"paid": args["amount"]},
            changes=[Change.set(f"orders.{args['order']}.status", "paid"), Change.inc("revenue", args["amount"])],
            events=[{"type": "payment.completed", "data": {"order": args["order"]}}],
        )

    @registry.action("ship")
    def ship(args: dict[str, Any], ctx: ActionContext) -> Result:
        # a sync handler, in a thread, reading what the previous step wrote
        status = ctx.state.value(f"orders.{args['order']}.status")
        calls.append(("ship", ctx.idempotency_key, ctx.attempt))
        return Result({"shipped_from": status}, changes=[Change.set(f"orders.{args['order']}.status", "shipped")])

    return registry


def test_multi_step_goal_completes_with_its_effects(db_url: str, conn: psycopg.Connection) -> None:
    calls: list[tuple[str, str, int]] = []
    registry = checkout_registry(calls)

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("checkout", {"order": "o1", "amount": 12.5})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert info.result == {"shipped_from": "paid"}
        assert [(s.action, s.status, s.attempts) for s in info.steps] == [
            ("pay", "complete", 1),
            ("ship", "complete", 1),
        ]
        assert calls == [("pay", f"{gid}:1", 1), ("ship", f"{gid}:2", 1)]
        types = [e.type for e in info.events]
        assert types == [
            "goal.submitted",
            "goal.planned",
            "state.changed",
            "payment.completed",
            "step.completed",
            "state.changed",
            "goal.completed",
        ]
        # One fact, one field: the plan records who started the goal, goal.completed the last step.
        planned = next(e for e in info.events if e.type == "goal.planned")
        assert (planned.data["worker"], planned.data["epoch"]) == (worker.id, 1)
        assert {k: info.events[-1].data[k] for k in ("seq", "action", "attempt", "epoch", "worker")} == {
            "seq": 2,
            "action": "ship",
            "attempt": 1,
            "epoch": 1,
            "worker": worker.id,
        }

    asyncio.run(with_worker(db_url, registry, body))
    state = dict(conn.execute("SELECT path, value FROM goalrt.state").fetchall())
    assert state == {"orders.o1.status": "shipped", "revenue": 12.5}


def test_retries_use_the_deterministic_backoff(db_url: str) -> None:
    registry = Registry()
    attempts: list[int] = []
    policy = Retry(max_attempts=4, backoff=0.05, jitter=0.5)

    @registry.goal("flaky")
    def flaky(p: Any) -> list[Step]:
        return [Step("sometimes")]

    @registry.action("sometimes", retry=policy)
    async def sometimes(args: Any, ctx: ActionContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"transient {ctx.attempt}")
        return "finally"

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("flaky", {})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete" and info.result == "finally"
        assert info.steps[0].attempts == 3
        failed = [e.data for e in info.events if e.type == "step.failed"]
        assert [f["error"] for f in failed] == [
            "sometimes: RuntimeError: transient 1",
            "sometimes: RuntimeError: transient 2",
        ]
        assert [f["retry_in"] for f in failed] == [
            pytest.approx(policy.delay(gid, 1, 1), abs=1e-6),
            pytest.approx(policy.delay(gid, 1, 2), abs=1e-6),
        ]

    asyncio.run(with_worker(db_url, registry, body))
    assert attempts == [1, 2, 3]


def failing_registry() -> Registry:
    registry = Registry()

    class P(BaseModel):
        kind: str
        n: int = Field(default=1, gt=0)

    @registry.goal("job", params=P)
    def job(p: P) -> list[Step]:
        if p.kind == "unknown-action":
            return [Step("first"), Step("does.not.exist")]
        if p.kind == "plan-crash":
            raise KeyError("no plan for you")
        return [Step("first"), Step(p.kind), Step("never")]

    @registry.action("first")
    async def first(args: Any, ctx: ActionContext) -> Result:
        return Result("ok", changes=[Change.inc(f"first.{ctx.goal_id}")])

    @registry.action("permanent")
    async def permanent(args: Any, ctx: ActionContext) -> None:
        raise PermanentError("card declined")

    @registry.action("slow", timeout=0.1, retry=2)
    async def slow(args: Any, ctx: ActionContext) -> None:
        await asyncio.sleep(5)

    @registry.action("not-json")
    async def not_json(args: Any, ctx: ActionContext) -> Any:
        return {"when": object()}

    @registry.action("inc-text")
    async def inc_text(args: Any, ctx: ActionContext) -> Result:
        return Result(1, changes=[Change.inc("label")])

    @registry.action("never")
    async def never(args: Any, ctx: ActionContext) -> None:
        raise AssertionError("a step after a failed one must not run")

    return registry


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("permanent", "permanent: card declined"),
        ("slow", "slow: timed out after 0.1s (after 2 attempts)"),
        ("not-json", "the result of action not-json is not JSON"),
        ("unknown-action", "step uses unknown action 'does.not.exist'"),
        ("plan-crash", "planning goal job failed: KeyError"),
        ("inc-text", "cannot inc path label: it holds a string"),
    ],
)
def test_failures_fail_the_goal_clearly_with_nothing_half_written(
    db_url: str, conn: psycopg.Connection, kind: str, error: str
) -> None:
    conn.execute("""SELECT goalrt.change_state('[{"op": "set", "path": "label", "value": "x"}]')""")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("job", {"kind": kind})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "failed"
        assert error in (info.last_error or "")
        assert [e.type for e in info.events][-1] == "goal.failed"
        assert all(s.status != "running" and s.status != "pending" for s in info.steps)

    asyncio.run(with_worker(db_url, failing_registry(), body))
    # Only the first step's effect (when it ran), never the failing step's.
    rows = conn.execute("SELECT path, value FROM goalrt.state ORDER BY path").fetchall()
    assert all(path.startswith("first.") and value == 1 for path, value in rows if path != "label")
    assert ("label", "x") in rows


def test_invalid_params_are_failed_by_the_worker_when_sql_let_them_through(db_url: str) -> None:
    async def body(goals: AsyncGoals, worker: Worker) -> None:
        bare = AsyncGoals(goals.connection)  # no registry: only the database's checks
        gid = (await bare.submit("job", {"kind": "permanent", "n": -3})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "failed" and "params.n: Input should be greater than 0" in (info.last_error or "")

    asyncio.run(with_worker(db_url, failing_registry(), body))


def test_cancel_stops_a_running_step_and_discards_its_result(db_url: str, conn: psycopg.Connection) -> None:
    registry = Registry()
    started = threading.Event()
    cancelled = threading.Event()

    @registry.goal("long")
    def long(p: Any) -> list[Step]:
        return [Step("wait")]

    @registry.action("wait")
    async def wait(args: Any, ctx: ActionContext) -> Result:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Result(1, changes=[Change.set("should.not", True)])

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("long", {})).id
        await wait_for(lambda: asyncio.sleep(0, started.is_set()))
        await goals.cancel(gid, "stop it")
        await wait_for(lambda: asyncio.sleep(0, cancelled.is_set()), 10)
        info = await goals.get(gid)
        assert info.status == "cancelled" and info.last_error == "stop it"

    asyncio.run(with_worker(db_url, registry, body))
    assert conn.execute("SELECT count(*) FROM goalrt.state").fetchone() == (0,)


def test_drain_releases_what_it_cannot_finish_for_another_worker(db_url: str) -> None:
    registry = Registry()
    runs: list[str] = []

    @registry.goal("two")
    def two(p: Any) -> list[Step]:
        return [Step("slow-once"), Step("quick")]

    @registry.action("slow-once")
    async def slow_once(args: Any, ctx: ActionContext) -> str:
        runs.append(f"slow:{ctx.worker.split(':')[0]}:{ctx.attempt}")
        if ctx.worker.startswith("first"):
            await asyncio.sleep(30)
        return "done"

    @registry.action("quick")
    async def quick(args: Any, ctx: ActionContext) -> str:
        return "quick"

    async def scenario() -> None:
        first = Worker(db_url, registry, name="first", grace=0.2, **FAST)
        task = asyncio.create_task(first.run())
        await first.wait_ready()
        async with await AsyncGoals.connect(db_url) as goals:
            gid = (await goals.submit("two", {})).id
            await wait_for(lambda: asyncio.sleep(0, bool(runs)))
            first.request_stop()
            async with asyncio.timeout(10):
                await task
            info = await goals.get(gid)
            assert info.status == "active" and info.lease_owner is None
            assert "goal.released" in [e.type for e in info.events]
            assert first.stats.released == 1

            async def body(g: AsyncGoals, w: Worker) -> None:
                (done,) = await until_finished(g, gid)
                assert done.status == "complete"
                # the interrupted attempt was given back: the new run is attempt 1 again
                assert [(s.status, s.attempts) for s in done.steps] == [("complete", 1), ("complete", 1)]

            await with_worker(db_url, registry, body, name="second")

    asyncio.run(scenario())
    assert runs == ["slow:first:1", "slow:second:1"]


def test_priorities_then_submit_order(db_url: str) -> None:
    registry = Registry()
    order: list[str] = []

    @registry.goal("tagged")
    def tagged(p: dict[str, Any]) -> list[Step]:
        return [Step("record", {"tag": p["tag"]})]

    @registry.action("record")
    async def record(args: Any, ctx: ActionContext) -> None:
        order.append(args["tag"])

    with Goals.connect(db_url, registry=registry) as goals:
        goals.register()
        for i, priority in enumerate([0, 5, 0, 9, 5, 0]):
            goals.submit("tagged", {"tag": f"p{priority}-{i}"}, priority=priority)

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        await wait_for(lambda: asyncio.sleep(0, len(order) == 6))

    asyncio.run(with_worker(db_url, registry, body, concurrency=1))
    assert order == ["p9-3", "p5-1", "p5-4", "p0-0", "p0-2", "p0-5"]


def test_action_concurrency_limit_holds_within_a_worker(db_url: str) -> None:
    registry = Registry()
    running = 0
    peak = 0

    @registry.goal("limited")
    def limited(p: Any) -> list[Step]:
        return [Step("scarce")]

    @registry.action("scarce", concurrency=2)
    async def scarce(args: Any, ctx: ActionContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        ids = [s.id for s in await goals.submit_many([("limited", {}, None)] * 12)]
        infos = await until_finished(goals, *ids)
        assert all(i.status == "complete" for i in infos)

    asyncio.run(with_worker(db_url, registry, body, concurrency=10))
    assert peak == 2
