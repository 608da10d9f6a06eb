"""Coordination: the claim with a large backlog of timers and waiting goals, and how fast waits end.

What it measures
----------------
1. **Claim rate as the timers and waiting goals pile up.** In a scratch
   database (migrated with ``goalrt.db.migrate.upgrade``), goalrt.goals is filled
   with plain SQL to N timers and N waiting goals, N = 10^3, 10^5 and (full
   run only) 10^6, built up in that order:

   * timers: goals submitted with a delayed start, as ``submit_one`` stores
     them (pending, run_at = wake_at = tomorrow);
   * waiting goals: inserted pending, then moved to active and to waiting
     (the lifecycle trigger allows only that path); half sleep until tomorrow
     (wake_at), half wait for an event that never comes (a goal_waits row,
     all of one event type with a ``where`` per goal, as when many orders
     wait for their own payment.completed).

   Both kinds have priority 100, higher than the runnable goals' 0: a claim
   that walked them in claim order would pay for every one. At each size,
   after VACUUM ANALYZE, 2,000 runnable goals (pending, priority 0, not
   planned) are inserted and claimed by one connection calling
   ``goalrt.claim_goals_v2(worker, 50, 30, NULL)`` until none is left. Only
   the claim calls are timed; between them the claimed goals are marked
   complete with an untimed UPDATE, as their worker would (so leased goals
   do not pile up in the claim index). Every claim also runs
   ``goalrt.wake_due_v1`` (three index probes for what is due), checks the
   partitions live workers serve, and records a goal.started event per goal.

   The raw PostgreSQL baseline runs in the same database right after:
   ``bench_jobs``, a plain table with the same columns that matter (status,
   priority, run_at, wake_at, lease), the same filler (N timers and N waiting
   rows at priority 100) and the same kind of partial index ((priority DESC,
   run_at, id) WHERE status = 'pending' AND wake_at IS NULL), claimed with
   one statement: ``WITH c AS (SELECT id ... ORDER BY priority DESC, run_at,
   id LIMIT 50 FOR UPDATE SKIP LOCKED) UPDATE bench_jobs ... SET status =
   'running', lease ... RETURNING id``.

   Printed: goals claimed per second (claim time only) and per-call p50, the
   ratio to the 10^3 figure of the same side (target: flat, about 1), and
   goalrt / raw. Beside them, the p50 of 200 ``goalrt.append_event`` calls
   of a type no goal waits for (one per transaction): every statement that
   appends events (a claim of pending goals appends goal.started) runs the
   trigger that matches them against goal_waits, so this shows what the
   waits cost every append.

2. **Wake latency**, with a ``goalrt.Worker`` running in this process (its
   own thread and event loop, concurrency 20) in a second scratch database.

   * Event: a goal ``[wait_event("bench.go", where={"n": n}), Step("bench.mark")]``
     is submitted and, once it waits (status 'waiting'), after a random pause
     of up to the worker's poll interval (events come at any time), another
     connection calls ``goalrt.append_event('bench', 'bench.go', {"n": n})``.
     Latency: from just before that call to the start of ``bench.mark``'s
     handler (``time.perf_counter`` in this process, both sides). One goal at
     a time. Series: the worker polling every 1 s (the default), every 50 ms,
     and polling every 1 s while the appender also sends ``NOTIFY
     goalrt_goals`` in the append's transaction (what the wakeup itself would
     do if it notified workers; goalrt's does not at the time of writing).
   * Timer: a goal ``[sleep(0.5), Step("bench.mark")]``, one at a time.
     Latency: the start of the handler (``time.time()``) minus the time the
     sleep was due (the sleep step's ``slept_until``, a database timestamp;
     the bench and the server share the host's clock). Series: the worker
     polling every 1 s, nothing else (an idle worker acts on due timers when
     it claims, i.e. every poll counted from its last activity: here the
     planning of the goal, so a 0.5 s sleep ends about 0.5 s before the next
     poll, every time); and the same worker while another connection calls
     ``goalrt.wake_due_v1(100)`` every 50 ms, whose NOTIFY (sent when it
     acted on something) wakes the worker; there each submit comes after a
     random pause of up to 50 ms, so sleeps do not end in step with the
     ticks.

   The first 2 goals of each series are not counted.

The bench prints figures; it never passes or fails. ``--quick`` (sizes 10^3
and 10^5, fewer wake samples) takes about 1.5 minutes on a 2-CPU machine; the
full run (adds 10^6, whose build alone takes about a minute; 200 samples per
event series, 100 per timer series) about 7.

How to run
----------
From the repository root::

    python bench/coordination_bench.py --quick     # embedded PostgreSQL 18 (started under ./.goalrt if needed)
    python bench/coordination_bench.py --url postgresql://postgres@127.0.0.1:5432/postgres --json

The server is ``--url``, else ``GOALRT_DATABASE_URL``, else the embedded
server (the role must be allowed to create databases). Both scratch
databases (``goalrt_cbench_<random>_claim`` and ``_wake``) are dropped at the
end. ``--json`` prints the results as one JSON object at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

RUNNABLE = 2000
CLAIM_BATCH = 50
ROUNDS = 2
APPENDS = 200  # unrelated appends timed per size
FILLER_PRIORITY = 100
WARMUP = 2  # first samples of a wake series, not counted
SLEEP_S = 0.5
TICK_S = 0.05


# == 1. Claim rate ===================================================================================================

RAW_SCHEMA = """
CREATE TABLE bench_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status           text        NOT NULL DEFAULT 'pending',
    priority         integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    wake_at          timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    payload          jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX bench_jobs_runnable_idx ON bench_jobs (priority DESC, run_at, id)
    WHERE status = 'pending' AND wake_at IS NULL;
