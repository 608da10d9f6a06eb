"""The worker: a long-running asyncio process that claims goals and runs their steps.

    worker = Worker(url, registry, concurrency=10)
    await worker.run()          # until worker.request_stop() (SIGTERM in the CLI)

What it does, and what it promises (details in docs/goals.md):

- Claims runnable goals in batches (``claim_goals_v3``: FOR UPDATE SKIP
  LOCKED, ordered by priority, run_at, id), each under a lease with a fresh
  epoch, and keeps the leases alive with a heartbeat while their steps run.
- Runs only the actions it can (a handler it has, or a GDL action marked
  ``pure``): it registers them, claims only goals to plan or whose next step
  is one of them, and hands a goal over when its next step is not.
- Plans a goal the first time it takes it (the goal type's steps), then runs
  the steps one after another. Each result, with its state changes and
  events, and the advance to the next step are committed in one
  transaction, only if the lease is still held at that epoch.
- Wakes on a NOTIFY when goals are submitted or released; polls as a fallback.
- Fires the due schedules (``scheduler``): each tick submits its goal once across the cluster.
- Plans with the newest GDL version: it reads it at start, on a NOTIFY of
  ``goalrt gdl load``, and after each reconnect of its listener (a
  notification may have been lost); the goals it holds re-plan under it
  before their next step (``runner``).
- On a lost connection (PostgreSQL restart, pg_terminate_backend), retries
  with backoff; a completion whose commit may or may not have happened is
  sent again and recognised (``already_applied``).
- ``request_stop()`` drains: no new claims; running steps get ``grace``
  seconds; what is still running then is cancelled and its leases released,
  so other workers take those goals at once.
- With ``metrics_port``, serves Prometheus metrics (``metrics``); with
  tracing configured, each claimed goal's run is a trace (``goalrt.tracing``).

A killed worker needs nobody: its leases expire and any worker's next claim
takes the goals over. This module is the lifecycle and the claim loop; one
goal is ``runner``, leases ``leases``, wake-ups ``listener``, SQL calls
``database`` (typed by ``protocol``), plans ``planning``, schedules ``scheduler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from goalrt.actions.catalog import Catalog
from goalrt.actions.clients import close_clients
from goalrt.db.config import database_url
from goalrt.db.resources import MAIN_SCHEMA
from goalrt.errors import ConfigError, GoalrtError
from goalrt.goals.registry import Registry, default_registry
from goalrt.log.bus import goal_channels
from goalrt.worker.database import WorkerDatabase, connect_pool
from goalrt.worker.definitions import registry_for, unhandled
from goalrt.worker.dispatcher import HandlerCalls
from goalrt.worker.leases import Lease, Leases
from goalrt.worker.listener import listen
from goalrt.worker.metrics import PrometheusMetrics, WorkerMetrics
from goalrt.worker.partitions import Partitions
from goalrt.worker.planner_bridge import RECHECK
from goalrt.worker.runner import GoalRunner
from goalrt.worker.scheduler import Scheduler
from goalrt.worker.stats import WorkerStats

log = logging.getLogger("goalrt.worker")


class Worker:
    """Claim goals and run their steps until asked to stop."""

    def __init__(
        self,
        url: str | None = None,
        registry: Registry | None = None,
        *,
        concurrency: int = 10,
        name: str | None = None,
        lease: float = 30.0,
        poll: float = 1.0,
        grace: float = 30.0,
        batch: int = 100,
        schema: str = MAIN_SCHEMA,
        partitions: Partitions | None = None,
        only: Sequence[str] | None = None,
        takeover: float = 10.0,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        metrics_interval: float = 5.0,
        schedules: bool = True,
        actions: Catalog | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1")
        if lease <= 0 or poll <= 0 or grace < 0 or takeover < 0:
            raise ConfigError("lease and poll must be > 0 seconds, grace and takeover >= 0")
        if (metrics_port is not None and not 0 <= metrics_port <= 65535) or metrics_interval <= 0:
            raise ConfigError("metrics port must be within 0..65535 (0: any free one), its interval > 0 seconds")
        self.url = database_url(url)
        # The handlers the modules registered; with GDL definitions loaded in the
        # database, the registry the worker runs is built from both (see worker.definitions).
        self.handlers = registry or default_registry
        self.registry = self.handlers
        self.actions = actions  # the built-ins GDL actions may name (None: default_catalog(), when needed)
        self.only = sorted(only) if only else None
        # The GDL version this worker plans with (None: no definitions loaded).
        self.gdl_version: int | None = None
        self._gdl_changed = False
        # One reload at a time (the claim loop's, a goal's catch-up); a version this worker could not run.
        self._reloading = asyncio.Lock()
        self._unrunnable: int | None = None
        # The goal types this worker claims (--only narrows what it could run).
        self.goal_types = self.only or sorted(self.registry.goal_types)
        self.partitions = partitions
        self.takeover = takeover
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.id = f"{self.name}:{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.poll = poll
        self.grace = grace
        self.batch = batch
        self.schema = schema
        self.stats = WorkerStats()
        # Serving metrics: where (the port once bound: 0 asks for a free one), and how often the queue is read.
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.metrics_interval = metrics_interval
        self.metrics = WorkerMetrics()
        # Fire due schedules (off for `goalrt test`, whose runs must not depend on the clock).
        self.schedules = schedules
        self._goals_channel, self._cancel_channel = goal_channels(schema)
        self._gdl_channel = f"{schema}_gdl"
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="goalrt-action")
        # The handler runs still going after a timeout or the drain gave up on them.
        self.handler_calls = HandlerCalls()
        self._ready = asyncio.Event()
        # Made by run(), once the pool is connected.
        self._db_: WorkerDatabase | None = None
        self._leases_: Leases | None = None
        self._runner_: GoalRunner | None = None

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming and drain (safe to call from a signal handler on the loop)."""
        if not self._stopping.is_set():
            log.info("worker %s: stopping, draining %d goal(s) (grace %gs)", self.id, len(self.held), self.grace)
        self._stopping.set()
        self._wake.set()

    @property
    def runnable(self) -> list[str]:
        """The actions this worker runs, sorted: those it has a handler for, GDL's pure ones, and re-checks.

        (A maintained goal's plan ends in a ``goalrt.recheck`` step: every
        worker handles it by planning again.)
        """
        return sorted({*self.registry.runnable_actions(), RECHECK})

    @property
    def held(self) -> dict[int, int]:
        """Goal id -> epoch of the leases held now."""
        held = {} if self._leases_ is None else self._leases_.held
        return {g: lease.epoch for g, lease in held.items()}

    async def wait_ready(self) -> None:
        await self._ready.wait()

    @property
    def _db(self) -> WorkerDatabase:
        assert self._db_ is not None, "run() connects first"
        return self._db_

    @property
    def _leases(self) -> Leases:
        assert self._leases_ is not None, "run() connects first"
        return self._leases_

    @property
    def _runner(self) -> GoalRunner:
        assert self._runner_ is not None, "run() connects first"
        return self._runner_

    async def run(self) -> None:
        """Run until ``request_stop()``; then drain and return."""
        # One connection more than before the start locks: they keep one (StartGates).
        pool = await connect_pool(self.url, 4 + min(self.concurrency, 8), self._stopping)
        if pool is None:  # stopped while waiting for the server
            self._executor.shutdown(wait=False)
            log.info("worker %s stopped before the database came up", self.id)
            return
        self._db_ = WorkerDatabase(pool, self.schema, self.id, self._count_reconnect)
        if self.metrics_port is not None:
            self.metrics = PrometheusMetrics(lambda: len(self.held))
        self._leases_ = Leases(self._db, self.id, self.lease, self._wake, self.stats, self.metrics)
        self._runner_ = GoalRunner(
            self._db,
            self._leases,
            self.stats,
            self._executor,
            self.handler_calls,
            worker_id=self.id,
            schema=self.schema,
            batch=self.batch,
            stopping=self._stopping,
            wake=self._wake,
            catch_up=self._reload_definitions,
            metrics=self.metrics,
        )
        try:
            await self._configure()
        except BaseException:  # a configuration error: nothing started, nothing to drain
            await self._close(pool)
            self._executor.shutdown(wait=False)
            raise
        background: list[asyncio.Task[Any]] = []
        try:
            await self._register()
            self._runner.start()
            channels = {
                self._goals_channel: self._on_goals,
                self._cancel_channel: self._on_cancel,
                self._gdl_channel: self._on_gdl,
            }
            background = [
                # On each (re)connect: anything submitted or loaded while we were not listening.
                asyncio.create_task(listen(self.url, channels, self._on_listening, self.id), name="goalrt-listen"),
                asyncio.create_task(self._leases.heartbeat(), name="goalrt-heartbeat"),
            ]
            if self.schedules:
                scheduler = Scheduler(self._db, self.id, self.poll, self._stopping)
                background.append(asyncio.create_task(scheduler.run(), name="goalrt-schedules"))
            if isinstance(self.metrics, PrometheusMetrics):
                assert self.metrics_port is not None
                try:
                    self.metrics_port = self.metrics.serve(self.metrics_host, self.metrics_port)
                except OSError as exc:
                    where = f"{self.metrics_host}:{self.metrics_port}"
                    raise ConfigError(f"metrics: cannot listen on {where}: {exc.strerror or exc}") from None
                refresh = self.metrics.refresh(pool, self.schema, self.metrics_interval)
                background.append(asyncio.create_task(refresh, name="goalrt-metrics"))
                log.info("worker %s: metrics on http://%s:%d/metrics", self.id, self.metrics_host, self.metrics_port)
            self._ready.set()
            log.info(
                "worker %s started: concurrency %d, goal types %s, actions %s",
                self.id,
                self.concurrency,
                ", ".join(sorted(self.registry.goal_types)),
                ", ".join(self.runnable),
            )
            await self._claim_loop()
            await self._drain()
        finally:
            await _cancel(background)
            if isinstance(self.metrics, PrometheusMetrics):
                self.metrics.close()
            await self._runner.stop(timeout=5)
            try:
                async with asyncio.timeout(5):
                    await self._db.call("worker_deregister", self.id, retry=False)
            except Exception as exc:  # leaving a stale row is harmless; say so and go on
                log.warning("worker %s: could not deregister: %s", self.id, exc)
            await self._close(pool)
            await close_clients()  # http.call's connections
            self._executor.shutdown(wait=False, cancel_futures=True)
            running = self.handler_calls.running
            if running:
                log.warning("worker %s stopped; %d handler(s) it gave up on still running", self.id, running)
            else:
                log.info("worker %s stopped", self.id)

    async def _close(self, pool: Any) -> None:
        """Close the pool; a connection an abandoned handler still holds is not waited for."""
        try:
            async with asyncio.timeout(5):
                await pool.close()
        except TimeoutError:
            pool.terminate()

    def _count_reconnect(self) -> None:
        self.stats.reconnects += 1
        self.metrics.reconnected()

    async def _configure(self) -> None:
        """Build the registry from the newest GDL version (if any) and the handlers; check what to claim.

        All or nothing: on an error the worker keeps the registry and version it had.
        """
        stored = await self._db.gdl_current()
        registry, version = self.handlers, None
        if stored is not None:
            version, definitions = stored
            registry = registry_for(definitions, self.handlers, self.actions)
            missing, ignored = unhandled(definitions, self.handlers, self.actions)
            if missing:
                log.warning(
                    "worker %s: no handler for GDL action(s) %s: it leaves their steps to workers that have one "
                    "(mark an action `pure` in GDL if its effects are the whole action)",
                    self.id,
                    ", ".join(missing),
                )
            if ignored:
                log.warning(
                    "worker %s: GDL action(s) %s are pure: the handlers registered for them are not run",
                    self.id,
                    ", ".join(ignored),
                )
        if not registry.goal_types:
            raise ConfigError(
                "no goal types registered: give --handlers MODULE, or load GDL definitions with `goalrt gdl load`"
            )
        unknown = sorted(set(self.only or ()) - set(registry.goal_types))
        if unknown:
            known = ", ".join(sorted(registry.goal_types))
            raise ConfigError(f"--only {unknown[0]}: not a goal type of these handlers (they have: {known})")
        if self.gdl_version is not None and version != self.gdl_version:
            log.info("worker %s: GDL version %s replaces %s", self.id, version, self.gdl_version)
        self.registry, self.gdl_version = registry, version
        self.goal_types = self.only or sorted(registry.goal_types)
        self._runner.configure(registry, version)

    async def _reload_definitions(self) -> None:
        """Plan with the newest GDL version from now on, if it is not the one this worker has.

        The goals this worker holds re-plan under it before their next step.
        A version the worker cannot run (a handler is missing) is logged
        once and not tried again; the worker keeps the one it had.
        """
        self._gdl_changed = False
        async with self._reloading:
            newest = self.gdl_version
            try:
                newest = await self._db.gdl_version()
                if newest in (self.gdl_version, self._unrunnable):
                    return
                await self._configure()
                await self._register()
            except ConfigError as exc:
                self._unrunnable = newest
                log.error(
                    "worker %s: cannot run GDL version %s; keeping %s: %s", self.id, newest, self.gdl_version, exc
                )
            except GoalrtError as exc:
                log.error("worker %s: could not load GDL version %s: %s", self.id, newest, exc)

    async def _register(self) -> None:
        # Only the handlers' own goal types: loading GDL registered its goal
        # types, and only an admin may change their schemas.
        for name, goal_type in sorted(self.registry.goal_types.items()):
            if self.handlers.goal_types.get(name) is goal_type:
                await self._db.call("goal_type_register", name, goal_type.params_schema())
        await self._db.call(
            "worker_register",
            self.id,
            self.name,
            socket.gethostname(),
            os.getpid(),
            self.concurrency,
            self.goal_types,
            self.runnable,
            None if self.partitions is None else list(self.partitions.buckets),
            None if self.partitions is None else self.partitions.count,
        )

    # -- claiming ------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        buckets = None if self.partitions is None else list(self.partitions.buckets)
        count = None if self.partitions is None else self.partitions.count
        while not self._stopping.is_set():
            self._wake.clear()  # before counting: a slot freed after this wakes the sleep below
            if self._gdl_changed:
                await self._reload_definitions()
            free = self.concurrency - len(self._leases.held)
            if free <= 0:
                # Busy: still act on due timers and deadlines (a claim would).
                with contextlib.suppress(GoalrtError):
                    await self._db.call("timers_wake", self.batch)
                await self._sleep(self.poll)
                continue
            asked = min(free, self.batch)
            sent_at = time.time_ns()
            try:
                claims = await self._db.claim(asked, self.lease, self.goal_types, buckets, count, self.takeover)
            except GoalrtError as exc:
                log.error("worker %s: claim failed: %s", self.id, exc)
                await self._sleep(self.poll)
                continue
            answered_at = time.time_ns()
            self.metrics.claim_took((answered_at - sent_at) / 1e9)
            for claim in claims:
                self._runner.run(claim, sent_at, answered_at)
            if len(claims) < asked:
                await self._sleep(await self._idle_for())

    async def _idle_for(self) -> float:
        """Return how long to sleep when idle: the poll interval, or less when a timer is due sooner."""
        try:
            rows = await self._db.call("timers_next")
        except GoalrtError:
            return self.poll
        due = rows[0][0] if rows else None
        return self.poll if due is None else min(self.poll, max(due, 0.002))

    async def _sleep(self, seconds: float) -> None:
        """Sleep until woken (a notification, a free slot, a retry due, stop) or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _drain(self) -> None:
        """Give running steps ``grace`` seconds, send their outcomes, and release what is left.

        A step still running then is cancelled; a handler that ignores that
        is abandoned (its goal task does not wait for it), so the drain ends.
        """
        tasks = [lease.task for lease in self._leases.held.values() if lease.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            async with asyncio.timeout(10):
                await self._runner.sent()
        except TimeoutError:
            log.warning("worker %s: results still unsent after 10s (database down?); leaving them", self.id)
        leftover = list(self._leases.held.values())
        if leftover:
            try:
                async with asyncio.timeout(10):
                    await self._leases.release(leftover)
                log.info("worker %s: released %d goal(s) it could not finish", self.id, len(leftover))
            except Exception as exc:
                log.warning("worker %s: could not release leases (%s); they expire in %gs", self.id, exc, self.lease)
        self._leases.held.clear()

    # -- notifications -------------------------------------------------------------------

    def _on_goals(self, *_args: Any) -> None:
        self._wake.set()

    def _on_gdl(self, *_args: Any) -> None:
        self._gdl_changed = True
        self._wake.set()

    def _on_listening(self) -> None:
        # A GDL load while the listener was down told nobody: check the version.
        self._gdl_changed = True
        self._wake.set()

    def _on_cancel(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            goal_id = int(payload)
        except ValueError:
            return
        self._leases.cancel(goal_id)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait for them; cancel again any that swallowed the cancellation (log it)."""
    for _ in range(3):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=5)
    alive = ", ".join(task.get_name() for task in tasks if not task.done())
    log.error("worker: background task(s) %s ignore cancellation", alive)


__all__ = ["Lease", "Worker", "WorkerStats"]
