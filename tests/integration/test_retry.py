"""goalrt.retry_goal: a failed or cancelled goal runs again from a step (issue 19, item 4)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

from goalrt import ActionContext, AsyncGoals, Goals, PermanentError, Registry, Step, Worker
from goalrt.errors import GoalNotFoundError, InvalidGoalError, InvalidTransitionError

FAST = {"poll": 0.05, "lease": 5.0}


def registry(calls: list[str], broken: set[str]) -> Registry:
    reg = Registry()

    @reg.goal("trip")
    def trip(p: dict[str, Any]) -> list[Step]:
        return [Step("book", {"what": "flight"}), Step("book", {"what": "hotel"}), Step("book", {"what": "car"})]

    @reg.action("book")
    async def book(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        calls.append(args["what"])
        if args["what"] in broken:
            raise PermanentError(f"{args['what']} is sold out")
        return {"booked": args["what"]}

    return reg


async def run_until_finished(url: str, reg: Registry, goal_id: int) -> None:
    worker = Worker(url, reg, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(url) as goals:
            async with asyncio.timeout(30):
                await goals.wait(goal_id, poll=0.1)
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task


def test_a_failed_goal_runs_again_from_its_failed_step(db_url: str) -> None:
    calls: list[str] = []
    broken = {"hotel"}
    reg = registry(calls, broken)
    with Goals.connect(db_url, registry=reg) as goals:
        goals.register()
        gid = goals.submit("trip").id
        asyncio.run(run_until_finished(db_url, reg, gid))
        failed = goals.get(gid)
        assert failed.status == "failed" and "hotel is sold out" in (failed.last_error or "")
        assert calls == ["flight", "hotel"]
        broken.clear()
        first = goals.retry(gid, reason="hotel has rooms again")
        again = goals.get(gid)
        assert (again.status, again.last_error, again.result, first) == ("pending", None, None, 4)
        asyncio.run(run_until_finished(db_url, reg, gid))
        done = goals.get(gid)
    assert done.status == "complete"
    assert calls == ["flight", "hotel", "hotel", "car"]  # the flight is not booked twice
    steps = [(s.seq, s.args["what"], s.status, s.attempts) for s in done.steps]
    assert steps == [
        (1, "flight", "complete", 1),
        (2, "hotel", "failed", 1),
        (3, "car", "cancelled", 0),
        (4, "hotel", "complete", 1),
        (5, "car", "complete", 1),
    ]
    retried = [e for e in done.events if e.type == "goal.retried"]
    assert len(retried) == 1 and retried[0].data == {
        "goal_id": gid,
        "from": "failed",
        "error": failed.last_error,
        "reason": "hotel has rooms again",
        "from_step": 2,
        "first_seq": 4,
        "steps": 2,
        "plan_no": 2,
    }
    types = [e.type for e in done.events]
    assert types.index("goal.failed") < types.index("goal.retried") < types.index("goal.completed")


def test_from_step_runs_earlier_steps_again_and_a_cancelled_unplanned_goal_is_planned_anew(db_url: str) -> None:
    calls: list[str] = []
    broken = {"car"}
    reg = registry(calls, broken)
    with Goals.connect(db_url, registry=reg) as goals:
        goals.register()
        gid = goals.submit("trip").id
        asyncio.run(run_until_finished(db_url, reg, gid))
        broken.clear()
        assert goals.retry(gid, from_step=1) == 4
        asyncio.run(run_until_finished(db_url, reg, gid))
        assert goals.get(gid).status == "complete"
        assert calls == ["flight", "hotel", "car"] * 2
        other = goals.submit("trip").id
        goals.cancel(other, "later")
        assert goals.retry(other) is None
        asyncio.run(run_until_finished(db_url, reg, other))
        assert goals.get(other).status == "complete"


def test_what_cannot_be_retried_is_refused_with_one_line(db_url: str, conn: psycopg.Connection) -> None:
    calls: list[str] = []
    reg = registry(calls, set())
    with Goals.connect(db_url, registry=reg) as goals:
        goals.register()
        gid = goals.submit("trip").id
        with pytest.raises(InvalidTransitionError, match=f"cannot retry goal {gid}: it is pending"):
            goals.retry(gid)
        asyncio.run(run_until_finished(db_url, reg, gid))
        with pytest.raises(InvalidTransitionError, match="it is complete"):
            goals.retry(gid)
        with pytest.raises(GoalNotFoundError):
            goals.retry(10**9)
        child = goals.submit("trip", parent=gid).id
        goals.cancel(child)
        with pytest.raises(InvalidTransitionError, match=f"child of goal {gid}"):
            goals.retry(child)
        failed = goals.submit("trip").id
        conn.execute("SELECT goalrt.cancel_goal(%s)", (failed,))
        with pytest.raises(InvalidGoalError, match=f"goal {failed} has no step 7: its steps are none"):
            goals.retry(failed, from_step=7)
        with pytest.raises(InvalidGoalError, match="reason must be at most 1000"):
            goals.retry(failed, reason="x" * 1001)
        # Nothing of the refused calls was written.
        assert conn.execute("SELECT count(*) FROM goalrt.events WHERE type = 'goal.retried'").fetchone() == (0,)


def test_a_failed_goal_leaves_failed_only_through_retry(db_url: str, conn: psycopg.Connection) -> None:
    with Goals.connect(db_url, registry=registry([], set())) as goals:
        goals.register()
        gid = goals.submit("trip").id
        goals.cancel(gid)
    with pytest.raises(psycopg.Error, match="cancelled is final") as caught:
        conn.execute("UPDATE goalrt.goals SET status = 'pending' WHERE id = %s", (gid,))
    assert caught.value.sqlstate == "GR007"
    # The retry mark of another goal does not open this one.
    with pytest.raises(psycopg.Error, match="cancelled is final"), conn.transaction():
        conn.execute("SELECT set_config('goalrt.retrying', %s, true)", (str(gid + 1),))
        conn.execute("UPDATE goalrt.goals SET status = 'pending' WHERE id = %s", (gid,))


def test_two_retries_at_once_run_the_goal_once(db_url: str) -> None:
    reg = registry([], {"flight"})
    with Goals.connect(db_url, registry=reg) as goals:
        goals.register()
        gid = goals.submit("trip").id
        asyncio.run(run_until_finished(db_url, reg, gid))
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        with Goals.connect(db_url) as mine:
            barrier.wait()
            try:
                mine.retry(gid)
                outcomes.append("retried")
            except InvalidTransitionError:
                outcomes.append("refused")

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "retried"]
    with Goals.connect(db_url) as goals:
        info = goals.get(gid)
    assert [e.type for e in info.events].count("goal.retried") == 1
    assert [s.seq for s in info.steps] == [1, 2, 3, 4, 5, 6]


def test_a_passed_deadline_is_dropped_and_an_old_lease_stays_fenced(db_url: str, conn: psycopg.Connection) -> None:
    with Goals.connect(db_url, registry=registry([], set())) as goals:
        goals.register()
        gid = goals.submit("trip", deadline=3600).id
    rows = conn.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2('w', 1, 30)").fetchall()
    assert rows == [(gid, 1)]
    conn.execute("SELECT goalrt.cancel_goal(%s)", (gid,))
    conn.execute("UPDATE goalrt.goals SET deadline_at = now() - interval '1 s' WHERE id = %s", (gid,))
    with Goals.connect(db_url) as goals:
        goals.retry(gid)
    assert conn.execute("SELECT status, deadline_at FROM goalrt.goals WHERE id = %s", (gid,)).fetchone() == (
        "pending",
        None,
    )
    # A result sent under the lease taken before the cancel is refused: a new claim takes epoch 2.
    late = conn.execute(
        "SELECT outcome FROM goalrt.complete_steps_v1('w', %s::jsonb, 30)",
        (f'[{{"goal_id": {gid}, "epoch": 1, "seq": 1, "outcome": "complete"}}]',),
    ).fetchall()
    assert late == [("refused",)]
    assert conn.execute("SELECT epoch FROM goalrt.claim_goals_v2('w', 1, 30)").fetchall() == [(2,)]
