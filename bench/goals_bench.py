"""Goals end to end: one-step no-op goals through goalrt's workers against the same jobs through PgQueuer.

What it measures
----------------
Both systems run on the same PostgreSQL server in the same run, each in a
scratch database of its own (``goalrt_gbench_<random>`` migrated with
``goalrt.db.migrate.upgrade``; ``goalrt_gbench_<random>_pgq`` with PgQueuer's
``Queries.install()``), both dropped at the end. Every client and worker is a
separate OS process started by this script, so neither side shares an event
loop or the GIL with the bench itself.

* goalrt: a goal type ``bench.noop`` whose plan is one step, the async no-op
  action ``bench.noop`` (and ``bench.noop3``, three steps of that action, for
  the 3-step figures), registered in a ``goalrt.Registry`` built by the
  worker process and passed to ``goalrt.Worker(url, registry, concurrency=...)``
  (default lease, poll and claim batch). Goals are submitted with
  ``AsyncGoals.submit`` (one ``goalrt.submit_goal`` per call) or
  ``AsyncGoals.submit_many`` (one ``goalrt.submit_goals`` per batch).
* PgQueuer (installed from PyPI into a virtualenv of its own, never into
  goalrt's; see ``--pgqueuer-python``): an async no-op entrypoint on
  ``QueueManager(Queries(AsyncpgDriver(conn)))``, jobs enqueued with
  ``Queries.enqueue`` one per call or as lists (one statement per batch).

Both handlers do nothing but, for the latency probes only, send their start
time (``time.monotonic()``, which is system-wide on Linux) to the probing
process over a loopback UDP socket.

1. Tuning: after a warm-up run, a backlog of ``--goals`` is drained by one
   worker process for each goalrt ``--concurrency`` (default 50, 100, 200) and
   each PgQueuer consumer setting (``--pgq-settings``: dequeue ``batch_size``
   x QueueManagers per process, each on its own connection, as PgQueuer's own
   benchmark runs them; no ``max_concurrent_tasks`` cap, the fastest for no-op
   jobs). The best setting of each system is used for everything after.
2. Throughput, for each submit mode (singly from ``--submitters``
   connections, default 16; in batches of ``--batch``): submit with no worker
   running (all the connections in one process for single submits, one
   connection for batches), then drain that backlog
   with 1 worker process, and again with 2; then end to end: the workers run
   while the same number of goals is submitted, timed from the first submit
   until the last goal is finished. A run ends when no unfinished goal
   (PgQueuer: no queued or picked job) is left; the bench polls for that every
   20 ms. Each figure is run for goalrt, then at once for PgQueuer, so a noisy
   neighbour hits both alike; with ``--rounds`` (default 2) each figure is the
   best round. goalrt.goals, goalrt.goal_steps and PgQueuer's tables are VACUUMed
   (ANALYZE) before every run. Beside each drain and end-to-end figure the
   bench prints the CPU the worker processes used and the whole machine's
   busy CPU, in cores (the machine is shared: its idle load is printed first).
   The end-to-end figures with single submits are bound by the one submitting
   process on a 2-CPU machine, on both sides.

   Beside each of those figures, what the run cost the server per goal (job):
   WAL bytes (``pg_current_wal_insert_lsn()`` before and after,
   ``pg_wal_lsn_diff``) and committed transactions (``pg_stat_database.
   xact_commit`` of the system's database, less the bench's own polls and
   checks), over submit + drain (the VACUUM between them left out) or over
   the whole end-to-end run; see ``server_cost.py``. Each window holds one
   system only, since WAL is server-wide; it waits until no backend is
   connected to the system's database before reading (a backend reports its
   statistics as it exits), and it also counts the commits of every other
   database meanwhile (shown as ``others``: a sign that someone else wrote
   WAL in the window). goalrt's windows end with one tick that positions the
   run's events (every event needs its position; no worker ticks), so the
   tick's WAL is part of goalrt's cost. The table shows, per submit mode, the
   submit + drain run (1 or 2 workers, any round) with the least WAL per goal
   of each system: anyone else's writes only add. Target: goalrt's WAL per
   goal <= 2x PgQueuer's per job. Each run starts after a CHECKPOINT, so both
   sides pay full-page images for the pages they touch (counted apart: FPI);
   short runs pay more of them per goal than a long steady load would.

   Then, each round, goalrt's 3-step goals (``bench.noop3``, ``--goals`` / 3 of
   them in batches) end to end with 1 and 2 worker processes: goals/s and
   steps/s, against PgQueuer's end-to-end jobs/s with batch submits from the
   same run (a step is compared with a job: steps/s over jobs/s, which is
   goals/s over jobs/s / 3).
3. Latency from just before the submit call to the start of the handler, with
   one worker process: idle (one goal at a time, waiting for its start, then a
   pause of ``--probe-gap`` ms so the worker is idle again) and under load (the
   same probes while another process submits a background stream in batches of
   10 at ``--load-rate`` goals/s; by default half the slower system's best
   one-worker drain rate, so both systems see the same absolute load). The
   first 5 probes of a series are not counted.
4. Tables of the figures with the ratios goalrt / PgQueuer (target >= 2x),
   the WAL and transactions per goal, the 3-step figures, and the idle
   latency targets (p50 <= 5 ms, p99 <= 25 ms).

``--functions`` also turns on ``track_functions`` for goalrt's scratch
database (superuser) and prints, for one batch submit + 1-worker drain, the
database time per goal in each of goalrt's SQL functions (submit_goals,
claim_goals_v1, plan_goals_v1, complete_steps_v1): where a goal's cost goes.

The bench prints figures; it never passes or fails. The full run takes about
6 minutes on a 2-CPU machine (5.5 before the 3-step runs and the cost windows
were added; not re-timed since), ``--quick`` (3,000 goals, 1 round, fewer
settings and probes) about 2.5 on a busy one, plus up to a minute once to
build PgQueuer's virtualenv.

How to run
----------
From the repository root::

    python bench/goals_bench.py                  # embedded PostgreSQL 18 (started under ./.goalrt if needed)
    python bench/goals_bench.py --quick          # fewer goals, settings, rounds and probes
    python bench/goals_bench.py --quick --functions   # and where goalrt's database time goes
    python bench/goals_bench.py --url postgresql://postgres@127.0.0.1:5432/postgres --quick --json

The server is taken from ``--url``, else ``GOALRT_DATABASE_URL``, else the
embedded server (the role must be allowed to create databases). PgQueuer runs
from ``--pgqueuer-python`` if given, else from a virtualenv the bench makes
once under ``$GOALRT_HOME/bench/pgqueuer-venv`` (``./.goalrt/...``) with
``pip install pgqueuer``. ``--json`` prints the results as one JSON object at
the end (or writes them to ``--out FILE``).

Internally the script is also each of its client processes: ``--role NAME
--spec JSON`` (not for direct use). Those roles import nothing from goalrt or
PgQueuer but what they need, so the PgQueuer roles run in PgQueuer's
virtualenv from this same file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
NOOP = "bench.noop"  # goalrt goal type and action
NOOP3 = "bench.noop3"  # goalrt goal type: three steps of the action bench.noop
PGQ_ENTRYPOINT = "bench_noop"
LOAD_BATCH = 10  # goals per submit call of the background stream
WARMUP_PROBES = 5  # first probes of a series, not counted
POLL_S = 0.02  # how often the bench checks whether a run is finished
RUN_TIMEOUT_S = 240.0
SETTLE_WAIT_MS = 60_000  # goalrt's settling tick waits this long for the clock's lock
TARGET_RATIO = 2.0
TARGET_WAL_RATIO = 2.0  # goalrt's WAL per goal / PgQueuer's per job, at most
TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0


# == Client processes (roles) ========================================================================================
#
# Each role prints "ready" once it is connected, waits for "go" on stdin, works, and prints one JSON line.
# Workers and the background stream run until SIGTERM.


def _emit(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


async def _ready_then_go() -> None:
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit("no go")


class _CpuUntilStop:
    """Calls ``stop`` on SIGTERM/SIGINT and keeps this process's CPU seconds from ``start()`` until then."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        self._began = time.process_time()
        self.seconds = 0.0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled)

    def start(self) -> None:
        self._began = time.process_time()

    def _signalled(self) -> None:
        if not self.seconds:
            self.seconds = time.process_time() - self._began
        self._stop()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