CREATE INDEX bench_jobs_wake_idx ON bench_jobs (wake_at) WHERE wake_at IS NOT NULL;
"""

RAW_CLAIM = """
WITH c AS (
    SELECT id FROM bench_jobs
     WHERE status = 'pending' AND wake_at IS NULL AND run_at <= now()
     ORDER BY priority DESC, run_at, id
     LIMIT %s
       FOR UPDATE SKIP LOCKED
)
UPDATE bench_jobs j SET status = 'running', lease_owner = %s, lease_expires_at = now() + interval '30 seconds'
  FROM c WHERE j.id = c.id
RETURNING j.id
"""


def fill_goalrt(conn: psycopg.Connection[Any], add: int) -> None:
    """Add ``add`` timers and ``add`` waiting goals to goalrt.goals (priority above the runnable goals)."""
    conn.execute(
        "INSERT INTO goalrt.goals (name, params, priority, run_at, wake_at) "
        "SELECT 'bench.timer', '{}', %s, t, t FROM (SELECT now() + interval '1 day' + i * interval '1 ms' AS t "
        "FROM generate_series(1, %s) i) s",
        (FILLER_PRIORITY, add),
    )
    row = conn.execute(
        "WITH ins AS (INSERT INTO goalrt.goals (name, params, priority) "
        "SELECT 'bench.waiting', '{}', %s FROM generate_series(1, %s) RETURNING id) SELECT min(id), max(id) FROM ins",
        (FILLER_PRIORITY, add),
    ).fetchone()
    assert row is not None
    lo, hi = row
    # The lifecycle trigger allows pending -> active -> waiting only.
    conn.execute(
        "UPDATE goalrt.goals SET status = 'active', plan_no = 1, step_seq = 1 WHERE id BETWEEN %s AND %s", (lo, hi)
    )
    conn.execute(
        "UPDATE goalrt.goals SET status = 'waiting', "
        "wake_at = CASE WHEN id %% 2 = 0 THEN now() + interval '1 day' + id * interval '1 ms' END "
        "WHERE id BETWEEN %s AND %s",
        (lo, hi),
    )
    conn.execute(
        "INSERT INTO goalrt.goal_waits (goal_id, seq, event_type, filter) "
        "SELECT id, 1, 'bench.never', jsonb_build_object('n', id) FROM goalrt.goals "
        "WHERE id BETWEEN %s AND %s AND id %% 2 = 1",
        (lo, hi),
    )


def fill_raw(conn: psycopg.Connection[Any], add: int) -> None:
    conn.execute(
        "INSERT INTO bench_jobs (status, priority, run_at, wake_at) "
        "SELECT 'pending', %s, t, t FROM (SELECT now() + interval '1 day' + i * interval '1 ms' AS t "
        "FROM generate_series(1, %s) i) s",
        (FILLER_PRIORITY, add),
    )
    conn.execute(
        "INSERT INTO bench_jobs (status, priority, wake_at) "
        "SELECT 'waiting', %s, CASE WHEN i %% 2 = 0 THEN now() + interval '1 day' END FROM generate_series(1, %s) i",
        (FILLER_PRIORITY, add),
    )


def claim_goalrt(conn: psycopg.Connection[Any]) -> list[float]:
    """Insert RUNNABLE goals and claim them all; return the duration of each claim call that got goals."""
    conn.execute(
        "INSERT INTO goalrt.goals (name, params, priority) SELECT 'bench.run', '{}', 0 FROM generate_series(1, %s)",
        (RUNNABLE,),
    )
    times: list[float] = []
    claimed = 0
    while True:
        began = time.perf_counter()
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT goal_id FROM goalrt.claim_goals_v2('bench-claimer', %s, 30, NULL)", (CLAIM_BATCH,)
            ).fetchall()
        ]
        took = time.perf_counter() - began
        if not ids:
            break
        times.append(took)
        claimed += len(ids)
        # Untimed: what the worker would do with them, so they leave the claim index.
        conn.execute(
            "UPDATE goalrt.goals SET status = 'complete', lease_owner = NULL, lease_expires_at = NULL, "
            "finished_at = now() WHERE id = ANY(%s)",
            (ids,),
        )
    if claimed != RUNNABLE:
        print(f"  WARNING: goalrt claimed {claimed} of {RUNNABLE} runnable goals", flush=True)
    return times


def claim_raw(conn: psycopg.Connection[Any]) -> list[float]:
    conn.execute(
        "INSERT INTO bench_jobs (status, priority) SELECT 'pending', 0 FROM generate_series(1, %s)", (RUNNABLE,)
    )
    times: list[float] = []
    claimed = 0
    while True:
        began = time.perf_counter()
        rows = conn.execute(RAW_CLAIM, (CLAIM_BATCH, "bench-claimer")).fetchall()
        took = time.perf_counter() - began
        if not rows:
            break
        times.append(took)
        claimed += len(rows)
    if claimed != RUNNABLE:
        print(f"  WARNING: raw claimed {claimed} of {RUNNABLE} jobs", flush=True)
    return times


def append_times(conn: psycopg.Connection[Any], count: int = APPENDS) -> list[float]:
    """Append ``count`` events of a type no goal waits for, one per transaction; return each call's duration."""
    times = []
    for _ in range(count):
        began = time.perf_counter()
        conn.execute("SELECT goalrt.append_event('bench', 'bench.other', '{}')")
        times.append(time.perf_counter() - began)
    return times


