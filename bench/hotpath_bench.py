"""Where a one-step goal's database time and WAL go: each call of the worker's protocol, timed alone.

A scratch database; ``--rounds`` rounds of: submit ``--goals`` goals in one
``submit_goals``, claim them (``claim_goals_v2``), plan one no-op step each
(``plan_goals_v1``), take and give back their start locks (``step_start_v2``,
``step_started_v1``), complete them (``complete_steps_v1``), and position
their events (``tick``): the calls a worker makes, in its batch sizes, from
one connection and without a worker's Python around them. Each call's wall
time (round trip included) is divided by the goals it served; the figure is
the median over the rounds (the first two left out). The WAL they wrote is
taken from ``pg_current_wal_insert_lsn()`` around all the rounds (after a
CHECKPOINT, so full-page images are counted as a steady load pays them
less), and, where ``pg_walinspect`` can be created (PostgreSQL >= 15,
superuser), split by record type.

Run it before and after a change to the SQL with the same arguments: the
figures are the server's work per goal, what ``bench/goals_bench.py``'s
throughput is made of. It prints figures and never passes or fails.

    .venv/bin/python bench/hotpath_bench.py [--database-url URL] [--goals 100] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.pgbench_support import scratch_databases

CALLS = ("submit", "claim", "plan", "start", "unlock", "complete", "tick")


def run_rounds(conn: psycopg.Connection, goals: int, rounds: int) -> dict[str, list[float]]:
    """Run the rounds; return each call's microseconds per goal, per round."""
    times: dict[str, list[float]] = {k: [] for k in CALLS}

    def timed(call: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        start = time.perf_counter()
        rows = conn.execute(query, args).fetchall()  # type: ignore[arg-type]
        times[call].append((time.perf_counter() - start) * 1e6 / goals)
        return rows

    for _ in range(rounds):
        timed("submit", "SELECT id FROM goalrt.submit_goals(%s)", (Jsonb([{"name": "bench.hot"}] * goals),))
        claimed = timed("claim", "SELECT goal_id, epoch FROM goalrt.claim_goals_v2('bench', %s, 30)", (goals,))
        plans = [{"goal_id": g, "epoch": e, "steps": [{"action": "noop", "args": {}}]} for g, e in claimed]
        timed("plan", "SELECT goal_id FROM goalrt.plan_goals_v1('bench', %s, 30)", (Jsonb(plans),))
        ids = [g for g, _ in claimed]
        epochs = [e for _, e in claimed]
        timed("start", "SELECT goal_id FROM goalrt.step_start_v2('bench', %s, %s, %s)", (ids, epochs, [1] * len(ids)))
        timed("unlock", "SELECT goalrt.step_started_v1(g) FROM unnest(%s::bigint[]) AS g", (ids,))
        done = [{"goal_id": g, "epoch": e, "seq": 1, "outcome": "complete", "result": None} for g, e in claimed]
        timed("complete", "SELECT goal_id FROM goalrt.complete_steps_v1('bench', %s, 30)", (Jsonb(done),))
        timed("tick", "SELECT goalrt.tick()")
    return times


def wal_by_record(conn: psycopg.Connection, since: str, goals: int) -> list[tuple[str, float, float, float]]:
    """Return the WAL since ``since`` per record type: (type, records, bytes, full-page bytes) per goal."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    except psycopg.Error:
        return []
    try:
        # (up to what is flushed: pg_walinspect reads no further)
        rows = conn.execute(
            'SELECT "resource_manager/record_type", count, record_size, fpi_size '
            "FROM pg_get_wal_stats(%s, pg_current_wal_flush_lsn(), true) WHERE count > 0 "
            "ORDER BY record_size + fpi_size DESC LIMIT 12",
            (since,),
        ).fetchall()
    except psycopg.Error:
        return []
    return [(str(r[0]), r[1] / goals, float(r[2]) / goals, float(r[3]) / goals) for r in rows]


def main(argv: list[str] | None = None) -> None:
    from goalrt.db.config import database_url
    from goalrt.db.migrate import upgrade

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", help="server to use (default: GOALRT_DATABASE_URL, else the embedded server)")
    p.add_argument("--goals", type=int, default=100, help="goals per call, as a busy worker's batch (default 100)")
    p.add_argument("--rounds", type=int, default=20, help="rounds; each figure is their median (default 20)")
    args = p.parse_args(argv)
    if args.goals < 1 or args.rounds < 3:
        p.error("--goals must be >= 1 and --rounds >= 3")
    base_url = database_url(args.database_url)
    with scratch_databases(base_url, [f"goalrt_hotpath_{uuid.uuid4().hex[:8]}"]) as (url,):
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT goalrt.register_goal_type('bench.hot', '{}')")
            version = conn.execute("SHOW server_version").fetchone()
            conn.execute("CHECKPOINT")
            (since,) = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()  # type: ignore[misc]
            times = run_rounds(conn, args.goals, args.rounds)
            (wal,) = conn.execute(  # type: ignore[misc]
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)", (since,)
            ).fetchone()
            served = args.goals * args.rounds
            by_record = wal_by_record(conn, since, served)
    print(f"PostgreSQL {version[0] if version else '?'}; {args.rounds} rounds of {args.goals} one-step goals")
    print(f"{'call':10s} {'us/goal':>9s}")
    total = 0.0
    for call in CALLS:
        median = statistics.median(times[call][2:])
        total += median
        print(f"{call:10s} {median:9.1f}")
    print(f"{'total':10s} {total:9.1f}  (database time and round trips per goal)")
    print(f"WAL {float(wal) / served:,.0f} B per goal")
    for kind, records, size, fpi in by_record:
        print(f"  {kind:26s} {records:6.2f} records {size:7.0f} B  full pages {fpi:6.0f} B  per goal")


if __name__ == "__main__":
    main()