class _StartReports(asyncio.DatagramProtocol):
    """The probing side: resolves the future of a probe tag when its handler reports its start time."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        tag, _, when = data.decode().partition(" ")
        future = self.waiting.pop(tag, None)
        if future is not None and not future.done():
            future.set_result(float(when))


def _report_start(sock: socket.socket, tag: str, port: int, started: float) -> None:
    sock.sendto(f"{tag} {started:.9f}".encode(), ("127.0.0.1", port))


async def _paced(rate: float, batch: int, stop: asyncio.Event, send: Callable[[int], Any]) -> int:
    """Call ``send(batch)`` ``rate / batch`` times a second until ``stop``; return how many were sent."""
    interval = batch / rate
    began = time.monotonic()
    sent = 0
    i = 0
    while not stop.is_set():
        due = began + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            if stop.is_set():
                break
        await send(batch)
        sent += batch
        i += 1
    return sent


async def _probe_series(spec: dict[str, Any], submit: Callable[[str, int], Any]) -> dict[str, Any]:
    """Submit ``count`` probes one at a time; each waits for its handler's start report."""
    loop = asyncio.get_running_loop()
    transport, reports = await loop.create_datagram_endpoint(_StartReports, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        await _ready_then_go()
        latencies: list[float] = []
        lost = 0
        for i in range(spec["count"] + WARMUP_PROBES):
            tag = f"p{i}"
            future: asyncio.Future[float] = loop.create_future()
            reports.waiting[tag] = future
            before = time.monotonic()
            await submit(tag, port)
            try:
                async with asyncio.timeout(spec["timeout"]):
                    started = await future
            except TimeoutError:
                lost += 1
                reports.waiting.pop(tag, None)
                continue
            if i >= WARMUP_PROBES:
                latencies.append((started - before) * 1000.0)
            await asyncio.sleep(spec["gap_ms"] / 1000.0)
        return {"latencies_ms": latencies, "lost": lost}
    finally:
        transport.close()


# -- goalrt roles ----------------------------------------------------------------------------------------------------


def make_registry() -> Any:
    """The bench's goal type: one step, a no-op async action (that reports its start for probes)."""
    import goalrt

    registry = goalrt.Registry()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    @registry.action(NOOP)
    async def noop(args: dict[str, Any], ctx: Any) -> None:
        started = time.monotonic()
        port = args.get("port")
        if port:
            _report_start(sock, args["probe"], port, started)

    @registry.goal(NOOP)
    def plan(params: dict[str, Any]) -> list[Any]:
        return [goalrt.Step(NOOP, params)]

    @registry.goal(NOOP3)
    def plan3(params: dict[str, Any]) -> list[Any]:
        return [goalrt.Step(NOOP, params) for _ in range(3)]

    return registry


async def role_goalrt_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import goalrt

    worker = goalrt.Worker(spec["url"], make_registry(), concurrency=spec["concurrency"])
    cpu = _CpuUntilStop(worker.request_stop)
    await _ready_then_go()
    cpu.start()
    await worker.run()
    return {k: v for k, v in asdict(worker.stats).items() if k != "started"} | {"cpu_s": cpu.seconds}


async def _goalrt_clients(spec: dict[str, Any]) -> list[Any]:
    from goalrt import AsyncGoals

    return [await AsyncGoals.connect(spec["url"]) for _ in range(spec.get("conns", 1))]


async def role_goalrt_submit(spec: dict[str, Any]) -> dict[str, Any]:
    clients = await _goalrt_clients(spec)
    n, batch, goal = spec["n"], spec["batch"], spec.get("goal", NOOP)
    shares = [n // len(clients) + (1 if i < n % len(clients) else 0) for i in range(len(clients))]

    async def one_by_one(goals: Any, count: int) -> None:
        for _ in range(count):
            await goals.submit(goal, {})

    async def batched(goals: Any, count: int) -> None:
        while count > 0:
            k = min(batch, count)
            await goals.submit_many([(goal, {}, None)] * k)
            count -= k

    run = one_by_one if spec["mode"] == "single" else batched
    await _ready_then_go()
    began = time.monotonic()
    await asyncio.gather(*(run(g, share) for g, share in zip(clients, shares, strict=True)))
    elapsed = time.monotonic() - began
    for g in clients:
        await g.close()
    return {"n": n, "elapsed": elapsed}


async def role_goalrt_load(spec: dict[str, Any]) -> dict[str, Any]:
    (goals,) = await _goalrt_clients(spec)
    stop = _stop_event()

    async def send(k: int) -> None:
        await goals.submit_many([(NOOP, {}, None)] * k)

    await _ready_then_go()
    sent = await _paced(spec["rate"], LOAD_BATCH, stop, send)
    await goals.close()
    return {"n": sent}


async def role_goalrt_probe(spec: dict[str, Any]) -> dict[str, Any]:
    (goals,) = await _goalrt_clients(spec)

    async def submit(tag: str, port: int) -> None:
        await goals.submit(NOOP, {"probe": tag, "port": port})

    try:
        return await _probe_series(spec, submit)
    finally:
        await goals.close()


# -- PgQueuer roles (run by PgQueuer's own interpreter) --------------------------------------------------------------


async def _pgq_queries(dsn: str) -> Any:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    return Queries(AsyncpgDriver(await asyncpg.connect(dsn)))


async def role_pgq_install(spec: dict[str, Any]) -> dict[str, Any]:
    import pgqueuer

    queries = await _pgq_queries(spec["dsn"])
    await queries.install()
    return {"version": pgqueuer.__version__}


async def role_pgq_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from datetime import timedelta

    from pgqueuer.qm import QueueManager

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    done = [0]

    async def noop(job: Any) -> None:
        started = time.monotonic()
        if job.payload:
            tag, _, port = job.payload.decode().partition(" ")
            _report_start(sock, tag, int(port), started)
        done[0] += 1

    managers = []
    for _ in range(spec["managers"]):
        qm = QueueManager(await _pgq_queries(spec["dsn"]))
        qm.entrypoint(PGQ_ENTRYPOINT)(noop)
        managers.append(qm)

    def stop() -> None:
        for qm in managers:
            qm.shutdown.set()

    cpu = _CpuUntilStop(stop)
    await _ready_then_go()
    cpu.start()
    await asyncio.gather(
        *(
            qm.run(batch_size=spec["batch_size"], dequeue_timeout=timedelta(seconds=spec.get("dequeue_timeout", 30)))
            for qm in managers
        )
    )
    return {"completed": done[0], "cpu_s": cpu.seconds}


async def role_pgq_submit(spec: dict[str, Any]) -> dict[str, Any]:
    clients = [await _pgq_queries(spec["dsn"]) for _ in range(spec.get("conns", 1))]
    n, batch = spec["n"], spec["batch"]
    shares = [n // len(clients) + (1 if i < n % len(clients) else 0) for i in range(len(clients))]

    async def one_by_one(q: Any, count: int) -> None:
        for _ in range(count):
            await q.enqueue(PGQ_ENTRYPOINT, None)

    async def batched(q: Any, count: int) -> None:
        while count > 0:
            k = min(batch, count)
            await q.enqueue([PGQ_ENTRYPOINT] * k, [None] * k, [0] * k)
            count -= k

    run = one_by_one if spec["mode"] == "single" else batched
    await _ready_then_go()
    began = time.monotonic()
    await asyncio.gather(*(run(q, share) for q, share in zip(clients, shares, strict=True)))
    return {"n": n, "elapsed": time.monotonic() - began}


async def role_pgq_load(spec: dict[str, Any]) -> dict[str, Any]:
    queries = await _pgq_queries(spec["dsn"])
    stop = _stop_event()

    async def send(k: int) -> None:
        await queries.enqueue([PGQ_ENTRYPOINT] * k, [None] * k, [0] * k)

    await _ready_then_go()
    return {"n": await _paced(spec["rate"], LOAD_BATCH, stop, send)}


async def role_pgq_probe(spec: dict[str, Any]) -> dict[str, Any]:
    queries = await _pgq_queries(spec["dsn"])

    async def submit(tag: str, port: int) -> None:
        await queries.enqueue(PGQ_ENTRYPOINT, f"{tag} {port}".encode())

    return await _probe_series(spec, submit)


ROLES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "goalrt-worker": role_goalrt_worker,
    "goalrt-submit": role_goalrt_submit,
    "goalrt-load": role_goalrt_load,
    "goalrt-probe": role_goalrt_probe,
    "pgq-install": role_pgq_install,
    "pgq-worker": role_pgq_worker,
    "pgq-submit": role_pgq_submit,
    "pgq-load": role_pgq_load,
    "pgq-probe": role_pgq_probe,
}


def run_role(name: str, spec: dict[str, Any]) -> None:
    _emit(asyncio.run(ROLES[name](spec)))


# == The orchestrator ================================================================================================


class Proc:
    """A client process: started, told to go, stopped, and its one JSON line read."""

    def __init__(self, name: str, python: str, role: str, spec: dict[str, Any], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}-{secrets.token_hex(3)}.log"
        self._log = self.log_path.open("w")
        cmd = [python, str(HERE), "--role", role, "--spec", json.dumps(spec)]
        self.p = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=REPO
        )

    def tail(self) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text().splitlines()[-30:])

    def ready(self, timeout: float = 120.0) -> None:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"{self.name} did not start ({line.strip()!r}):\n{self.tail()}")

    def go(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def running(self) -> bool:
        return self.p.poll() is None

    def stop(self) -> None:
        if self.running():
            self.p.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.running():
            self.p.kill()
            self.p.wait(10)

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        try:
            out, _ = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.name} did not finish:\n{self.tail()}") from None
        lines = out.strip().splitlines()
        if self.p.returncode != 0 or not lines:
            raise RuntimeError(f"{self.name} exited {self.p.returncode}:\n{self.tail()}")
        self._log.close()
        result: dict[str, Any] = json.loads(lines[-1])
        return result