def claim_figures(times: list[float]) -> dict[str, float]:
    from pgbench_support import percentile

    return {
        "claims_per_s": RUNNABLE / sum(times) if times else float("nan"),
        "call_p50_ms": percentile([t * 1000 for t in times], 50),
        "calls": len(times),
    }


def settle(conn: psycopg.Connection[Any]) -> None:
    """VACUUM ANALYZE the tables and CHECKPOINT: no run pays for the previous build's dirty pages."""
    for table in ("goalrt.goals", "goalrt.goal_waits", "goalrt.event_data", "bench_jobs"):
        conn.execute(f"VACUUM ANALYZE {table}")
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):  # needs a superuser or pg_checkpoint
        conn.execute("CHECKPOINT")


def claim_section(url: str, sizes: list[int]) -> list[dict[str, Any]]:
    from pgbench_support import percentile

    out: list[dict[str, Any]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_SCHEMA)
        # The bench vacuums before every run; autovacuum starting in the middle of one would blur it.
        for table in ("goalrt.goals", "goalrt.goal_waits", "goalrt.event_data", "bench_jobs"):
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        have = 0
        for size in sizes:
            began = time.monotonic()
            fill_goalrt(conn, size - have)
            fill_raw(conn, size - have)
            have = size
            built = time.monotonic() - began
            goalrt_runs, raw_runs = [], []
            for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits both alike; the best round counts
                settle(conn)
                goalrt_runs.append(claim_figures(claim_goalrt(conn)))
                settle(conn)
                raw_runs.append(claim_figures(claim_raw(conn)))
            goalrt_fig = max(goalrt_runs, key=lambda f: f["claims_per_s"])
            raw_fig = max(raw_runs, key=lambda f: f["claims_per_s"])
            settle(conn)
            append_p50 = percentile([t * 1000 for t in append_times(conn)], 50)
            rows = conn.execute("SELECT count(*) FROM goalrt.goals").fetchone()
            row = {
                "timers": size,
                "waiting": size,
                "goals_rows": rows[0] if rows else 0,
                "build_s": built,
                "append_p50_ms": append_p50,
            }
            row |= {f"goalrt_{k}": v for k, v in goalrt_fig.items()} | {f"raw_{k}": v for k, v in raw_fig.items()}
            out.append(row)
            print(
                f"  {size:>9,} timers + {size:,} waiting (built in {built:.1f}s): goalrt "
                f"{goalrt_fig['claims_per_s']:,.0f} claims/s, raw {raw_fig['claims_per_s']:,.0f} claims/s, "
                f"append_event p50 {append_p50:.2f} ms",
                flush=True,
            )
    return out


