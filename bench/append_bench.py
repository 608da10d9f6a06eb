"""Append throughput of goalrt's event log against a plain INSERT, and how far behind a follower runs.

What it measures
----------------
For each case the same load is driven by ``pgbench`` against two targets in one
scratch database, so client overhead is identical on both sides:

* ``raw``    -- a plain ``INSERT`` into ``bench_raw``, a table with the row shape
  of ``goalrt.event_data`` (minus the ``xid`` column) and the same
  ``(stream, id)`` index;
* ``goalrt`` -- ``goalrt.append_event(...)`` / ``goalrt.append_events(jsonb)``.

Cases: one event per transaction at each ``--clients`` count (default 1, 4, 16)
and batches of 100 events per transaction at 1 and 4 clients. Each case runs
raw, goalrt, raw, goalrt (``--rounds`` times interleaved, default 2) and the
table shows the best run of each side (the mean is shown next to it), because a
small machine is noisy. A ``CHECKPOINT`` is issued before every run.

While a goalrt run is going, a follower thread in this process runs goalrt's
own ``EventLog.follow`` (read_events in a loop, with its pacing) -- that call
itself advances the clock; nobody else ticks -- and records, for every event,
the lag between the client's wall clock at receipt and the event's
``recorded_at`` (same machine, same clock). After the run the bench ticks once
more and checks that the follower reached the head. The raw runs have no
follower: its cost is part of what the goalrt figures pay for (pass
``--no-follower`` to see appends alone).

Finally it times an empty ``read_events`` call (nothing new to read, i.e. the
cost of a reader polling an idle log) next to ``SELECT 1``.

The bench prints figures; it never passes or fails. The target is a goalrt/raw
ratio of at least 0.80.

How to run
----------
From the repository root::

    python bench/append_bench.py                 # embedded PostgreSQL 18 (started under ./.goalrt if needed)
    python bench/append_bench.py --quick         # 2 s per run
    GOALRT_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/append_bench.py

The server is taken from ``--database-url``, else ``GOALRT_DATABASE_URL``, else
the embedded server. The bench creates a database ``goalrt_bench_<random>`` on
it, migrates it with ``goalrt.db.migrate.upgrade`` and drops it at the end (the
role must be allowed to create databases). ``--json`` prints the results as
one JSON object at the end (or writes them to ``--out FILE``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pgbench_support import LAT_RE, TPS_RE, TX_RE, find_pgbench, fmt, libpq_env, percentile, server_info
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.db.config import database_url
from goalrt.db.migrate import upgrade
from goalrt.log.bus import FollowPacer
from goalrt.log.eventlog import EventLog

TARGET_RATIO = 0.80
BATCH_SIZE = 100
BATCH_CLIENTS = (1, 4)
EMPTY_READ_SECONDS = 3
SETTLE_WAIT_MS = 120_000  # the final tick waits this long for the clock's lock
FOLLOWER_DRAIN_S = 120.0  # how long the follower may take to reach the head after a run
PAYLOAD = '{"n": 1, "payload": "abcdefghij"}'

RAW_TABLE_DDL = """
CREATE TABLE bench_raw (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream      text        NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX bench_raw_stream_idx ON bench_raw (stream, id);
"""

# -- pgbench scripts -------------------------------------------------------------------------------------------------

SINGLE_RAW = (
    "INSERT INTO bench_raw (stream, type, data, metadata) "
    f"VALUES ('s:' || :client_id, 'bench.single', '{PAYLOAD}', '{{}}');\n"
)
SINGLE_GOALRT = f"SELECT goalrt.append_event('s:' || :client_id, 'bench.single', '{PAYLOAD}', '{{}}');\n"
EMPTY_READ = "SELECT count(*) FROM goalrt.read_events((SELECT head FROM goalrt.clock), 100);\n"
SELECT_ONE = "SELECT 1;\n"


def _batch_event(i: int) -> tuple[str, str, str]:
    return f"b:{i % 10}", "bench.batch", f'{{"n": {i}, "payload": "abcdefghij"}}'


def batch_raw_script(n: int = BATCH_SIZE) -> str:
    rows = ",\n".join(f"('{s}', '{t}', '{d}', '{{}}')" for s, t, d in map(_batch_event, range(n)))
    return f"INSERT INTO bench_raw (stream, type, data, metadata) VALUES\n{rows};\n"


def batch_goalrt_script(n: int = BATCH_SIZE) -> str:
    events = [{"stream": s, "type": t, "data": json.loads(d)} for s, t, d in map(_batch_event, range(n))]
    return f"SELECT count(*) FROM goalrt.append_events('{json.dumps(events)}'::jsonb);\n"


# -- results ---------------------------------------------------------------------------------------------------------


@dataclass
class PgbenchResult:
    tps: float
    latency_ms: float
    transactions: int
    seconds: float


@dataclass
class FollowerStats:
    received: int = 0
    expected: int = 0
    caught_up: bool = False
    drain_ms: float = 0.0
    reads: int = 0
    lags_ms: list[float] = field(default_factory=list)


@dataclass
class GoalrtRunExtras:
    events_appended: int
    ticks: int
    tick_rate: float
    settle_ms: float  # the final tick: waiting for the clock's lock and positioning what was left
    follower: FollowerStats | None


@dataclass
class CaseResult:
    name: str
    clients: int
    events_per_tx: int
    raw: list[PgbenchResult] = field(default_factory=list)
    goalrt: list[PgbenchResult] = field(default_factory=list)
    extras: list[GoalrtRunExtras] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} c={self.clients}"

    def best(self, side: str) -> float:
        return max(r.tps for r in getattr(self, side))

    def mean(self, side: str) -> float:
        return statistics.fmean(r.tps for r in getattr(self, side))

    def ratio(self, how: str = "best") -> float:
        value = self.best if how == "best" else self.mean
        raw = value("raw")
        return value("goalrt") / raw if raw else float("nan")

    def lags(self) -> list[float]:
        return [lag for e in self.extras if e.follower for lag in e.follower.lags_ms]


# -- pgbench -------------------------------------------------------------------------------------------------------


class Pgbench:
    def __init__(self, binary: str, url: str, workdir: Path) -> None:
        self.binary = binary
        self.env = libpq_env(url)
        self.workdir = workdir

    def version(self) -> str:
        return subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()

    def run(self, name: str, script: str, clients: int, seconds: int, transactions: int = 0) -> PgbenchResult:
        """Run ``script`` for ``seconds``, or ``transactions`` times per client if that is given."""
        path = self.workdir / f"{name}.sql"
        path.write_text(script)
        length = ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
        cmd = [self.binary, "-n", *length, "-c", str(clients), "-j", str(min(clients, 4)), "-f", str(path)]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        tps, lat, tx = TPS_RE.search(proc.stdout), LAT_RE.search(proc.stdout), TX_RE.search(proc.stdout)
        if proc.returncode != 0 or not (tps and lat and tx):
            raise RuntimeError(
                f"pgbench failed for {name} (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        done = int(tx.group(1))
        took = done / float(tps.group(1)) if transactions and float(tps.group(1)) else float(seconds)
        return PgbenchResult(float(tps.group(1)), float(lat.group(1)), done, took)


# -- the follower ----------------------------------------------------------------------------------------------------


class Follower(threading.Thread):
    """Reads the log as it grows, the way a subscriber would, and records each event's lag."""

    def __init__(self, url: str, after: int) -> None:
        super().__init__(name="goalrt-bench-follower", daemon=True)
        self.url = url
        self.after = after
        self.start_after = after
        self.stats = FollowerStats()
        self.target: int | None = None  # set by the main thread once appends are over
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                self.ready.set()
                self._loop(conn)
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def _loop(self, conn: psycopg.Connection[Any]) -> None:
        # goalrt's own follower (EventLog.follow), with its pacing and its
        # ticks: what a subscriber really runs. `reads` counts its batches.
        log = EventLog(conn)
        last_batch_at = 0.0
        for event in log.follow(after=self.after, idle_poll=0.05, stop=self.stop):
            now = dt.datetime.now(dt.UTC)
            mono = time.monotonic()
            if mono - last_batch_at > 0.0005:
                self.stats.reads += 1
            last_batch_at = mono
            self.stats.lags_ms.append((now - event.recorded_at).total_seconds() * 1000.0)
            self.stats.received += 1
            self.after = event.pos
            target = self.target
            if target is not None and self.after >= target:
                self.stats.caught_up = True
                return

    def finish(self, head: int) -> FollowerStats:
        """Let the follower read up to ``head`` (within FOLLOWER_DRAIN_S), then return its figures."""
        began = time.monotonic()
        self.target = head
        if self.after >= head:
            self.stats.caught_up = True
            self.stop.set()
        self.join(timeout=FOLLOWER_DRAIN_S)
        self.stop.set()
        self.join(timeout=10.0)
        self.stats.drain_ms = (time.monotonic() - began) * 1000.0
        self.stats.expected = head - self.start_after
        if self.error is not None:
            raise RuntimeError(f"follower failed: {self.error}") from self.error
        return self.stats


class RawFollower(threading.Thread):
    """The raw side's reader: the same reading work, by the naive ``id > last`` cursor.

    It exists so that "with a follower" compares like with like: both sides
    pay for a reader. (Its cursor can skip late-committing rows -- exactly
    the bug goalrt's positions prevent -- which does not matter for a load.)
    """

    def __init__(self, url: str, coalesce: float) -> None:
        super().__init__(name="raw-bench-follower", daemon=True)
        self.url = url
        self.coalesce = coalesce
        self.stop = threading.Event()
        self.received = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute("SELECT coalesce(max(id), 0) FROM bench_raw").fetchone()
                after = int(row[0]) if row else 0
                while not self.stop.is_set():
                    rows = conn.execute(
                        "SELECT id, stream, type, data, metadata, recorded_at FROM bench_raw"
                        " WHERE id > %s ORDER BY id LIMIT 500",
                        (after,),
                    ).fetchall()
                    events = [tuple(r) for r in rows]
                    self.received += len(events)
                    if events:
                        after = events[-1][0]
                    if len(events) < 500:
                        time.sleep(self.coalesce if events else 0.01)
        except BaseException as exc:
            self.error = exc


# -- the bench -------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, url: str, pgbench: Pgbench, seconds: int, rounds: int, follow: bool) -> None:
        self.url = url
        self.pgbench = pgbench
        self.seconds = seconds
        self.rounds = rounds
        self.follow = follow

    def _scalar(self, query: str) -> Any:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
            return row[0] if row else None

    def checkpoint(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        except psycopg.Error:
            pass  # not allowed for this role: runs are just a little noisier

    def settle(self) -> int:
        """Tick until every committed event has a position; return the head.

        A plain ``goalrt.tick()`` gives up after 200 ms when another session
        (the follower) holds the clock's lock and returns the old head, so
        wait for the lock as long as a big batch can take.
        """
        return int(self._scalar(f"SELECT goalrt.tick({SETTLE_WAIT_MS})"))

    def clock(self) -> tuple[int, int]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT head, ticks FROM goalrt.clock").fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

    def run_raw(self, case: CaseResult, script: str) -> None:
        self.checkpoint()
        follower = RawFollower(self.url, FollowPacer().coalesce) if self.follow else None
        if follower:
            follower.start()
        try:
            result = self.pgbench.run(f"raw_{case.name}_{case.clients}", script, case.clients, self.seconds)
        finally:
            if follower:
                follower.stop.set()
                follower.join(10.0)
        if follower and follower.error:
            raise RuntimeError(f"raw follower failed: {follower.error}") from follower.error
        case.raw.append(result)
        line = f"  raw    {case.label:<14} {result.tps:>10.1f} tps  {result.latency_ms:>8.3f} ms"
        if follower:
            line += f"  naive reader got {follower.received} rows"
        print(line, flush=True)

    def run_goalrt(self, case: CaseResult, script: str) -> None:
        self.checkpoint()
        self.settle()
        head0, ticks0 = self.clock()
        follower = Follower(self.url, head0) if self.follow else None
        if follower:
            follower.start()
            follower.ready.wait(10.0)
        began = time.monotonic()
        try:
            result = self.pgbench.run(f"goalrt_{case.name}_{case.clients}", script, case.clients, self.seconds)
        finally:
            elapsed = time.monotonic() - began
            _, ticks1 = self.clock()  # before the final tick: only the follower has ticked
            settle_began = time.monotonic()
            head = self.settle()
            settle_ms = (time.monotonic() - settle_began) * 1000.0
            stats = follower.finish(head) if follower else None
        extras = GoalrtRunExtras(head - head0, ticks1 - ticks0, (ticks1 - ticks0) / elapsed, settle_ms, stats)
        case.goalrt.append(result)
        case.extras.append(extras)
        line = f"  goalrt {case.label:<14} {result.tps:>10.1f} tps  {result.latency_ms:>8.3f} ms"
        appended_expected = result.transactions * case.events_per_tx
        if extras.events_appended != appended_expected:
            line += f"  (positioned {extras.events_appended}, pgbench committed {appended_expected})"
        if stats:
            line += (
                f"  follower p50 {percentile(stats.lags_ms, 50):.1f} ms, max {max(stats.lags_ms, default=0):.1f} ms,"
                f" {stats.received}/{stats.expected} events, {extras.ticks} ticks"
            )
        print(line, flush=True)

    def run_case(self, name: str, clients: int, events_per_tx: int, raw: str, goalrt: str) -> CaseResult:
        case = CaseResult(name, clients, events_per_tx)
        for _ in range(self.rounds):
            self.run_raw(case, raw)
            self.run_goalrt(case, goalrt)
        return case


# -- reporting -------------------------------------------------------------------------------------------------------


def print_tables(cases: list[CaseResult], empty: dict[str, PgbenchResult]) -> None:
    print()
    print("Throughput (best of the runs per side; 'mean' columns use the mean of the runs)")
    header = (
        f"{'case':<14} {'raw tps':>10} {'goalrt tps':>11} {'raw ev/s':>11} {'goalrt ev/s':>12}"
        f" {'ratio':>6} {'ratio(mean)':>12} {'raw lat ms':>11} {'goalrt lat ms':>14}"
    )
    print(header)
    print("-" * len(header))
    for c in cases:
        rb, gb = c.best("raw"), c.best("goalrt")
        rl = min(r.latency_ms for r in c.raw)
        gl = min(r.latency_ms for r in c.goalrt)
        print(
            f"{c.label:<14} {fmt(rb):>10} {fmt(gb):>11} {fmt(rb * c.events_per_tx, 0):>11}"
            f" {fmt(gb * c.events_per_tx, 0):>12} {c.ratio('best'):>6.2f} {c.ratio('mean'):>12.2f}"
            f" {rl:>11.3f} {gl:>14.3f}"
        )

    if any(e.follower for c in cases for e in c.extras):
        print()
        print("Follower during the goalrt runs (all runs of a case pooled; lag = receipt wall clock - recorded_at)")
        header = (
            f"{'case':<14} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'received/expected':>20}"
            f" {'caught up':>10} {'settle ms':>10} {'drain ms':>9} {'ticks/s':>8} {'ev/tick':>8} {'batch/s':>8}"
        )
        print(header)
        print("-" * len(header))
        for c in cases:
            lags = c.lags()
            stats = [e.follower for e in c.extras if e.follower]
            received = sum(s.received for s in stats)
            expected = sum(s.expected for s in stats)
            ticks = sum(e.ticks for e in c.extras)
            seconds = sum(r.seconds for r in c.goalrt)
            appended = sum(e.events_appended for e in c.extras)
            reads = sum(s.reads for s in stats)
            print(
                f"{c.label:<14} {fmt(percentile(lags, 50)):>8} {fmt(percentile(lags, 95)):>8}"
                f" {fmt(percentile(lags, 99)):>8} {fmt(max(lags, default=float('nan'))):>8}"
                f" {f'{received}/{expected}':>20} {'yes' if all(s.caught_up for s in stats) else 'NO':>10}"
                f" {fmt(max(e.settle_ms for e in c.extras)):>10} {fmt(max(s.drain_ms for s in stats)):>9}"
                f" {fmt(ticks / seconds):>8}"
                f" {fmt(appended / ticks if ticks else float('nan')):>8} {fmt(reads / seconds, 0):>8}"
            )

    print()
    for name, r in empty.items():
        print(f"{name}: {fmt(r.tps)} tps, latency {r.latency_ms:.3f} ms (1 client, {r.seconds:.0f} s)")

    print()
    print("Summary")
    for c in cases:
        print(
            f"{c.label}: goalrt {c.best('goalrt') * c.events_per_tx:,.0f} ev/s,"
            f" raw {c.best('raw') * c.events_per_tx:,.0f} ev/s, ratio {c.ratio('best'):.2f}"
        )
    print(f"target: ratio >= {TARGET_RATIO:.2f}")


def results_json(
    server: dict[str, str], config: dict[str, Any], cases: list[CaseResult], empty: dict[str, PgbenchResult]
) -> dict[str, Any]:
    out_cases = []
    for c in cases:
        lags = c.lags()
        out_cases.append(
            {
                "case": c.label,
                "name": c.name,
                "clients": c.clients,
                "events_per_tx": c.events_per_tx,
                "raw": [asdict(r) for r in c.raw],
                "goalrt": [asdict(r) for r in c.goalrt],
                "raw_tps_best": c.best("raw"),
                "goalrt_tps_best": c.best("goalrt"),
                "raw_events_per_s_best": c.best("raw") * c.events_per_tx,
                "goalrt_events_per_s_best": c.best("goalrt") * c.events_per_tx,
                "ratio_best": c.ratio("best"),
                "ratio_mean": c.ratio("mean"),
                "goalrt_runs": [
                    {
                        "events_appended": e.events_appended,
                        "ticks": e.ticks,
                        "tick_rate": e.tick_rate,
                        "settle_ms": e.settle_ms,
                        "follower": None
                        if e.follower is None
                        else {k: v for k, v in asdict(e.follower).items() if k != "lags_ms"},
                    }
                    for e in c.extras
                ],
                "follower_lag_ms": None
                if not lags
                else {
                    "p50": percentile(lags, 50),
                    "p95": percentile(lags, 95),
                    "p99": percentile(lags, 99),
                    "max": max(lags),
                    "n": len(lags),
                },
            }
        )
    return {
        "server": server,
        "config": config,
        "target_ratio": TARGET_RATIO,
        "cases": out_cases,
        "extra": {name: asdict(r) for name, r in empty.items()},
    }


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", help="server to use (default: GOALRT_DATABASE_URL, else the embedded server)")
    p.add_argument("--seconds", type=int, default=8, help="seconds per pgbench run (default 8)")
    p.add_argument("--quick", action="store_true", help="2 seconds per run")
    p.add_argument("--clients", default="1,4,16", help="client counts for single-event appends (default 1,4,16)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved raw/goalrt rounds per case (default 2)")
    p.add_argument("--no-follower", action="store_true", help="do not run the follower during goalrt runs")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    p.add_argument("--out", type=Path, help="write the JSON results to this file (implies --json)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = 2
    try:
        args.client_counts = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        p.error("--clients must be a comma-separated list of integers")
    if not args.client_counts or min(args.client_counts) < 1 or args.seconds < 1 or args.rounds < 1:
        p.error("--clients, --seconds and --rounds must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base_url = database_url(args.database_url)
    scratch = f"goalrt_bench_{secrets.token_hex(4)}"
    url = make_conninfo(base_url, dbname=scratch)

    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(RAW_TABLE_DDL)

        server = server_info(url, ("server_version", "fsync", "synchronous_commit", "wal_level", "shared_buffers"))
        with tempfile.TemporaryDirectory(prefix="goalrt-bench-") as tmp:
            pgbench = Pgbench(find_pgbench(), url, Path(tmp))
            print(
                f"server: PostgreSQL {server['server_version']}; fsync={server['fsync']},"
                f" synchronous_commit={server['synchronous_commit']}, wal_level={server['wal_level']},"
                f" shared_buffers={server['shared_buffers']}"
            )
            print(f"target: {conninfo_to_dict(base_url).get('host') or 'localhost'}, scratch database {scratch}")
            print(f"load: {pgbench.version()} ({pgbench.binary}), simple protocol, -n -T {args.seconds}")
            print(
                f"runs: raw then goalrt, {args.rounds} interleaved round(s) per case, CHECKPOINT before each run;"
                f" follower {'off' if args.no_follower else 'on'} during goalrt runs"
            )
            print(flush=True)

            bench = Bench(url, pgbench, args.seconds, args.rounds, follow=not args.no_follower)
            cases: list[CaseResult] = []
            for clients in args.client_counts:
                cases.append(bench.run_case("single", clients, 1, SINGLE_RAW, SINGLE_GOALRT))
            batch_raw, batch_goalrt = batch_raw_script(), batch_goalrt_script()
            for clients in BATCH_CLIENTS:
                cases.append(bench.run_case(f"batch{BATCH_SIZE}", clients, BATCH_SIZE, batch_raw, batch_goalrt))

            bench.settle()  # the empty read must find nothing to position
            empty = {
                "empty read_events": pgbench.run("empty_read", EMPTY_READ, 1, EMPTY_READ_SECONDS),
                "SELECT 1 (round-trip baseline)": pgbench.run("select_one", SELECT_ONE, 1, EMPTY_READ_SECONDS),
            }
            print_tables(cases, empty)

        if args.json or args.out:
            config = {"seconds": args.seconds, "rounds": args.rounds, "follower": not args.no_follower}
            doc = json.dumps(results_json(server, config, cases, empty), indent=2)
            if args.out:
                args.out.write_text(doc + "\n")
                print(f"\nresults written to {args.out}")
            else:
                print(doc)
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))


if __name__ == "__main__":
    main()
