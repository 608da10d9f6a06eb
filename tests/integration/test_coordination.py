"""Coordination in SQL: waits for events, timers and answers; child goals; deadlines; limits; partitions.

These tests drive the worker functions by hand (claim, plan, complete), as a
worker would, so each moment of a race can be placed exactly. The worker
process itself is tested in test_coordination_worker.py.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt import Goals, InvalidGoalError, InvalidTransitionError, Step, ask, children, sleep, wait_event

W = "w1"


def register(conn: psycopg.Connection, *names: str) -> None:
    for name in names:
        conn.execute("SELECT goalrt.register_goal_type(%s, '{}')", (name,))


def submit(conn: psycopg.Connection, name: str = "g", params: dict[str, Any] | None = None, **options: Any) -> int:
    row = conn.execute(
        "SELECT id FROM goalrt.submit_goal(%s, %s, %s)", (name, Jsonb(params or {}), Jsonb(options))
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim(conn: psycopg.Connection, n: int = 10, worker: str = W, **kw: Any) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT * FROM goalrt.claim_goals_v2(%s, %s, 30, NULL, %s, %s, %s)",
        (worker, n, kw.get("partitions"), kw.get("count"), kw.get("takeover", 10)),
    )
    cols = [c.name for c in cur.description or ()]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def plan(conn: psycopg.Connection, gid: int, epoch: int, steps: list[Step], worker: str = W) -> dict[str, Any]:
    item = {"goal_id": gid, "epoch": epoch, "steps": [s.as_json() for s in steps]}
    cur = conn.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s, 30)", (worker, Jsonb([item])))
    cols = [c.name for c in cur.description or ()]
    return dict(zip(cols, cur.fetchone() or (), strict=True))


def complete(
    conn: psycopg.Connection, gid: int, epoch: int, seq: int, result: Any = None, cont: bool = True, worker: str = W
) -> dict[str, Any]:
    item = {"goal_id": gid, "epoch": epoch, "seq": seq, "outcome": "complete", "result": result, "continue": cont}
    cur = conn.execute("SELECT * FROM goalrt.complete_steps_v1(%s, %s, 30)", (worker, Jsonb([item])))
    cols = [c.name for c in cur.description or ()]
    return dict(zip(cols, cur.fetchone() or (), strict=True))


def goal(conn: psycopg.Connection, gid: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM goalrt.goals WHERE id = %s", (gid,))
    cols = [c.name for c in cur.description or ()]
    return dict(zip(cols, cur.fetchone() or (), strict=True))


def step(conn: psycopg.Connection, gid: int, seq: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM goalrt.goal_steps WHERE goal_id = %s AND seq = %s", (gid, seq))
    cols = [c.name for c in cur.description or ()]
    return dict(zip(cols, cur.fetchone() or (), strict=True))


def append(url: str, type_: str, data: dict[str, Any], stream: str = "webhooks") -> None:
    """Append from another session, as psql or another application would."""
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT goalrt.append_event(%s, %s, %s)", (stream, type_, Jsonb(data)))


def start(conn: psycopg.Connection, steps: list[Step], name: str = "g", **options: Any) -> tuple[int, dict[str, Any]]:
    """Submit a goal, claim it and plan ``steps``; return its id and the plan's answer."""
    gid = submit(conn, name, **options)
    (row,) = [r for r in claim(conn) if r["goal_id"] == gid]
    return gid, plan(conn, gid, row["epoch"], steps)


