"""GDL goals given by their steps, run by a real worker: waits for events, asks, sleeps, child goals, emits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from goalrt import ActionContext, AsyncGoals, Registry, Result, State
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.log.eventlog import EventLog
from goalrt.state.state import Change
from tests.integration.test_worker import until_finished, wait_for, with_worker

TYPES = """
type Expense under expenses { amount: number  status: string }
event payment.settled { expense: string  amount: number }
event expense.closed { expense: string  outcome: string }
"""
ACTIONS = """
action expense.pay(e: Expense) { effect expenses.{e}.status = "paying" }
action expense.close(e: Expense) {
  effect expenses.{e}.status = "closed"
  emit expense.closed { expense = {e}  outcome = "paid" }
  pure
}
action expense.ship(e: Expense) { effect expenses.{e}.shipped = true  pure }
"""
GOALS = """
goal settle(e: Expense) {
  steps {
    ask "Pay expense {e}?" answer { approved: boolean  by?: string } as approval
    action expense.pay(e = {e})
    wait event payment.settled where { expense = {e} } timeout 1h as settled
    action expense.close(e = {e})
  }
  deadline 1d
}
goal shipped(e: Expense) { achieve expenses.{e}.shipped == true }
goal fan_out(e: Expense, f: Expense) {
  steps {
    all children { goal shipped(e = {e})  goal shipped(e = {f}) }
    sleep 1s
  }
}
"""


def workspace(root: Path) -> Path:
    (root / "apps" / "money").mkdir(parents=True, exist_ok=True)
    (root / "goalrt.toml").write_text('name = "money"\nversion = "1"\n')
    for name, text in {"types.gdl": TYPES, "actions.gdl": ACTIONS, "goals.gdl": GOALS}.items():
        (root / "apps" / "money" / name).write_text(text)
    return root


def handlers(calls: list[Any]) -> Registry:
    registry = Registry()

    @registry.action("expense.pay")
    async def pay(args: dict[str, Any], ctx: ActionContext) -> Result:
        approval = (await ctx.results())["approval"]
        calls.append((args["e"], approval["approved"]))
        return Result({"paid": True})

    return registry


def test_a_gdl_goal_waits_for_an_answer_and_an_event_and_completes(db_url: str, tmp_path: Path) -> None:
    with connect(db_url) as conn:
        load(conn, check(workspace(tmp_path)))
    with State.connect(db_url) as state:
        state.change([Change.set("expenses.e1.amount", 120)])
    calls: list[Any] = []

    async def body(goals: AsyncGoals, worker: Any) -> None:
        gid = (await goals.submit("settle", {"e": "e1"})).id

        async def status(wanted: str) -> bool:
            return (await goals.get(gid)).status == wanted

        await wait_for(lambda: status("waiting"))
        info = await goals.get(gid)
        assert info.deadline_at is not None  # the GDL deadline, as a default of the goal type
        asked = [e.data for e in info.events if e.type == "goal.waiting"]
        assert asked[-1]["kind"] == "ask" and asked[-1]["for"]["prompt"] == "Pay expense e1?"
        # The answer hands the goal back to the workers, for expense.pay; then it waits for the event.
        assert await goals.resume(gid, {"approved": True, "by": "ann"}) == "released"
        await wait_for(lambda: status("waiting"))
        assert [s.status for s in (await goals.get(gid)).steps][:3] == ["complete", "complete", "running"]
        # Another expense's settlement does not count.
        with EventLog.connect(db_url) as log:
            log.append("payments", "payment.settled", {"expense": "e2", "amount": 5})
        await asyncio.sleep(0.2)
        assert (await goals.get(gid)).status == "waiting"
        with EventLog.connect(db_url) as log:
            log.append("payments", "payment.settled", {"expense": "e1", "amount": 120})
        (done,) = await until_finished(goals, gid)
        assert done.status == "complete", done.error
        assert [s.action for s in done.steps] == ["ask", "expense.pay", "wait payment.settled", "expense.close"]
        settled = next(s for s in done.steps if s.action == "wait payment.settled")
        assert settled.result["event"]["data"] == {"expense": "e1", "amount": 120}

    asyncio.run(with_worker(db_url, handlers(calls), body))
    assert calls == [("e1", True)]
    with State.connect(db_url) as state:
        assert state.value("expenses.e1.status") == "closed"
    with EventLog.connect(db_url) as log:
        closed = [e.data for e in log.read() if e.type == "expense.closed"]
    assert closed == [{"expense": "e1", "outcome": "paid"}]  # the pure action's declared emit


def test_a_gdl_goal_starts_child_goals_and_waits_for_all(db_url: str, tmp_path: Path) -> None:
    with connect(db_url) as conn:
        load(conn, check(workspace(tmp_path)))
    with State.connect(db_url) as state:
        state.change([Change.set("expenses.a.amount", 1), Change.set("expenses.b.amount", 2)])

    async def body(goals: AsyncGoals, worker: Any) -> None:
        gid = (await goals.submit("fan_out", {"e": "a", "f": "b"})).id
        (done,) = await until_finished(goals, gid)
        assert done.status == "complete", done.error
        kids = done.steps[0].result["children"]
        assert sorted(k["status"] for k in kids) == ["complete", "complete"]

    asyncio.run(with_worker(db_url, handlers([]), body))
    with State.connect(db_url) as state:
        assert state.value("expenses.a.shipped") is True and state.value("expenses.b.shipped") is True
