"""Goals in the database: submit, idempotency, lifecycle, claims, leases, fencing, completion."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from goalrt import Goals, GoalStatus, InvalidGoalError, InvalidTransitionError, Registry, Step, StepStatus
from goalrt.errors import GoalNotFoundError


class Charge(BaseModel):
    order: str
    amount: float


def make_registry() -> Registry:
    registry = Registry()

    @registry.goal("checkout", params=Charge)
    def checkout(p: Charge) -> list[Step]:
        return [Step("pay", {"order": p.order}), Step("ship", {"order": p.order})]

    @registry.goal("noop")
    def noop(p: Any) -> list[Step]:
        return [Step("nothing")]

    return registry


@pytest.fixture
def goals(db_url: str) -> Any:
    with Goals.connect(db_url, registry=make_registry()) as g:
        g.register()
        yield g


def claim(conn: psycopg.Connection, worker: str = "w1", n: int = 10, lease: float = 30.0) -> list[Any]:
    return conn.execute("SELECT * FROM goalrt.claim_goals_v1(%s, %s, %s)", (worker, n, lease)).fetchall()


def plan(
    conn: psycopg.Connection,
    goal_id: int,
    epoch: int,
    steps: list[dict[str, Any]],
    worker: str = "w1",
    lease: float = 30,
) -> Any:
    items = json.dumps([{"goal_id": goal_id, "epoch": epoch, "steps": steps}])
    return conn.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s, %s)", (worker, items, lease)).fetchone()


def complete(conn: psycopg.Connection, worker: str = "w1", **item: Any) -> Any:
    return conn.execute(
        "SELECT goal_id, outcome, step_seq, action, args, attempt, error FROM goalrt.complete_steps_v1(%s, %s, 30)",
        (worker, json.dumps([item])),
    ).fetchone()


def event_types(goals: Goals, goal_id: int) -> list[str]:
    return [e.type for e in goals.get(goal_id).events]


# -- submit ------------------------------------------------------------------------------


def test_submit_records_goal_and_event(goals: Goals) -> None:
    s = goals.submit("checkout", {"order": "o1", "amount": 5}, priority=3)
    assert s.created
    info = goals.get(s.id)
    assert info.status == GoalStatus.PENDING and info.priority == 3
    assert info.params == {"order": "o1", "amount": 5.0}
    assert [e.type for e in info.events] == ["goal.submitted"]
    assert info.events[0].stream == f"goal:{s.id}"


def test_idempotency_key_returns_the_same_goal(goals: Goals) -> None:
    first = goals.submit("checkout", {"order": "o1", "amount": 5}, key="order-o1")
    again = goals.submit("checkout", {"order": "o1", "amount": 5}, key="order-o1")
    assert again.id == first.id and first.created and not again.created
    assert len(goals.list()) == 1
    assert event_types(goals, first.id) == ["goal.submitted"]


def test_concurrent_submits_with_one_key_make_one_goal(db_url: str, goals: Goals) -> None:
    ids: list[int] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        with Goals.connect(db_url) as g:
            barrier.wait()
            ids.append(g.submit("noop", {}, key="same").id)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 8
    assert goals.counts() == {"pending": 1}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"order": "o1"}, "params.amount"),
        ({"order": "o1", "amount": "lots"}, "params.amount"),
        ({"order": "o1", "amount": 1, "amout": 2}, "params.amout is not a parameter"),
    ],
)
def test_bad_params_are_refused_naming_the_field(goals: Goals, db_url: str, params: Any, message: str) -> None:
    with pytest.raises(InvalidGoalError, match=message):
        goals.submit("checkout", params)
    # The database refuses them too (psql users, clients without the registry).
    with Goals.connect(db_url) as bare, pytest.raises(InvalidGoalError, match=message):
        bare.submit("checkout", params)
    assert goals.counts() == {}


@pytest.mark.parametrize(
    ("schema", "params", "problem"),
    [
        # A schema that takes any object is answered without json_problem (the hot path's short cut) ...
        ({}, {"x": 1}, None),
        ({"type": "object", "description": "anything"}, {"x": [1]}, None),
        # ... but never for a value that is not an object, nor for a schema that says anything about fields.
        ({}, [1], "params must be a JSON object"),
        ({}, "x", "params must be a JSON object"),
        ({"additionalProperties": False}, {"x": 1}, "params.x is not a parameter (expected: none)"),
        ({"required": ["a"]}, {}, "params.a is required"),
        ({"properties": {"a": {"type": "integer"}}}, {"a": "1"}, "params.a must be integer, got string"),
    ],
)
def test_params_problem_short_cut_only_for_schemas_that_take_any_object(
    conn: psycopg.Connection, schema: Any, params: Any, problem: str | None
) -> None:
    row = conn.execute("SELECT goalrt.params_problem(%s, %s)", (Jsonb(schema), Jsonb(params))).fetchone()
    assert row is not None and row[0] == problem


def test_the_lifecycle_trigger_still_checks_an_update_that_keeps_other_columns(
    goals: Goals, conn: psycopg.Connection
) -> None:
    # The trigger runs only when the status changes (its WHEN clause); a change with other columns is still checked.
    gid = goals.submit("noop", {}).id
    conn.execute("UPDATE goalrt.goals SET status = 'pending', priority = 3 WHERE id = %s", (gid,))
    with pytest.raises(psycopg.Error, match="pending -> complete"):
        conn.execute("UPDATE goalrt.goals SET priority = 4, status = 'complete' WHERE id = %s", (gid,))


def test_unknown_goal_type_is_refused(goals: Goals) -> None:
    with pytest.raises(InvalidGoalError, match="unknown goal type 'nope': registered: checkout, noop"):
        goals.submit("nope", {})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": "high"}, "options.priority must be an integer"),
        ({"delay": -1}, "options.delay"),
        ({"run_at": "not a time"}, "options.run_at must be a time"),
        ({"colour": "red"}, "options.colour is not an option"),
        ({"key": ""}, "options.key"),
        ({"parent_id": 999}, "goal 999 does not exist"),
    ],
)
def test_bad_options_are_refused(conn: psycopg.Connection, goals: Goals, options: Any, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        conn.execute("SELECT * FROM goalrt.submit_goal('noop', '{}', %s)", (json.dumps(options),))
    assert goals.counts() == {}


def test_submit_many_is_all_or_nothing(goals: Goals) -> None:
    ok = goals.submit_many([("noop", {}, None), ("checkout", {"order": "a", "amount": 1}, {"priority": 2})])
    assert [s.created for s in ok] == [True, True]
    with pytest.raises(InvalidGoalError, match=r"goals\[1\]: invalid params"):
        goals.submit_many([("noop", {}, None), ("checkout", {"order": "a"}, None)])
    assert goals.counts() == {"pending": 2}


# -- lifecycle ------------------------------------------------------------------------------


def test_illegal_transitions_are_refused_by_the_database(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    # pending -> failed is allowed: a deadline may pass before any worker took the goal.
    for target in ("complete", "waiting"):
        with pytest.raises(psycopg.Error, match=f"pending -> {target}"):
            conn.execute("UPDATE goalrt.goals SET status = %s WHERE id = %s", (target, gid))
    goals.cancel(gid, "no longer needed")
    with pytest.raises(psycopg.Error, match=r"cancelled -> active \(cancelled is final"):
        conn.execute("UPDATE goalrt.goals SET status = 'active' WHERE id = %s", (gid,))
    with pytest.raises(InvalidTransitionError, match=f"cannot cancel goal {gid}: it is already cancelled"):
        goals.cancel(gid)
    with pytest.raises(psycopg.Error, match="a new goal starts pending"):
        conn.execute("INSERT INTO goalrt.goals (name, status) VALUES ('noop', 'complete')")


def test_cancel_unknown_goal(goals: Goals) -> None:
    with pytest.raises(GoalNotFoundError, match="goal 12345 does not exist"):
        goals.cancel(12345)
    with pytest.raises(GoalNotFoundError):
        goals.get(12345)


def test_status_enums_mirror_the_sql_checks(conn: psycopg.Connection) -> None:
    def allowed(table: str) -> set[str]:
        row = conn.execute(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conname = %s",
            (f"{table}_status_check",),
        ).fetchone()
        assert row is not None
        return set(row[0].split("ARRAY[")[1].split("]")[0].replace("::text", "").replace("'", "").split(", "))

    assert allowed("goals") == {s.value for s in GoalStatus}
    assert allowed("goal_steps") == {s.value for s in StepStatus}


# -- claims and leases ------------------------------------------------------------------------


def test_claim_order_is_priority_then_run_at_then_id(goals: Goals, conn: psycopg.Connection) -> None:
    low = goals.submit("noop", {}, priority=0).id
    high = goals.submit("noop", {}, priority=5).id
    low2 = goals.submit("noop", {}, priority=0).id
    early = goals.submit("noop", {}, priority=0, at="2020-01-01T00:00:00Z").id
    later = goals.submit("noop", {}, delay=3600).id
    rows = claim(conn)
    assert [r[0] for r in rows] == [high, early, low, low2]
    assert later not in [r[0] for r in rows]


def test_skip_locked_claims_never_overlap(db_url: str, goals: Goals) -> None:
    goals.submit_many([("noop", {}, None)] * 300)
    got: list[list[int]] = []

    def worker(name: str) -> None:
        mine: list[int] = []
        with psycopg.connect(db_url, autocommit=True) as c:
            while rows := claim(c, name, 7):
                mine += [r[0] for r in rows]
        got.append(mine)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [g for mine in got for g in mine]
    assert len(everything) == 300 and len(set(everything)) == 300


def test_fencing_refuses_a_late_result_and_records_it(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    (row,) = claim(conn, "w1", lease=0.2)
    assert row[3] == 1
    assert plan(conn, gid, 1, [{"action": "nothing"}], lease=0.2)[1] == "planned"
    time.sleep(0.3)
    # w1 stalled past its lease; w2 takes the goal over with epoch 2
    (taken,) = claim(conn, "w2")
    assert taken[0] == gid and taken[3] == 2 and taken[5] == 1 and taken[8] == 2  # step 1, attempt 2
    late = complete(
        conn,
        "w1",
        goal_id=gid,
        epoch=1,
        seq=1,
        outcome="complete",
        result={"late": True},
        changes=[{"op": "set", "path": "x", "value": 1}],
    )
    assert late[1] == "refused" and "superseded by epoch 2" in late[6]
    assert conn.execute("SELECT count(*) FROM goalrt.state_data").fetchone() == (0,)
    ok = complete(conn, "w2", goal_id=gid, epoch=2, seq=1, outcome="complete", result={"late": False})
    assert ok[1] == "complete"
    info = goals.get(gid)
    assert info.status == "complete" and info.result == {"late": False}
    types = [e.type for e in info.events]
    assert types.count("step.result_refused") == 1 and "goal.lease_expired" in types
    refused = next(e for e in info.events if e.type == "step.result_refused")
    assert refused.data["worker"] == "w1" and refused.data["epoch"] == 1 and refused.data["current_epoch"] == 2


def test_an_expired_lease_refuses_results_even_before_takeover(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    claim(conn, "w1", lease=0.1)
    plan(conn, gid, 1, [{"action": "nothing"}], lease=0.1)
    time.sleep(0.2)
    late = complete(conn, "w1", goal_id=gid, epoch=1, seq=1, outcome="complete", result=None)
    assert late[1] == "refused" and "lease expired" in late[6]
    hb = conn.execute("SELECT * FROM goalrt.heartbeat_v1('w1', ARRAY[%s]::bigint[], '{1}', 30)", (gid,)).fetchall()
    assert hb == []  # an expired lease cannot be revived by a heartbeat either


def test_retried_commit_is_recognised(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("checkout", {"order": "o1", "amount": 1}).id
    claim(conn)
    plan(conn, gid, 1, [{"action": "pay"}, {"action": "ship"}])
    item = dict(
        goal_id=gid,
        epoch=1,
        seq=1,
        outcome="complete",
        result=1,
        changes=[{"op": "inc", "path": "n", "by": 1}],
        **{"continue": True},
    )
    first = complete(conn, **item)
    again = complete(conn, **item)
    assert first[1] == "continue" and again[1] == "already_applied" and again[2] == 2
    assert conn.execute("SELECT value FROM goalrt.state WHERE path = 'n'").fetchone() == (1,)


def test_retry_then_fail(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    claim(conn)
    plan(conn, gid, 1, [{"action": "nothing"}, {"action": "never"}])
    r = complete(conn, goal_id=gid, epoch=1, seq=1, outcome="retry", error="boom", retry_in=0)
    assert r[1] == "retry"
    (again,) = claim(conn)
    assert again[3] == 2 and again[5] == 1 and again[8] == 2
    f = complete(conn, goal_id=gid, epoch=2, seq=1, outcome="fail", error="boom again")
    assert f[1] == "failed"
    info = goals.get(gid)
    assert info.status == "failed" and info.last_error == "boom again"
    assert [(s.status, s.attempts) for s in info.steps] == [("failed", 2), ("cancelled", 0)]
    assert [e.type for e in info.events][-3:] == ["step.failed", "step.failed", "goal.failed"]
    assert claim(conn) == []


def test_release_makes_the_goal_claimable_at_once(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    claim(conn, "w1")
    plan(conn, gid, 1, [{"action": "nothing"}])
    released = conn.execute("SELECT * FROM goalrt.release_goals_v1('w1', ARRAY[%s]::bigint[], '{1}')", (gid,))
    assert released.fetchall() == [(gid,)]
    (row,) = claim(conn, "w2")
    assert row[0] == gid and row[3] == 2 and row[8] == 1  # the released attempt does not count
    assert "goal.released" in event_types(goals, gid)


def test_cancel_refuses_the_running_workers_result(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    claim(conn)
    plan(conn, gid, 1, [{"action": "nothing"}])
    goals.cancel(gid, "changed my mind")
    r = complete(conn, goal_id=gid, epoch=1, seq=1, outcome="complete", result=1)
    assert r[1] == "refused" and "goal is cancelled" in r[6]
    info = goals.get(gid)
    assert info.status == "cancelled" and info.steps[0].status == "cancelled"


def test_change_refused_applies_nothing(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    claim(conn)
    plan(conn, gid, 1, [{"action": "nothing"}])
    r = complete(
        conn,
        goal_id=gid,
        epoch=1,
        seq=1,
        outcome="complete",
        result=1,
        changes=[{"op": "set", "path": "a", "value": 1, "expect_version": 7}],
        events=[{"type": "x.happened"}],
    )
    assert r[1] == "change_refused" and "(GR004)" in r[6]
    info = goals.get(gid)
    assert info.status == "active" and info.steps[0].status == "running"
    assert "x.happened" not in [e.type for e in info.events]


def test_empty_plan_completes_the_goal(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    claim(conn)
    assert plan(conn, gid, 1, [])[1] == "complete"
    assert goals.get(gid).status == "complete"


def test_a_resent_plan_keeps_the_stored_one(goals: Goals, conn: psycopg.Connection) -> None:
    gid = goals.submit("noop", {}).id
    claim(conn)
    first = plan(conn, gid, 1, [{"action": "a"}, {"action": "b"}])
    again = plan(conn, gid, 1, [{"action": "x"}])
    assert first[1:] == again[1:] == ("planned", 1, "a", {}, 1)
    info = goals.get(gid)
    assert [s.action for s in info.steps] == ["a", "b"] and info.plan_no == 1
    assert [e.type for e in info.events].count("goal.planned") == 1
    # an explicit re-plan supersedes what is left
    items = json.dumps([{"goal_id": gid, "epoch": 1, "steps": [{"action": "c"}], "replan": True}])
    row = conn.execute("SELECT * FROM goalrt.plan_goals_v1('w1', %s, 30)", (items,)).fetchone()
    assert row is not None and row[1:4] == ("planned", 3, "c")
    assert [(s.seq, s.status) for s in goals.get(gid).steps] == [(1, "superseded"), (2, "superseded"), (3, "running")]
