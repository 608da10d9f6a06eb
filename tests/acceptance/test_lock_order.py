"""goalrt's functions never deadlock one another, and a cancel stops what has not started.

Three ``goalrt worker`` processes run trees of goals (tests/acceptance/
tree_handlers.py) whose steps are limited cluster-wide, while three clients
cancel goals of half the trees with ``goalrt.cancel_goal``. What must hold:

- the server detected no deadlock in the test's database
  (``pg_stat_database.deadlocks`` before and after; the workers' logs are
  shown when it did);
- a cancel either succeeds or is refused with a documented error (GR007:
  the goal already ended; GR009: no such goal), never a deadlock or a
  serialization failure;
- no handler of a goal started after the ``cancel_goal`` that cancelled it
  (or an ancestor) returned: every handler notes ``time.monotonic()`` as its
  first line, each client notes it when its cancel returned;
- the trees nobody cancelled complete, and every goal ends.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from goalrt import Goals
from tests.acceptance.test_worker_processes import Workers

HANDLERS = "tests.acceptance.tree_handlers"
ROOTS = 24
CANCELLERS = 3
RUN_TIMEOUT = 120.0
# What cancel_goal may answer besides success: the goal already ended, or does not exist.
DOCUMENTED = {"GR007", "GR009"}


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    starts = tmp_path / "starts"
    starts.mkdir()
    w = Workers(db_url, tmp_path, HANDLERS, ("--lease", "5s", "--poll", "50ms", "--concurrency", "8", "--grace", "5s"))
    w.env["TREE_STARTS"] = str(starts)
    yield w
    w.stop_all()


def deadlocks(url: str) -> int:
    """The deadlocks the server detected in this database so far (its statistics, flushed by ended sessions)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def settled_deadlocks(url: str, before: int) -> int:
    """The deadlocks since ``before``, read until two readings a second apart agree (statistics arrive late)."""
    last = deadlocks(url) - before
    for _ in range(5):
        time.sleep(1)
        now = deadlocks(url) - before
        if now == last:
            break
        last = now
    return last


class Cancellers:
    """Clients that cancel random unfinished goals of the target trees, each on its own connection."""

    def __init__(self, url: str, targets: list[int]) -> None:
        self.url = url
        self.targets = targets
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # (goal, time.monotonic() when cancel_goal returned) of each cancel that succeeded.
        self.cancelled: list[tuple[int, float]] = []
        self.refused: dict[str, int] = {}
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CANCELLERS)]

    def __enter__(self) -> Cancellers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                # Mostly goals inside the trees, now and then a whole tree.
                roots = rnd.random() < 0.1
                row = conn.execute(
                    "WITH RECURSIVE t AS (SELECT id FROM goalrt.goals WHERE id = ANY(%s) "
                    "UNION ALL SELECT g.id FROM goalrt.goals g JOIN t ON g.parent_id = t.id) "
                    "SELECT g.id FROM t JOIN goalrt.goals g USING (id) "
                    "WHERE g.status IN ('pending', 'active', 'waiting') AND (g.parent_id IS NULL) = %s ORDER BY g.id",
                    (self.targets, roots),
                ).fetchall()
                if row:
                    goal = rnd.choice(row)[0]
                    try:
                        conn.execute("SELECT * FROM goalrt.cancel_goal(%s, 'stress')", (goal,))
                        done = time.monotonic()
                        with self.lock:
                            self.cancelled.append((goal, done))
                    except psycopg.Error as exc:
                        with self.lock:
                            if exc.sqlstate in DOCUMENTED:
                                self.refused[str(exc.sqlstate)] = self.refused.get(str(exc.sqlstate), 0) + 1
                            else:
                                self.errors.append(f"{exc.sqlstate}: {exc}")
                self.stop.wait(rnd.uniform(0.02, 0.12))


def handler_starts(starts: Path) -> list[tuple[int, int, float]]:
    out = []
    for path in starts.glob("starts-*.txt"):
        for line in path.read_text().splitlines():
            goal, seq, at = line.split()
            out.append((int(goal), int(seq), float(at)))
    return out


def subtree(conn: psycopg.Connection[Any], goal: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM goalrt.goal_tree(%s)", (goal,)).fetchall()]


def test_trees_under_limits_with_concurrent_cancels(db_url: str, workers: Workers) -> None:
    with Goals.connect(db_url) as goals:
        goals.set_limit("tree.a", concurrency=3)
        goals.set_limit("tree.b", concurrency=2, key="customer")
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(3):
            workers.start(f"tw{i}")
        deadline = time.monotonic() + 60
        while conn.execute("SELECT count(*) FROM goalrt.workers").fetchone() != (3,):
            assert time.monotonic() < deadline, f"workers did not register\n{workers.tail()}"
            time.sleep(0.05)
        before = deadlocks(db_url)
        with Goals.connect(db_url) as goals:
            roots = [
                s.id
                for s in goals.submit_many(
                    [("tree.root", {"fan": 3, "depth": 2, "customer": f"c{i % 4}"}, None) for i in range(ROOTS)]
                )
            ]
        targets = roots[1::2]
        with Cancellers(db_url, targets) as cancellers:
            deadline = time.monotonic() + RUN_TIMEOUT
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM goalrt.goals WHERE status IN ('pending', 'active', 'waiting')"
                ).fetchone()
                if row == (0,):
                    break
                assert time.monotonic() < deadline, f"goals still unfinished after {RUN_TIMEOUT}s\n{workers.tail()}"
                time.sleep(0.1)
        workers.stop_all()
        found = settled_deadlocks(db_url, before)
        kept = [r for r in roots if r not in targets]
        unfinished = conn.execute(
            "SELECT g.id, g.status, g.last_error FROM unnest(%s::bigint[]) r, goalrt.goal_tree(r) t, goalrt.goals g "
            "WHERE g.id = t.id AND g.status <> 'complete'",
            (kept,),
        ).fetchall()
        late = []
        starts = handler_starts(Path(workers.env["TREE_STARTS"]))
        for goal, returned in cancellers.cancelled:
            tree = set(subtree(conn, goal))
            late += [(g, seq, at - returned) for g, seq, at in starts if g in tree and at > returned]
    logged = [
        line
        for path in sorted(workers.logs.glob("*.log"))
        for line in path.read_text().splitlines()
        if "deadlock" in line
    ]
    assert found == 0, f"{found} deadlock(s) detected in the test database; the workers logged:\n" + "\n".join(logged)
    assert cancellers.errors == [], f"cancel_goal failed with undocumented errors: {cancellers.errors[:5]}"
    assert cancellers.cancelled, "no cancel succeeded: the test did not exercise cancel"
    assert late == [], f"handlers started after the cancel of their goal returned (goal, seq, seconds late): {late}"
    assert unfinished == [], f"goals of trees nobody cancelled did not complete: {unfinished[:5]}"
    assert len(starts) > 100, f"only {len(starts)} handlers ran: the test did not exercise the workers"
