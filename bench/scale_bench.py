"""Flat with growth: claim rate, append rate and ``state get --at`` as the backlog and the log grow.

What it measures
----------------
One scratch database (``goalrt_scale_<random>``, migrated with
``goalrt.db.migrate.upgrade``, dropped at the end) grows in steps. Step *i*
brings it to ``--goals[i]`` pending goals and ``--events[i]`` positioned
events, then measures, with the ratio of each figure to the first step's:

* **claim rate**: one worker process (``goalrt.Worker``, ``--concurrency``,
  goals_bench's worker role and one-step no-op goal type ``bench.noop``)
  drains ``--drain`` goals off the top of the backlog. The rate comes from the
  goals' own ``finished_at``: the goals finished from the tenth of the drain to
  its last, over the time between them (the worker's start-up is left out).
  The worker is stopped once the bench has seen that many finish; the backlog
  is topped up to its size again before each of ``--rounds`` rounds (each
  after VACUUM (ANALYZE) and CHECKPOINT); the figure is the best round.
* **append rate**: ``pgbench`` (1 client) appending one event per transaction
  with ``goalrt.append_event`` (2,000 transactions) and 100 per transaction
  with ``goalrt.append_events`` (100 transactions), append_bench's scripts,
  each after a CHECKPOINT, best of ``--rounds``; then one tick positions the
  batch run's 10,000 events (timed: "tick ev/s"). A fixed count rather than a
  fixed time, so that the runs add the same few events at every size (they
  count towards the next step's log).
* **state get --at POS**: the client call behind ``goalrt state get PATH
  --at POS`` (``State.get(path, at=pos)``: a tick, then ``goalrt.state_at(pos,
  path)``), ``--reads`` times, each at a random path and at the last position
  before a snapshot boundary (``k * snapshot_every - 1``) of a window full of
  state changes: the most a read has to fold after its snapshot, so the
  worst case at that interval. The mean number of state changes folded per
  read is printed beside it. The snapshots due are taken first (the catch-up
  is timed and printed, as a reader would otherwise pay for it once).

The backlog and the log are built with goalrt's own functions, set-based and
server-side, never by writing its tables directly:

* goals: ``goalrt.submit_goals`` with 10,000 goals per call (the array built by
  ``jsonb_agg`` over ``generate_series``), a tick after each call;
* events: in chunks of 20,000: a block of 2 x snapshot_every state changes
  (``goalrt.change_state`` in a server-side loop, state_bench's build: each
  change set sets one and increments or deletes two of 10,000 paths), then
  generic events (``goalrt.append_events`` with 10,000 events per call, the
  row shape of append_bench's), then one tick. With the default interval the
  log is a tenth state changes, and every block holds a full window of them.
  The goals' own events (one per submit, a few per drained goal) and the
  append runs' events count towards the log's size too.

At the default sizes the log grows to 10^4, 10^5, 10^6 and 10^7 events while
the backlog grows to 10^3, 10^4, 10^5 and 10^6 goals. The target: claim and
append rates within 20% of the smallest size's, and ``state get --at`` bounded
by the snapshot interval (flat) up to 10^7 events.

The bench prints figures; it never passes or fails. ``--quick`` (10^3 and 10^4
goals; 10^4 and 10^5 events; 50 reads) takes under a minute. The full sizes
were not run when the script was written: at the build rates ``--quick``
showed on a busy 2-CPU machine (6,000-7,000 goals/s submitted, 11,000-19,000
events/s appended and positioned, 5-10 ms per snapshot caught up) they take
roughly 20 minutes, nearly all of it building the 10^7-event log, and about
6 GB of disk (the database size is printed per step).

How to run
----------
From the repository root::

    python bench/scale_bench.py --quick         # embedded PostgreSQL 18 (started under ./.goalrt if needed)
    python bench/scale_bench.py                 # the full sizes: long, see above
    python bench/scale_bench.py --goals 1000,100000 --events 10000,1000000 --json
    GOALRT_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/scale_bench.py --quick

The server is taken from ``--url``, else ``GOALRT_DATABASE_URL``, else the
embedded server (the role must be allowed to create databases and own the
schema it migrates: ``goalrt.tick`` positions events for the owner only).
``--json`` prints the results as one JSON object at the end (or writes them to
``--out FILE``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from append_bench import BATCH_SIZE, SINGLE_GOALRT, Pgbench, batch_goalrt_script
from goals_bench import NOOP, System, cleanup, make_registry, stop_all
from pgbench_support import emit_results, find_pgbench, fmt, percentile, scratch_databases, server_info
from psycopg.conninfo import conninfo_to_dict
from state_bench import BUILD_SQL, PATHS, TICK_WAIT_MS, fmt_bytes, timed

from goalrt.db.config import database_url
from goalrt.db.connect import asyncpg_dsn
from goalrt.db.migrate import upgrade
from goalrt.goals.goals import Goals
from goalrt.state import snapshots
from goalrt.state.state import State

GOALS = (10**3, 10**4, 10**5, 10**6)
EVENTS = (10**4, 10**5, 10**6, 10**7)
QUICK_GOALS = (10**3, 10**4)
QUICK_EVENTS = (10**4, 10**5)
SUBMIT_CHUNK = 10_000  # goals per goalrt.submit_goals call
LOG_CHUNK = 20_000  # events per build round (state block + generic events), then one tick
APPEND_CHUNK = 10_000  # events per goalrt.append_events call while building
SINGLE_TX = 2_000  # transactions of one goalrt.append_event per append run
BATCH_TX = 100  # transactions of BATCH_SIZE events (goalrt.append_events) per append run
STATE_STREAM = "bench"  # state_bench's build writes its change sets to this stream
WARMUP_READS = 5
DRAIN_TIMEOUT_S = 300.0
TARGET_SPREAD = 0.20

SUBMIT_SQL = (
    "SELECT count(*) FROM goalrt.submit_goals("
    "(SELECT jsonb_agg(jsonb_build_object('name', %s::text)) FROM generate_series(1, %s::integer)))"
)
APPEND_SQL = (
    "SELECT count(*) FROM goalrt.append_events((SELECT jsonb_agg(jsonb_build_object("
    "'stream', 'b:' || (g %% 10), 'type', 'bench.batch', 'data', jsonb_build_object('n', g, 'payload', 'abcdefghij'))"
    " ORDER BY g) FROM generate_series(%s::bigint, %s::bigint) AS g))"
)
# The windows of the log with the most state changes, and how many they hold: window w is the positions after the
# snapshot at w * every (which holds that position itself) up to the last before the next one, w * every + every - 1.
WINDOWS_SQL = """
SELECT w, n FROM (
    SELECT o.pos / %(every)s AS w, count(*) AS n
      FROM goalrt.event_data e JOIN goalrt.event_order o ON o.event_id = e.id
     WHERE e.stream = %(stream)s AND e.type = 'state.changed' AND o.pos %% %(every)s <> 0
     GROUP BY 1) AS x
 WHERE (w + 1) * %(every)s - 1 <= %(head)s
 ORDER BY n DESC, random()
 LIMIT %(limit)s