# == 2. Wake latency =================================================================================================


class Marks:
    """When each goal's ``bench.mark`` handler started, by the goal's ``n``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[int, threading.Event] = {}
        self.at: dict[int, tuple[float, float]] = {}  # n -> (perf_counter, time.time)

    def expect(self, n: int) -> threading.Event:
        with self._lock:
            return self._events.setdefault(n, threading.Event())

    def mark(self, n: int) -> None:
        self.at[n] = (time.perf_counter(), time.time())
        self.expect(n).set()


def make_registry(marks: Marks) -> Any:
    import goalrt

    registry = goalrt.Registry()

    @registry.action("bench.mark")
    async def mark(args: dict[str, Any], ctx: Any) -> None:
        marks.mark(int(args["n"]))

    @registry.goal("bench.event")
    def event_goal(params: dict[str, Any]) -> list[Any]:
        n = params["n"]
        return [goalrt.wait_event("bench.go", where={"n": n}), goalrt.Step("bench.mark", {"n": n})]

    @registry.goal("bench.timer")
    def timer_goal(params: dict[str, Any]) -> list[Any]:
        return [goalrt.sleep(params["seconds"]), goalrt.Step("bench.mark", {"n": params["n"]})]

    return registry


@contextmanager
def running_worker(url: str, registry: Any, poll: float) -> Iterator[None]:
    """A goalrt.Worker on its own thread and event loop, for the duration of the block."""
    import goalrt

    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            worker = goalrt.Worker(url, registry, concurrency=20, poll=poll)
            state["loop"], state["worker"] = asyncio.get_running_loop(), worker
            task = asyncio.create_task(worker.run())
            await worker.wait_ready()
            ready.set()
            await task

        try:
            asyncio.run(main())
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="bench-worker", daemon=True)
    thread.start()
    ready.wait(60)
    if "worker" not in state:
        raise SystemExit("the worker did not start")
    try:
        yield
    finally:
        state["loop"].call_soon_threadsafe(state["worker"].request_stop)
        thread.join(30)


@contextmanager
def ticking(url: str, every: float) -> Iterator[None]:
    """Call goalrt.wake_due_v1 every ``every`` seconds from another connection (it NOTIFYs when it acts)."""
    stop = threading.Event()

    def run() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.wait(every):
                conn.execute("SELECT goalrt.wake_due_v1(100)")

    thread = threading.Thread(target=run, name="bench-ticker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def wait_status(conn: psycopg.Connection[Any], goal_id: int, status: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT status FROM goalrt.goals WHERE id = %s", (goal_id,)).fetchone()
        if row and row[0] == status:
            return True
        time.sleep(0.002)
    return False


def summary(latencies_ms: list[float], lost: int) -> dict[str, Any]:
    from pgbench_support import percentile

    return {
        "n": len(latencies_ms),
        "lost": lost,
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms, default=float("nan")),
    }


class WakeBench:
    def __init__(self, url: str) -> None:
        from goalrt import Goals

        self.url = url
        self.marks = Marks()
        self.registry = make_registry(self.marks)
        self.goals = Goals.connect(url, registry=self.registry)
        self.goals.register()
        self.next_n = 0
        self.rng = random.Random(20261122)

    def close(self) -> None:
        self.goals.close()

    def _n(self) -> int:
        self.next_n += 1
        return self.next_n

    def events(self, count: int, poll: float, notify: bool) -> dict[str, Any]:
        """Sequential event wakeups: append the awaited event, time until the next step's handler starts."""
        latencies: list[float] = []
        lost = 0
        with running_worker(self.url, self.registry, poll), psycopg.connect(self.url, autocommit=True) as conn:
            for i in range(count + WARMUP):
                n = self._n()
                started = self.marks.expect(n)
                goal_id = self.goals.submit("bench.event", {"n": n}).id
                if not wait_status(conn, goal_id, "waiting"):
                    lost += 1
                    continue
                time.sleep(self.rng.uniform(0, poll))  # events arrive at any point of the worker's poll cycle
                began = time.perf_counter()
                with conn.transaction():
                    conn.execute("SELECT goalrt.append_event('bench', 'bench.go', %s)", (Jsonb({"n": n}),))
                    if notify:
                        conn.execute("SELECT pg_notify('goalrt_goals', '')")
                if not started.wait(10):
                    lost += 1
                    continue
                if i >= WARMUP:
                    latencies.append((self.marks.at[n][0] - began) * 1000)
        return summary(latencies, lost)

    def timers(self, count: int, poll: float, tick: float | None) -> dict[str, Any]:
        """Sequential sleeps of SLEEP_S: how late the next step starts after the sleep was due."""
        latencies: list[float] = []
        lost = 0
        with (
            running_worker(self.url, self.registry, poll),
            ticking(self.url, tick) if tick else _nothing(),
            psycopg.connect(self.url, autocommit=True) as conn,
        ):
            for i in range(count + WARMUP):
                n = self._n()
                started = self.marks.expect(n)
                if tick:
                    # Else every sleep would start just after a tick and end just after one (0.5 s = 10 ticks).
                    time.sleep(self.rng.uniform(0, tick))
                goal_id = self.goals.submit("bench.timer", {"n": n, "seconds": SLEEP_S}).id
                if not started.wait(SLEEP_S + poll + 10):
                    lost += 1
                    continue
                row = conn.execute(
                    "SELECT result ->> 'slept_until' FROM goalrt.goal_steps WHERE goal_id = %s AND kind = 'sleep'",
                    (goal_id,),
                ).fetchone()
                if row is None or row[0] is None:
                    lost += 1
                    continue
                due = datetime.fromisoformat(row[0]).timestamp()
                if i >= WARMUP:
                    latencies.append((self.marks.at[n][1] - due) * 1000)
        return summary(latencies, lost)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def wake_section(url: str, quick: bool) -> list[dict[str, Any]]:
    event_n = 20 if quick else 200
    fast_n = 40 if quick else 200
    timer_n = 10 if quick else 100
    tick_n = 20 if quick else 100
    series: list[tuple[str, Callable[[WakeBench], dict[str, Any]]]] = [
        ("event, worker poll 1 s (default)", lambda b: b.events(event_n, 1.0, notify=False)),
        ("event, worker poll 50 ms", lambda b: b.events(fast_n, 0.05, notify=False)),
        ("event + NOTIFY by the appender, poll 1 s", lambda b: b.events(fast_n, 1.0, notify=True)),
        ("timer 0.5 s, worker poll 1 s (default)", lambda b: b.timers(timer_n, 1.0, None)),
        ("timer 0.5 s, poll 1 s + wake_due every 50 ms", lambda b: b.timers(tick_n, 1.0, TICK_S)),
    ]
    out = []
    bench = WakeBench(url)
    try:
        for label, run in series:
            began = time.monotonic()
            fig = run(bench) | {"series": label, "seconds": time.monotonic() - began}
            out.append(fig)
            print(
                f"  {label:<46} n={fig['n']:<4} p50 {fig['p50_ms']:8.1f} ms  p99 {fig['p99_ms']:8.1f} ms"
                + (f"  ({fig['lost']} lost)" if fig["lost"] else ""),
                flush=True,
            )
    finally:
        bench.close()
    return out


