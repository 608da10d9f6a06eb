"""Coordination through a running worker: waits, timers across restarts, trees, deadlines, --only."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from pydantic import BaseModel

from goalrt import ActionContext, AsyncGoals, Goals, Registry, Step, Worker, ask, children, sleep, wait_event
from tests.integration.test_worker import FAST, until_finished, wait_for, with_worker


class Order(BaseModel):
    order: str


def registry_with(log: list[Any]) -> Registry:
    registry = Registry()

    @registry.goal("checkout", params=Order)
    def checkout(p: Order) -> list[Step]:
        return [
            Step("pay.request", {"order": p.order}),
            wait_event("payment.completed", where={"order_id": p.order}, label="payment"),
            ask("Ship it?", {"type": "object", "properties": {"ok": {"type": "boolean"}}}, label="approval"),
            Step("ship", {"order": p.order}),
        ]

    @registry.action("pay.request")
    async def pay_request(args: dict[str, Any], ctx: ActionContext) -> None:
        log.append(("pay.request", args["order"]))

    @registry.action("ship")
    async def ship(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        results = await ctx.results()
        log.append(("ship", results["payment"]["event"]["data"], results["approval"]))
        return {"shipped": args["order"]}

    @registry.goal("nap")
    def nap(p: dict[str, Any]) -> list[Step]:
        return [sleep(float(p["seconds"])), Step("wake.up", {})]

    @registry.action("wake.up")
    def wake_up(args: dict[str, Any], ctx: ActionContext) -> str:
        log.append("woke")
        return "up"

    @registry.goal("fanout")
    def fanout(p: dict[str, Any]) -> list[Step]:
        return [children([("hang", {}) for _ in range(int(p["n"]))], label="kids"), Step("wake.up", {})]

    @registry.goal("hang")
    def hang(p: dict[str, Any]) -> list[Step]:
        return [Step("block", {})]

    @registry.action("block")
    async def block(args: dict[str, Any], ctx: ActionContext) -> str:
        log.append(("block.start", ctx.goal_id))
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            log.append(("block.cancelled", ctx.goal_id))
            raise
        return "finished"

    return registry


def test_a_goal_waits_for_an_event_and_an_answer_then_reads_them(db_url: str) -> None:
    log: list[Any] = []

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("checkout", {"order": "o7"})).id

        async def waiting() -> bool:
            return (await goals.get(gid)).status == "waiting"

        await wait_for(waiting)
        assert worker.held == {}  # a waiting goal holds no lease and no slot
        with psycopg.connect(db_url, autocommit=True) as psql:  # the webhook, from anywhere
            psql.execute(
                "SELECT goalrt.append_event('webhooks', 'payment.completed', %s::jsonb)",
                ('{"order_id": "o7", "amount": 30}',),
            )

        async def asked() -> bool:
            info = await goals.get(gid)
            return info.status == "waiting" and info.step_seq == 3

        await wait_for(asked)
        assert await goals.resume(gid, {"ok": True}) == "released"
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert info.result == {"shipped": "o7"}
        assert [s.kind for s in info.steps] == ["action", "event", "ask", "action"]

    asyncio.run(with_worker(db_url, registry_with(log), body))
    assert log == [("pay.request", "o7"), ("ship", {"order_id": "o7", "amount": 30}, {"ok": True})]


def test_a_timer_fires_after_every_worker_restarted(db_url: str) -> None:
    log: list[Any] = []
    registry = registry_with(log)

    async def first(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("nap", {"seconds": 1.0})).id

        async def sleeping() -> bool:
            return (await goals.get(gid)).status == "waiting"

        await wait_for(sleeping)

    asyncio.run(with_worker(db_url, registry, first))  # the only worker stops while the goal sleeps
    assert log == []

    async def second(goals: AsyncGoals, worker: Worker) -> None:
        (gid,) = [g.id for g in await goals.list(name="nap")]
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete"
        assert info.steps[0].result["slept_until"]

    asyncio.run(with_worker(db_url, registry, second))  # a new worker, later
    assert log == ["woke"]


def test_cancelling_a_parent_stops_its_childrens_running_actions(db_url: str) -> None:
    log: list[Any] = []

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("fanout", {"n": 3})).id

        async def all_running() -> bool:
            return len([e for e in log if e[0] == "block.start"]) == 3

        await wait_for(all_running)
        await goals.cancel(gid, "not needed")

        async def stopped() -> bool:
            return len([e for e in log if e[0] == "block.cancelled"]) == 3

        await wait_for(stopped)
        with Goals.connect(db_url) as sync:
            tree = sync.tree(gid)
        assert [n.status for n in tree] == ["cancelled"] * 4
        assert all(n.last_error == f"parent goal {gid} cancelled" for n in tree[1:])

    asyncio.run(with_worker(db_url, registry_with(log), body, concurrency=5))


def test_a_deadline_fails_the_goal_and_cancels_its_running_action(db_url: str) -> None:
    log: list[Any] = []

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("hang", {}, deadline=0.5)).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "failed"
        assert info.last_error is not None and info.last_error.startswith("deadline_exceeded")

        async def cancelled() -> bool:
            return ("block.cancelled", gid) in log

        await wait_for(cancelled)
        types = [e.type for e in (await goals.get(gid)).events]
        assert "step.completed" not in types

    asyncio.run(with_worker(db_url, registry_with(log), body, concurrency=2))


def test_only_claims_the_given_goal_types(db_url: str) -> None:
    log: list[Any] = []

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        nap = (await goals.submit("nap", {"seconds": 0})).id
        hang = (await goals.submit("hang", {})).id
        (info,) = await until_finished(goals, nap)
        assert info.status == "complete"
        await asyncio.sleep(FAST["poll"] * 4)
        assert (await goals.get(hang)).status == "pending"
        await goals.cancel(hang)

    asyncio.run(with_worker(db_url, registry_with(log), body, only=["nap"]))


def test_a_plan_the_database_refuses_fails_the_goal_clearly(db_url: str) -> None:
    registry = Registry()

    @registry.goal("bad.children")
    def bad(p: dict[str, Any]) -> list[Step]:
        return [children([("no.such.type", {})])]

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("bad.children", {})).id
        other = (await goals.submit("bad.children", {})).id
        infos = await until_finished(goals, gid, other)
        assert [i.status for i in infos] == ["failed", "failed"]
        assert "plan refused" in str(infos[0].last_error)
        assert "unknown goal type 'no.such.type'" in str(infos[0].last_error)

    asyncio.run(with_worker(db_url, registry, body))


def test_a_step_that_starts_bad_children_fails_its_goal(db_url: str) -> None:
    registry = Registry()

    @registry.goal("later.bad")
    def later_bad(p: dict[str, Any]) -> list[Step]:
        return [Step("noop", {}), children([("no.such.type", {})])]

    @registry.action("noop")
    async def noop(args: dict[str, Any], ctx: ActionContext) -> None:
        return None

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("later.bad", {})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "failed"
        assert "unknown goal type 'no.such.type'" in str(info.last_error)

    asyncio.run(with_worker(db_url, registry, body))