"""
VACUUM_SQL = [
    "VACUUM (ANALYZE) goalrt.goals",
    "VACUUM (ANALYZE) goalrt.goal_steps",
    "VACUUM (ANALYZE) goalrt.event_data",
    "VACUUM (ANALYZE) goalrt.event_order",
    "VACUUM (ANALYZE) goalrt.snapshots",
    "VACUUM (ANALYZE) goalrt.snapshot_entries",
]


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def tick(conn: psycopg.Connection[Any]) -> int:
    return int(scalar(conn, "SELECT goalrt.tick(%s)", (TICK_WAIT_MS,)))


# -- growing the backlog and the log ---------------------------------------------------------------------------------


def grow_backlog(url: str, target: int) -> tuple[int, float]:
    """Submit goals until ``target`` are pending; return how many were submitted and the seconds it took."""
    submitted = 0
    with connect(url) as conn, timed() as elapsed:
        pending = int(scalar(conn, "SELECT count(*) FROM goalrt.goals WHERE status = 'pending'"))
        while pending < target:
            k = min(SUBMIT_CHUNK, target - pending)
            conn.execute(SUBMIT_SQL, (NOOP, k))
            tick(conn)
            pending += k
            submitted += k
    return submitted, elapsed()


def grow_log(url: str, target: int, every: int) -> tuple[int, float]:
    """Append state-change blocks and generic events until the head is ``target``; return (events, seconds)."""
    with connect(url) as conn, timed() as elapsed:
        head = start = tick(conn)
        next_report = time.perf_counter() + 30
        while head < target:
            n = min(LOG_CHUNK, target - head)
            changes = min(n, 2 * every)
            seed = ((head // LOG_CHUNK) * 0.6180339887) % 1.0
            conn.execute(BUILD_SQL.format(seed=seed, first=head + 1, last=head + changes, paths=PATHS).encode())
            for first in range(head + changes + 1, head + n + 1, APPEND_CHUNK):
                conn.execute(APPEND_SQL, (first, min(first + APPEND_CHUNK, head + n + 1) - 1))
            head = tick(conn)
            if time.perf_counter() > next_report and head < target:
                print(f"    log: {head:,}/{target:,} events ({(head - start) / elapsed():,.0f}/s)", flush=True)
                next_report = time.perf_counter() + 30
    return head - start, elapsed()


def catch_up(url: str) -> tuple[int, float, float]:
    """Take the snapshots due, then VACUUM (ANALYZE); return (snapshots taken, seconds, vacuum seconds)."""
    with State.connect(url) as st, timed() as elapsed:
        taken = snapshots.take_due(st)
    with connect(url) as conn, timed() as vacuumed:
        for stmt in VACUUM_SQL:
            conn.execute(stmt)
    return taken, elapsed(), vacuumed()


# -- the figures -----------------------------------------------------------------------------------------------------


@dataclass
class Step:
    goals: int  # pending goals when the claims began
    events: int  # the log's head when the reads began
    build: dict[str, float] = field(default_factory=dict)
    claims: list[float] = field(default_factory=list)  # goals/s per round
    single: list[float] = field(default_factory=list)  # events/s, one per transaction
    batch: list[float] = field(default_factory=list)  # events/s, 100 per transaction
    tick_rates: list[float] = field(default_factory=list)  # events positioned per second after an append run
    reads_ms: list[float] = field(default_factory=list)
    folded: float = 0.0  # state changes folded per read, mean
    db_bytes: int = 0

    def figures(self) -> dict[str, float]:
        """Each figure of the step (best round; reads by their p50)."""
        return {
            "claim": max(self.claims),
            "single": max(self.single),
            "batch": max(self.batch),
            "tick": max(self.tick_rates),
            "read_p50": percentile(self.reads_ms, 50),
            "read_p99": percentile(self.reads_ms, 99),
        }


def claim_round(side: System, drain: int) -> float:
    """Start one worker on the backlog; return the goals/s of the drain's last nine tenths."""
    side.vacuum()
    procs = side.workers(1)
    with cleanup(procs), connect(side.url) as conn:
        began = scalar(conn, "SELECT clock_timestamp()")
        done = "SELECT count(*) FROM goalrt.goals WHERE status = 'complete' AND finished_at >= %s"
        for p in procs:
            p.go()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while int(scalar(conn, done, (began,))) < drain:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not finish {drain:,} goals in {DRAIN_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        stop_all(procs)
        times: list[dt.datetime] = [
            r[0]
            for r in conn.execute(
                "SELECT finished_at FROM goalrt.goals WHERE status = 'complete' AND finished_at >= %s"
                " ORDER BY finished_at LIMIT %s",
                (began, drain),
            )
        ]
    first = drain // 10
    seconds = (times[-1] - times[first]).total_seconds()
    return (drain - 1 - first) / seconds if seconds > 0 else float("nan")


def append_round(url: str, pgbench: Pgbench, step: Step) -> None:
    """One run of each append case (1 client), then the tick that positions what it appended (timed for batches)."""
    for name, script, transactions, per_tx, out in (
        ("single", SINGLE_GOALRT, SINGLE_TX, 1, step.single),
        ("batch", batch_goalrt_script(), BATCH_TX, BATCH_SIZE, step.batch),
    ):
        with connect(url) as conn:
            tick(conn)
            with contextlib.suppress(psycopg.Error):  # not allowed for this role: runs are a little noisier
                conn.execute("CHECKPOINT")
            result = pgbench.run(f"append_{name}", script, 1, 0, transactions=transactions)
            head = int(scalar(conn, "SELECT head FROM goalrt.clock"))
            with timed() as ticking:
                positioned = tick(conn) - head
        out.append(result.tps * per_tx)
        if name == "batch":
            step.tick_rates.append(positioned / ticking())


def read_windows(url: str, every: int, head: int, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` windows with the most state changes there are: (their last position, the changes to fold)."""
    with connect(url) as conn:
        rows = conn.execute(WINDOWS_SQL, {"every": every, "stream": STATE_STREAM, "head": head, "limit": count})
        windows = [((int(w) + 1) * every - 1, int(n)) for w, n in rows]
    return [(pos, n) for pos, n in windows if n == windows[0][1]]


def time_reads(url: str, every: int, count: int, rng: random.Random) -> tuple[list[float], float]:
    """``State.get(path, at=pos)`` ``count`` times at the worst windows; return the times (ms) and the mean fold."""
    with State.connect(url) as st:
        head = st.tick()
        windows = read_windows(url, every, head, count)
        if not windows:
            raise RuntimeError("no state changes in the log to read")
        times, folded = [], []
        for i in range(count + WARMUP_READS):
            pos, n = rng.choice(windows)
            path = f"p.{rng.randrange(PATHS)}"
            began = time.perf_counter()
            st.get(path, at=pos)
            if i >= WARMUP_READS:
                times.append((time.perf_counter() - began) * 1000.0)
                folded.append(n)
    return times, statistics.fmean(folded)


def db_size(url: str) -> int:
    with connect(url) as conn:
        return int(scalar(conn, "SELECT pg_database_size(current_database())"))


def run_step(
    url: str, side: System, pgbench: Pgbench, args: argparse.Namespace, goals: int, events: int, rng: random.Random
) -> Step:
    print(f"\nstep: {goals:,} pending goals, {events:,} events", flush=True)
    submitted, submit_s = grow_backlog(url, goals)
    built, build_s = grow_log(url, events, args.every)
    taken, catchup_s, vacuum_s = catch_up(url)
    with connect(url) as conn:
        head = tick(conn)
    step = Step(goals, head)
    step.build = {
        "submitted": submitted,
        "submit_s": submit_s,
        "built": built,
        "build_s": build_s,
        "snapshots_taken": taken,
        "catchup_s": catchup_s,
        "vacuum_s": vacuum_s,
    }
    print(
        f"  built: {submitted:,} goals submitted in {submit_s:.1f} s, {built:,} events in {build_s:.1f} s;"
        f" {taken:,} snapshots caught up in {catchup_s:.1f} s, VACUUM {vacuum_s:.1f} s",
        flush=True,
    )
    step.reads_ms, step.folded = time_reads(url, args.every, args.reads, rng)
    print(
        f"  state get --at: p50 {percentile(step.reads_ms, 50):.2f} ms, p99 {percentile(step.reads_ms, 99):.2f} ms"
        f" ({args.reads} reads, {step.folded:,.0f} state changes folded per read, head {head:,})",
        flush=True,
    )
    for _ in range(args.rounds):
        grow_backlog(url, goals)
        step.claims.append(claim_round(side, args.drain))
        append_round(url, pgbench, step)
        print(
            f"  claim {step.claims[-1]:,.0f} goals/s; append {step.single[-1]:,.0f} ev/s (1 per tx),"
            f" {step.batch[-1]:,.0f} ev/s (100 per tx); tick {step.tick_rates[-1]:,.0f} ev/s",
            flush=True,
        )
    step.db_bytes = db_size(url)
    return step


# -- reporting -------------------------------------------------------------------------------------------------------


def print_report(steps: list[Step], args: argparse.Namespace) -> None:
    base = steps[0].figures()
    print()
    print(
        f"Flat with growth: each figure (best of {args.rounds} rounds; reads: {args.reads} per step) and its ratio to"
        f" the first step's (target: within {TARGET_SPREAD:.0%})"
    )
    header = (
        f"{'backlog':>9} {'events':>11} {'claim/s':>8} {'ratio':>6} {'append/s':>9} {'ratio':>6}"
        f" {'batch ev/s':>11} {'ratio':>6} {'tick ev/s':>10} {'ratio':>6} {'at p50 ms':>10} {'ratio':>6}"
        f" {'at p99 ms':>10} {'folded':>7} {'db size':>10}"
    )
    print(header)
    print("-" * len(header))
    for s in steps:
        f = s.figures()

        def r(key: str, f: dict[str, float] = f) -> str:
            return f"{f[key] / base[key]:>5.2f}x" if base[key] else "     -"

        print(
            f"{s.goals:>9,} {s.events:>11,} {fmt(f['claim'], 0):>8} {r('claim')} {fmt(f['single'], 0):>9} {r('single')}"
            f" {fmt(f['batch'], 0):>11} {r('batch')} {fmt(f['tick'], 0):>10} {r('tick')}"
            f" {fmt(f['read_p50'], 2):>10} {r('read_p50')} {fmt(f['read_p99'], 2):>10} {s.folded:>7,.0f}"
            f" {fmt_bytes(s.db_bytes):>10}"
        )
    print(
        f"claim: goals/s of one worker process (concurrency {args.concurrency}) draining {args.drain:,} goals off the"
        f" backlog; append: {SINGLE_TX:,} x goalrt.append_event, 1 client; batch: {BATCH_TX} x goalrt.append_events"
        f" of {BATCH_SIZE}; tick: positioning that batch run's events; at: State.get(path, at=pos) at the end of a"
        f" window of {args.every:,} positions after a snapshot (folded: the state changes in it)"
    )


def results_json(steps: list[Step], args: argparse.Namespace, server: dict[str, str]) -> dict[str, Any]:
    base = steps[0].figures()
    return {
        "server": server,
        "config": {
            k: getattr(args, k)
            for k in ("goal_sizes", "event_sizes", "drain", "rounds", "concurrency", "reads", "every")
        },
        "steps": [
            asdict(s)
            | {"figures": s.figures(), "ratios": {k: v / base[k] if base[k] else None for k, v in s.figures().items()}}
            for s in steps
        ],
    }


# -- main ------------------------------------------------------------------------------------------------------------


def sizes(text: str | None, default: tuple[int, ...]) -> list[int]:
    return list(default) if text is None else [int(x) for x in text.split(",")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", "--database-url", dest="url", help="server (default: GOALRT_DATABASE_URL, else embedded)")
    p.add_argument("--quick", action="store_true", help="small sizes and fewer reads (under a minute)")
    p.add_argument("--goals", help="pending goals per step, comma-separated (default 10^3..10^6; --quick 10^3,10^4)")
    p.add_argument("--events", help="events per step, as many as --goals (default 10^4..10^7; --quick 10^4,10^5)")
    p.add_argument("--drain", type=int, default=500, help="goals one worker drains per claim round (default 500)")
    p.add_argument("--rounds", type=int, default=3, help="claim and append rounds per step; the best counts (3)")
    p.add_argument("--concurrency", type=int, default=100, help="the worker's concurrency (default 100)")
    p.add_argument("--reads", type=int, help="state get --at reads per step (default 200; --quick 50)")
    p.add_argument("--snapshot-every", type=int, help="the snapshot interval to set (default: the database's, 1000)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    p.add_argument("--out", type=Path, help="write the JSON results to this file (implies --json)")
    args = p.parse_args(argv)
    try:
        args.goal_sizes = sizes(args.goals, QUICK_GOALS if args.quick else GOALS)
        args.event_sizes = sizes(args.events, QUICK_EVENTS if args.quick else EVENTS)
    except ValueError:
        p.error("--goals and --events are comma-separated lists of integers")
    args.reads = args.reads or (50 if args.quick else 200)
    if len(args.goal_sizes) != len(args.event_sizes):
        p.error("--goals and --events need as many sizes each: one step per pair")
    args.steps = list(zip(args.goal_sizes, args.event_sizes, strict=True))
    for name, values in (("--goals", args.goal_sizes), ("--events", args.event_sizes)):
        if values != sorted(values) or min(values) < 1:
            p.error(f"{name} sizes must be positive and increasing")
    if min(args.drain, args.rounds, args.concurrency, args.reads) < 1:
        p.error("--drain, --rounds, --concurrency and --reads must be positive")
    if args.drain > args.goal_sizes[0]:
        p.error(f"--drain ({args.drain:,}) must not exceed the smallest backlog ({args.goal_sizes[0]:,})")
    if args.snapshot_every is not None and args.snapshot_every < 1:
        p.error("--snapshot-every must be positive (the reads need snapshots)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.monotonic()
    base_url = database_url(args.url)
    name = f"goalrt_scale_{secrets.token_hex(4)}"
    rng = random.Random(7)
    with scratch_databases(base_url, [name]) as (url,), tempfile.TemporaryDirectory(prefix="goalrt-scale-") as tmp:
        upgrade(url)
        with Goals.connect(url, registry=make_registry()) as goals:
            goals.register()
        with State.connect(url) as st:
            if args.snapshot_every is not None:
                snapshots.set_interval(st, args.snapshot_every)
            args.every = snapshots.interval(st)
        server = server_info(url, ("server_version", "fsync", "synchronous_commit", "shared_buffers"))
        pgbench = Pgbench(find_pgbench(), url, Path(tmp))
        print(
            f"server: PostgreSQL {server['server_version']}; fsync={server['fsync']},"
            f" synchronous_commit={server['synchronous_commit']}, shared_buffers={server['shared_buffers']}"
        )
        print(f"target: {conninfo_to_dict(base_url).get('host') or 'localhost'}, scratch database {name}")
        print(
            f"steps: {', '.join(f'{g:,} goals / {e:,} events' for g, e in args.steps)};"
            f" snapshot interval {args.every:,}",
            flush=True,
        )
        side = System(
            "goalrt",
            sys.executable,
            url,
            asyncpg_dsn(url),
            "",
            "",
            ["VACUUM (ANALYZE) goalrt.goals", "VACUUM (ANALYZE) goalrt.goal_steps"],
            Path(tmp),
            settle_sql=f"SELECT goalrt.tick({TICK_WAIT_MS})",
            worker_setting={"concurrency": args.concurrency},
        )
        steps = [run_step(url, side, pgbench, args, g, e, rng) for g, e in args.steps]
    print_report(steps, args)
    print(f"\ntotal: {time.monotonic() - began:,.0f} s")
    if args.json or args.out:
        emit_results(results_json(steps, args, server), args.out)


if __name__ == "__main__":
    main()