# == Report ==========================================================================================================


def print_report(doc: dict[str, Any]) -> None:
    from pgbench_support import fmt

    claims = doc["claims"]
    base = claims[0]
    print()
    print(
        f"Claim rate: {RUNNABLE:,} runnable goals (priority 0) claimed {CLAIM_BATCH} at a time by one connection,"
        f" beside N timers + N waiting goals (priority {FILLER_PRIORITY})"
    )
    head = (
        "N (each)",
        "goalrt claims/s",
        "vs 10^3",
        "p50/call ms",
        "raw claims/s",
        "vs 10^3",
        "p50/call ms",
        "goalrt/raw",
        "append p50 ms",
    )
    widths = (10, 16, 8, 12, 13, 8, 12, 11, 14)
    print("  " + "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for row in claims:
        cells = (
            f"{row['timers']:,}",
            fmt(row["goalrt_claims_per_s"], 0),
            fmt(row["goalrt_claims_per_s"] / base["goalrt_claims_per_s"], 2),
            fmt(row["goalrt_call_p50_ms"], 2),
            fmt(row["raw_claims_per_s"], 0),
            fmt(row["raw_claims_per_s"] / base["raw_claims_per_s"], 2),
            fmt(row["raw_call_p50_ms"], 2),
            fmt(row["goalrt_claims_per_s"] / row["raw_claims_per_s"], 2),
            fmt(row["append_p50_ms"], 2),
        )
        print("  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    print(
        "  (append p50: goalrt.append_event of a type no goal waits for, one per transaction; every claim of a"
        " pending goal appends goal.started too)"
    )
    print()
    print("Wake latency: one goal at a time, a goalrt.Worker in this process (concurrency 20)")
    print(f"  {'what':<46} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for s in doc["wakes"]:
        print(
            f"  {s['series']:<46} {s['n']:>4} {fmt(s['p50_ms']):>9} {fmt(s['p99_ms']):>9} {fmt(s['max_ms']):>9}"
            + (f"  ({s['lost']} lost)" if s["lost"] else "")
        )
    print()
    print(f"server: {doc['server']}; run took {doc['seconds']:.0f}s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--url", "--database-url", dest="url", help="server (default: GOALRT_DATABASE_URL, else embedded)")
    p.add_argument("--quick", action="store_true", help="sizes 10^3 and 10^5 only, fewer wake samples (~1.5 min)")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from pgbench_support import scratch_databases, server_info

    from goalrt.db.config import database_url
    from goalrt.db.migrate import upgrade

    began = time.monotonic()
    base_url = database_url(args.url)
    sizes = [10**3, 10**5] if args.quick else [10**3, 10**5, 10**6]
    prefix = f"goalrt_cbench_{secrets.token_hex(4)}"
    doc: dict[str, Any] = {"config": {"quick": args.quick, "sizes": sizes, "runnable": RUNNABLE, "batch": CLAIM_BATCH}}
    with scratch_databases(base_url, [f"{prefix}_claim", f"{prefix}_wake"]) as (claim_url, wake_url):
        upgrade(claim_url)
        upgrade(wake_url)
        info = server_info(claim_url, ("server_version", "shared_buffers", "synchronous_commit", "jit"))
        doc["server"] = ", ".join(f"{k} {v}" for k, v in info.items())
        print(f"coordination bench ({'quick' if args.quick else 'full'}) on {doc['server']}", flush=True)
        print("1. claim rate", flush=True)
        doc["claims"] = claim_section(claim_url, sizes)
        print("2. wake latency", flush=True)
        doc["wakes"] = wake_section(wake_url, args.quick)
    doc["seconds"] = time.monotonic() - began
    print_report(doc)
    if args.json:
        print(json.dumps(doc, default=str))


if __name__ == "__main__":
    main()
