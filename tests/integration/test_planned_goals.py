"""Goals declared by a condition: the worker plans, checks each step against the state, re-plans."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from goalrt import ActionContext, AsyncGoals, GoalInfo, PermanentError, Registry, State, Worker
from goalrt.planner import ObjectType, Set
from tests.integration.test_worker import until_finished, wait_for, with_worker


class Deliver(BaseModel):
    order: str


def shop(db_url: str, calls: list[str], *, max_replans: int = 3) -> Registry:
    """Orders are paid by card (cheap, may be declined) or invoice (dearer), then shipped from the dock."""
    registry = Registry()
    registry.achieve(
        "deliver",
        "orders.{order}.status == 'shipped'",
        params=Deliver,
        types=[ObjectType("Order", keys_under="orders")],
        param_types={"order": "Order"},
        max_replans=max_replans,
    )

    @registry.action(
        "pay.card",
        params={"o": "Order"},
        pre="orders.{o}.status == 'created'",
        effects=[Set("orders.{o}.status", "paid")],
        cost=1,
    )
    async def card(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        calls.append(f"pay.card({args['o']})")
        if await ctx.state.value(f"cards.{args['o']}") == "declined":
            raise PermanentError("card declined")
        if await ctx.state.value(f"drift.{args['o']}"):
            # Someone moves the truck while the payment runs.
            await asyncio.to_thread(_set, db_url, "truck.at", "garage")
        return {"paid_by": "card"}

    @registry.action(
        "pay.invoice",
        params={"o": "Order"},
        pre="orders.{o}.status == 'created'",
        effects=[Set("orders.{o}.status", "paid")],
        cost=3,
    )
    async def invoice(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        calls.append(f"pay.invoice({args['o']})")
        return {"paid_by": "invoice"}

    @registry.action("truck.call", pre="truck.at == 'garage'", effects=[Set("truck.at", "dock")], cost=2)
    async def truck(args: dict[str, Any], ctx: ActionContext) -> None:
        calls.append("truck.call()")

    @registry.action(
        "ship",
        params={"o": "Order"},
        pre="orders.{o}.status == 'paid' and truck.at == 'dock'",
        effects=[Set("orders.{o}.status", "shipped")],
    )
    def ship(args: dict[str, Any], ctx: ActionContext) -> str:
        calls.append(f"ship({args['o']})")
        return f"shipped {args['o']}"

    return registry


def _set(url: str, path: str, value: Any) -> None:
    with State.connect(url) as state:
        state.set(path, value)


def setup(url: str, **paths: Any) -> None:
    with State.connect(url) as state:
        state.set("truck.at", "dock")
        for path, value in paths.items():
            state.set(path.replace("__", "."), value)


def plans(info: GoalInfo) -> list[dict[str, Any]]:
    return [e.data for e in info.events if e.type == "goal.planned"]


def run_goal(db_url: str, registry: Registry, order: str) -> GoalInfo:
    out: list[GoalInfo] = []

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("deliver", {"order": order})).id
        out.extend(await until_finished(goals, gid))

    asyncio.run(with_worker(db_url, registry, body))
    return out[0]


def test_the_cheapest_plan_runs_and_is_recorded(db_url: str) -> None:
    setup(db_url, orders__o1__status="created")
    calls: list[str] = []
    info = run_goal(db_url, shop(db_url, calls), "o1")
    assert info.status == "complete", info.last_error
    assert calls == ["pay.card(o1)", "ship(o1)"]
    (planned,) = plans(info)
    assert planned["reason"] == "initial"
    assert planned["planner"]["cost"] == 2 and planned["planner"]["ops"] == ["pay.card(o1)", "ship(o1)"]
    assert planned["planner"]["versions"] == {"orders.o1.status": 1, "truck.at": 1}
    assert [s["args"] for s in planned["steps"]] == [{"o": "o1"}, {"o": "o1"}]
    with State.connect(db_url) as state:  # the declared effects were applied with each step
        assert state.value("orders.o1.status") == "shipped"


def test_a_step_that_fails_for_good_is_planned_around(db_url: str) -> None:
    setup(db_url, orders__o2__status="created", cards__o2="declined")
    calls: list[str] = []
    info = run_goal(db_url, shop(db_url, calls), "o2")
    assert info.status == "complete", info.last_error
    assert calls == ["pay.card(o2)", "pay.invoice(o2)", "ship(o2)"]
    _, second = plans(info)
    assert second["reason"] == "step_failed"
    assert second["planner"]["excluded"] == ["pay.card(o2)"]
    assert second["planner"]["why"] == "pay.card(o2) failed: pay.card: card declined"
    assert [(s.action, s.status) for s in info.steps] == [
        ("pay.card", "failed"),
        ("ship", "superseded"),
        ("pay.invoice", "complete"),
        ("ship", "complete"),
    ]


def test_state_that_drifts_under_a_goal_leads_to_a_new_plan(db_url: str) -> None:
    setup(db_url, orders__o3__status="created", drift__o3=True)
    calls: list[str] = []
    info = run_goal(db_url, shop(db_url, calls), "o3")
    assert info.status == "complete", info.last_error
    assert calls == ["pay.card(o3)", "truck.call()", "ship(o3)"]
    reasons = [p["reason"] for p in plans(info)]
    assert reasons == ["initial", "drift"]
    assert plans(info)[1]["planner"]["why"] == "the precondition of ship(o3) no longer holds"


def test_a_goal_that_already_holds_completes_at_once(db_url: str) -> None:
    setup(db_url, orders__o4__status="shipped")
    calls: list[str] = []
    info = run_goal(db_url, shop(db_url, calls), "o4")
    assert info.status == "complete" and calls == [] and info.steps == ()
    assert plans(info)[0]["steps"] == []


def test_no_plan_fails_the_goal_with_the_explanation(db_url: str) -> None:
    setup(db_url, orders__o5__status="cancelled")
    info = run_goal(db_url, shop(db_url, []), "o5")
    assert info.status == "failed"
    assert info.last_error is not None and info.last_error.startswith("no plan:")
    assert "orders.o5.status == 'shipped'" in info.last_error


def test_re_planning_gives_up_after_max_replans(db_url: str) -> None:
    setup(db_url, orders__o6__status="created", cards__o6="declined")
    calls: list[str] = []
    info = run_goal(db_url, shop(db_url, calls, max_replans=0), "o6")
    assert info.status == "failed"
    assert calls == ["pay.card(o6)"]
    declined = "pay.card: card declined"
    assert info.last_error == f"{declined}; gave up after 1 plans: pay.card(o6) failed: {declined}"


def test_a_maintained_goal_acts_again_when_its_condition_breaks(db_url: str) -> None:
    setup(db_url)
    _set(db_url, "truck.at", "garage")
    calls: list[str] = []
    registry = shop(db_url, calls)
    registry.achieve("keep.truck.at.dock", "truck.at == 'dock'", maintain=True)

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("keep.truck.at.dock", {})).id

        async def waits_after(n: int) -> bool:
            info = await goals.get(gid)
            return info.status == "waiting" and len(calls) == n

        await wait_for(lambda: waits_after(1))  # it called the truck, then watches
        _set(db_url, "orders.x.status", "created")  # a path it does not read: it keeps waiting
        await asyncio.sleep(0.3)
        assert len(calls) == 1 and (await goals.get(gid)).status == "waiting"
        await asyncio.to_thread(_set, db_url, "truck.at", "garage")  # broken: it acts again
        await wait_for(lambda: waits_after(2))
        await asyncio.to_thread(_set, db_url, "truck.at", "dock")  # changed, still holds: nothing to do
        await asyncio.sleep(0.3)
        info = await goals.get(gid)
        assert info.status == "waiting" and len(calls) == 2
        reasons = [p["reason"] for p in plans(info)]
        assert reasons == ["initial", "recheck", "recheck"]
        await goals.cancel(gid)

    asyncio.run(with_worker(db_url, registry, body))
    assert calls == ["truck.call()", "truck.call()"]
    with State.connect(db_url) as state:
        assert state.value("truck.at") == "dock"