@dataclass
class System:
    """One side of the comparison: how to start its processes and how to tell that its queue is empty."""

    name: str  # "goalrt" | "pgqueuer"
    python: str
    url: str  # libpq conninfo for the bench's own checks
    dsn: str  # what the client processes connect to
    unfinished_sql: str  # true while anything submitted is not finished
    count_sql: str  # (goals submitted, goals finished well) so far
    vacuum_sql: list[str]
    logdir: Path
    # Run after a run, inside its cost window: work the system owes for the run that nobody has done yet
    # (goalrt: positioning the run's events, which every event needs; no worker ticks).
    settle_sql: str = ""
    meter: Any = None  # a server_cost.CostMeter on this system's database
    worker_setting: dict[str, Any] = field(default_factory=dict)
    # Transactions the bench itself committed in this database: its polls and checks, taken out of the cost.
    own_xacts: int = 0

    @property
    def prefix(self) -> str:
        return "goalrt" if self.name == "goalrt" else "pgq"

    def spec(self, **kw: Any) -> dict[str, Any]:
        return {"url": self.dsn, "dsn": self.dsn, **kw}

    def cost_window(self) -> contextlib.AbstractContextManager[Any]:
        """``with sys_.cost_window() as cost:`` -- the WAL and transactions of what runs in the block."""
        return self.meter.window(lambda: self.own_xacts)  # type: ignore[no-any-return]

    def start(self, role: str, name: str, **kw: Any) -> Proc:
        return Proc(f"{self.prefix}-{name}", self.python, f"{self.prefix}-{role}", self.spec(**kw), self.logdir)

    def workers(self, count: int, setting: dict[str, Any] | None = None) -> list[Proc]:
        procs = [self.start("worker", f"worker{i}", **(setting or self.worker_setting)) for i in range(count)]
        for p in procs:
            p.ready()
        return procs

    def scalar(self, query: str) -> Any:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            self.own_xacts += 1
            row = conn.execute(query).fetchone()
            return None if row is None else (row[0] if len(row) == 1 else tuple(row))

    def settle(self) -> None:
        if self.settle_sql:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(self.settle_sql)

    def vacuum(self) -> None:
        """Before a run: settle what earlier runs left, VACUUM (ANALYZE) the queue's tables, CHECKPOINT."""
        import psycopg

        self.settle()
        with psycopg.connect(self.url, autocommit=True) as conn:
            for stmt in self.vacuum_sql:
                self.own_xacts += 1
                conn.execute(stmt)
            self.own_xacts += 1
            with contextlib.suppress(psycopg.Error):
                conn.execute("CHECKPOINT")

    def wait_finished(self, began: float, producer: Proc | None = None) -> float:
        """Poll until nothing is unfinished (and ``producer`` is done); return the seconds since ``began``."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                producing = producer is not None and producer.running()
                self.own_xacts += 1
                row = conn.execute(self.unfinished_sql).fetchone()
                if not producing and row is not None and not row[0]:
                    return time.monotonic() - began
                if time.monotonic() - began > RUN_TIMEOUT_S:
                    raise RuntimeError(f"{self.name}: run not finished after {RUN_TIMEOUT_S:.0f} s")
                time.sleep(POLL_S)


def stop_all(procs: list[Proc]) -> list[dict[str, Any]]:
    for p in procs:
        p.stop()
    return [p.result() for p in procs]


@contextlib.contextmanager
def cleanup(procs: list[Proc]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.kill()


# -- the runs --------------------------------------------------------------------------------------------------------


def submit_backlog(sys_: System, mode: str, n: int, batch: int, submitters: int) -> float:
    """Submit ``n`` goals with no worker running; return goals/s."""
    p = sys_.start("submit", f"submit-{mode}", mode=mode, n=n, batch=batch, conns=submitters if mode == "single" else 1)
    with cleanup([p]):
        p.ready()
        p.go()
        out = p.result(RUN_TIMEOUT_S)
    return float(out["n"] / out["elapsed"])


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat), NaN where unknown."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """A timed run: goals/s, and where the CPU went meanwhile (in cores: CPU seconds per second)."""

    rate: float
    seconds: float
    worker_cores: float
    machine_cores: float

    def note(self) -> str:
        return f"(worker processes {self.worker_cores:.2f} cores, machine {self.machine_cores:.2f})"


def drain(sys_: System, workers: int, n: int, setting: dict[str, Any] | None = None) -> Run:
    """Start ``workers`` worker processes on the backlog; time them until it is empty."""
    procs = sys_.workers(workers, setting)
    with cleanup(procs):
        busy = machine_busy_seconds()
        began = time.monotonic()
        for p in procs:
            p.go()
        seconds = sys_.wait_finished(began)
        busy = machine_busy_seconds() - busy
        cpu = sum(r["cpu_s"] for r in stop_all(procs))
    return Run(n / seconds, seconds, cpu / seconds, busy / seconds)


def end_to_end(sys_: System, mode: str, workers: int, n: int, batch: int, submitters: int, goal: str = NOOP) -> Run:
    """Workers running, ``n`` goals submitted meanwhile; time from the first submit to the last finish."""
    procs = sys_.workers(workers)
    conns = submitters if mode == "single" else 1
    producer = sys_.start("submit", f"e2e-{mode}", mode=mode, n=n, batch=batch, conns=conns, goal=goal)
    with cleanup([*procs, producer]):
        for p in procs:
            p.go()
        producer.ready()
        time.sleep(0.5)  # the workers connect and listen
        busy = machine_busy_seconds()
        began = time.monotonic()
        producer.go()
        seconds = sys_.wait_finished(began, producer)
        busy = machine_busy_seconds() - busy
        producer.result()
        cpu = sum(r["cpu_s"] for r in stop_all(procs))
    return Run(n / seconds, seconds, cpu / seconds, busy / seconds)


def latency(sys_: System, count: int, gap_ms: float, load_rate: float | None) -> dict[str, Any]:
    """Probe submit -> handler start with one worker, idle or under a background stream."""
    from pgbench_support import percentile

    procs = sys_.workers(1)
    load = sys_.start("load", "load", rate=load_rate) if load_rate else None
    probe = sys_.start("probe", "probe", count=count, gap_ms=gap_ms, timeout=30.0)
    with cleanup([*procs, probe, *([load] if load else [])]):
        procs[0].go()
        time.sleep(1.0)  # connected and listening: no probe waits for the poll fallback
        loaded = 0
        if load is not None:
            load.ready()
            load.go()
            time.sleep(1.0)  # the stream reaches its steady state
        probe.ready()
        began = time.monotonic()
        probe.go()
        out = probe.result(RUN_TIMEOUT_S)
        seconds = time.monotonic() - began
        if load is not None:
            load.stop()
            loaded = int(load.result()["n"])
        sys_.wait_finished(time.monotonic())
        stop_all(procs)
    lat = out["latencies_ms"]
    return {
        "n": len(lat),
        "lost": out["lost"],
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat, default=float("nan")),
        "mean_ms": sum(lat) / len(lat) if lat else float("nan"),
        "load_rate": load_rate or 0.0,
        "load_goals": loaded,
        "seconds": seconds,
    }


def check_all_finished(sys_: System, out: dict[str, Any]) -> None:
    """Record how many goals were submitted in all and warn unless every one of them finished well."""
    submitted, ok = sys_.scalar(sys_.count_sql)
    out["submitted"], out["finished_ok"] = submitted, ok
    if ok != submitted:
        out["problem"] = f"{sys_.name}: only {ok:,} of the {submitted:,} goals submitted finished well"
        print(f"  WARNING: {out['problem']}", flush=True)


def setting_label(sys_: System, setting: dict[str, Any]) -> str:
    if sys_.name == "goalrt":
        return f"concurrency {setting['concurrency']}"
    return f"batch_size {setting['batch_size']} x {setting['managers']} QueueManager(s)"


def step(sys_: System, what: str, value: float, run: Run | None = None, cost: dict[str, float] | None = None) -> None:
    note = run.note() if run else ""
    if cost:
        note += f"  per goal: WAL {cost['wal_bytes']:,.0f} B ({cost['fpi']:.2f} full pages), {cost['xacts']:.2f} xacts"
    print(f"  {sys_.name:<8} {what:<58} {value:>8,.0f} /s  {note}", flush=True)


def tune(sys_: System, args: argparse.Namespace, settings: list[dict[str, Any]], out: dict[str, Any]) -> None:
    """Warm up, then drain a backlog with one worker per setting; keep the best setting."""
    n = args.goals
    # The first run on a fresh database pays for caches and plans.
    warmup = min(n, 1000)
    submit_backlog(sys_, "batch", warmup, args.batch, args.submitters)
    drain(sys_, 1, warmup, settings[0])
    tuning = []
    for setting in settings:
        sys_.vacuum()
        submit_backlog(sys_, "batch", n, args.batch, args.submitters)
        sys_.vacuum()
        run = drain(sys_, 1, n, setting)
        tuning.append(
            {"setting": setting, "label": setting_label(sys_, setting), "drain_1w": run.rate, "run": asdict(run)}
        )
        step(sys_, f"drain 1 worker, {setting_label(sys_, setting)}", run.rate, run)
    best = max(tuning, key=lambda t: t["drain_1w"])
    sys_.worker_setting = best["setting"]
    out["tuning"] = tuning
    out["best_setting"] = best["setting"]
    out["best_setting_label"] = best["label"]
    print(f"  -> {sys_.name} uses {best['label']}", flush=True)


CELLS = (("drain", 1), ("drain", 2), ("e2e", 1), ("e2e", 2))


def run_cell(
    sys_: System, args: argparse.Namespace, mode: str, kind: str, workers: int, profile: bool, out: dict[str, Any]
) -> None:
    """One throughput figure (and, for a drain, the submit figure of its backlog); keeps the best of the rounds."""
    n = args.goals
    row = out.setdefault("throughput", {}).setdefault(mode, {"submit": [], "runs": {}, "cost": []})
    key = f"{kind}_{workers}w"
    sys_.vacuum()
    if kind == "drain":
        before = function_times(sys_) if profile else {}
        with sys_.cost_window() as submitted:
            rate = submit_backlog(sys_, mode, n, args.batch, args.submitters)
        row["submit"].append(rate)
        row["submit_best"] = max(row["submit"])
        step(sys_, f"submit {mode_label(mode, args)}", rate)
        sys_.vacuum()
        with sys_.cost_window() as drained:
            run = drain(sys_, workers, n)
            sys_.settle()
        cost = (submitted + drained).per(n)
        step(sys_, f"drain, {workers} worker process(es)", run.rate, run, cost)
        if profile:
            out["functions"] = print_function_times(before, function_times(sys_), n, run)
    else:
        with sys_.cost_window() as spent:
            run = end_to_end(sys_, mode, workers, n, args.batch, args.submitters)
            sys_.settle()
        cost = spent.per(n)
        step(sys_, f"end to end, submit {mode_label(mode, args)}, {workers} worker(s)", run.rate, run, cost)
    row["runs"].setdefault(key, []).append(asdict(run))
    row[key] = max(r["rate"] for r in row["runs"][key])
    row["cost"].append({"run": key, **cost})


def run_three_step(sys_: System, args: argparse.Namespace, workers: int, out: dict[str, Any]) -> None:
    """goalrt only: 3-step goals submitted in batches while the workers run (PgQueuer's figure is its e2e jobs/s)."""
    n = max(1, args.goals // 3)
    sys_.vacuum()
    with sys_.cost_window() as spent:
        run = end_to_end(sys_, "batch", workers, n, args.batch, args.submitters, goal=NOOP3)
        sys_.settle()
    cost = spent.per(n)
    step(sys_, f"end to end, 3-step goals in batches, {workers} worker(s)", run.rate, run, cost)
    row = out.setdefault("three_step", {"runs": {}, "cost": []})
    key = f"e2e_{workers}w"
    row["runs"].setdefault(key, []).append(asdict(run))
    row[key] = max(r["rate"] for r in row["runs"][key])
    row["cost"].append({"run": key, **cost})


def function_times(sys_: System) -> dict[str, tuple[int, float]]:
    """goalrt's SQL functions: calls and total ms so far (pg_stat_user_functions; needs track_functions)."""
    import psycopg

    with psycopg.connect(sys_.url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT funcname, calls, total_time FROM pg_stat_user_functions WHERE schemaname = 'goalrt'"
        ).fetchall()
    return {name: (int(calls), float(total)) for name, calls, total in rows}


def print_function_times(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]], n: int, run: Run
) -> list[dict[str, Any]]:
    """Print where the database time of one batch submit + 1-worker drain went, per goal."""
    out = []
    for name, (calls, total) in after.items():
        calls0, total0 = before.get(name, (0, 0.0))
        if calls > calls0:
            out.append(
                {
                    "function": name,
                    "calls": calls - calls0,
                    "ms": total - total0,
                    "us_per_goal": (total - total0) * 1000 / n,
                }
            )
    out.sort(key=lambda f: -f["ms"])
    print(
        "    database time per goal in goalrt's functions"
        f" (submit in batches, then drain with 1 worker in {run.seconds:.1f} s):"
    )
    for f in out[:6]:
        print(f"      {f['function']:<24} {f['calls']:>7,} calls {f['ms']:>9,.0f} ms {f['us_per_goal']:>8,.1f} us/goal")
    return out


