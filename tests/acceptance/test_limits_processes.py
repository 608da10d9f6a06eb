"""Cluster-wide limits across real worker processes.

Four ``goalrt worker`` processes (each with room for 8 steps at once) run
goals whose one step is a limited action; the handlers
(tests/acceptance/limit_handlers.py) record in a side table, with the
database's clock_timestamp(), when each execution began and ended. A
handler's interval lies inside its step's admission and release, so from the
side table alone:

- a concurrency limit of N: never more than N intervals overlap, across all
  processes (and at least 2 do, or the test proved nothing);
- a token bucket (rate R per second, burst B): no window of W seconds holds
  more than B + R*W starts (+1 for the jitter between admission and the
  handler's start), nor more than B + R*W admissions certainly inside it
  (an admission lies between its transaction's start, the step's
  started_at, and the handler's start), and N starts take at least
  (N - B) / R seconds;
- a limit per customer: each customer's own intervals respect it, customers
  do not share it, and a small customer arriving behind a large backlog of
  another is not starved by it.

While they run, the tests also check that a goal parked by a limit never
holds a lease and that no key has more slot holders than its limit. The
last tests call goalrt's functions directly, in this process, as a worker
does: parking at plan and at claim time, admissions of one key waiting for
each other, and a slot freed while another transaction parks a goal (the
parked goal must be woken, not left for the 30 s fallback timer). Nothing
here asserts on speed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt import Goals, Registry, Step
from tests.acceptance.test_worker_processes import REPO, Workers

HANDLERS = "tests.acceptance.limit_handlers"
RUN_TIMEOUT = 45.0


def cli(workers: Workers, *args: str) -> str:
    """Run a ``goalrt`` command against the test database; return its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "goalrt", *args], cwd=REPO, env=workers.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"goalrt {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(
            "CREATE TABLE limit_calls (id bigserial PRIMARY KEY, goal_id bigint, seq int, action text, key text, "
            "pid int, worker text, started timestamptz NOT NULL DEFAULT clock_timestamp(), ended timestamptz)"
        )
    w = Workers(db_url, tmp_path, HANDLERS, ("--lease", "5s", "--poll", "50ms", "--concurrency", "8", "--grace", "5s"))
    yield w
    w.stop_all()


def wait_until(check: Callable[[], bool], timeout: float, workers: Workers, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s\n{workers.tail()}")
        time.sleep(0.05)


def start_workers(conn: psycopg.Connection[Any], workers: Workers, count: int, goal_type: str) -> None:
    for i in range(count):
        workers.start(f"lw{i}")

    def registered() -> bool:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM goalrt.workers), (SELECT count(*) FROM goalrt.goal_types WHERE name = %s)",
            (goal_type,),
        ).fetchone()
        return row is not None and row[0] >= count and row[1] == 1

    wait_until(registered, 60, workers, f"{count} workers registered")


def check_invariants(conn: psycopg.Connection[Any], action: str, limit: int) -> None:
    """While running: parked goals hold no lease; no key has more holders than the limit."""
    leased = conn.execute(
        "SELECT id, lease_owner, blocked_on FROM goalrt.goals WHERE blocked_on IS NOT NULL AND lease_owner IS NOT NULL"
    ).fetchall()
    assert leased == [], f"goals parked by a limit but holding a lease: {leased[:5]}"
    over = conn.execute(
        "SELECT key, count(*) FROM goalrt.limit_holders WHERE action = %s GROUP BY key HAVING count(*) > %s",
        (action, limit),
    ).fetchall()
    assert over == [], f"keys with more slot holders than the limit {limit}: {over}"


def run_to_completion(
    conn: psycopg.Connection[Any], workers: Workers, ids: list[int], action: str, limit: int | None
) -> int:
    """Wait until every goal completed, checking the invariants meanwhile; return how many samples saw parked goals."""
    deadline = time.monotonic() + RUN_TIMEOUT
    parked_seen = 0
    while True:
        if limit is not None:
            check_invariants(conn, action, limit)
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('failed', 'cancelled')), "
            "count(*) FILTER (WHERE status <> 'complete'), count(*) FILTER (WHERE blocked_on IS NOT NULL) "
            "FROM goalrt.goals WHERE id = ANY(%s)",
            (ids,),
        ).fetchone()
        assert row is not None
        failed, unfinished, parked = row
        assert failed == 0, conn.execute(
            "SELECT id, last_error FROM goalrt.goals WHERE status <> 'complete'"
        ).fetchall()
        parked_seen += int(parked > 0)
        if unfinished == 0:
            return parked_seen
        if time.monotonic() > deadline:
            stuck = conn.execute(
                "SELECT id, status, lease_owner, blocked_on, wake_at FROM goalrt.goals "
                "WHERE status <> 'complete' ORDER BY id LIMIT 10"
            ).fetchall()
            raise AssertionError(f"{unfinished} goals unfinished after {RUN_TIMEOUT}s: {stuck}\n{workers.tail()}")
        time.sleep(0.05)