def wake(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT goalrt.wake_due_v1(1000)").fetchone()
    assert row is not None
    return int(row[0])


def settle(conn: psycopg.Connection, ids: list[int], timeout: float = 60.0) -> list[str]:
    """Tick the log and act on what is due (rechecks of waits) until none of the goals waits; their statuses."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [str(goal(conn, g)["status"]) for g in ids]
        if "waiting" not in statuses or time.monotonic() > deadline:
            return statuses
        conn.execute("SELECT goalrt.tick()")
        wake(conn)
        time.sleep(0.05)


@pytest.fixture
def c(conn: psycopg.Connection) -> psycopg.Connection:
    register(conn, "g", "child")
    return conn


# -- waiting for an event --------------------------------------------------------------


def test_event_appended_while_waiting_wakes_the_goal(c: psycopg.Connection, db_url: str) -> None:
    steps = [wait_event("payment.completed", where={"order_id": "o1"}, label="payment"), Step("ship", {})]
    gid, answer = start(c, steps)
    assert answer["outcome"] == "waiting"
    g = goal(c, gid)
    assert (g["status"], g["lease_owner"], g["step_seq"]) == ("waiting", None, 1)
    append(db_url, "payment.completed", {"order_id": "o2", "amount": 5})  # another order: not this one
    append(db_url, "payment.other", {"order_id": "o1"})  # another type
    assert goal(c, gid)["status"] == "waiting"
    append(db_url, "payment.completed", {"order_id": "o1", "amount": 7})
    g = goal(c, gid)
    assert (g["status"], g["lease_owner"], g["step_seq"]) == ("active", None, 2)
    s = step(c, gid, 1)
    assert s["status"] == "complete"
    assert s["result"]["event"]["data"] == {"order_id": "o1", "amount": 7}
    assert s["result"]["event"]["stream"] == "webhooks"
    (row,) = claim(c)
    assert (row["goal_id"], row["action"], row["step_seq"]) == (gid, "ship", 2)
    assert c.execute("SELECT count(*) FROM goalrt.goal_waits").fetchone() == (0,)


def test_event_appended_before_the_wait_counts_when_asked(c: psycopg.Connection, db_url: str) -> None:
    early = submit(c)
    strict = submit(c)
    append(db_url, "approved", {"doc": "d1"})
    rows = {r["goal_id"]: r for r in claim(c)}
    a = plan(c, early, rows[early]["epoch"], [wait_event("approved", where={"doc": "d1"}), Step("next", {})])
    b = plan(c, strict, rows[strict]["epoch"], [wait_event("approved", where={"doc": "d1"}, since="wait")])
    # since submit (the default): the earlier event is found and the goal goes straight on.
    assert (a["outcome"], a["action"], a["step_seq"]) == ("planned", "next", 2)
    assert step(c, early, 1)["result"]["event"]["data"] == {"doc": "d1"}
    # since the wait: it waits for the next one.
    assert b["outcome"] == "waiting"
    append(db_url, "approved", {"doc": "d1"})
    assert goal(c, strict)["status"] == "complete"


def test_an_event_before_the_goal_was_submitted_does_not_count(c: psycopg.Connection, db_url: str) -> None:
    append(db_url, "approved", {"doc": "old"})
    gid, answer = start(c, [wait_event("approved", where={"doc": "old"})])
    assert answer["outcome"] == "waiting"
    assert goal(c, gid)["status"] == "waiting"


def test_one_event_wakes_every_goal_waiting_for_it(c: psycopg.Connection, db_url: str) -> None:
    ids = [start(c, [wait_event("go", since="wait")])[0] for _ in range(5)]
    append(db_url, "go", {"n": 1})
    assert [goal(c, g)["status"] for g in ids] == ["complete"] * 5
    assert all(goal(c, g)["result"]["event"]["data"] == {"n": 1} for g in ids)


def test_a_batch_of_events_wakes_a_goal_with_the_first_match(c: psycopg.Connection) -> None:
    gid, _ = start(c, [wait_event("tick", where={"k": 1}, since="wait")])
    events = [{"stream": "s", "type": "tick", "data": {"k": k, "i": i}} for i, k in enumerate([2, 1, 1])]
    c.execute("SELECT goalrt.append_events(%s)", (Jsonb(events),))
    assert goal(c, gid)["result"]["event"]["data"] == {"k": 1, "i": 1}


@pytest.mark.parametrize("opened_before_submit", [False, True])
def test_events_racing_with_waits_are_never_missed(
    db_url: str, c: psycopg.Connection, opened_before_submit: bool
) -> None:
    """Goals enter their waits while other sessions append the events: every goal wakes.

    Each goal waits for its own order's event (since submit). A waiter and an
    appender in flight at the same moment must not miss each other: either
    the wait's look-back (or its recheck) sees the event, or the event's match
    sees the wait. With opened_before_submit, some events are appended by
    transactions opened before their goals were submitted and committed at
    random moments around the waits' start while the log is ticked: they are
    ordered after the submit, so they count too.
    """
    n = 60
    rng = random.Random(7)
    early = [i for i in range(n) if opened_before_submit and i % 2 == 0]
    opened: list[psycopg.Connection] = []
    for i in early:
        a = psycopg.connect(db_url)
        a.execute("SELECT goalrt.append_event('pay', 'paid', %s)", (Jsonb({"order": f"o{i}"}),))
        opened.append(a)
    ids = [submit(c, params={}) for _ in range(n)]
    c.execute("SELECT goalrt.tick()")  # the submits are positioned: every early event is ordered after them
    rows = {r["goal_id"]: r for r in claim(c, n=n)}
    order = [i for i in range(n) if i not in early]
    rng.shuffle(order)
    errors: list[BaseException] = []

    def committers() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as t:
                for a in opened:
                    time.sleep(rng.random() * 0.01)
                    a.commit()
                    a.close()
                    t.execute("SELECT goalrt.tick()")
        except BaseException as exc:
            errors.append(exc)

    def waiters() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as w:
                for i, gid in enumerate(ids):
                    plan(w, gid, rows[gid]["epoch"], [wait_event("paid", where={"order": f"o{i}"})])
        except BaseException as exc:
            errors.append(exc)

    def appenders(part: list[int]) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as a:
                for i in part:
                    with a.transaction():
                        a.execute("SELECT goalrt.append_event('pay', 'paid', %s)", (Jsonb({"order": f"o{i}"}),))
                        time.sleep(rng.random() * 0.002)  # widen the window between append and commit
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=waiters), threading.Thread(target=committers)] + [
        threading.Thread(target=appenders, args=(order[k::3],)) for k in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    statuses = settle(c, ids)
    assert statuses == ["complete"] * n, {s: statuses.count(s) for s in set(statuses)}
    assert c.execute("SELECT count(*) FROM goalrt.goal_waits").fetchone() == (0,)


# -- timeouts -----------------------------------------------------------------------------


def test_a_wait_that_times_out_runs_its_fallback(c: psycopg.Connection) -> None:
    fallback = [Step("order.cancel", {"order": "o1"})]
    gid, answer = start(c, [wait_event("paid", timeout=0.2, on_timeout=fallback), Step("ship", {})])
    assert answer["outcome"] == "waiting"
    assert wake(c) == 0
    time.sleep(0.3)
    assert wake(c) >= 1
    g = goal(c, gid)
    assert (g["status"], g["plan_no"], g["step_seq"]) == ("active", 2, 3)
    assert step(c, gid, 1)["status"] == "failed" and step(c, gid, 1)["error"] == "wait_timeout"
    assert step(c, gid, 2)["status"] == "superseded"  # the fallback replaced the rest of the plan
    (row,) = claim(c)
    assert (row["action"], row["args"]) == ("order.cancel", {"order": "o1"})
    assert c.execute("SELECT count(*) FROM goalrt.goal_waits").fetchone() == (0,)


def test_a_wait_that_times_out_without_fallback_fails_the_goal(c: psycopg.Connection) -> None:
    gid, _ = start(c, [ask("ok?", timeout=0.1)])
    time.sleep(0.2)
    wake(c)
    g = goal(c, gid)
    assert g["status"] == "failed"
    assert g["last_error"].startswith("wait_timeout: step 1 (ask ask) timed out after 0.1s")


# -- timers ---------------------------------------------------------------------------------


def test_sleep_waits_without_a_lease_then_resumes(c: psycopg.Connection) -> None:
    gid, answer = start(c, [sleep(0.3), Step("after", {})])
    assert answer["outcome"] == "waiting"
    g = goal(c, gid)
    assert (g["status"], g["lease_owner"]) == ("waiting", None)
    assert claim(c) == []
    time.sleep(0.35)
    (row,) = claim(c)  # a claim acts on what is due first
    assert (row["goal_id"], row["action"]) == (gid, "after")
    assert step(c, gid, 1)["result"]["slept_until"]


def test_sleep_until_a_past_time_goes_straight_on(c: psycopg.Connection) -> None:
    _, answer = start(c, [sleep(until="2020-01-01T00:00:00Z"), Step("after", {})])
    assert (answer["outcome"], answer["action"]) == ("planned", "after")


def test_delayed_goals_and_retries_stay_out_of_the_claim_index(c: psycopg.Connection) -> None:
    later = submit(c, priority=10, delay=0.3)
    now = submit(c)
    plan_row = c.execute(
        "EXPLAIN (COSTS OFF) SELECT id FROM goalrt.goals WHERE status IN ('pending', 'active') AND wake_at IS NULL "
        "ORDER BY priority DESC, run_at, id LIMIT 5"
    ).fetchall()
    assert "goals_runnable_idx" in " ".join(r[0] for r in plan_row)
    assert goal(c, later)["wake_at"] is not None
    assert [r["goal_id"] for r in claim(c)] == [now]
    time.sleep(0.35)
    assert [r["goal_id"] for r in claim(c)] == [later]


# -- asking a person ---------------------------------------------------------------------------


APPROVAL = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
    "required": ["approved"],
    "additionalProperties": False,
}


def test_ask_refuses_a_wrong_answer_and_takes_a_right_one(c: psycopg.Connection, db_url: str) -> None:
    gid, answer = start(c, [ask("Ship order o1?", APPROVAL, label="approval"), Step("ship", {})])
    assert answer["outcome"] == "waiting"
    with Goals.connect(db_url) as goals:
        with pytest.raises(InvalidGoalError, match=rf"invalid answer for goal {gid}: data.approved is required"):
            goals.resume(gid, {"note": "hm"})
        with pytest.raises(InvalidGoalError, match=r"data\.approved must be boolean, got string"):
            goals.resume(gid, {"approved": "yes"})
        with pytest.raises(InvalidGoalError, match=r"data.extra is not a field \(expected: approved, note\)"):
            goals.resume(gid, {"approved": True, "extra": 1})
        assert goal(c, gid)["status"] == "waiting"  # nothing of a wrong answer was applied
        assert [w.describe() for w in goals.waiting()] == ["answer to 'Ship order o1?'"]
        assert goals.resume(gid, {"approved": True, "note": "go"}, actor="ann") == "released"
        with pytest.raises(InvalidTransitionError, match=f"goal {gid} is not waiting for an answer"):
            goals.resume(gid, {"approved": True})
    assert step(c, gid, 1)["result"] == {"approved": True, "note": "go"}
    c.execute("SELECT goalrt.tick()")
    row = c.execute(
        "SELECT data FROM goalrt.events WHERE stream = %s AND type = 'goal.resumed'", (f"goal:{gid}",)
    ).fetchone()
    assert row is not None and row[0]["by"] == "ann"


def test_resume_a_goal_waiting_for_something_else_is_refused(c: psycopg.Connection, db_url: str) -> None:
    gid, _ = start(c, [wait_event("x")])
    with Goals.connect(db_url) as goals, pytest.raises(InvalidTransitionError, match="it waits for event wait x"):
        goals.resume(gid, {})


# -- child goals ------------------------------------------------------------------------------------


def finish_child(c: psycopg.Connection, child: int, outcome: str = "complete", result: Any = None) -> None:
    rows = {r["goal_id"]: r for r in claim(c, n=50)}
    epoch = rows[child]["epoch"]
    answer = plan(c, child, epoch, [Step("work", {})])
    item: dict[str, Any] = {"goal_id": child, "epoch": epoch, "seq": answer["step_seq"], "outcome": outcome}
    item["result" if outcome == "complete" else "error"] = result
    c.execute("SELECT * FROM goalrt.complete_steps_v1(%s, %s, 30)", (W, Jsonb([item])))
    for other, row in rows.items():  # give back the others this claim took
        if other != child:
            c.execute("SELECT goalrt.release_goals_v1(%s, %s, %s)", (W, [other], [row["epoch"]]))


def kids(c: psycopg.Connection, parent: int) -> list[int]:
    return [r[0] for r in c.execute("SELECT id FROM goalrt.goals WHERE parent_id = %s ORDER BY id", (parent,))]


def test_children_all_resume_the_parent_with_their_results(c: psycopg.Connection, db_url: str) -> None:
    step_ = children([("child", {"n": 1}), ("child", {"n": 2})], label="kids")
    gid, answer = start(c, [step_, Step("sum", {})])
    assert answer["outcome"] == "waiting"
    a, b = kids(c, gid)
    assert goal(c, a)["parent_step"] == 1
    finish_child(c, a, result=10)
    assert goal(c, gid)["status"] == "waiting"
    finish_child(c, b, result=20)
    g = goal(c, gid)
    assert (g["status"], g["step_seq"]) == ("active", 2)
    result = step(c, gid, 1)["result"]
    assert [(k["id"], k["status"], k["result"]) for k in result["children"]] == [
        (a, "complete", 10),
        (b, "complete", 20),
    ]
    with Goals.connect(db_url) as goals:
        assert [(n.id, n.depth) for n in goals.tree(gid)] == [(gid, 0), (a, 1), (b, 1)]


def test_children_any_resumes_on_the_first_and_cancels_the_rest(c: psycopg.Connection) -> None:
    gid, _ = start(c, [children([("child", {}), ("child", {}), ("child", {})], mode="any")])
    a, b, d = kids(c, gid)
    finish_child(c, b, result="b")
    g = goal(c, gid)
    assert g["status"] == "complete" and g["result"]["first"] == b
    assert [goal(c, k)["status"] for k in (a, b, d)] == ["cancelled", "complete", "cancelled"]


def test_a_failed_child_fails_the_parent_and_cancels_its_siblings(c: psycopg.Connection) -> None:
    gid, _ = start(c, [children([("child", {}), ("child", {})]), Step("after", {})])
    a, b = kids(c, gid)
    finish_child(c, a, outcome="fail", result="card declined")
    g = goal(c, gid)
    assert g["status"] == "failed"
    assert g["last_error"] == f"child goal {a} (child) failed: card declined"
    assert goal(c, b)["status"] == "cancelled"


def test_on_failure_continue_keeps_the_parent_going(c: psycopg.Connection) -> None:
    gid, _ = start(c, [children([("child", {}), ("child", {})], on_failure="continue"), Step("after", {})])
    a, b = kids(c, gid)
    finish_child(c, a, outcome="fail", result="nope")
    finish_child(c, b, result=1)
    g = goal(c, gid)
    assert (g["status"], g["step_seq"]) == ("active", 2)
    assert [k["status"] for k in step(c, gid, 1)["result"]["children"]] == ["failed", "complete"]


def test_cancelling_a_parent_cancels_its_whole_subtree(c: psycopg.Connection, db_url: str) -> None:
    gid, _ = start(c, [children([("child", {})])])
    (a,) = kids(c, gid)
    rows = {r["goal_id"]: r for r in claim(c)}
    plan(c, a, rows[a]["epoch"], [children([("child", {}), ("child", {})])])
    grandchildren = kids(c, a)
    (b_row,) = [r for r in claim(c) if r["goal_id"] == grandchildren[0]]  # one grandchild is running
    with Goals.connect(db_url) as goals:
        goals.cancel(gid, "changed my mind")
        statuses = {n.id: n.status for n in goals.tree(gid)}
    assert set(statuses.values()) == {"cancelled"} and len(statuses) == 4
    # The running grandchild's late result is refused.
    late = complete(c, grandchildren[0], b_row["epoch"], 0)
    assert late["outcome"] == "refused"


# -- deadlines ------------------------------------------------------------------------------------------


def test_a_deadline_fails_a_goal_and_cancels_its_children(c: psycopg.Connection) -> None:
    gid, _ = start(c, [children([("child", {})])], deadline=0.3)
    pending = submit(c, deadline=0.3)  # never claimed
    time.sleep(0.35)
    wake(c)
    g = goal(c, gid)
    assert g["status"] == "failed" and g["last_error"].startswith("deadline_exceeded")
    assert goal(c, kids(c, gid)[0])["status"] == "cancelled"
    assert goal(c, pending)["status"] == "failed"


def test_bad_options_and_steps_are_refused_naming_the_field(c: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match=r"options\.deadline must be a time"):
        submit(c, deadline="soon")
    gid = submit(c)
    (row,) = claim(c)
    bad = [
        ({"action": "wait x", "kind": "event", "args": {}}, r"steps\[0\].args.event must be an event type"),
        ({"action": "s", "kind": "sleep", "args": {"seconds": -1}}, r"args.seconds must be a number >= 0"),
        ({"action": "s", "kind": "sleep", "args": {}}, "give seconds or until"),
        ({"action": "k", "kind": "children", "args": {"goals": [], "mode": "some"}}, "mode must be"),
        ({"action": "x", "kind": "nap", "args": {}}, "nap is not a step kind"),
        ({"action": "w", "kind": "event", "args": {"event": "x", "where": [1]}}, "args.where must be an object"),
        (
            {"action": "a", "kind": "ask", "args": {"prompt": "?", "timeout": 1, "on_timeout": [{"args": {}}]}},
            r"on_timeout\[0\].action must be a non-empty string",
        ),
    ]
    for s, message in bad:
        item = {"goal_id": gid, "epoch": row["epoch"], "steps": [s]}
        with pytest.raises(psycopg.Error, match=message):
            c.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s, 30)", (W, Jsonb([item])))
    assert goal(c, gid)["plan_no"] == 0  # nothing was stored


# -- limits -------------------------------------------------------------------------------------------------


def test_a_concurrency_limit_parks_goals_without_a_lease(c: psycopg.Connection, db_url: str) -> None:
    with Goals.connect(db_url) as goals:
        goals.set_limit("charge", concurrency=2)
    ids = [start(c, [Step("other", {}), Step("charge", {})])[0] for _ in range(4)]
    # Each goal's first step ran; completing it moves on to charge under the lease.
    outcomes = []
    for gid in ids:
        g = goal(c, gid)
        outcomes.append(complete(c, gid, g["lease_epoch"], 1)["outcome"])
    assert outcomes == ["continue", "continue", "blocked", "blocked"]
    parked = [goal(c, g) for g in ids[2:]]
    assert all(p["lease_owner"] is None and p["blocked_on"] == "charge||" for p in parked)
    assert claim(c) == []  # parked goals are not claimable
    # One slot frees: one parked goal is woken at once (no timer).
    first = goal(c, ids[0])
    assert complete(c, ids[0], first["lease_epoch"], 2)["outcome"] == "complete"
    (row,) = claim(c)
    assert (row["goal_id"], row["action"]) == (ids[2], "charge")
    assert goal(c, ids[3])["blocked_on"] == "charge||"
    with Goals.connect(db_url) as goals:
        (limit,) = goals.limits()
        assert (limit.max_concurrent, limit.running, limit.parked) == (2, 2, 1)


def test_a_dead_workers_slot_is_taken_back(c: psycopg.Connection, db_url: str) -> None:
    with Goals.connect(db_url) as goals:
        goals.set_limit("charge", concurrency=1)
    a, answer = start(c, [Step("charge", {})])
    assert answer["outcome"] == "planned"
    # Its worker dies: the lease runs out.
    c.execute("UPDATE goalrt.goals SET lease_expires_at = now() - interval '1 s' WHERE id = %s", (a,))
    b = submit(c)
    rows = {r["goal_id"]: r for r in claim(c, worker="w2")}
    # The claim took a over (its step is the limited one) and b is unplanned.
    assert set(rows) == {a, b}
    assert rows[a]["action"] == "charge"


def test_a_rate_limit_parks_until_a_token_is_due(c: psycopg.Connection, db_url: str) -> None:
    with Goals.connect(db_url) as goals:
        goals.set_limit("call", rate=2, per=1.0)
    ids = [submit(c) for _ in range(3)]
    rows = {r["goal_id"]: r for r in claim(c)}
    answers = [plan(c, g, rows[g]["epoch"], [Step("call", {})])["outcome"] for g in ids]
    assert answers == ["planned", "planned", "blocked"]
    g = goal(c, ids[2])
    waited = (g["wake_at"] - g["updated_at"]).total_seconds()
    assert 0.2 < waited <= 0.6  # about half a second for the next of 2 tokens a second


def test_per_key_limits_are_separate(c: psycopg.Connection, db_url: str) -> None:
    with Goals.connect(db_url) as goals:
        goals.set_limit("charge", concurrency=1, key="customer")
    ids = [submit(c) for _ in range(3)]
    rows = {r["goal_id"]: r for r in claim(c)}
    who = ["a", "a", "b"]
    answers = [
        plan(c, g, rows[g]["epoch"], [Step("charge", {"customer": w})])["outcome"]
        for g, w in zip(ids, who, strict=True)
    ]
    assert answers == ["planned", "blocked", "planned"]
    assert goal(c, ids[1])["blocked_on"] == "charge|customer|a"


def test_limit_options_are_checked(db_url: str) -> None:
    with Goals.connect(db_url) as goals:
        with pytest.raises(InvalidGoalError, match="a limit needs concurrency or rate"):
            goals.set_limit("x")
        with pytest.raises(InvalidGoalError, match="limit option concurrency must be an integer from 1 to 999999999"):
            goals.set_limit("x", concurrency=0)
        with pytest.raises(InvalidGoalError, match="per and burst need rate"):
            goals.set_limit("x", concurrency=1, per=2)
        assert goals.limits() == []
        assert goals.drop_limit("x") is False


# -- partitions --------------------------------------------------------------------------------------------------


def bucket(c: psycopg.Connection, key: str, n: int) -> int:
    row = c.execute("SELECT goalrt.partition_of(%s, %s)", (key, n)).fetchone()
    assert row is not None
    return int(row[0])


def test_partitioned_workers_take_their_partitions_and_others_take_the_rest(c: psycopg.Connection) -> None:
    keys = [f"tenant-{i}" for i in range(40)]
    mine = [k for k in keys if bucket(c, k, 4) in (0, 1)]
    assert 0 < len(mine) < len(keys)
    by_key = {k: submit(c, partition_key=k) for k in keys}
    free = submit(c)  # no partition key: anyone's
    c.execute(
        "SELECT goalrt.register_worker_v2('p1', 'p1', 'h', 1, 10, '{g}', '{}', '{0,1}', 4)",
    )
    # An unrestricted worker leaves partitions 0 and 1 to p1 (which is alive), takes the rest.
    taken = {r["goal_id"] for r in claim(c, n=100, worker="u1")}
    assert taken == {by_key[k] for k in keys if k not in mine} | {free}
    # p1 takes its own.
    taken = {r["goal_id"] for r in claim(c, n=100, worker="p1", partitions=[0, 1], count=4)}
    assert taken == {by_key[k] for k in mine}


def test_goals_of_a_partition_nobody_serves_are_taken_over(c: psycopg.Connection) -> None:
    gid = submit(c, partition_key="tenant-x")
    c.execute(
        "SELECT goalrt.register_worker_v2('p1', 'p1', 'h', 1, 10, '{g}', '{}', %s, 2)", ([bucket(c, "tenant-x", 2)],)
    )
    assert claim(c, worker="u1", takeover=60) == []
    # p1 has not been seen for longer than the lease: its partitions are nobody's.
    c.execute("UPDATE goalrt.workers SET last_seen = now() - interval '1 minute' WHERE id = 'p1'")
    assert [r["goal_id"] for r in claim(c, worker="u1", takeover=60)] == [gid]


def test_a_served_partitions_goal_is_taken_over_after_waiting_too_long(c: psycopg.Connection) -> None:
    gid = submit(c, partition_key="tenant-y")
    c.execute(
        "SELECT goalrt.register_worker_v2('p1', 'p1', 'h', 1, 10, '{g}', '{}', %s, 2)", ([bucket(c, "tenant-y", 2)],)
    )
    assert claim(c, worker="u1", takeover=0.2) == []
    time.sleep(0.25)
    assert [r["goal_id"] for r in claim(c, worker="u1", takeover=0.2)] == [gid]


def test_the_tree_and_waiting_views_read_in_sql(c: psycopg.Connection) -> None:
    gid, _ = start(c, [wait_event("x", where={"a": 1})])
    row = c.execute("SELECT kind, args FROM goalrt.waiting_goals WHERE id = %s", (gid,)).fetchone()
    assert row is not None and row[0] == "event" and row[1]["where"] == {"a": 1}
    assert json.dumps(row[1], sort_keys=True)


def test_a_finished_wait_wakes_idle_workers(c: psycopg.Connection, db_url: str) -> None:
    gid, _ = start(c, [wait_event("go", where={"n": 1}), Step("after", {})])
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN goalrt_goals")
        append(db_url, "go", {"n": 1})
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notes] == ["goalrt_goals"]
    assert goal(c, gid)["step_seq"] == 2


def test_filters_match_as_jsonb_containment(c: psycopg.Connection, db_url: str) -> None:
    number = start(c, [wait_event("m", where={"n": 1}, since="wait")])[0]
    nested = start(c, [wait_event("m", where={"o": {"k": "v"}}, since="wait")])[0]
    two = start(c, [wait_event("m", where={"a": "x", "b": True}, since="wait")])[0]
    anything = start(c, [wait_event("m", since="wait")])[0]
    append(db_url, "m", [1, 2])  # not an object: only the wait without a filter matches
    assert [goal(c, g)["status"] for g in (number, nested, two, anything)] == ["waiting"] * 3 + ["complete"]
    append(db_url, "m", {"n": 1.0, "o": {"k": "v", "other": 1}, "a": "x", "b": False})
    assert [goal(c, g)["status"] for g in (number, nested, two)] == ["complete", "complete", "waiting"]
    append(db_url, "m", {"a": "x", "b": True, "c": None})
    assert goal(c, two)["status"] == "complete"


def test_raising_a_limit_wakes_the_goals_it_parked(c: psycopg.Connection, db_url: str) -> None:
    with Goals.connect(db_url) as goals:
        goals.set_limit("charge", concurrency=1)
        ids = [start(c, [Step("charge", {})])[0] for _ in range(3)]
        assert [goal(c, g)["blocked_on"] for g in ids] == [None, "charge||", "charge||"]
        goals.set_limit("charge", concurrency=3)
        assert [goal(c, g)["wake_at"] for g in ids[1:]] == [None, None]
        assert {r["goal_id"] for r in claim(c)} == set(ids[1:])
