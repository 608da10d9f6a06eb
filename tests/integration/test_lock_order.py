"""goalrt's functions take their locks in one order, so they never deadlock one another.

The first tests place two calls in the order that made a cycle before the
lock order (docs/goals.md, "Lock order") existed: a third session holds a
limit bucket that both need, each call is started once the previous one
waits, and the bucket is let go. Both calls must then finish, neither as
the victim of a deadlock. The others check what the order leaves for later
(what another transaction holds is not waited for but rechecked by the next
``wake_due_v1``) and the start lock that keeps a step from starting once its
goal's end committed.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt import Goals, Step, children, wait_event
from tests.integration.test_coordination import W, claim, goal, plan, register, submit, wake


class Call(threading.Thread):
    """One SQL call on a connection of its own, in a thread: its rows, or the error it raised."""

    def __init__(self, url: str, sql: str, params: tuple[Any, ...]) -> None:
        super().__init__()
        self.url, self.sql, self.params = url, sql, params
        self.pid: int | None = None
        self.rows: list[tuple[Any, ...]] | None = None
        self.error: psycopg.Error | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            self.pid = conn.info.backend_pid
            self.connected.set()
            try:
                self.rows = conn.execute(self.sql, self.params).fetchall()
            except psycopg.Error as exc:
                self.error = exc

    def begin(self, conn: psycopg.Connection[Any]) -> Call:
        """Start the call and return once it waits for a lock (or has finished)."""
        self.start()
        self.connected.wait(10)
        deadline = time.monotonic() + 10
        while self.is_alive():
            row = conn.execute("SELECT cardinality(pg_blocking_pids(%s))", (self.pid,)).fetchone()
            if row and row[0]:
                return self
            assert time.monotonic() < deadline, "the call neither waits nor finishes"
            time.sleep(0.01)
        return self

    def outcome(self) -> list[tuple[Any, ...]]:
        self.join(30)
        assert not self.is_alive(), "the call still runs"
        assert self.error is None, f"{self.error.sqlstate}: {self.error}"
        assert self.rows is not None
        return self.rows


def completion(gid: int, epoch: int, seq: int) -> tuple[str, tuple[Any, ...]]:
    item = {"goal_id": gid, "epoch": epoch, "seq": seq, "outcome": "complete", "result": None, "continue": True}
    return "SELECT goal_id, outcome FROM goalrt.complete_steps_v1(%s, %s, 30)", (W, Jsonb([item]))


def hold_bucket(url: str, action: str) -> psycopg.Connection[Any]:
    """Open a transaction that holds the limit bucket of ``action`` (commit it to let go)."""
    holder = psycopg.connect(url)
    assert holder.execute("SELECT 1 FROM goalrt.limit_buckets WHERE action = %s FOR UPDATE", (action,)).fetchone()
    return holder


@pytest.fixture
def c(conn: psycopg.Connection[Any], db_url: str) -> psycopg.Connection[Any]:
    register(conn, "g", "child")
    with Goals.connect(db_url) as goals:
        goals.set_limit("a", concurrency=5)
        goals.set_limit("b", concurrency=5)
    return conn


def started(conn: psycopg.Connection[Any], steps: list[Step], outcome: str = "planned") -> tuple[int, int]:
    """Submit a goal, claim it, plan ``steps``; return its id and lease epoch (its first step runs)."""
    gid = submit(conn)
    (row,) = [r for r in claim(conn) if r["goal_id"] == gid]
    assert plan(conn, gid, row["epoch"], steps)["outcome"] == outcome
    return gid, row["epoch"]


def test_completions_that_swap_limited_actions(c: psycopg.Connection[Any], db_url: str) -> None:
    """One step frees a slot of a and takes one of b, another frees b and takes a."""
    first, first_epoch = started(c, [Step("a", {}), Step("b", {})])
    second, second_epoch = started(c, [Step("b", {}), Step("a", {})])
    holder = hold_bucket(db_url, "b")
    two = Call(db_url, *completion(second, second_epoch, 1)).begin(c)
    one = Call(db_url, *completion(first, first_epoch, 1)).begin(c)
    holder.commit()
    assert two.outcome() == [(second, "continue")]
    assert one.outcome() == [(first, "continue")]
    holder.close()


def test_a_claim_as_the_first_call_of_a_session_takes_its_buckets_in_key_order(
    c: psycopg.Connection[Any], db_url: str
) -> None:
    """Two claimable goals whose steps are limited, the one at b first in claim order, and a held bucket a.

    The claim runs on a new connection (goalrt.late_locks was never set
    there, so the setting reads NULL, not ''). It must wait for a before it
    takes b, so the holder can take b next: with the buckets taken in claim
    order instead, the claim held b while it waited for a, and the holder's
    lock of b closed a cycle (one of the two was a deadlock's victim; seen at
    the start of the worker processes' lock-order test).
    """
    at_a, epoch_a = started(c, [Step("a", {})])
    at_b, epoch_b = started(c, [Step("b", {})])
    c.execute("SELECT goalrt.release_goals_v1(%s, %s, %s)", (W, [at_a, at_b], [epoch_a, epoch_b]))
    c.execute("UPDATE goalrt.goals SET priority = 1 WHERE id = %s", (at_b,))
    holder = hold_bucket(db_url, "a")
    claiming = Call(db_url, "SELECT goal_id FROM goalrt.claim_goals_v2('w2', 10, 30)", ()).begin(c)
    holder.execute("SET lock_timeout = '10s'")
    holder.execute("SELECT 1 FROM goalrt.limit_buckets WHERE action = 'b' FOR UPDATE")
    holder.commit()
    assert sorted(r[0] for r in claiming.outcome()) == sorted([at_a, at_b])
    holder.close()


def tree(conn: psycopg.Connection[Any], plans: list[list[Step]]) -> tuple[int, list[tuple[int, int]]]:
    """A parent waiting for one child per plan; each child claimed and planned. The parent and (child, epoch)."""
    parent, _ = started(conn, [children([("child", {}) for _ in plans])], "waiting")
    kids = [int(r[0]) for r in conn.execute("SELECT id FROM goalrt.goals WHERE parent_id = %s ORDER BY id", (parent,))]
    epochs = {r["goal_id"]: r["epoch"] for r in claim(conn)}
    for kid, steps in zip(kids, plans, strict=True):
        assert plan(conn, kid, epochs[kid], steps)["outcome"] == "planned"
    return parent, [(kid, epochs[kid]) for kid in kids]


def cancel(url: str, gid: int, conn: psycopg.Connection[Any]) -> Call:
    return Call(url, "SELECT id, status FROM goalrt.cancel_goal(%s, 'stop')", (gid,)).begin(conn)


def test_a_cancel_of_a_tree_and_a_completion_in_it(c: psycopg.Connection[Any], db_url: str) -> None:
    """The cancel frees the slots of the children one by one while a child's step completes."""
    parent, [_, (kid, epoch)] = tree(c, [[Step("a", {})], [Step("b", {}), Step("a", {})]])
    holder = hold_bucket(db_url, "b")
    done = Call(db_url, *completion(kid, epoch, 1)).begin(c)
    cancelling = cancel(db_url, parent, c)
    holder.commit()
    assert done.outcome() == [(kid, "continue")]
    assert cancelling.outcome() == [(parent, "cancelled")]
    statuses = c.execute("SELECT status FROM goalrt.goals WHERE parent_id = %s", (parent,)).fetchall()
    assert statuses == [("cancelled",), ("cancelled",)]
    assert c.execute("SELECT count(*) FROM goalrt.limit_holders").fetchone() == (0,)
    holder.close()


def test_a_cancel_of_a_tree_and_a_plan_that_ends_a_child(c: psycopg.Connection[Any], db_url: str) -> None:
    """A child's new plan is empty, so the child completes and tells its parent, which is being cancelled."""
    parent, [(kid, epoch)] = tree(c, [[Step("a", {})]])
    holder = hold_bucket(db_url, "a")
    item = {"goal_id": kid, "epoch": epoch, "steps": [], "replan": True}
    planning = Call(db_url, "SELECT goal_id, outcome FROM goalrt.plan_goals_v1(%s, %s, 30)", (W, Jsonb([item]))).begin(
        c
    )
    cancelling = cancel(db_url, parent, c)
    holder.commit()
    assert planning.outcome() == [(kid, "complete")]
    assert cancelling.outcome() == [(parent, "cancelled")]
    assert goal(c, kid)["status"] == "complete"
    holder.close()


# -- what the order leaves for later -------------------------------------------------------------------------


def hold_goal(url: str, gid: int) -> psycopg.Connection[Any]:
    """Open a transaction that holds goal ``gid``'s row, as a worker's call would (commit it to let go)."""
    holder = psycopg.connect(url)
    holder.execute("SELECT 1 FROM goalrt.goals WHERE id = %s FOR NO KEY UPDATE", (gid,))
    return holder


def test_a_child_ends_without_waiting_for_its_parent(c: psycopg.Connection[Any], db_url: str) -> None:
    parent, [(kid, epoch)] = tree(c, [[Step("a", {})]])
    holder = hold_goal(db_url, parent)
    assert Call(db_url, *completion(kid, epoch, 1)).begin(c).outcome() == [(kid, "complete")]
    assert goal(c, parent)["status"] == "waiting"
    holder.commit()
    holder.close()
    wake(c)  # counts the children again
    assert goal(c, parent)["status"] == "complete"


def test_an_append_does_not_wait_for_the_goal_it_resumes(c: psycopg.Connection[Any], db_url: str) -> None:
    gid, _ = started(c, [wait_event("paid", where={"order": 1})], "waiting")
    holder = hold_goal(db_url, gid)
    append = Call(db_url, "SELECT goalrt.append_event('shop', 'paid', %s)", (Jsonb({"order": 1}),)).begin(c)
    assert len(append.outcome()) == 1
    assert goal(c, gid)["status"] == "waiting"
    holder.commit()
    holder.close()
    wake(c)  # looks back and finds the event
    assert goal(c, gid)["status"] == "complete"


def test_a_held_child_of_an_ended_goal_is_cancelled_later_and_does_not_start(
    c: psycopg.Connection[Any], db_url: str
) -> None:
    parent, [(kid, epoch)] = tree(c, [[Step("a", {})]])
    c.execute("UPDATE goalrt.goals SET deadline_at = now() - interval '1 second' WHERE id = %s", (parent,))
    holder = hold_goal(db_url, kid)
    Call(db_url, "SELECT goalrt.wake_due_v1(100)", ()).begin(c).outcome()
    assert (goal(c, parent)["status"], goal(c, kid)["status"]) == ("failed", "active")
    holder.commit()
    holder.close()
    # Its step still runs under its lease, but its parent ended: it must not start.
    assert c.execute("SELECT goalrt.step_start_v1(%s, %s, %s, 1)", (W, kid, epoch)).fetchone() == (False,)
    wake(c)
    g = goal(c, kid)
    assert (g["status"], g["last_error"]) == ("cancelled", f"parent goal {parent} failed")


def test_a_slot_freed_while_its_bucket_is_held_wakes_a_parked_goal_later(
    c: psycopg.Connection[Any], db_url: str
) -> None:
    with Goals.connect(db_url) as goals:
        goals.set_limit("one", concurrency=1)
    first, _ = started(c, [Step("one", {})])
    second, _ = started(c, [Step("one", {})], "blocked")
    c.execute("UPDATE goalrt.goals SET deadline_at = now() - interval '1 second' WHERE id = %s", (first,))
    holder = hold_bucket(db_url, "one")
    Call(db_url, "SELECT goalrt.wake_due_v1(100)", ()).begin(c).outcome()  # ends the first, frees its slot
    assert goal(c, first)["status"] == "failed"
    assert c.execute("SELECT count(*) FROM goalrt.limit_holders").fetchone() == (0,)
    assert goal(c, second)["blocked_on"] == "one||"
    holder.commit()
    holder.close()
    wake(c)
    assert goal(c, second)["blocked_on"] is None


# -- start locks ----------------------------------------------------------------------------------------------


def test_a_cancel_waits_for_a_step_start_in_flight(c: psycopg.Connection[Any], db_url: str) -> None:
    gid, epoch = started(c, [Step("a", {})])
    with psycopg.connect(db_url, autocommit=True) as starter:
        start = "SELECT goalrt.step_start_v1(%s, %s, %s, 1)"
        assert starter.execute(start, (W, gid, epoch)).fetchone() == (True,)
        cancelling = cancel(db_url, gid, c)
        assert cancelling.is_alive(), "the cancel did not wait for the step's start"
        starter.execute("SELECT goalrt.step_started_v1(%s)", (gid,))
        assert cancelling.outcome() == [(gid, "cancelled")]
        assert starter.execute(start, (W, gid, epoch)).fetchone() == (False,)


def test_many_step_starts_never_wait_and_say_busy_for_an_end_in_progress(
    c: psycopg.Connection[Any], db_url: str
) -> None:
    """step_start_v2: start (lock held), refused (may not start), busy (an end holds the lock; nothing waited)."""
    free, free_epoch = started(c, [Step("a", {})])
    ending, ending_epoch = started(c, [Step("a", {})])
    stale, stale_epoch = started(c, [Step("a", {})])
    many = "SELECT goal_id, outcome FROM goalrt.step_start_v2(%s, %s, %s, %s) ORDER BY goal_id"
    key = "SELECT pg_advisory_xact_lock_shared('goalrt.goals'::regclass::oid::integer, %s)"
    with psycopg.connect(db_url) as end, psycopg.connect(db_url, autocommit=True) as starter:
        end.execute(key, (ending,))  # as end_goal does until its commit
        rows = starter.execute(
            many, (W, [stale, ending, free], [stale_epoch + 1, ending_epoch, free_epoch], [1, 1, 1])
        ).fetchall()
        assert rows == [(free, "start"), (ending, "busy"), (stale, "refused")]
        # The lock of the step that may start is held by the starter's session, and only that one.
        held = "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        assert [r[0] for r in starter.execute(held)] == [free]
        starter.execute("SELECT goalrt.step_started_v1(g) FROM unnest(%s::bigint[]) AS t(g)", ([free],))
        assert starter.execute(held).fetchall() == []
        end.rollback()
        assert starter.execute(many, (W, [ending], [ending_epoch], [1])).fetchall() == [(ending, "start")]


# -- idempotency keys ---------------------------------------------------------------------------------------------


def test_batches_with_the_same_new_keys_in_any_order_never_deadlock(c: psycopg.Connection[Any], db_url: str) -> None:
    """Four clients submit, round after round, batches of the same 6 new idempotency keys, each shuffled.

    Each batch inserts its keys one by one; without a lock per key taken in
    one order first, two batches in opposite orders each held one key's new
    row and waited for the other's (the unique index): a deadlock, in about one
    call in three here. Every call must succeed, and each key must end as
    one goal that every client got back (created by exactly one of them).
    """
    clients, rounds, keys = 4, 40, 6
    barrier = threading.Barrier(clients)
    answers: list[list[dict[str, tuple[int, bool]]]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def run(n: int) -> None:
        rnd = random.Random(n)
        with psycopg.connect(db_url, autocommit=True) as conn:
            for r in range(rounds):
                names = [f"r{r}-k{i}" for i in range(keys)]
                rnd.shuffle(names)
                batch = [{"name": "g", "params": {}, "options": {"key": k}} for k in names]
                barrier.wait(30)
                try:
                    rows = conn.execute("SELECT id, created FROM goalrt.submit_goals(%s)", (Jsonb(batch),)).fetchall()
                except psycopg.Error as exc:
                    errors.append(f"{exc.sqlstate}: {exc}")
                    continue
                answers[n].append({k: (int(i), bool(made)) for k, (i, made) in zip(names, rows, strict=True)})

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, f"{len(errors)} of {clients * rounds} calls failed, first: {errors[0]}"
    for r in range(rounds):
        got = [answers[n][r] for n in range(clients)]
        for key in got[0]:
            assert len({g[key][0] for g in got}) == 1, f"round {r}: key {key} gave different goals"
            assert sum(g[key][1] for g in got) == 1, (
                f"round {r}: key {key} was created {sum(g[key][1] for g in got)} times"
            )
    assert c.execute("SELECT count(*) FROM goalrt.goals").fetchone() == (rounds * keys,)