def calls(conn: psycopg.Connection[Any], action: str) -> list[tuple[int, str, int, datetime, datetime]]:
    rows = conn.execute(
        "SELECT goal_id, key, pid, started, ended FROM limit_calls WHERE action = %s ORDER BY started", (action,)
    ).fetchall()
    assert all(r[4] is not None for r in rows), "a handler did not record its end"
    return rows


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most closed intervals [start, end] that share an instant."""
    points = sorted([(s, 0) for s, _ in intervals] + [(e, 1) for _, e in intervals])  # starts first on a tie
    best = depth = 0
    for _, kind in points:
        depth += 1 if kind == 0 else -1
        best = max(best, depth)
    return best


def submit(url: str, name: str, params: list[dict[str, Any]]) -> list[int]:
    with Goals.connect(url) as goals:
        return [s.id for s in goals.submit_many([(name, p, None) for p in params])]


def test_concurrency_limit_holds_across_processes(db_url: str, workers: Workers) -> None:
    out = cli(workers, "limits", "set", "work.slow", "--concurrency", "3")
    assert "at most 3 at once" in out
    with psycopg.connect(db_url, autocommit=True) as conn:
        start_workers(conn, workers, 4, "limit.slow")
        ids = submit(db_url, "limit.slow", [{"sleep": 0.15}] * 40)
        parked_seen = run_to_completion(conn, workers, ids, "work.slow", 3)
        rows = calls(conn, "work.slow")
        holders = conn.execute("SELECT count(*) FROM goalrt.limit_holders").fetchone()
    assert sorted(r[0] for r in rows) == sorted(ids), "each goal's step ran exactly once"
    overlap = max_overlap([(r[3], r[4]) for r in rows])
    assert overlap <= 3, f"{overlap} steps of work.slow ran at once under a limit of 3"
    assert overlap >= 2, "the steps never overlapped: the test did not exercise the limit"
    assert len({r[2] for r in rows}) >= 2, "one process ran everything: the limit was not shared"
    assert parked_seen > 0, "no goal was ever parked: the limit was never reached"
    assert holders == (0,), "slots still held after every goal completed"


def test_rate_limit_spaces_starts_across_processes(db_url: str, workers: Workers) -> None:
    rate, per, burst, n = 5, 1.0, 5, 25
    out = cli(workers, "limits", "set", "work.tick", "--rate", str(rate), "--per", str(per))
    assert f"{rate} per 1s (burst {burst})" in out
    with psycopg.connect(db_url, autocommit=True) as conn:
        start_workers(conn, workers, 4, "limit.tick")
        ids = submit(db_url, "limit.tick", [{"sleep": 0.01}] * n)
        run_to_completion(conn, workers, ids, "work.tick", None)
        rows = calls(conn, "work.tick")
        # Each admission happened between its transaction's start (the step's started_at) and the handler's start.
        admitted = conn.execute(
            "SELECT s.started_at, c.started FROM limit_calls c "
            "JOIN goalrt.goal_steps s ON s.goal_id = c.goal_id AND s.seq = c.seq WHERE c.action = 'work.tick'"
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    starts = sorted(r[3].timestamp() for r in rows)
    window = 1.0
    allowed = burst + rate / per * window + 1  # +1: the handler starts a little after its admission
    for i, t in enumerate(starts):
        inside = sum(1 for u in starts[i:] if u <= t + window)
        assert inside <= allowed, f"{inside} starts within {window}s of {t} (allowed {allowed}): {starts}"
    # Without the slack: admissions certainly inside a window of W seconds never exceed burst + rate * W.
    spans = [(lo.timestamp(), hi.timestamp()) for lo, hi in admitted]
    for x, _ in spans:
        certain = sum(1 for lo, hi in spans if lo >= x and hi <= x + window)
        assert certain <= burst + rate / per * window, f"{certain} admissions within {window}s of {x}: {spans}"
    span = starts[-1] - starts[0]
    least = (n - burst) / (rate / per) * 0.9
    assert span >= least, f"{n} starts took {span:.2f}s; a bucket of {rate}/{per}s, burst {burst} needs {least:.2f}s"
    assert len({r[2] for r in rows}) >= 2, "one process ran everything: the bucket was not shared"


def test_limit_per_key_is_separate_and_does_not_starve_a_small_customer(db_url: str, workers: Workers) -> None:
    out = cli(workers, "limits", "set", "work.charge", "--concurrency", "2", "--key", "customer")
    assert "per customer" in out
    with psycopg.connect(db_url, autocommit=True) as conn:
        start_workers(conn, workers, 4, "limit.charge")
        a_ids = submit(db_url, "limit.charge", [{"customer": "A", "sleep": 0.15}] * 30)

        def a_backlog_parked() -> bool:
            check_invariants(conn, "work.charge", 2)
            row = conn.execute("SELECT count(*) FROM goalrt.goals WHERE blocked_on = 'work.charge|customer|A'")
            return int((row.fetchone() or (0,))[0]) >= 10

        wait_until(a_backlog_parked, 30, workers, "A's backlog parked by its limit")
        b_ids = submit(db_url, "limit.charge", [{"customer": "B", "sleep": 0.15}] * 4)
        run_to_completion(conn, workers, a_ids + b_ids, "work.charge", 2)
        rows = calls(conn, "work.charge")
        finished: dict[int, datetime] = dict(
            conn.execute("SELECT id, finished_at FROM goalrt.goals WHERE id = ANY(%s)", (a_ids + b_ids,)).fetchall()
        )
    per_key = {key: max_overlap([(r[3], r[4]) for r in rows if r[1] == key]) for key in ("A", "B")}
    assert per_key["A"] <= 2 and per_key["B"] <= 2, f"a customer's limit of 2 was exceeded: {per_key}"
    assert per_key["A"] == 2, "A's steps never overlapped: the test did not exercise the limit"
    overall = max_overlap([(r[3], r[4]) for r in rows])
    assert overall >= 3, f"at most {overall} ran at once overall: customers seem to share one limit"
    last_a = max(finished[i] for i in a_ids)
    last_b = max(finished[i] for i in b_ids)
    assert last_b < last_a, f"B's goals finished at {last_b}, after A's backlog ({last_a}): B was starved"


# -- SQL level, in this process: goalrt's functions called as a worker calls them -----------------------------------

LIMITED = "one.at.a.time"


def limited_goals(url: str, count: int) -> list[int]:
    """Register a goal type whose one step is LIMITED, limit it to 1 at once, submit ``count`` goals."""
    registry = Registry()

    @registry.goal("parked")
    def parked(params: dict[str, Any]) -> list[Step]:
        return [Step(LIMITED, {})]

    with Goals.connect(url, registry=registry) as goals:
        goals.register()
        goals.set_limit(LIMITED, concurrency=1)
        return [s.id for s in goals.submit_many([("parked", {}, None)] * count)]


def claim(conn: psycopg.Connection[Any], worker: str) -> list[tuple[int, int, int | None]]:
    """Claim what is runnable: (goal, epoch, step)."""
    return [
        (int(g), int(e), s)
        for g, e, s in conn.execute(
            "SELECT goal_id, epoch, step_seq FROM goalrt.claim_goals_v2(%s, 10, 30, NULL)", (worker,)
        ).fetchall()
    ]


def plan(conn: psycopg.Connection[Any], worker: str, goal: int, epoch: int) -> str:
    """Store the goal's plan (its one limited step): 'planned' when admitted, 'blocked' when parked."""
    item = [{"goal_id": goal, "epoch": epoch, "steps": [{"action": LIMITED, "args": {}}]}]
    row = conn.execute("SELECT outcome FROM goalrt.plan_goals_v1(%s, %s, 30)", (worker, Jsonb(item))).fetchone()
    assert row is not None
    return str(row[0])


