"""State: write throughput against a plain upsert, the cost of reading the past, replay and snapshot size.

What it measures
----------------
1. **Writes.** ``pgbench`` drives ``goalrt.change_state`` and a raw baseline in
   one scratch database, interleaved (raw, goalrt, raw, goalrt, ... for
   ``--rounds`` rounds), so client overhead is the same on both sides. The raw
   side is the honest equivalent of a change set without goalrt's checks and
   locking: one statement that upserts every path into ``bench_state (path
   text primary key, value jsonb, version bigint)`` with ``INSERT ... ON
   CONFLICT (path) DO UPDATE SET value = ..., version = t.version + 1`` and
   inserts the change JSON as one row into ``bench_log`` (the row shape of
   ``goalrt.event_data``), in the same transaction. Both sides build the change
   JSON with the same expression. Both state tables start with the same 10,000
   paths; before every run both are vacuumed and a CHECKPOINT is issued.
   Cases: (a) one path set, 1 client; (b) one random path of 10,000 set,
   4 clients; (c) one hot path incremented by 4 clients; (d) 100 paths per
   change set, 1 client. Latency percentiles come from pgbench's
   per-transaction logs (all runs of a side pooled); tps is the best run.
   If change_state's final UPDATE is planned as a scan of all of state_data
   (it was, before change_state ran with enable_seqscan off), the bench
   prints that plan after the table.

2. **state_at as the log grows.** A log of state.changed events (each change
   set sets one and increments two of 10,000 paths, every 50th deletes one) is
   built to 10^4, 10^5 and 10^6 events (``--quick``: 10^5) by a server-side
   loop over ``goalrt.change_state``, 10,000 per transaction, each followed by
   ``goalrt.tick()`` (the build itself is not what is measured). At each size
   the bench calls ``goalrt.auto_snapshot()`` once (the snapshot catch-up,
   timed and printed, so the reads do not pay for it) and VACUUMs the
   snapshot tables (the catch-up leaves a dead row per closed entry), then
   times ``--reads`` calls each of ``SELECT count(*) FROM
   goalrt.state_at(<random pos>)`` (the whole state) and
   ``goalrt.state_at(<random pos>, 'p.<random n>')`` (one path), with the
   default snapshot_every (1000). The same reads run against a second
   database built identically with ``snapshot_every = 0`` (no snapshots: every
   read folds the log from position 0) at 10^4 and 10^5.

3. **Replay** at the largest size: ``goalrt.state.replay.verify()`` (events/s and its
   verdict) and ``SELECT count(*) FROM goalrt.state_fold(head, NULL, false)``.

4. **Snapshot size** at the largest size: ``goalrt.snapshot_entries`` (rows,
   pg_total_relation_size) against a full copy of the state per snapshot.
   Then 1,000 more change sets are appended and the one automatic snapshot
   they make due is timed: what a reader pays at each snapshot boundary once
   the catch-up is done.

``--plans`` also prints, through auto_explain (superuser only), the plans of
the statements inside one whole-state and one one-path state_at per size and
of that last auto_snapshot. The plan of change_state's final UPDATE is
printed (superuser only) whenever it scans all of state_data.

The bench prints figures; it never passes or fails. The full run takes about
15 minutes on a 2-CPU machine (most of it the 10^6 build and its snapshot
catch-up); ``--quick`` about 4.

How to run
----------
From the repository root::

    python bench/state_bench.py                 # embedded PostgreSQL 18 (started under ./.goalrt if needed)
    python bench/state_bench.py --quick         # 2 s per pgbench run, logs up to 10^5 events
    GOALRT_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/state_bench.py --quick
    python bench/state_bench.py --quick --plans  # and show the query plans behind the figures

The server is taken from ``--database-url``, else ``GOALRT_DATABASE_URL``, else
the embedded server. The bench creates databases ``goalrt_sbench_<random>_*``
on it, migrates them with ``goalrt.db.migrate.upgrade`` and drops them at the end
(the role must be allowed to create databases). ``--json`` prints the results
as one JSON object at the end (or writes them to ``--out FILE``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pgbench_support import (
    TPS_RE,
    TX_RE,
    emit_results,
    find_pgbench,
    fmt,
    libpq_env,
    percentile,
    scratch_databases,
    server_info,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from goalrt.db.migrate import upgrade
from goalrt.state.replay import verify
from goalrt.state.state import State

PATHS = 10_000  # p.0 .. p.9999
BATCH_PATHS = 100  # paths per change set in case (d)
BUILD_CHUNK = 10_000  # change sets per build transaction (then one tick)
SIZES = (10**4, 10**5, 10**6)
QUICK_SIZES = (10**4, 10**5)
OFF_MAX = 10**5  # sizes up to this are also measured with snapshots off
WARMUP_READS = 5
TICK_WAIT_MS = 60_000

RAW_TABLES_DDL = """
CREATE TABLE bench_state (
    path    text PRIMARY KEY,
    value   jsonb,
    version bigint NOT NULL
);
CREATE TABLE bench_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream      text        NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