def mode_label(mode: str, args: argparse.Namespace) -> str:
    return f"singly ({args.submitters} conns)" if mode == "single" else f"in batches of {args.batch}"


def run_latency(sys_: System, args: argparse.Namespace, load_rate: float, out: dict[str, Any]) -> None:
    sys_.vacuum()
    idle = latency(sys_, args.probes, args.probe_gap, None)
    print(
        f"  {sys_.name:<8} idle        p50 {idle['p50_ms']:7.2f} ms  p99 {idle['p99_ms']:7.2f} ms"
        f"  max {idle['max_ms']:7.2f} ms  ({idle['n']} probes, {idle['lost']} lost)",
        flush=True,
    )
    sys_.vacuum()
    loaded = latency(sys_, args.probes, args.probe_gap, load_rate)
    print(
        f"  {sys_.name:<8} under load  p50 {loaded['p50_ms']:7.2f} ms  p99 {loaded['p99_ms']:7.2f} ms"
        f"  max {loaded['max_ms']:7.2f} ms  ({loaded['n']} probes, {loaded['lost']} lost,"
        f" {loaded['load_goals']:,} background goals at {load_rate:,.0f}/s)",
        flush=True,
    )
    out["latency"] = {"idle": idle, "load": loaded}


# -- PgQueuer's interpreter ------------------------------------------------------------------------------------------