def complete(conn: psycopg.Connection[Any], worker: str, goal: int, epoch: int) -> str:
    item = [{"goal_id": goal, "epoch": epoch, "seq": 1, "outcome": "complete", "result": None}]
    row = conn.execute("SELECT outcome FROM goalrt.complete_steps_v1(%s, %s, 30)", (worker, Jsonb(item))).fetchone()
    assert row is not None
    return str(row[0])


def goal_row(conn: psycopg.Connection[Any], goal: int) -> tuple[Any, ...]:
    """(status, lease_owner, lease_expires_at, blocked_on, has a wake_at)."""
    found = conn.execute(
        "SELECT status, lease_owner, lease_expires_at, blocked_on, wake_at IS NOT NULL FROM goalrt.goals WHERE id = %s",
        (goal,),
    ).fetchone()
    assert found is not None
    return tuple(found)


PARKED = ("active", None, None, f"{LIMITED}||", True)
RUNNABLE = ("active", None, None, None, False)


def test_a_goal_parked_by_a_limit_holds_no_lease(db_url: str) -> None:
    """Parking at plan time and at claim time, and the wakeup by a release."""
    first, second = limited_goals(db_url, 2)
    with psycopg.connect(db_url, autocommit=True) as conn:
        claimed = claim(conn, "w1")
        assert [(g, s) for g, _, s in claimed] == [(first, None), (second, None)]  # not planned yet: no admission
        epochs = {g: e for g, e, _ in claimed}
        assert plan(conn, "w1", first, epochs[first]) == "planned"
        assert plan(conn, "w1", second, epochs[second]) == "blocked"
        # Parked at plan time: no lease, the limit named, a fallback timer.
        assert goal_row(conn, second) == PARKED
        assert claim(conn, "w2") == [], "a parked goal must not be claimable"

        # The first gives its slot back (its worker stops): the second is woken, both are runnable.
        conn.execute(
            "SELECT * FROM goalrt.release_goals_v1('w1', ARRAY[%s]::bigint[], ARRAY[%s]::bigint[])",
            (first, epochs[first]),
        )
        assert goal_row(conn, second) == RUNNABLE
        # One claim takes both in order: the first is admitted, the second parked again, at claim time.
        assert [g for g, _, _ in claim(conn, "w3")] == [first]
        assert goal_row(conn, first)[:2] == ("active", "w3")
        assert goal_row(conn, second) == PARKED
        assert conn.execute("SELECT goal_id FROM goalrt.limit_holders").fetchall() == [(first,)]