# -- pgbench scripts -------------------------------------------------------------------------------------------------
#
# Each case is a pgbench preamble (\set lines) and one SQL expression that
# builds the change JSON; both sides use them verbatim.


@dataclass(frozen=True)
class WriteCase:
    name: str
    title: str
    clients: int
    paths_per_tx: int
    preamble: str
    changes: str  # SQL expression: the change set as jsonb
    inc: bool  # the raw upsert adds instead of replacing

    def goalrt_script(self) -> str:
        return f"{self.preamble}SELECT count(*) FROM goalrt.change_state({self.changes}, 'bench');\n"

    def raw_script(self) -> str:
        new_value = (
            "to_jsonb(coalesce(t.value::numeric, 0) + EXCLUDED.value::numeric)" if self.inc else "EXCLUDED.value"
        )
        source = "x -> 'by'" if self.inc else "x -> 'value'"
        return (
            f"{self.preamble}"
            f"WITH c AS (SELECT {self.changes} AS changes),\n"
            "logged AS (INSERT INTO bench_log (stream, type, data)\n"
            "           SELECT 'bench', 'state.changed', jsonb_build_object('changes', c.changes) FROM c),\n"
            "up AS (INSERT INTO bench_state AS t (path, value, version)\n"
            f"       SELECT x ->> 'path', {source}, 1 FROM c, jsonb_array_elements(c.changes) AS x\n"
            f"       ON CONFLICT (path) DO UPDATE SET value = {new_value}, version = t.version + 1\n"
            "       RETURNING t.version)\n"
            "SELECT count(*) FROM up;\n"
        )


def one_change(op: str, path: str, arg: str) -> str:
    """A one-change set as a SQL expression: set takes a value, inc takes by."""
    key = "by" if op == "inc" else "value"
    return f"jsonb_build_array(jsonb_build_object('op', '{op}', 'path', {path}, '{key}', {arg}))"


WRITE_CASES = (
    WriteCase(
        "a_single",
        "(a) one path set",
        1,
        1,
        "\\set r random(1, 1000000)\n",
        one_change("set", "'w.single'", ":r"),
        inc=False,
    ),
    WriteCase(
        "b_random",
        f"(b) random path of {PATHS:,}",
        4,
        1,
        f"\\set p random(0, {PATHS - 1})\n\\set r random(1, 1000000)\n",
        one_change("set", "'p.' || :p", ":r"),
        inc=False,
    ),
    WriteCase(
        "c_hot_inc",
        "(c) hot path inc",
        4,
        1,
        "",
        one_change("inc", "'w.hot'", "1"),
        inc=True,
    ),
    WriteCase(
        "d_batch100",
        f"(d) {BATCH_PATHS} paths per set",
        1,
        BATCH_PATHS,
        f"\\set k random(0, {PATHS - 1})\n\\set r random(1, 1000000)\n",
        "(SELECT jsonb_agg(jsonb_build_object('op', 'set', 'path', 'p.' || ((:k + g) % "
        f"{PATHS}), 'value', :r) ORDER BY g) FROM generate_series(0, {BATCH_PATHS - 1}) AS g)",
        inc=False,
    ),
)