def pgqueuer_python(explicit: str | None) -> str:
    """Return an interpreter that has pgqueuer; build the bench's own virtualenv the first time."""
    if explicit:
        return explicit
    from goalrt.db.config import home_dir

    venv = home_dir() / "bench" / "pgqueuer-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import pgqueuer, asyncpg"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    print(f"building PgQueuer's virtualenv in {venv} (pip install pgqueuer asyncpg) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "pgqueuer", "asyncpg"]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"could not install PgQueuer (give --pgqueuer-python?):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    subprocess.run(check, check=True)
    return str(python)


# -- reporting -------------------------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    g, q = doc["goalrt"]["throughput"], doc["pgqueuer"]["throughput"]
    cells = ("submit_best", "drain_1w", "drain_2w", "e2e_1w", "e2e_2w")
    per_cell = {
        f"{mode}.{cell}": {
            "goalrt": g[mode][cell],
            "pgqueuer": q[mode][cell],
            "ratio": ratio(g[mode][cell], q[mode][cell]),
        }
        for mode in ("single", "batch")
        for cell in cells
    }

    def best(side: dict[str, Any], kind: str) -> float:
        return max(side[m][c] for m in ("single", "batch") for c in cells if c.startswith(kind))

    heads = {}
    for kind in ("drain", "e2e"):
        gb, qb = best(g, kind), best(q, kind)
        heads[kind] = {"goalrt_best": gb, "pgqueuer_best": qb, "ratio": ratio(gb, qb)}
    idle = doc["goalrt"]["latency"]["idle"]
    cost = {}
    for mode in ("single", "batch"):
        # Of the mode's submit + drain runs (alike on both sides), the one with the least WAL per goal: WAL is
        # server-wide, and others' writes only add.
        gc, qc = (
            min((c for c in side[mode]["cost"] if c["run"].startswith("drain")), key=lambda c: c["wal_bytes"])
            for side in (g, q)
        )
        cost[mode] = {
            "goalrt": gc,
            "pgqueuer": qc,
            "wal_ratio": ratio(gc["wal_bytes"], qc["wal_bytes"]),
            "fpi_ratio": ratio(gc["fpi"], qc["fpi"]),
            "xact_ratio": ratio(gc["xacts"], qc["xacts"]),
        }
    three = doc["goalrt"]["three_step"]
    three_step = {
        key: {
            "goals_per_s": three[key],
            "steps_per_s": 3 * three[key],
            "pgqueuer_jobs_per_s": q["batch"][key],
            "ratio": ratio(3 * three[key], q["batch"][key]),
        }
        for key in ("e2e_1w", "e2e_2w")
    }
    return {
        "cells": per_cell,
        "best": heads,
        "cost": cost,
        "three_step": three_step,
        "targets": {
            "ratio": TARGET_RATIO,
            "wal_ratio": TARGET_WAL_RATIO,
            "idle_p50_ms": TARGET_P50_MS,
            "idle_p99_ms": TARGET_P99_MS,
            "drain_ratio_met": heads["drain"]["ratio"] >= TARGET_RATIO,
            "e2e_ratio_met": heads["e2e"]["ratio"] >= TARGET_RATIO,
            "wal_ratio_met": all(c["wal_ratio"] <= TARGET_WAL_RATIO for c in cost.values()),
            "idle_p50_met": idle["p50_ms"] <= TARGET_P50_MS,
            "idle_p99_met": idle["p99_ms"] <= TARGET_P99_MS,
        },
    }


def print_costs(doc: dict[str, Any], args: argparse.Namespace) -> None:
    s = doc["summary"]["cost"]
    print()
    print(
        "WAL and transactions per goal (job), submit + drain: of each mode's drain runs, the one with the least WAL"
        " (WAL is server-wide; the last column counts other databases' commits in that run's windows)"
    )
    header = f"{'submit mode':<26} {'system':<9} {'WAL B/goal':>11} {'FPI/goal':>9} {'xacts/goal':>11} {'others':>7}"
    print(header)
    print("-" * len(header))
    for mode in ("single", "batch"):
        label = mode_label(mode, args)
        for name in ("goalrt", "pgqueuer"):
            c = s[mode][name]
            print(
                f"{label:<26} {name:<9} {c['wal_bytes']:>11,.0f} {c['fpi']:>9.3f} {c['xacts']:>11.3f}"
                f" {c['other_xacts']:>7,.0f}"
            )
            label = ""
        print(
            f"{'':<26} {'ratio':<9} {s[mode]['wal_ratio']:>10.2f}x {s[mode]['fpi_ratio']:>8.2f}x"
            f" {s[mode]['xact_ratio']:>10.2f}x"
        )
    print(
        f"(target: goalrt's WAL per goal <= {TARGET_WAL_RATIO:g}x PgQueuer's per job; FPI: full-page images, each"
        " run starts after a CHECKPOINT; goalrt's runs end with a tick that positions their events; xacts:"
        " pg_stat_database.xact_commit, the bench's own polls taken out)"
    )


def print_three_step(doc: dict[str, Any], args: argparse.Namespace) -> None:
    from pgbench_support import fmt

    s = doc["summary"]["three_step"]
    cost = min(doc["goalrt"]["three_step"]["cost"], key=lambda c: c["wal_bytes"])
    print()
    print(
        f"3-step goals end to end (goalrt, {max(1, args.goals // 3):,} goals in batches of {args.batch} per run)"
        " against PgQueuer's one-job jobs end to end in batches: a step is compared with a job"
    )
    header = (
        f"{'workers':<8} {'goals/s':>9} {'steps/s':>9} {'PgQ jobs/s':>11} {'jobs/s / 3':>11} {'ratio':>7}"
        "  (steps/s over jobs/s = goals/s over jobs/s / 3)"
    )
    print(header)
    print("-" * len(header))
    for key, workers in (("e2e_1w", 1), ("e2e_2w", 2)):
        t = s[key]
        print(
            f"{workers:<8} {fmt(t['goals_per_s'], 0):>9} {fmt(t['steps_per_s'], 0):>9}"
            f" {fmt(t['pgqueuer_jobs_per_s'], 0):>11} {fmt(t['pgqueuer_jobs_per_s'] / 3, 0):>11} {t['ratio']:>6.2f}x"
        )
    print(
        f"goalrt per 3-step goal (the run with the least WAL): WAL {cost['wal_bytes']:,.0f} B"
        f" ({cost['fpi']:.2f} full-page images), {cost['xacts']:.3f} transactions"
    )


def print_report(doc: dict[str, Any], args: argparse.Namespace) -> None:
    from pgbench_support import fmt

    g, q = doc["goalrt"], doc["pgqueuer"]
    s = doc["summary"]
    print()
    print(
        f"Throughput, goals (jobs) per second; {args.goals:,} per run; goalrt {g['best_setting_label']},"
        f" PgQueuer {q['best_setting_label']}"
    )
    header = (
        f"{'submit mode':<26} {'system':<9} {'submit':>9} {'drain 1w':>9} {'drain 2w':>9} {'e2e 1w':>9} {'e2e 2w':>9}"
    )
    print(header)
    print("-" * len(header))
    cells = ("submit_best", "drain_1w", "drain_2w", "e2e_1w", "e2e_2w")
    for mode in ("single", "batch"):
        label = mode_label(mode, args)
        for name, side in (("goalrt", g), ("pgqueuer", q)):
            vals = " ".join(f"{fmt(side['throughput'][mode][c], 0):>9}" for c in cells)
            print(f"{label:<26} {name:<9} {vals}")
            label = ""
        ratios = " ".join(f"{s['cells'][f'{mode}.{c}']['ratio']:>8.2f}x" for c in cells)
        print(f"{'':<26} {'ratio':<9} {ratios}")
    print(
        f"(submit: no worker running, best of {2 * args.rounds} runs; drain: that backlog; e2e: submitted while the"
        f" workers run; each the best of {args.rounds} round(s))"
    )

    print_costs(doc, args)
    print_three_step(doc, args)

    print()
    print("Tuning (drain by 1 worker process, backlog submitted in batches)")
    for name, side in (("goalrt", g), ("pgqueuer", q)):
        for t in side["tuning"]:
            print(f"  {name:<9} {t['label']:<40} {fmt(t['drain_1w'], 0):>9} /s")

    print()
    print("Latency, submit call -> handler start, one worker process (ms)")
    header = (
        f"{'system':<9} {'idle p50':>9} {'idle p99':>9} {'idle max':>9} {'load p50':>9} {'load p99':>9}"
        f" {'load max':>9}  load"
    )
    print(header)
    print("-" * len(header))
    for name, side in (("goalrt", g), ("pgqueuer", q)):
        i, ld = side["latency"]["idle"], side["latency"]["load"]
        share = 100 * ratio(ld["load_rate"], max(t["drain_1w"] for t in side["tuning"]))
        print(
            f"{name:<9} {fmt(i['p50_ms'], 2):>9} {fmt(i['p99_ms'], 2):>9} {fmt(i['max_ms'], 2):>9}"
            f" {fmt(ld['p50_ms'], 2):>9} {fmt(ld['p99_ms'], 2):>9} {fmt(ld['max_ms'], 2):>9}"
            f"  {ld['load_rate']:,.0f}/s, {share:.0f}% of its best 1-worker drain"
        )

    print()
    print("Summary")
    for kind, title in (("drain", "drain"), ("e2e", "end to end")):
        h = s["best"][kind]
        print(
            f"  {title}: goalrt best {h['goalrt_best']:,.0f} goals/s, PgQueuer best {h['pgqueuer_best']:,.0f} jobs/s,"
            f" ratio {h['ratio']:.2f}x (target >= {TARGET_RATIO:.0f}x)"
        )
    for mode in ("single", "batch"):
        c = s["cost"][mode]
        print(
            f"  WAL, submitted {mode_label(mode, args)}: goalrt {c['goalrt']['wal_bytes']:,.0f} B/goal, PgQueuer"
            f" {c['pgqueuer']['wal_bytes']:,.0f} B/job, ratio {c['wal_ratio']:.2f}x (target <= {TARGET_WAL_RATIO:g}x)"
        )
    for key, workers in (("e2e_1w", 1), ("e2e_2w", 2)):
        t = s["three_step"][key]
        print(
            f"  3-step goals end to end, {workers} worker(s): {t['goals_per_s']:,.0f} goals/s ="
            f" {t['steps_per_s']:,.0f} steps/s, PgQueuer {t['pgqueuer_jobs_per_s']:,.0f} jobs/s,"
            f" ratio {t['ratio']:.2f}x"
        )
    i = g["latency"]["idle"]
    print(
        f"  goalrt idle latency: p50 {i['p50_ms']:.2f} ms (target <= {TARGET_P50_MS:g}),"
        f" p99 {i['p99_ms']:.2f} ms (target <= {TARGET_P99_MS:g})"
    )
    for side in (g, q):
        if side.get("problem"):
            print(f"  WARNING: {side['problem']}")


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", "--database-url", dest="url", help="server (default: GOALRT_DATABASE_URL, else embedded)")
    p.add_argument("--quick", action="store_true", help="fewer goals, settings and probes (about 2.5 minutes)")
    p.add_argument("--goals", type=int, help="goals per throughput run (default 10000; --quick 3000)")
    p.add_argument("--batch", type=int, default=500, help="goals per batch submit (default 500)")
    p.add_argument("--rounds", type=int, help="throughput rounds; each figure is the best (default 2; --quick 1)")
    p.add_argument("--submitters", type=int, default=16, help="connections submitting singly (default 16)")
    p.add_argument("--concurrency", help="goalrt worker concurrency values to try (default 50,100,200; --quick 100)")
    p.add_argument(
        "--pgq-settings",
        help="PgQueuer settings to try: BATCHxMANAGERS, comma-separated (default 10x1,100x1,100x4,200x4;"
        " --quick 100x1,100x4)",
    )
    p.add_argument("--probes", type=int, help="latency probes per series (default 200; --quick 100)")
    p.add_argument("--probe-gap", type=float, default=20.0, help="ms between probes (default 20)")
    p.add_argument("--load-rate", type=float, help="background goals/s for latency under load (default: see above)")
    p.add_argument("--pgqueuer-python", help="a Python that has pgqueuer and asyncpg (default: the bench's venv)")
    p.add_argument(
        "--functions",
        action="store_true",
        help="time goalrt's SQL functions (track_functions = pl on its scratch database; superuser) and print them",
    )
    p.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    p.add_argument("--out", type=Path, help="write the JSON results to this file (implies --json)")
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        return args
    args.goals = args.goals or (3000 if args.quick else 10_000)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.probes = args.probes or (100 if args.quick else 200)
    try:
        args.concurrency_values = [
            int(x) for x in (args.concurrency or ("100" if args.quick else "50,100,200")).split(",")
        ]
        pgq = args.pgq_settings or ("100x1,100x4" if args.quick else "10x1,100x1,100x4,200x4")
        args.pgq_values = [tuple(int(v) for v in item.split("x")) for item in pgq.split(",")]
    except ValueError:
        p.error("--concurrency is a comma-separated list of integers, --pgq-settings of BATCHxMANAGERS")
    if min(args.goals, args.batch, args.submitters, args.probes, args.rounds, *args.concurrency_values) < 1:
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.role:
        run_role(args.role, json.loads(args.spec))
        return

    import psycopg
    from pgbench_support import emit_results, scratch_databases, server_info
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from server_cost import CostMeter

    from goalrt.db.config import database_url
    from goalrt.db.connect import asyncpg_dsn
    from goalrt.db.migrate import upgrade
    from goalrt.goals.goals import Goals

    began = time.monotonic()
    busy = machine_busy_seconds()
    time.sleep(1.0)
    baseline = machine_busy_seconds() - busy
    base_url = database_url(args.url)
    pgq_python = pgqueuer_python(args.pgqueuer_python)
    prefix = f"goalrt_gbench_{secrets.token_hex(4)}"
    doc: dict[str, Any] = {
        "config": {
            "goals": args.goals,
            "batch": args.batch,
            "submitters": args.submitters,
            "concurrency": args.concurrency_values,
            "pgq_settings": [f"{b}x{m}" for b, m in args.pgq_values],
            "probes": args.probes,
            "probe_gap_ms": args.probe_gap,
            "rounds": args.rounds,
            "quick": args.quick,
        },
        "machine_busy_before_cores": baseline,
    }
    with (
        scratch_databases(base_url, [prefix, f"{prefix}_pgq"]) as (g_url, q_url),
        tempfile.TemporaryDirectory(prefix="goalrt-gbench-") as tmp,
        contextlib.closing(CostMeter(base_url, prefix)) as g_meter,
        contextlib.closing(CostMeter(base_url, f"{prefix}_pgq")) as q_meter,
    ):
        if args.functions:
            with psycopg.connect(base_url, autocommit=True) as admin:
                admin.execute(sql.SQL("ALTER DATABASE {} SET track_functions = 'pl'").format(sql.Identifier(prefix)))
        upgrade(g_url)
        with Goals.connect(g_url, registry=make_registry()) as goals:
            goals.register()
        server = server_info(
            g_url, ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections")
        )
        doc["server"] = server
        print(
            f"server: PostgreSQL {server['server_version']}; fsync={server['fsync']},"
            f" synchronous_commit={server['synchronous_commit']}, shared_buffers={server['shared_buffers']}"
        )
        print(
            f"target: {conninfo_to_dict(base_url).get('host') or 'localhost'}, scratch databases {prefix}, {prefix}_pgq"
        )
        print(
            f"machine: {os.cpu_count()} CPUs, {baseline:.2f} of them busy in the second before the run"
            " (other processes; the figures below share the machine with them)",
            flush=True,
        )
        goalrt_side = System(
            "goalrt",
            sys.executable,
            g_url,
            asyncpg_dsn(g_url),
            "SELECT EXISTS (SELECT 1 FROM goalrt.goals WHERE status IN ('pending', 'active', 'waiting'))",
            "SELECT count(*), count(*) FILTER (WHERE status = 'complete') FROM goalrt.goals",
            ["VACUUM (ANALYZE) goalrt.goals", "VACUUM (ANALYZE) goalrt.goal_steps"],
            Path(tmp),
            settle_sql=f"SELECT goalrt.tick({SETTLE_WAIT_MS})",
            meter=g_meter,
        )
        pgq_side = System(
            "pgqueuer",
            pgq_python,
            q_url,
            asyncpg_dsn(q_url),
            "SELECT EXISTS (SELECT 1 FROM pgqueuer)",
            "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'successful')"
            " FROM pgqueuer_log",
            ["VACUUM (ANALYZE) pgqueuer", "VACUUM (ANALYZE) pgqueuer_log"],
            Path(tmp),
            meter=q_meter,
        )
        version = pgq_side.start("install", "install").result()["version"]
        print(f"PgQueuer {version} ({pgq_python})", flush=True)
        doc["goalrt"], doc["pgqueuer"] = {}, {"version": version}
        sides = ((goalrt_side, doc["goalrt"]), (pgq_side, doc["pgqueuer"]))
        settings: dict[str, list[dict[str, Any]]] = {
            "goalrt": [{"concurrency": c} for c in args.concurrency_values],
            "pgqueuer": [{"batch_size": b, "managers": m} for b, m in args.pgq_values],
        }

        print(f"\n1. Tuning: backlog of {args.goals:,} submitted in batches, drained by 1 worker process", flush=True)
        for side, out in sides:
            tune(side, args, settings[side.name], out)

        print(
            f"\n2. Throughput: {args.goals:,} goals per run, {args.rounds} round(s), goalrt then PgQueuer per figure;"
            " then goalrt's 3-step goals",
            flush=True,
        )
        for rnd in range(args.rounds):
            for mode in ("single", "batch"):
                for kind, workers in CELLS:
                    for side, out in sides:
                        profile = (
                            args.functions
                            and side.name == "goalrt"
                            and rnd == 0
                            and (mode, kind, workers) == ("batch", "drain", 1)
                        )
                        run_cell(side, args, mode, kind, workers, profile, out)
            for workers in (1, 2):
                run_three_step(goalrt_side, args, workers, doc["goalrt"])

        load_rate = args.load_rate or round(
            0.5 * min(max(t["drain_1w"] for t in out["tuning"]) for _, out in sides), -1
        )
        print(
            f"\n3. Latency: {args.probes} probes per series, {args.probe_gap:g} ms apart, one worker process",
            flush=True,
        )
        for side, out in sides:
            run_latency(side, args, load_rate, out)
        for side, out in sides:
            check_all_finished(side, out)

    doc["summary"] = summary(doc)
    doc["seconds"] = time.monotonic() - began
    print_report(doc, args)
    print(f"\ntotal: {doc['seconds']:,.0f} s")
    if args.json or args.out:
        emit_results(doc, args.out)


if __name__ == "__main__":
    main()
