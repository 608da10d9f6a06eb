"""Event waits against appends whose transactions began before the wait (issue 15, items 2 and 3).

"After" a wait's since point means after it in the log (pos), and an
appending transaction may have been open since before the goal was
submitted. These place each moment with real connections: the appender's
has autocommit off and holds its transaction open while the rest happens.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt import Step, wait_event
from tests.integration.test_coordination import claim, goal, plan, register, settle, step, submit

PAID = {"order": "o1"}


@pytest.fixture
def c(conn: psycopg.Connection) -> psycopg.Connection:
    register(conn, "g")
    return conn


def pos_of(conn: psycopg.Connection, event_id: int) -> int | None:
    row = conn.execute("SELECT pos FROM goalrt.events WHERE id = %s", (event_id,)).fetchone()
    return None if row is None else int(row[0])


def submitted_id(conn: psycopg.Connection, gid: int) -> int:
    row = conn.execute(
        "SELECT id FROM goalrt.event_data WHERE stream = %s AND type = 'goal.submitted'", (f"goal:{gid}",)
    ).fetchone()
    assert row is not None
    return int(row[0])


def in_thread(fn: Any) -> tuple[threading.Event, list[Any]]:
    """Run fn in a thread; the event is set when it returns (its result or exception in the list)."""
    done = threading.Event()
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test
            out.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, out


@pytest.mark.parametrize("ticked_after_commit", [True, False])
def test_an_event_whose_transaction_was_open_at_submit_wakes_the_goal(
    db_url: str, c: psycopg.Connection, ticked_after_commit: bool
) -> None:
    """Append (open), submit, tick, commit: the event is after goal.submitted in the log, so it counts."""
    with psycopg.connect(db_url) as appender, psycopg.connect(db_url, autocommit=True) as ticker:
        (event_id,) = appender.execute(
            "SELECT goalrt.append_event('pay', 'order.paid', %s)", (Jsonb(PAID),)
        ).fetchone() or (None,)
        gid = submit(c)
        ticker.execute("SELECT goalrt.tick()")
        appender.commit()
        if ticked_after_commit:
            ticker.execute("SELECT goalrt.tick()")
            assert (pos_of(c, event_id) or 0) > (pos_of(c, submitted_id(c, gid)) or 0)
        (row,) = claim(c)
        answer = plan(c, gid, row["epoch"], [wait_event("order.paid", where=PAID), Step("ship", {})])
    assert (answer["outcome"], answer["action"]) == ("planned", "ship")
    assert step(c, gid, 1)["result"]["event"]["id"] == event_id
    c.execute("SELECT goalrt.tick()")
    assert (pos_of(c, event_id) or 0) > (pos_of(c, submitted_id(c, gid)) or 0)


def test_a_wait_started_while_the_append_is_still_open_wakes_when_it_commits(
    db_url: str, c: psycopg.Connection
) -> None:
    """The wait starts while the appender's transaction is open: it does not block, and wakes after the commit."""
    with psycopg.connect(db_url) as appender, psycopg.connect(db_url, autocommit=True) as worker:
        appender.execute("SELECT goalrt.append_event('pay', 'order.paid', %s)", (Jsonb(PAID),))
        gid = submit(c)
        c.execute("SELECT goalrt.tick()")
        (row,) = claim(c)
        done, out = in_thread(lambda: plan(worker, gid, row["epoch"], [wait_event("order.paid", where=PAID)]))
        try:
            assert done.wait(30), "starting the wait waited for the appender's transaction"
            assert not isinstance(out[0], BaseException), out
            assert out[0]["outcome"] == "waiting"
        finally:
            appender.commit()
        done.wait(30)
    assert settle(c, [gid]) == ["complete"]


def test_an_open_append_does_not_hold_up_a_workers_other_steps(db_url: str, c: psycopg.Connection) -> None:
    """A batch that starts a wait for order.paid and completes an unrelated step returns while the appender is open."""
    waiter = submit(c)
    other = submit(c)
    rows = {r["goal_id"]: r for r in claim(c, n=2)}
    assert (
        plan(c, waiter, rows[waiter]["epoch"], [Step("pay.request", {}), wait_event("order.paid", where=PAID)])[
            "outcome"
        ]
        == "planned"
    )
    assert plan(c, other, rows[other]["epoch"], [Step("one", {}), Step("two", {})])["outcome"] == "planned"
    items = [
        {"goal_id": gid, "epoch": rows[gid]["epoch"], "seq": 1, "outcome": "complete", "continue": True}
        for gid in (waiter, other)
    ]
    with psycopg.connect(db_url) as appender, psycopg.connect(db_url, autocommit=True) as worker:
        appender.execute("SELECT goalrt.append_event('pay', 'order.paid', %s)", (Jsonb(PAID),))

        def complete_batch() -> dict[int, str]:
            cur = worker.execute("SELECT goal_id, outcome FROM goalrt.complete_steps_v1('w1', %s, 30)", (Jsonb(items),))
            return {int(g): str(o) for g, o in cur.fetchall()}

        done, out = in_thread(complete_batch)
        try:
            assert done.wait(30), "the worker's batch waited for an unrelated client's open transaction"
            assert out[0] == {waiter: "waiting", other: "continue"}, out
            assert appender.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        finally:
            appender.commit()
        done.wait(30)
    assert goal(c, other)["step_seq"] == 2
    assert settle(c, [waiter]) == ["complete"]


def test_an_event_ordered_before_the_submit_does_not_count(db_url: str, c: psycopg.Connection) -> None:
    """Append (open), submit, commit, no tick between: one batch puts the event first, so it never counts."""
    with psycopg.connect(db_url) as appender:
        (event_id,) = appender.execute(
            "SELECT goalrt.append_event('pay', 'order.paid', %s)", (Jsonb(PAID),)
        ).fetchone() or (None,)
        gid = submit(c)
        appender.commit()
    (row,) = claim(c)
    assert plan(c, gid, row["epoch"], [wait_event("order.paid", where=PAID)])["outcome"] == "waiting"

    def rechecks() -> int:
        (n,) = c.execute("SELECT count(*) FROM goalrt.wait_rechecks WHERE goal_id = %s", (gid,)).fetchone() or (0,)
        return int(n)

    # Neither has a position and no tick is in flight: the next tick puts both in one batch, the event first.
    assert rechecks() == 0
    c.execute("SELECT goalrt.tick()")
    assert (pos_of(c, event_id) or 0) < (pos_of(c, submitted_id(c, gid)) or 0)
    c.execute("SELECT goalrt.wake_due_v1(100)")
    assert goal(c, gid)["status"] == "waiting"