# -- small helpers ---------------------------------------------------------------------------------------------------


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1024
    return f"{n:,.1f} GB"


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as elapsed: ...`` -- elapsed() is the seconds since the block began (frozen at its end)."""
    began = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - began
    end.append(time.perf_counter())


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def scalar(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


# -- pgbench -------------------------------------------------------------------------------------------------------


@dataclass
class PgbenchRun:
    tps: float
    transactions: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "tps": self.tps,
            "transactions": self.transactions,
            "seconds": self.seconds,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
        }


class Pgbench:
    def __init__(self, binary: str, url: str, workdir: Path) -> None:
        self.binary = binary
        self.env = libpq_env(url)
        self.workdir = workdir
        self.runs = 0

    def version(self) -> str:
        return subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()

    def run(self, name: str, script: str, clients: int, seconds: int, options: str | None = None) -> PgbenchRun:
        """Run ``script`` for ``seconds``; per-transaction latencies come from pgbench's ``--log``."""
        self.runs += 1
        rundir = self.workdir / f"{self.runs:03d}_{name}"
        rundir.mkdir()
        path = rundir / "script.sql"
        path.write_text(script)
        cmd = [self.binary, "-n", "-T", str(seconds), "-c", str(clients), "-j", str(min(clients, 4))]
        cmd += ["-f", str(path), "-l", f"--log-prefix={rundir / 'tx'}"]
        env = dict(self.env)
        if options:
            env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {options}".strip()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        tps, tx = TPS_RE.search(proc.stdout), TX_RE.search(proc.stdout)
        if proc.returncode != 0 or not (tps and tx):
            raise RuntimeError(
                f"pgbench failed for {name} (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        latencies: list[float] = []
        for log in rundir.glob("tx.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():  # "failed"/"skipped" transactions have no time
                    latencies.append(int(fields[2]) / 1000.0)
        shutil.rmtree(rundir, ignore_errors=True)
        return PgbenchRun(float(tps.group(1)), int(tx.group(1)), float(seconds), latencies)


# -- 1. writes -------------------------------------------------------------------------------------------------------


@dataclass
class WriteResult:
    case: WriteCase
    raw: list[PgbenchRun] = field(default_factory=list)
    goalrt: list[PgbenchRun] = field(default_factory=list)
    positioned: int = 0  # events the goalrt runs appended (ticked after each run)

    def runs(self, side: str) -> list[PgbenchRun]:
        return self.raw if side == "raw" else self.goalrt

    def best(self, side: str) -> float:
        return max(r.tps for r in self.runs(side))

    def latencies(self, side: str) -> list[float]:
        return [lat for r in self.runs(side) for lat in r.latencies_ms]

    def ratio(self) -> float:
        raw = self.best("raw")
        return self.best("goalrt") / raw if raw else float("nan")


def prepare_write_db(url: str) -> None:
    """Create the raw tables and give both sides the same 10,000 paths plus the two single paths."""
    with connect(url) as conn:
        conn.execute(RAW_TABLES_DDL)
        conn.execute(
            "INSERT INTO bench_state (path, value, version)"
            " SELECT 'p.' || g, '0'::jsonb, 1 FROM generate_series(0, %s::integer) AS g"
            " UNION ALL VALUES ('w.single', '0'::jsonb, 1), ('w.hot', '0'::jsonb, 1)",
            (PATHS - 1,),
        )
        for start in range(0, PATHS, BATCH_PATHS):
            conn.execute(
                "SELECT count(*) FROM goalrt.change_state((SELECT jsonb_agg(jsonb_build_object("
                "'op', 'set', 'path', 'p.' || g, 'value', 0))"
                " FROM generate_series(%s::integer, %s::integer) AS g), 'bench')",
                (start, min(start + BATCH_PATHS, PATHS) - 1),
            )
        singles = [{"op": "set", "path": p, "value": 0} for p in ("w.single", "w.hot")]
        conn.execute("SELECT count(*) FROM goalrt.change_state(%s::jsonb, 'bench')", (json.dumps(singles),))
        conn.execute("SELECT goalrt.tick(%s)", (TICK_WAIT_MS,))


def settle_writes(url: str) -> None:
    """Before every run: vacuum both state tables (so bloat from the last run does not carry over), checkpoint."""
    with connect(url) as conn:
        conn.execute("VACUUM (ANALYZE) goalrt.state_data, bench_state, goalrt.event_data, bench_log")
        with contextlib.suppress(psycopg.Error):  # not allowed for this role: runs are a little noisier
            conn.execute("CHECKPOINT")


def run_writes(url: str, pgbench: Pgbench, seconds: int, rounds: int) -> list[WriteResult]:
    results = []
    for case in WRITE_CASES:
        result = WriteResult(case)
        for _ in range(rounds):
            settle_writes(url)
            run = pgbench.run(f"raw_{case.name}", case.raw_script(), case.clients, seconds)
            result.raw.append(run)
            print_write_run("raw", case, run)

            settle_writes(url)
            with connect(url) as conn:
                head0 = int(scalar(conn, "SELECT goalrt.tick(%s)", (TICK_WAIT_MS,)))
                run = pgbench.run(f"goalrt_{case.name}", case.goalrt_script(), case.clients, seconds)
                head1 = int(scalar(conn, "SELECT goalrt.tick(%s)", (TICK_WAIT_MS,)))
            result.goalrt.append(run)
            result.positioned += head1 - head0
            note = "" if head1 - head0 == run.transactions else f"  (positioned {head1 - head0} events)"
            print_write_run("goalrt", case, run, note)
        results.append(result)
    return results


def print_write_run(side: str, case: WriteCase, run: PgbenchRun, note: str = "") -> None:
    print(
        f"  {side:<8} {case.title:<26} c={case.clients}  {run.tps:>9.1f} tps"
        f"  p50 {percentile(run.latencies_ms, 50):>7.3f} ms  p99 {percentile(run.latencies_ms, 99):>7.3f} ms{note}",
        flush=True,
    )


def print_writes(results: list[WriteResult]) -> None:
    print()
    print("State writes (tps: best run per side; latency: per-transaction pgbench logs, runs of a side pooled)")
    header = (
        f"{'case':<28} {'c':>2} {'raw tps':>9} {'goalrt tps':>10} {'ratio':>6} {'raw p50':>8} {'raw p99':>8}"
        f" {'gr p50':>8} {'gr p99':>8} {'raw paths/s':>12} {'gr paths/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        c = r.case
        raw_lat, gr_lat = r.latencies("raw"), r.latencies("goalrt")
        print(
            f"{c.title:<28} {c.clients:>2} {fmt(r.best('raw')):>9} {fmt(r.best('goalrt')):>10} {r.ratio():>6.2f}"
            f" {fmt(percentile(raw_lat, 50), 3):>8} {fmt(percentile(raw_lat, 99), 3):>8}"
            f" {fmt(percentile(gr_lat, 50), 3):>8} {fmt(percentile(gr_lat, 99), 3):>8}"
            f" {fmt(r.best('raw') * c.paths_per_tx, 0):>12} {fmt(r.best('goalrt') * c.paths_per_tx, 0):>11}"
        )
    print("latency in ms; gr = goalrt.change_state")


def check_update_plan(url: str) -> str | None:
    """The plan of change_state's final UPDATE for a one-path change set, if it scans all of state_data."""
    change = json.dumps([{"op": "set", "path": "p.1", "value": 1}])
    plans = explain(url, "SELECT count(*) FROM goalrt.change_state(%s::jsonb)", (change,), min_ms=0)
    update = next((p for p in plans if "Update on state_data" in p), None)
    return update if update and "Seq Scan on state_data" in update else None


# -- 2. state_at as the log grows ------------------------------------------------------------------------------------

BUILD_SQL = """
DO $build$
DECLARE a integer; b integer; c integer;
BEGIN
    PERFORM setseed({seed});
    FOR i IN {first}..{last} LOOP
        a := floor(random() * {paths})::integer;
        b := (a + {paths} / 3) % {paths};
        c := (a + 2 * {paths} / 3) % {paths};
        PERFORM goalrt.change_state(jsonb_build_array(
            jsonb_build_object('op', 'set', 'path', 'p.' || a, 'value', i),
            jsonb_build_object('op', 'inc', 'path', 'p.' || b, 'by', 1 + i % 7),
            CASE WHEN i % 50 = 0 THEN jsonb_build_object('op', 'delete', 'path', 'p.' || c)
                 ELSE jsonb_build_object('op', 'inc', 'path', 'p.' || c, 'by', -(i % 3)) END), 'bench');
    END LOOP;
END
$build$
"""


def build_log(url: str, target: int, label: str) -> float:
    """Append state.changed events until the head is ``target``; return the seconds it took."""
    with connect(url) as conn, timed() as elapsed:
        head = int(scalar(conn, "SELECT goalrt.tick(%s)", (TICK_WAIT_MS,)))
        start_head = head
        next_report = time.perf_counter() + 30
        while head < target:
            n = min(BUILD_CHUNK, target - head)
            seed = ((head // BUILD_CHUNK) * 0.6180339887) % 1.0
            conn.execute(BUILD_SQL.format(seed=seed, first=head + 1, last=head + n, paths=PATHS).encode())
            head = int(scalar(conn, "SELECT goalrt.tick(%s)", (TICK_WAIT_MS,)))
            if time.perf_counter() > next_report and head < target:
                rate = (head - start_head) / elapsed()
                print(f"    {label}: {head:,}/{target:,} events ({rate:,.0f} change sets/s)", flush=True)
                next_report = time.perf_counter() + 30
        if head != target:
            raise RuntimeError(f"{label}: the log's head is {head}, expected {target}")
        conn.execute("ANALYZE")
    return elapsed()


@dataclass
class ReadStats:
    kind: str
    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


@dataclass
class SizeResult:
    size: int
    snapshots: bool
    build_s: float
    catchup_s: float = 0.0
    catchup_taken: int = 0
    vacuum_s: float = 0.0
    snapshot_count: int = 0
    entries: int = 0
    reads: list[ReadStats] = field(default_factory=list)
    plans: dict[str, list[str]] = field(default_factory=dict)


def time_reads(url: str, head: int, n: int, seed: int) -> list[ReadStats]:
    """``n`` whole-state and ``n`` one-path reads at random positions in 1..head."""
    rng = random.Random(seed)
    out = []
    with connect(url) as conn:
        for kind, query, args in (
            ("whole state", "SELECT count(*) FROM goalrt.state_at(%s::bigint)", lambda: (rng.randint(1, head),)),
            (
                "one path",
                "SELECT count(*) FROM goalrt.state_at(%s::bigint, %s::text)",
                lambda: (rng.randint(1, head), f"p.{rng.randrange(PATHS)}"),
            ),
        ):
            for _ in range(WARMUP_READS):
                conn.execute(query, args()).fetchone()
            times = []
            for _ in range(n):
                params = args()
                began = time.perf_counter()
                conn.execute(query, params).fetchone()
                times.append((time.perf_counter() - began) * 1000.0)
            out.append(
                ReadStats(kind, n, percentile(times, 50), percentile(times, 99), statistics.fmean(times), max(times))
            )
    return out


def snapshot_counts(url: str) -> tuple[int, int]:
    with connect(url) as conn:
        snaps = int(scalar(conn, "SELECT count(*) FROM goalrt.snapshots"))
        entries = int(scalar(conn, "SELECT count(*) FROM goalrt.snapshot_entries"))
    return snaps, entries


def explain(url: str, query: str, params: tuple[Any, ...], min_ms: int = 1) -> list[str]:
    """Run ``query`` once under auto_explain (nested statements, ANALYZE) and return its plans, condensed.

    Only the statements that took at least ``min_ms`` are kept, and of each plan its first line and node lines.
    Returns an empty list where auto_explain cannot be loaded (it needs a superuser).
    """
    notices: list[str] = []
    with connect(url) as conn:
        try:
            conn.execute("LOAD 'auto_explain'")
        except psycopg.Error:
            return []
        for name, value in (
            ("log_min_duration", str(min_ms)),
            ("log_nested_statements", "on"),
            ("log_analyze", "on"),
            ("log_timing", "on"),
            ("log_level", "notice"),
        ):
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier("auto_explain", name), sql.Literal(value)))
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(query, params).fetchall()
    plans = []
    for notice in notices:
        head, _, body = notice.partition("\n")
        nodes = [f"  {line[:150]}" for line in body.splitlines() if "(cost=" in line or "Cond:" in line]
        plans.append("\n".join([head.strip(), *nodes]))
    return plans


def print_plan(title: str, plans: list[str], min_ms: int = 1) -> None:
    if plans:
        print(f"    plans of {title} (auto_explain, statements >= {min_ms} ms):")
        print("\n".join(f"      {line}" for plan in plans for line in plan.splitlines()), flush=True)


def run_reads(
    on_url: str, off_url: str, sizes: tuple[int, ...], off_sizes: tuple[int, ...], reads: int, plans: bool
) -> list[SizeResult]:
    results = []
    for size in sizes:
        build_s = build_log(on_url, size, f"snapshots every 1000, to {size:,}")
        res = SizeResult(size, True, build_s)
        with connect(on_url) as conn, timed() as elapsed:
            res.catchup_taken = int(scalar(conn, "SELECT goalrt.auto_snapshot()"))
        res.catchup_s = elapsed()
        # The catch-up closed (updated) an entry per changed path per snapshot: vacuum those dead rows now, so
        # that the reads neither wade through them nor race autovacuum.
        with connect(on_url) as conn, timed() as elapsed:
            conn.execute("VACUUM (ANALYZE) goalrt.snapshots, goalrt.snapshot_entries")
        res.vacuum_s = elapsed()
        res.snapshot_count, res.entries = snapshot_counts(on_url)
        print(
            f"  log {size:>9,} events: built in {build_s:,.1f} s ({size / build_s:,.0f}/s overall);"
            f" snapshot catch-up took {res.catchup_taken} snapshots in {res.catchup_s:,.2f} s"
            f" ({res.catchup_s * 1000 / max(res.catchup_taken, 1):,.0f} ms each; then VACUUM {res.vacuum_s:,.1f} s;"
            f" {res.snapshot_count} snapshots, {res.entries:,} entries)",
            flush=True,
        )
        res.reads = time_reads(on_url, size, reads, seed=size)
        print_read_line("snapshots every 1000", size, res.reads)
        if plans:
            at = size // 2 + 500
            res.plans["whole state"] = explain(on_url, "SELECT count(*) FROM goalrt.state_at(%s::bigint)", (at,))
            print_plan(f"state_at({at})", res.plans["whole state"])
            res.plans["one path"] = explain(on_url, "SELECT count(*) FROM goalrt.state_at(%s::bigint, 'p.123')", (at,))
            print_plan(f"state_at({at}, 'p.123')", res.plans["one path"])
        results.append(res)

        if size in off_sizes:
            off = SizeResult(size, False, build_log(off_url, size, f"snapshots off, to {size:,}"))
            off.snapshot_count, off.entries = snapshot_counts(off_url)
            off.reads = time_reads(off_url, size, reads, seed=size)
            print_read_line("snapshots off", size, off.reads)
            results.append(off)
    return results


def print_read_line(label: str, size: int, reads: list[ReadStats]) -> None:
    parts = [f"{r.kind} p50 {r.p50_ms:,.2f} ms p99 {r.p99_ms:,.2f} ms" for r in reads]
    print(f"    {label:<20} at {size:>9,}: " + "; ".join(parts), flush=True)


def print_reads(results: list[SizeResult], reads: int) -> None:
    print()
    print(f"state_at at random positions ({reads} reads of each kind per row; ms)")
    header = (
        f"{'log events':>11} {'snapshots':>10} {'whole p50':>10} {'whole p99':>10} {'whole mean':>11}"
        f" {'path p50':>9} {'path p99':>9} {'path mean':>10} {'catch-up s':>11} {'snaps':>6} {'entries':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        whole, path = r.reads
        print(
            f"{r.size:>11,} {'every 1000' if r.snapshots else 'off':>10} {whole.p50_ms:>10.2f} {whole.p99_ms:>10.2f}"
            f" {whole.mean_ms:>11.2f} {path.p50_ms:>9.2f} {path.p99_ms:>9.2f} {path.mean_ms:>10.2f}"
            f" {fmt(r.catchup_s, 2) if r.snapshots else '-':>11} {r.snapshot_count:>6} {r.entries:>10,}"
        )
    print("whole = SELECT count(*) FROM goalrt.state_at(pos); path = goalrt.state_at(pos, 'p.<n>')")


# -- 3. replay and 4. snapshot size ----------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    head: int
    verify_s: float
    verdict: str
    identical: bool
    fold_s: float
    fold_rows: int


def run_replay(url: str) -> ReplayResult:
    with State.connect(url) as state, timed() as elapsed:
        report = verify(state)
    verify_s = elapsed()
    with connect(url) as conn:
        head = int(scalar(conn, "SELECT head FROM goalrt.clock"))
        with timed() as elapsed:
            rows = int(scalar(conn, "SELECT count(*) FROM goalrt.state_fold(%s::bigint, NULL, false)", (head,)))
    return ReplayResult(head, verify_s, report.describe(), report.identical, elapsed(), rows)


@dataclass
class SnapshotSize:
    snapshots: int
    entries: int
    total_bytes: int
    heap_bytes: int
    live_paths: int
    full_rows: int  # snapshots x live paths now
    full_rows_exact: int  # the sum of each snapshot's own live path count

    @property
    def bytes_per_entry(self) -> float:
        return self.total_bytes / self.entries if self.entries else float("nan")


def snapshot_size(url: str) -> SnapshotSize:
    with connect(url) as conn:
        conn.execute("VACUUM (ANALYZE) goalrt.snapshot_entries")
        row = conn.execute(
            "SELECT (SELECT count(*) FROM goalrt.snapshots), (SELECT count(*) FROM goalrt.snapshot_entries),"
            " pg_total_relation_size('goalrt.snapshot_entries'), pg_relation_size('goalrt.snapshot_entries'),"
            " (SELECT count(*) FROM goalrt.state), (SELECT coalesce(sum(paths), 0) FROM goalrt.snapshots)"
        ).fetchone()
    assert row is not None
    snaps, entries, total, heap, live, exact = (int(x) for x in row)
    return SnapshotSize(snaps, entries, total, heap, live, snaps * live, exact)


@dataclass
class OneSnapshot:
    head: int
    seconds: float
    plans: list[str]


def one_more_snapshot(url: str, plans: bool) -> OneSnapshot:
    """Append snapshot_every (1000) more change sets, VACUUM, and time the one automatic snapshot then due.

    That is what a state_at reader pays at each snapshot boundary once the catch-up is done.
    """
    with connect(url) as conn:
        head = int(scalar(conn, "SELECT head FROM goalrt.clock"))
    build_log(url, head + 1000, "one more snapshot")
    with connect(url) as conn:
        conn.execute("VACUUM (ANALYZE) goalrt.snapshot_entries")
    query = "SELECT goalrt.auto_snapshot()"
    if plans:
        lines = explain(url, query, (), min_ms=5)
        return OneSnapshot(head + 1000, float("nan"), lines)
    with connect(url) as conn, timed() as elapsed:
        taken = int(scalar(conn, query))
    if taken != 1:
        raise RuntimeError(f"expected one automatic snapshot, took {taken}")
    return OneSnapshot(head + 1000, elapsed(), [])


def print_replay_and_size(replay: ReplayResult, size: SnapshotSize) -> None:
    print()
    print(f"Replay at {replay.head:,} events")
    print(
        f"  replay.verify(): {replay.verify_s:,.2f} s ({replay.head / replay.verify_s:,.0f} events/s): {replay.verdict}"
    )
    print(
        f"  SELECT count(*) FROM goalrt.state_fold({replay.head}, NULL, false): {replay.fold_s:,.2f} s"
        f" ({replay.head / replay.fold_s:,.0f} events/s, {replay.fold_rows:,} rows with tombstones)"
    )
    print()
    print(f"Snapshot size at {replay.head:,} events ({size.snapshots} snapshots, {size.live_paths:,} live paths now)")
    full_bytes = size.full_rows * size.bytes_per_entry
    print(
        f"  snapshot_entries: {size.entries:,} rows, {fmt_bytes(size.total_bytes)} with indexes"
        f" ({fmt_bytes(size.heap_bytes)} heap; {size.bytes_per_entry:,.0f} B per row)"
    )
    print(
        f"  a full copy per snapshot: {size.snapshots} x {size.live_paths:,} = {size.full_rows:,} rows"
        f" (sum of each snapshot's own path count: {size.full_rows_exact:,}),"
        f" ~{fmt_bytes(full_bytes)} at the same bytes per row"
    )
    if size.entries:
        print(f"  intervals store {size.entries / size.full_rows:.1%} of the rows a full copy would")


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", help="server to use (default: GOALRT_DATABASE_URL, else the embedded server)")
    p.add_argument("--seconds", type=int, default=8, help="seconds per pgbench run (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved raw/goalrt rounds per write case (default 2)")
    p.add_argument("--reads", type=int, default=200, help="state_at calls of each kind per log size (default 200)")
    p.add_argument("--quick", action="store_true", help="2 s per pgbench run, logs up to 10^5 events")
    p.add_argument("--sizes", help="log sizes for state_at, comma-separated (default 10000,100000,1000000)")
    p.add_argument("--plans", action="store_true", help="print the plans of state_at and auto_snapshot (superuser)")
    p.add_argument("--skip-writes", action="store_true", help="only the state_at, replay and snapshot parts")
    p.add_argument("--skip-reads", action="store_true", help="only the write part")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    p.add_argument("--out", type=Path, help="write the JSON results to this file (implies --json)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = 2
    try:
        sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip()) if args.sizes else None
    except ValueError:
        p.error("--sizes must be a comma-separated list of integers")
    args.sizes = sizes or (QUICK_SIZES if args.quick else SIZES)
    if list(args.sizes) != sorted(set(args.sizes)) or args.sizes[0] < 1:
        p.error("--sizes must be positive and increasing")
    if args.seconds < 1 or args.rounds < 1 or args.reads < 1:
        p.error("--seconds, --rounds and --reads must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    from goalrt.db.config import database_url

    args = parse_args(argv)
    base_url = database_url(args.database_url)
    prefix = f"goalrt_sbench_{secrets.token_hex(4)}"
    began = time.perf_counter()
    doc: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)}}

    with scratch_databases(base_url, [f"{prefix}_w", f"{prefix}_on", f"{prefix}_off"]) as (w_url, on_url, off_url):
        for url in (w_url, on_url, off_url):
            upgrade(url)
        server = server_info(w_url, ("server_version", "fsync", "synchronous_commit", "shared_buffers", "work_mem"))
        doc["server"] = server
        print(
            f"server: PostgreSQL {server['server_version']}; fsync={server['fsync']},"
            f" synchronous_commit={server['synchronous_commit']}, shared_buffers={server['shared_buffers']},"
            f" work_mem={server['work_mem']}"
        )
        print(f"target: {conninfo_to_dict(base_url).get('host') or 'localhost'}, scratch databases {prefix}_*")

        if not args.skip_writes:
            with tempfile.TemporaryDirectory(prefix="goalrt-sbench-") as tmp:
                pgbench = Pgbench(find_pgbench(), w_url, Path(tmp))
                print(f"load: {pgbench.version()}, simple protocol, -n -T {args.seconds}, {args.rounds} round(s)")
                print()
                print("1. State writes (raw then goalrt per round)", flush=True)
                with timed() as elapsed:
                    prepare_write_db(w_url)
                    writes = run_writes(w_url, pgbench, args.seconds, args.rounds)
                print_writes(writes)
                plan = check_update_plan(w_url)
                if plan:
                    print()
                    print("note: change_state's final UPDATE scans all of state_data (a 1-path change set):")
                    print("\n".join(f"    {line}" for line in plan.splitlines()))
                print(f"(writes took {elapsed():,.0f} s)", flush=True)
            doc["writes"] = [
                {
                    "case": r.case.name,
                    "title": r.case.title,
                    "clients": r.case.clients,
                    "paths_per_tx": r.case.paths_per_tx,
                    "raw": [x.summary() for x in r.raw],
                    "goalrt": [x.summary() for x in r.goalrt],
                    "raw_tps_best": r.best("raw"),
                    "goalrt_tps_best": r.best("goalrt"),
                    "ratio_best": r.ratio(),
                    "goalrt_events_positioned": r.positioned,
                    "raw_p50_ms": percentile(r.latencies("raw"), 50),
                    "raw_p99_ms": percentile(r.latencies("raw"), 99),
                    "goalrt_p50_ms": percentile(r.latencies("goalrt"), 50),
                    "goalrt_p99_ms": percentile(r.latencies("goalrt"), 99),
                    "update_plan_seq_scan": plan is not None,
                }
                for r in writes
            ]

        if not args.skip_reads:
            print()
            print("2. state_at as the log grows", flush=True)
            with connect(off_url) as conn:
                conn.execute("UPDATE goalrt.settings SET value = '0' WHERE key = 'snapshot_every'")
            with timed() as elapsed:
                off_sizes = tuple(n for n in args.sizes if n <= OFF_MAX)
                sizes = run_reads(on_url, off_url, args.sizes, off_sizes, args.reads, args.plans)
            print_reads(sizes, args.reads)
            print(f"(state_at part took {elapsed():,.0f} s)", flush=True)

            print()
            print("3./4. Replay and snapshot size", flush=True)
            replay = run_replay(on_url)
            size = snapshot_size(on_url)
            print_replay_and_size(replay, size)
            one = one_more_snapshot(on_url, plans=False)
            print(
                f"  one more automatic snapshot (1000 more events, after VACUUM) at {one.head:,}:"
                f" {one.seconds * 1000:,.0f} ms",
                flush=True,
            )
            if args.plans:
                one_plans = one_more_snapshot(on_url, plans=True)
                print_plan(f"auto_snapshot() at {one_plans.head:,}", one_plans.plans, min_ms=5)
                one.plans = one_plans.plans
            doc["one_more_snapshot"] = asdict(one)
            doc["state_at"] = [asdict(r) for r in sizes]
            doc["replay"] = asdict(replay)
            doc["snapshot_size"] = asdict(size) | {"bytes_per_entry": size.bytes_per_entry}

    total = time.perf_counter() - began
    doc["seconds"] = total
    print()
    print(f"total: {total:,.0f} s")
    if args.json or args.out:
        emit_results(doc, args.out)


if __name__ == "__main__":
    main()