def beside(
    conn: psycopg.Connection[Any],
    tx: psycopg.Connection[Any],
    other: psycopg.Connection[Any],
    call: Callable[[psycopg.Connection[Any]], str],
) -> tuple[bool, list[str]]:
    """Run ``call(other)`` while ``tx`` is open; commit ``tx`` once the call returned or waits on a lock.

    Returns whether the call was waiting on a lock, and what it returned.
    """
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(call(other)))
    thread.start()
    waited = False
    try:
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            row = conn.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (other.info.backend_pid,)
            ).fetchone()
            if row and row[0]:
                waited = True
                break
            time.sleep(0.01)
    finally:
        tx.commit()
        thread.join(10)
    assert not thread.is_alive(), "the call still waits after the other transaction committed"
    return waited, outcome


def test_admissions_of_one_key_wait_for_each_other(db_url: str) -> None:
    """Two workers admitting steps of one key at once: the second waits for the first to commit, then parks."""
    earlier, first, second = limited_goals(db_url, 3)
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        psycopg.connect(db_url) as tx,
        psycopg.connect(db_url, autocommit=True) as other,
    ):
        epochs = {g: e for g, e, _ in claim(conn, "w1")}
        # A step run and done before: the key's bucket row exists (its first insert would serialize by itself).
        assert plan(conn, "w1", earlier, epochs[earlier]) == "planned"
        assert complete(conn, "w1", earlier, epochs[earlier]) == "complete"
        assert plan(tx, "w1", first, epochs[first]) == "planned"  # admitted; not committed yet
        waited, outcome = beside(conn, tx, other, lambda c: plan(c, "w1", second, epochs[second]))
        assert waited, f"the second admission did not wait for the first: {outcome}"
        assert outcome == ["blocked"]
        assert goal_row(conn, second) == PARKED


def test_a_release_during_a_parking_wakes_the_parked_goal(db_url: str) -> None:
    """A slot freed while another transaction parks a goal on the same key must not be lost."""
    holder, waiter = limited_goals(db_url, 2)
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        psycopg.connect(db_url) as tx,
        psycopg.connect(db_url, autocommit=True) as other,
    ):
        epochs = {g: e for g, e, _ in claim(conn, "w1")}
        assert plan(conn, "w1", holder, epochs[holder]) == "planned"
        assert plan(tx, "w1", waiter, epochs[waiter]) == "blocked"  # parked, not committed yet
        # Meanwhile the holder's step completes and frees the only slot (it may wait for the parking to commit).
        _, outcome = beside(conn, tx, other, lambda c: complete(c, "w1", holder, epochs[holder]))
        assert outcome == ["complete"]
        assert conn.execute("SELECT count(*) FROM goalrt.limit_holders").fetchone() == (0,)
        # Nothing holds the slot, so the parked goal must be runnable now, not in 30 s.
        status, lease_owner, _, blocked_on, _ = goal_row(conn, waiter)
        assert (status, lease_owner) == ("active", None)
        assert blocked_on is None, f"goal {waiter} still parked with no slot held: {goal_row(conn, waiter)}"
