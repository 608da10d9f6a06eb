"""The set-based hot path of ``plan_goals_v1`` and ``complete_steps_v1`` writes exactly what their loop writes.

A goal's first plan, and a step that completes with no state change, no
event and no limit slot, are done for a whole batch in a few statements
(migration 0013); anything else goes through the per-goal loop. The same
goals are run once through each path (a limit on the action sends them
through the loop) and every row and event they leave must be the same,
apart from ids, times and the worker's name. Mixed batches, duplicates and
stale items get the answers the loop gives.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

ACTIONS = ("a", "b", "c")


def rows(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    cols = [c.name for c in cur.description or ()]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def c(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("SELECT goalrt.register_goal_type('g', '{}')")
    return conn


def submit(conn: psycopg.Connection, n: int) -> list[int]:
    return [int(conn.execute("SELECT id FROM goalrt.submit_goal('g', '{}', '{}')").fetchone()[0]) for _ in range(n)]  # type: ignore[index]


def claim(conn: psycopg.Connection, worker: str, n: int = 100) -> dict[int, int]:
    """Claim up to ``n`` goals; return their lease epochs."""
    cur = conn.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2(%s, %s, 30)", (worker, n))
    return {r[0]: r[1] for r in cur.fetchall()}


# The per-goal functions the loop calls and the batch path does not.
LOOP_FUNCTIONS = ("insert_plan", "advance_goal", "end_goal")


def loop_calls(
    conn: psycopg.Connection, sql: str, args: tuple[Any, ...], functions: tuple[str, ...] = LOOP_FUNCTIONS
) -> tuple[list[dict[str, Any]], int]:
    """Run ``sql``; return its rows and how often it called ``functions`` (default: the loop's).

    pg_stat_xact_user_functions may still hold counts of the session's earlier
    transactions (stats are flushed at most once a second): the difference is
    what ``sql`` called.
    """
    count = (
        "SELECT coalesce(sum(calls), 0)::int FROM pg_stat_xact_user_functions "
        "WHERE schemaname = 'goalrt' AND funcname = ANY(%s)"
    )
    with conn.transaction():
        conn.execute("SET LOCAL track_functions = 'pl'")
        (before,) = conn.execute(count, (list(functions),)).fetchone()  # type: ignore[misc]
        answer = rows(conn.execute(sql, args))
        (after,) = conn.execute(count, (list(functions),)).fetchone()  # type: ignore[misc]
    return answer, after - before


def plan(
    conn: psycopg.Connection, worker: str, items: list[dict[str, Any]], loop: bool | None = None
) -> list[dict[str, Any]]:
    """Send plans; ``loop`` says whether they must (True) or must not (False) go through the loop."""
    answer, calls = loop_calls(conn, "SELECT * FROM goalrt.plan_goals_v1(%s, %s, 30)", (worker, Jsonb(items)))
    assert loop is None or (calls > 0) == loop, f"loop functions called {calls} times"
    return answer


def complete(
    conn: psycopg.Connection, worker: str, items: list[dict[str, Any]], loop: bool | None = None
) -> list[dict[str, Any]]:
    """Send step outcomes; ``loop`` as for ``plan``."""
    answer, calls = loop_calls(conn, "SELECT * FROM goalrt.complete_steps_v1(%s, %s, 30)", (worker, Jsonb(items)))
    assert loop is None or (calls > 0) == loop, f"loop functions called {calls} times"
    return answer


def steps_of(n: int) -> list[dict[str, Any]]:
    return [
        {"action": ACTIONS[i], "args": {"i": i, "deep": {"x": [1, 2.5, None]}}, "max_attempts": 3} for i in range(n)
    ]


def run(conn: psycopg.Connection, worker: str, lengths: list[int], loop: bool) -> list[int]:
    """Submit goals with plans of ``lengths`` steps and run them all to the end in batches, as a worker would.

    ``loop``: whether every call must go through the loop (else none may).
    """
    gids = submit(conn, len(lengths))
    epochs = claim(conn, worker)
    assert set(gids) <= set(epochs)
    planned = plan(
        conn,
        worker,
        [
            {"goal_id": g, "epoch": epochs[g], "steps": steps_of(k), "detail": {"cost": k}}
            for g, k in zip(gids, lengths, strict=True)
        ],
        loop,
    )
    running = {a["goal_id"]: a["step_seq"] for a in planned if a["outcome"] == "planned"}
    assert set(running) == set(gids), planned
    while running:
        answers = complete(
            conn,
            worker,
            [
                {
                    "goal_id": g,
                    "epoch": epochs[g],
                    "seq": seq,
                    "outcome": "complete",
                    "result": {"seq": seq},
                    "continue": True,
                }
                for g, seq in sorted(running.items())
            ],
            loop,
        )
        assert {a["outcome"] for a in answers} <= {"continue", "complete"}, answers
        running = {a["goal_id"]: a["step_seq"] for a in answers if a["outcome"] == "continue"}
    return gids


def trace(conn: psycopg.Connection, gid: int) -> dict[str, Any]:
    """Everything a goal left, without ids, times and the worker's name."""
    goal = rows(
        conn.execute(
            "SELECT status, result, plan_no, step_seq, lease_owner, lease_expires_at IS NULL AS no_lease, "
            "lease_epoch, claims, last_error, wake_at, blocked_on, finished_at IS NOT NULL AS finished "
            "FROM goalrt.goals WHERE id = %s",
            (gid,),
        )
    )
    steps = rows(
        conn.execute(
            "SELECT seq, plan_no, kind, action, args, status, attempts, result, error, completed_epoch, label, "
            "max_attempts, started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished "
            "FROM goalrt.goal_steps WHERE goal_id = %s ORDER BY seq",
            (gid,),
        )
    )
    events = [
        (t, {k: v for k, v in d.items() if k not in ("goal_id", "worker", "run_at")}, m)
        for t, d, m in conn.execute(
            "SELECT type, data, metadata FROM goalrt.event_data WHERE stream = %s ORDER BY id", (f"goal:{gid}",)
        ).fetchall()
    ]
    return {"goal": goal, "steps": steps, "events": events}


def test_the_batch_path_writes_what_the_loop_writes(c: psycopg.Connection) -> None:
    lengths = [1, 3, 1, 2, 3]
    # Through the loop: a limit on every action (it admits all) keeps the goals off the batch path.
    for action in ACTIONS:
        c.execute("SELECT goalrt.set_limit(%s, '{\"concurrency\": 1000}')", (action,))
    looped = run(c, "w1", lengths, loop=True)
    assert c.execute("SELECT count(*) FROM goalrt.limit_holders").fetchone() == (0,)
    for action in ACTIONS:
        c.execute("SELECT goalrt.drop_limit(%s)", (action,))
    batched = run(c, "w1", lengths, loop=False)
    for slow, fast in zip(looped, batched, strict=True):
        assert trace(c, fast) == trace(c, slow)
    # And what it wrote is what a one-step and a three-step goal should leave.
    one, three = trace(c, batched[0]), trace(c, batched[1])
    assert [e[0] for e in one["events"]] == [
        "goal.submitted",
        "goal.planned",
        "goal.completed",
    ]
    assert one["goal"] == [
        {
            "status": "complete",
            "result": {"seq": 1},
            "plan_no": 1,
            "step_seq": None,
            "lease_owner": None,
            "no_lease": True,
            "lease_epoch": 1,
            "claims": 1,
            "last_error": None,
            "wake_at": None,
            "blocked_on": None,
            "finished": True,
        }
    ]
    assert [(s["seq"], s["status"], s["attempts"], s["completed_epoch"]) for s in three["steps"]] == [
        (1, "complete", 1, 1),
        (2, "complete", 1, 1),
        (3, "complete", 1, 1),
    ]
    assert [e[0] for e in three["events"]].count("step.completed") == 2
    assert three["events"][-1][0] == "goal.completed"


def test_a_mixed_plan_batch_gets_the_loops_answers(c: psycopg.Connection) -> None:
    fast, limited, stale, twice, empty = submit(c, 5)
    epochs = claim(c, "w1")
    c.execute("SELECT goalrt.set_limit('slow', '{\"concurrency\": 5}')")
    items = [
        {"goal_id": fast, "epoch": epochs[fast], "steps": steps_of(2)},
        {"goal_id": limited, "epoch": epochs[limited], "steps": [{"action": "slow", "args": {}}]},
        {"goal_id": stale, "epoch": epochs[stale] + 7, "steps": steps_of(1)},
        {"goal_id": twice, "epoch": epochs[twice], "steps": steps_of(1)},
        {"goal_id": twice, "epoch": epochs[twice], "steps": steps_of(3)},
        {"goal_id": empty, "epoch": epochs[empty], "steps": []},
    ]
    answers = plan(c, "w1", items)
    got = sorted((a["goal_id"], a["outcome"], a["step_seq"], a["action"], a["attempt"]) for a in answers)
    assert got == sorted(
        [
            (fast, "planned", 1, "a", 1),
            (limited, "planned", 1, "slow", 1),
            (stale, "refused", None, None, None),
            (twice, "planned", 1, "a", 1),
            (twice, "planned", 1, "a", 1),
            (empty, "complete", None, None, None),
        ]
    )
    # The goal sent twice has the first plan only, once.
    assert c.execute("SELECT count(*) FROM goalrt.goal_steps WHERE goal_id = %s", (twice,)).fetchone() == (1,)
    assert c.execute(
        "SELECT count(*) FROM goalrt.event_data WHERE stream = %s AND type = 'goal.planned'", (f"goal:{twice}",)
    ).fetchone() == (1,)
    assert c.execute(
        "SELECT count(*) FROM goalrt.event_data WHERE stream = %s AND type = 'goal.plan_refused'", (f"goal:{stale}",)
    ).fetchone() == (1,)


def test_a_bad_item_fails_the_whole_plan_batch(c: psycopg.Connection) -> None:
    good, bad = submit(c, 2)
    epochs = claim(c, "w1")
    items = [
        {"goal_id": good, "epoch": epochs[good], "steps": steps_of(1)},
        {"goal_id": bad, "epoch": epochs[bad], "steps": [{"action": ""}]},
    ]
    with pytest.raises(psycopg.Error, match=r"steps\[0\]\.action must be a non-empty string"):
        plan(c, "w1", items)
    # Nothing of the good item was kept.
    assert c.execute("SELECT plan_no FROM goalrt.goals WHERE id = %s", (good,)).fetchone() == (0,)
    assert c.execute("SELECT count(*) FROM goalrt.goal_steps WHERE goal_id = %s", (good,)).fetchone() == (0,)


def test_a_mixed_completion_batch_gets_the_loops_answers(c: psycopg.Connection) -> None:
    gids = submit(c, 6)
    epochs = claim(c, "w1")
    plan(c, "w1", [{"goal_id": g, "epoch": epochs[g], "steps": steps_of(2)} for g in gids])
    plain, changes, events, twice, stale, stop = gids
    # The worker that claimed them registered no actions; a worker that cannot run b gets the goal handed over.
    items = [
        {"goal_id": plain, "epoch": epochs[plain], "seq": 1, "outcome": "complete", "continue": True},
        {
            "goal_id": changes,
            "epoch": epochs[changes],
            "seq": 1,
            "outcome": "complete",
            "continue": True,
            "changes": [{"op": "set", "path": "hot.path", "value": 1}],
        },
        {
            "goal_id": events,
            "epoch": epochs[events],
            "seq": 1,
            "outcome": "complete",
            "continue": True,
            "events": [{"type": "hot.event", "data": {"x": 1}}],
        },
        {"goal_id": twice, "epoch": epochs[twice], "seq": 1, "outcome": "complete", "continue": True},
        {"goal_id": twice, "epoch": epochs[twice], "seq": 1, "outcome": "complete", "continue": True},
        {"goal_id": stale, "epoch": epochs[stale] - 1, "seq": 1, "outcome": "complete", "continue": True},
        {"goal_id": stop, "epoch": epochs[stop], "seq": 1, "outcome": "complete", "continue": False},
    ]
    answers = complete(c, "w1", items)
    got = sorted((a["goal_id"], a["outcome"], a["step_seq"], a["action"], a["attempt"]) for a in answers)
    assert got == sorted(
        [
            (plain, "continue", 2, "b", 1),
            (changes, "continue", 2, "b", 1),
            (events, "continue", 2, "b", 1),
            (twice, "continue", 2, "b", 1),
            (twice, "already_applied", 2, "b", 1),
            (stale, "refused", None, None, None),
            (stop, "released", 2, None, None),
        ]
    )
    assert c.execute("SELECT value FROM goalrt.state WHERE path = 'hot.path'").fetchone() == (1,)
    assert c.execute("SELECT count(*) FROM goalrt.event_data WHERE type = 'hot.event'").fetchone() == (1,)
    # Each goal's second step ends it: all through the batch path, in one call.
    answers = complete(
        c,
        "w1",
        [{"goal_id": g, "epoch": epochs[g], "seq": 2, "outcome": "complete", "result": g} for g in gids if g != stop],
    )
    assert sorted((a["goal_id"], a["outcome"]) for a in answers) == sorted(
        [(plain, "complete"), (changes, "complete"), (events, "complete"), (twice, "complete"), (stale, "refused")]
    )
    assert c.execute(
        "SELECT count(*) FROM goalrt.goals WHERE id = ANY(%s) AND status = 'complete' AND result = to_jsonb(id)",
        ([plain, changes, events, twice],),
    ).fetchone() == (4,)


def test_a_child_completes_through_the_loop_and_wakes_its_parent(c: psycopg.Connection) -> None:
    (parent,) = submit(c, 1)
    epochs = claim(c, "w1")
    children = {"kind": "children", "action": "children", "args": {"goals": [{"name": "g", "params": {}}]}}
    (answer,) = plan(c, "w1", [{"goal_id": parent, "epoch": epochs[parent], "steps": [children]}])
    assert answer["outcome"] == "waiting"
    child_epochs = claim(c, "w2")
    (child,) = child_epochs
    plan(c, "w2", [{"goal_id": child, "epoch": child_epochs[child], "steps": steps_of(1)}])
    (done,) = complete(
        c, "w2", [{"goal_id": child, "epoch": child_epochs[child], "seq": 1, "outcome": "complete", "result": 5}]
    )
    assert done["outcome"] == "complete"
    # The parent's wait for its children ended with the child: it is claimable again, or complete.
    assert c.execute("SELECT status FROM goalrt.goals WHERE id = %s", (parent,)).fetchone() in {
        ("pending",),
        ("active",),
        ("complete",),
    }
    assert c.execute("SELECT status FROM goalrt.goal_steps WHERE goal_id = %s AND seq = 1", (parent,)).fetchone() == (
        "complete",
    )


def test_a_goal_with_an_unfinished_child_is_not_completed_by_the_batch_path(c: psycopg.Connection) -> None:
    (parent,) = submit(c, 1)
    epochs = claim(c, "w1")
    plan(c, "w1", [{"goal_id": parent, "epoch": epochs[parent], "steps": steps_of(1)}])
    # A child started by hand (SQL), still pending when its parent's last step completes.
    child = c.execute(
        "SELECT id FROM goalrt.submit_goal('g', '{}', jsonb_build_object('parent_id', %s::bigint))", (parent,)
    ).fetchone()[0]  # type: ignore[index]
    (done,) = complete(c, "w1", [{"goal_id": parent, "epoch": epochs[parent], "seq": 1, "outcome": "complete"}])
    assert done["outcome"] == "complete"
    # As end_goal does: the unfinished child is cancelled with its parent's end.
    assert c.execute("SELECT status FROM goalrt.goals WHERE id = %s", (child,)).fetchone() == ("cancelled",)


def nested(depth: int) -> list[Any]:
    """A list ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# -- submit_goals ----------------------------------------------------------------------------------------------------


def submit_batch(conn: psycopg.Connection, goals: list[Any]) -> tuple[list[tuple[int, bool]], int]:
    """Submit ``goals`` with submit_goals; return (id, created) per goal and how often it called submit_one."""
    answer, calls = loop_calls(
        conn, "SELECT id, created FROM goalrt.submit_goals(%s)", (Jsonb(goals),), ("submit_one",)
    )
    return [(row["id"], row["created"]) for row in answer], calls


def submitted(conn: psycopg.Connection, gid: int) -> tuple[Any, ...]:
    goal = conn.execute(
        "SELECT name, params, status, priority, run_at = created_at, idempotency_key, parent_id, partition_key, "
        "plan_no, step_seq, lease_epoch, claims, wake_at, deadline_at FROM goalrt.goals WHERE id = %s",
        (gid,),
    ).fetchone()
    events = [
        (t, {k: v for k, v in d.items() if k not in ("goal_id", "run_at")}, m)
        for t, d, m in conn.execute(
            "SELECT type, data, metadata FROM goalrt.event_data WHERE stream = %s ORDER BY id", (f"goal:{gid}",)
        ).fetchall()
    ]
    return goal, events


def test_a_plain_submit_batch_writes_what_the_loop_writes(c: psycopg.Connection) -> None:
    c.execute(
        """SELECT goalrt.register_goal_type('typed', '{"type": "object", "properties": {"n": {"type": "integer"}}}')"""
    )
    plain = [{"name": "g"}, {"name": "typed", "params": {"n": 1}}, {"name": "g", "params": {}, "options": {}}]
    # An option (the default priority) sends the batch through the loop.
    looped, calls = submit_batch(c, [{**g, "options": {"priority": 0}} for g in plain])
    assert calls == len(plain)
    batched, calls = submit_batch(c, plain)
    assert calls == 0
    assert [created for _, created in looped + batched] == [True] * 6
    # In the batch's order, with ids after the loop's.
    assert [gid for gid, _ in batched] == sorted(gid for gid, _ in batched)
    assert min(gid for gid, _ in batched) > max(gid for gid, _ in looped)
    for (slow, _), (fast, _) in zip(looped, batched, strict=True):
        assert submitted(c, fast) == submitted(c, slow)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"name": "nope"}, r"goals\[1\]: unknown goal type 'nope'"),
        ({"name": "typed", "params": {"n": "x"}}, r"goals\[1\]: invalid params for goal typed"),
        ({"name": "g", "params": []}, r"goals\[1\]: invalid params"),
        ({"name": "g", "extra": 1}, r"goals\[1\]\.extra is not a field"),
        ("g", r"goals\[1\] must be an object"),
        ({"name": "g", "params": {"a": nested(150)}}, r"goals\[1\]: params"),
    ],
)
def test_a_bad_goal_in_a_plain_batch_is_named_and_nothing_is_submitted(
    c: psycopg.Connection, bad: Any, message: str
) -> None:
    c.execute(
        """SELECT goalrt.register_goal_type('typed', '{"type": "object", "properties": {"n": {"type": "integer"}}}')"""
    )
    (before,) = c.execute("SELECT count(*) FROM goalrt.goals").fetchone()  # type: ignore[misc]
    with pytest.raises(psycopg.Error, match=message):
        submit_batch(c, [{"name": "g"}, bad, {"name": "g"}])
    assert c.execute("SELECT count(*) FROM goalrt.goals").fetchone() == (before,)


def test_an_empty_batch_submits_nothing(c: psycopg.Connection) -> None:
    assert submit_batch(c, []) == ([], 0)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"action": "a", "max_attempts": 0}, r"steps\[0\]\.max_attempts must be an integer from 1"),
        ({"action": "a", "max_attempts": 2.5}, r"steps\[0\]\.max_attempts must be an integer from 1"),
        ({"action": "a", "max_attempts": "3"}, r"steps\[0\]\.max_attempts must be an integer from 1"),
        ({"action": "a", "label": 5}, r"steps\[0\]\.label must be a string"),
        ({"action": "x" * 201}, r"steps\[0\]\.action must be a non-empty string"),
        ({"action": 7}, r"steps\[0\]\.action must be a non-empty string"),
        ({"kind": "nap", "action": "a"}, r"steps\[0\]\.kind nap is not a step kind"),
        ({"action": "a", "args": {"deep": nested(150)}}, r"steps\[0\]\.args"),
        ("a", r"steps\[0\] must be an object"),
    ],
)
def test_a_step_the_loop_refuses_is_refused_in_a_batch(c: psycopg.Connection, step: Any, message: str) -> None:
    good, bad = submit(c, 2)
    epochs = claim(c, "w1")
    items = [
        {"goal_id": good, "epoch": epochs[good], "steps": steps_of(1)},
        {"goal_id": bad, "epoch": epochs[bad], "steps": [step]},
    ]
    with pytest.raises(psycopg.Error, match=message):
        plan(c, "w1", items)
    assert c.execute("SELECT count(*) FROM goalrt.goal_steps").fetchone() == (0,)


def test_a_plan_that_starts_with_a_wait_goes_through_the_loop(c: psycopg.Connection) -> None:
    (gid,) = submit(c, 1)
    epochs = claim(c, "w1")
    nap = {"kind": "sleep", "action": "sleep", "args": {"seconds": 0}}
    (answer,) = plan(c, "w1", [{"goal_id": gid, "epoch": epochs[gid], "steps": [nap, *steps_of(1)]}], loop=True)
    # The sleep of 0 s is over at once: the goal goes on to its action under the lease.
    assert (answer["outcome"], answer["step_seq"], answer["action"]) == ("planned", 2, "a")
