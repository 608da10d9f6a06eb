"""Attempts, re-sent outcomes and limit ranges, driving the worker's SQL functions by hand as a worker would.

- A step still running when its lease expired (its worker died) counts as an
  attempt; once it has used ``max_attempts`` the next claim fails the goal.
- A retry or fail whose commit the worker did not see is recognised when it
  is sent again (``already_applied``), never recorded as refused.
- A limit out of range is refused when it is set, not when a goal uses it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt import Goals, InvalidGoalError


def rows(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    cols = [c.name for c in cur.description or ()]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def claim(conn: psycopg.Connection, worker: str) -> dict[int, dict[str, Any]]:
    cur = conn.execute("SELECT * FROM goalrt.claim_goals_v2(%s, 10, 30)", (worker,))
    return {r["goal_id"]: r for r in rows(cur)}


def start(conn: psycopg.Connection, steps: list[dict[str, Any]], worker: str = "w1") -> tuple[int, int]:
    """Submit a goal, claim it and plan ``steps``; return its id and lease epoch."""
    row = conn.execute("SELECT id FROM goalrt.submit_goal('g', '{}', '{}')").fetchone()
    assert row is not None
    gid = int(row[0])
    epoch = claim(conn, worker)[gid]["epoch"]
    item = {"goal_id": gid, "epoch": epoch, "steps": steps}
    (answer,) = rows(conn.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s, 30)", (worker, Jsonb([item]))))
    assert answer["outcome"] == "planned" and answer["attempt"] == 1
    return gid, epoch


def complete_steps(conn: psycopg.Connection, worker: str, item: dict[str, Any]) -> dict[str, Any]:
    (answer,) = rows(conn.execute("SELECT * FROM goalrt.complete_steps_v1(%s, %s, 30)", (worker, Jsonb([item]))))
    return answer


def expire(conn: psycopg.Connection, gid: int) -> None:
    """Let the lease run out, as when its worker is killed mid-step."""
    conn.execute("UPDATE goalrt.goals SET lease_expires_at = now() - interval '1 s' WHERE id = %s", (gid,))


def one(conn: psycopg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    (row,) = rows(conn.execute(sql, args))
    return row


def event_types(conn: psycopg.Connection, gid: int) -> list[str]:
    cur = conn.execute("SELECT type FROM goalrt.event_data WHERE stream = %s ORDER BY id", (f"goal:{gid}",))
    return [r[0] for r in cur.fetchall()]


@pytest.fixture
def c(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("SELECT goalrt.register_goal_type('g', '{}')")
    return conn


# -- a step that kills its worker ---------------------------------------------------------------------------------


def test_a_step_whose_worker_keeps_dying_fails_its_goal_after_max_attempts(c: psycopg.Connection) -> None:
    gid, _ = start(c, [{"action": "payment.charge", "args": {}, "max_attempts": 2}])
    expire(c, gid)
    taken = claim(c, "w2")
    assert taken[gid]["attempt"] == 2  # the interrupted run counted
    expire(c, gid)
    assert gid not in claim(c, "w3")  # no third run
    g = one(c, "SELECT status, last_error, lease_owner FROM goalrt.goals WHERE id = %s", gid)
    reason = "step 1 (payment.charge): the worker died running it 2 times (max_attempts 2)"
    assert g == {"status": "failed", "last_error": reason, "lease_owner": None}
    s = one(c, "SELECT status, attempts, error FROM goalrt.goal_steps WHERE goal_id = %s", gid)
    assert s == {"status": "failed", "attempts": 2, "error": reason}
    failed = one(c, "SELECT data FROM goalrt.event_data WHERE stream = %s AND type = 'step.failed'", f"goal:{gid}")[
        "data"
    ]
    assert failed["interrupted"] is True and failed["final"] is True and failed["previous_worker"] == "w2"
    assert event_types(c, gid)[-2:] == ["step.failed", "goal.failed"]


def test_an_attempt_that_failed_normally_and_one_interrupted_use_up_the_attempts(c: psycopg.Connection) -> None:
    gid, epoch = start(c, [{"action": "flaky", "args": {}, "max_attempts": 2}])
    item = {"goal_id": gid, "epoch": epoch, "seq": 1, "outcome": "retry", "error": "boom", "retry_in": 0}
    assert complete_steps(c, "w1", item)["outcome"] == "retry"
    assert claim(c, "w1")[gid]["attempt"] == 2
    expire(c, gid)
    assert gid not in claim(c, "w2")
    g = one(c, "SELECT status, last_error FROM goalrt.goals WHERE id = %s", gid)
    assert g == {"status": "failed", "last_error": "step 1 (flaky): the worker died running it 1 time (max_attempts 2)"}


def test_a_step_planned_without_max_attempts_is_taken_over_as_before(c: psycopg.Connection) -> None:
    # A worker of an earlier version sends no max_attempts: no cap.
    gid, _ = start(c, [{"action": "old", "args": {}}])
    for attempt in (2, 3, 4):
        expire(c, gid)
        assert claim(c, "w2")[gid]["attempt"] == attempt


def test_max_attempts_on_a_step_is_checked(c: psycopg.Connection) -> None:
    row = c.execute("SELECT id FROM goalrt.submit_goal('g', '{}', '{}')").fetchone()
    assert row is not None
    epoch = claim(c, "w1")[row[0]]["epoch"]
    item = {"goal_id": row[0], "epoch": epoch, "steps": [{"action": "a", "max_attempts": 0}]}
    with pytest.raises(psycopg.Error, match=r"steps\[0\].max_attempts must be an integer from 1"):
        c.execute("SELECT * FROM goalrt.plan_goals_v1('w1', %s, 30)", (Jsonb([item]),))


# -- a re-sent retry or fail ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "answer"), [("retry", "retry"), ("fail", "failed")])
def test_a_resent_retry_or_fail_is_already_applied_and_not_refused(
    c: psycopg.Connection, outcome: str, answer: str
) -> None:
    gid, epoch = start(c, [{"action": "pay", "args": {}}, {"action": "ship", "args": {}}])
    item = {"goal_id": gid, "epoch": epoch, "seq": 1, "outcome": outcome, "error": "boom", "retry_in": 0}
    assert complete_steps(c, "w1", item)["outcome"] == answer
    # The connection was cut after the commit: the worker sends it again.
    again = complete_steps(c, "w1", item)
    assert (again["outcome"], again["error"]) == ("already_applied", None)
    assert "step.result_refused" not in event_types(c, gid)
    assert event_types(c, gid).count("step.failed") == 1


def test_a_retry_sent_by_another_worker_or_epoch_is_still_refused(c: psycopg.Connection) -> None:
    gid, epoch = start(c, [{"action": "pay", "args": {}}])
    item = {"goal_id": gid, "epoch": epoch, "seq": 1, "outcome": "retry", "error": "boom", "retry_in": 0}
    assert complete_steps(c, "w1", item)["outcome"] == "retry"
    assert complete_steps(c, "w2", item)["outcome"] == "refused"
    assert complete_steps(c, "w1", {**item, "epoch": epoch + 1})["outcome"] == "refused"
    assert event_types(c, gid).count("step.result_refused") == 2


def test_a_released_lease_is_not_held_by_plans_or_fails_sent_under_it(c: psycopg.Connection) -> None:
    # holds_lease was NULL (not false) for a lease without owner, and NOT NULL let these through.
    gid, epoch = start(c, [{"action": "pay", "args": {}}])
    item = {"goal_id": gid, "epoch": epoch, "seq": 1, "outcome": "retry", "error": "boom", "retry_in": 60}
    assert complete_steps(c, "w1", item)["outcome"] == "retry"
    replan = {"goal_id": gid, "epoch": epoch, "steps": [{"action": "other", "args": {}}], "replan": True}
    (planned,) = rows(c.execute("SELECT * FROM goalrt.plan_goals_v1('w1', %s, 30)", (Jsonb([replan]),)))
    assert planned["outcome"] == "refused"
    fail = {"goal_id": gid, "epoch": epoch, "error": "late"}
    (failed,) = rows(c.execute("SELECT * FROM goalrt.fail_goals_v1('w1', %s)", (Jsonb([fail]),)))
    assert failed["outcome"] == "refused"
    g = one(c, "SELECT status, lease_owner, plan_no FROM goalrt.goals WHERE id = %s", gid)
    assert g == {"status": "active", "lease_owner": None, "plan_no": 1}
    late = complete_steps(c, "w1", {**item, "seq": 2})
    assert (late["outcome"], late["error"]) == ("refused", "lease was released")


# -- limits out of range ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 1, "per": 1e300}, "limit option per must be a number of seconds from 0.001 to 31536000"),
        ({"rate": 1, "per": 0.0001}, "limit option per must be a number of seconds from 0.001 to 31536000"),
        ({"rate": 1e300}, "limit option rate must be an integer from 1 to 999999999"),
        ({"concurrency": 1000000000}, "limit option concurrency must be an integer from 1 to 999999999"),
    ],
)
def test_set_limit_refuses_values_out_of_range_naming_the_field(
    c: psycopg.Connection, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(psycopg.Error, match=message) as raised:
        c.execute("SELECT * FROM goalrt.set_limit('A', %s)", (Jsonb(options),))
    assert raised.value.sqlstate == "GR008"
    c.rollback()
    assert c.execute("SELECT count(*) FROM goalrt.limits").fetchone() == (0,)


def test_the_largest_per_still_parks_and_wakes_goals(c: psycopg.Connection) -> None:
    c.execute("SELECT * FROM goalrt.set_limit('A', %s)", (Jsonb({"rate": 1, "per": 31536000}),))
    start(c, [{"action": "A", "args": {}}])
    row = c.execute("SELECT id FROM goalrt.submit_goal('g', '{}', '{}')").fetchone()
    assert row is not None
    epoch = claim(c, "w1")[row[0]]["epoch"]
    item = {"goal_id": row[0], "epoch": epoch, "steps": [{"action": "A", "args": {}}]}
    (answer,) = rows(c.execute("SELECT * FROM goalrt.plan_goals_v1('w1', %s, 30)", (Jsonb([item]),)))
    assert answer["outcome"] == "blocked"


def test_goals_set_limit_refuses_out_of_range_before_sending(db_url: str) -> None:
    with Goals.connect(db_url) as goals:
        with pytest.raises(InvalidGoalError, match=r"limit option per must be .* got 1e\+300"):
            goals.set_limit("A", rate=1, per=1e300)
        with pytest.raises(InvalidGoalError, match="limit option burst must be an integer from 1 to 999999999"):
            goals.set_limit("A", rate=1, burst=10**10)
        assert goals.limits() == []
