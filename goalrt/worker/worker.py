"""The worker: a long-running asyncio process that claims goals and runs their steps.

    worker = Worker(url, registry, concurrency=10)
    await worker.run()          # until worker.request_stop() (SIGTERM in the CLI)

What it does, and what it promises (details in docs/goals.md):

- Claims runnable goals in batches (``claim_goals_v1``: FOR UPDATE SKIP
  LOCKED, ordered by priority, run_at, id), each under a lease with a fresh
  epoch, and keeps the leases alive with a heartbeat while their steps run.
- Plans a goal the first time it takes it (the goal type's steps), then runs
  the steps one after another. Each result, with its state changes and
  events, and the advance to the next step are committed in one
  transaction, only if the lease is still held at that epoch.
- Wakes on a NOTIFY when goals are submitted or released; polls as a fallback.
- On a lost connection (PostgreSQL restart, pg_terminate_backend), retries
  with backoff; a completion whose commit may or may not have happened is
  sent again and recognised (``already_applied``).
- ``request_stop()`` drains: no new claims; running steps get ``grace``
  seconds; what is still running then is cancelled and its leases released,
  so other workers take those goals at once.

A killed worker needs nobody: its leases expire and any worker's next claim
takes the goals over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg

from goalrt.db.config import database_url
from goalrt.db.connect import asyncpg_dsn, dumps, setup_async_connection
from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import ConfigError, GoalrtError, translate
from goalrt.gdl.runtime import registry_for
from goalrt.goals.conditions import Achieve
from goalrt.goals.registry import Registry, default_registry
from goalrt.log.bus import goal_channels
from goalrt.worker.batcher import Batcher
from goalrt.worker.dispatcher import (
    ActionContext,
    StateReader,
    StepRun,
    SyncStateReader,
    failure_item,
    idempotency_key,
    run_step,
)
from goalrt.worker.planning import Decision, Planning

log = logging.getLogger("goalrt.worker")


# SQLSTATE classes after which the same call can succeed later: connection
# exceptions, operator intervention (shutdown, restart, terminated backend),
# insufficient resources (too many connections), transaction rollback
# (serialization failure, deadlock).
_TRANSIENT_SQLSTATES = ("08", "57", "53", "40")


def is_connection_error(exc: BaseException) -> bool:
    """Whether retrying the same call later can succeed: the connection, the server or the client state broke.

    Errors the database raised on purpose (goalrt's GR codes, bad data) and
    bad arguments from our side are not: retrying them would loop forever.
    """
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_TRANSIENT_SQLSTATES)
    if isinstance(exc, asyncpg.exceptions._base.DataError | asyncpg.exceptions._base.ClientConfigurationError):
        return False
    return isinstance(
        exc,
        OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.exceptions._base.InternalClientError,
    )


@dataclass(slots=True)
class Lease:
    """A goal this worker holds, the epoch it holds it at, and the task running it."""

    goal_id: int
    epoch: int
    task: asyncio.Task[None] | None = None
    ctx: ActionContext | None = None


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    steps: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    refused: int = 0
    released: int = 0
    reconnects: int = 0
    waiting: int = 0
    blocked: int = 0


@dataclass(frozen=True, slots=True)
class Partitions:
    """The partitions a worker serves: some buckets of ``count`` (``goalrt worker --partitions 0,1/4``)."""

    buckets: tuple[int, ...]
    count: int

    @classmethod
    def parse(cls, spec: str) -> Partitions:
        """Parse ``"B,B,.../N"`` (buckets of N; ranges like ``0-3/16`` too)."""
        try:
            left, count_text = spec.split("/")
            count = int(count_text)
            buckets: set[int] = set()
            for part in left.split(","):
                lo, _, hi = part.strip().partition("-")
                buckets.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ConfigError(f"--partitions {spec!r}: expected buckets/count, e.g. 0,1/4 or 0-3/16") from None
        if count < 1 or not buckets or min(buckets) < 0 or max(buckets) >= count:
            raise ConfigError(f"--partitions {spec!r}: buckets must be within 0..count-1 (count >= 1)")
        return cls(tuple(sorted(buckets)), count)


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
    ) -> None:
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1")
        if lease <= 0 or poll <= 0 or grace < 0 or takeover < 0:
            raise ConfigError("lease and poll must be > 0 seconds, grace and takeover >= 0")
        self.url = database_url(url)
        # The handlers the modules registered; with GDL definitions loaded in the
        # database, the registry the worker runs is built from both (see gdl.runtime).
        self.handlers = registry or default_registry
        self.registry = self.handlers
        self.only = sorted(only) if only else None
        # The GDL version this worker plans with (None: no definitions loaded).
        self.gdl_version: int | None = None
        self._gdl_changed = False
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
        self._q = queries("goals", schema)
        self._goals_channel, self._cancel_channel = goal_channels(schema)
        self._gdl_channel = f"{schema}_gdl"
        self._held: dict[int, Lease] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="goalrt-action")
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._planner = Batcher(self._flush_plans, max_batch=batch)
        self._completer = Batcher(self._flush_completions, max_batch=batch)
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._planning_: Planning | None = None

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming and drain (safe to call from a signal handler on the loop)."""
        if not self._stopping.is_set():
            log.info("worker %s: stopping, draining %d goal(s) (grace %gs)", self.id, len(self._held), self.grace)
        self._stopping.set()
        self._wake.set()

    @property
    def held(self) -> dict[int, int]:
        """Goal id -> epoch of the leases held now."""
        return {g: lease.epoch for g, lease in self._held.items()}

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def run(self) -> None:
        """Run until ``request_stop()``; then drain and return."""
        self._loop = asyncio.get_running_loop()
        self._pool = await self._connect_pool()
        try:
            await self._configure()
        except BaseException:  # a configuration error: nothing started, nothing to drain
            await self._pool.close()
            self._executor.shutdown(wait=False)
            raise
        background: list[asyncio.Task[Any]] = []
        try:
            await self._register()
            self._planner.start()
            self._completer.start()
            background = [
                asyncio.create_task(self._listen(), name="goalrt-listen"),
                asyncio.create_task(self._heartbeat(), name="goalrt-heartbeat"),
            ]
            self._ready.set()
            log.info(
                "worker %s started: concurrency %d, goal types %s, actions %s",
                self.id,
                self.concurrency,
                ", ".join(sorted(self.registry.goal_types)),
                ", ".join(sorted(self.registry.actions)) or "none",
            )
            await self._claim_loop()
            await self._drain()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._completer.stop(timeout=5)
            await self._planner.stop(timeout=5)
            try:
                await asyncio.wait_for(self._db("worker_deregister", self.id, retry=False), 5)
            except Exception as exc:  # leaving a stale row is harmless; say so and go on
                log.warning("worker %s: could not deregister: %s", self.id, exc)
            await self._pool.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped", self.id)

    async def _connect_pool(self) -> asyncpg.Pool:
        delay = 0.1
        while True:
            try:
                pool = await asyncpg.create_pool(
                    asyncpg_dsn(self.url),
                    min_size=1,
                    max_size=3 + min(self.concurrency, 8),
                    init=setup_async_connection,
                    timeout=10,
                )
                assert pool is not None
                return pool
            except Exception as exc:
                if not is_connection_error(exc) or self._stopping.is_set():
                    raise translate(exc) from exc
                log.warning("worker: cannot connect (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _configure(self) -> None:
        """Build the registry from the newest GDL version (if any) and the handlers; check what to claim.

        All or nothing: on an error the worker keeps the registry and version it had.
        """
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._q["gdl_current"])
        registry, version = self.handlers, None
        if row is not None:
            registry, version = registry_for(row["definitions"], self.handlers), row["version"]
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
        self._semaphores = {
            name: asyncio.Semaphore(a.concurrency) for name, a in registry.actions.items() if a.concurrency
        }
        self._planning_ = None

    async def _reload_definitions(self) -> None:
        """A new GDL version was loaded: plan with it from now on (plans already made run as recorded)."""
        self._gdl_changed = False
        try:
            await self._configure()
            await self._register()
        except GoalrtError as exc:
            log.error("worker %s: cannot run GDL version loaded now, keeping %s: %s", self.id, self.gdl_version, exc)

    async def _register(self) -> None:
        for name, goal_type in sorted(self.registry.goal_types.items()):
            await self._db("goal_type_register", name, goal_type.params_schema())
        await self._db(
            "worker_register",
            self.id,
            self.name,
            socket.gethostname(),
            os.getpid(),
            self.concurrency,
            self.goal_types,
            sorted(self.registry.actions),
            None if self.partitions is None else list(self.partitions.buckets),
            None if self.partitions is None else self.partitions.count,
        )

    # -- database access -----------------------------------------------------------

    async def _db(self, name: str, *args: Any, retry: bool = True) -> list[asyncpg.Record]:
        """Run a named query; on a lost connection wait and try again (until stopped hard)."""
        assert self._pool is not None
        delay = 0.05
        while True:
            try:
                async with self._pool.acquire() as conn:
                    rows: list[asyncpg.Record] = await conn.fetch(self._q[name], *args)
                    return rows
            except Exception as exc:
                if not retry or not is_connection_error(exc):
                    raise translate(exc) from exc
                self.stats.reconnects += 1
                log.warning(
                    "worker %s: database unavailable during %s (%s); retrying in %.2fs", self.id, name, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- claiming ------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        buckets = None if self.partitions is None else list(self.partitions.buckets)
        count = None if self.partitions is None else self.partitions.count
        while not self._stopping.is_set():
            self._wake.clear()  # before counting: a slot freed after this wakes the sleep below
            if self._gdl_changed:
                await self._reload_definitions()
            free = self.concurrency - len(self._held)
            if free <= 0:
                # Busy: still act on due timers and deadlines (a claim would).
                with contextlib.suppress(GoalrtError):
                    await self._db("timers_wake", self.batch)
                await self._sleep(self.poll)
                continue
            asked = min(free, self.batch)
            try:
                rows = await self._db(
                    "goals_claim", self.id, asked, self.lease, self.goal_types, buckets, count, self.takeover
                )
            except GoalrtError as exc:
                log.error("worker %s: claim failed: %s", self.id, exc)
                await self._sleep(self.poll)
                continue
            for row in rows:
                self._start(row)
            if len(rows) < asked:
                await self._sleep(await self._idle_for())

    async def _idle_for(self) -> float:
        """Return how long to sleep when idle: the poll interval, or less when a timer is due sooner."""
        try:
            rows = await self._db("timers_next")
        except GoalrtError:
            return self.poll
        due = rows[0][0] if rows else None
        return self.poll if due is None else min(self.poll, max(due, 0.002))

    async def _sleep(self, seconds: float) -> None:
        """Sleep until woken (a notification, a free slot, a retry due, stop) or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _start(self, row: asyncpg.Record) -> None:
        self.stats.claimed += 1
        lease = Lease(row["goal_id"], row["epoch"])
        self._held[lease.goal_id] = lease
        lease.task = asyncio.create_task(self._run_goal(row, lease), name=f"goalrt-goal-{lease.goal_id}")

    # -- running a goal ---------------------------------------------------------------

    async def _run_goal(self, row: asyncpg.Record, lease: Lease) -> None:
        drained = False
        try:
            run: StepRun | None
            if row["step_seq"] is None:
                run = await self._plan(row, lease)
            else:
                run = StepRun.of(lease.goal_id, row["name"], row["params"], lease.epoch, row)
            achieve = Planning.achieve_of(self.registry.goal_types.get(row["name"]))
            while run is not None:
                if achieve is not None:
                    # A planned goal: is this step still the way to the goal?
                    decision = await self._planning().before(achieve, run)
                    if decision is not None:
                        run = await self._replan(run, lease, decision)
                        continue
                item = await self._execute(run, lease)
                if achieve is not None and item["outcome"] == "fail":
                    item = await self._plan_around(achieve, run, item)
                # While draining, finish this step but leave the next one to other workers.
                item["continue"] = not self._stopping.is_set()
                run = await self._complete(run, item)
        except asyncio.CancelledError:
            # Cancelled by the drain: the lease stays listed so the drain releases it.
            drained = self._stopping.is_set()
            raise
        except Exception:
            log.exception("worker %s: goal %s: unexpected error; releasing its lease", self.id, lease.goal_id)
            try:
                await self._release([lease])
            except GoalrtError as exc:
                log.warning("worker %s: could not release goal %s (%s)", self.id, lease.goal_id, exc)
        finally:
            if not drained:
                self._forget(lease)

    def _forget(self, lease: Lease) -> None:
        if self._held.get(lease.goal_id) is lease:
            del self._held[lease.goal_id]
            self._wake.set()

    async def _fail(self, goal_id: int, epoch: int, error: str) -> None:
        """Fail a goal this worker holds before (or instead of) running a step."""
        await self._db("goals_fail", self.id, [{"goal_id": goal_id, "epoch": epoch, "error": error}])
        self.stats.failed += 1

    def _planning(self) -> Planning:
        assert self._pool is not None
        if self._planning_ is None:
            self._planning_ = Planning(self._pool, self.registry, self._executor, self.schema, self.gdl_version)
        return self._planning_

    async def _replan(self, run: StepRun, lease: Lease, decision: Decision) -> StepRun | None:
        """Replace the rest of a planned goal's plan before running ``run`` (or fail it)."""
        if decision.error is not None:
            await self._fail(run.goal_id, run.epoch, decision.error)
            return None
        item = {
            "goal_id": run.goal_id,
            "epoch": run.epoch,
            "steps": decision.steps,
            "replan": True,
            "reason": decision.reason,
            "detail": decision.detail,
        }
        answer = await self._planner.submit(item)
        if answer is None or answer["outcome"] != "planned":
            if answer is not None and answer["outcome"] == "complete":
                self.stats.completed += 1
            return None
        return StepRun.of(run.goal_id, run.goal_name, run.params, run.epoch, answer)

    async def _plan_around(self, achieve: Achieve, run: StepRun, item: dict[str, Any]) -> dict[str, Any]:
        """Turn a planned goal's failed step into a re-plan around it, when there is one."""
        decision = await self._planning().after_failure(achieve, run, str(item.get("error")))
        if decision.error is not None:
            return {**item, "error": f"{item.get('error')}; {decision.error}"}
        return {
            **item,
            "outcome": "replan",
            "steps": decision.steps,
            "reason": decision.reason,
            "detail": decision.detail,
        }

    async def _plan(self, row: asyncpg.Record, lease: Lease) -> StepRun | None:
        goal_type = self.registry.goal_types.get(row["name"])
        error = None
        steps: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        if goal_type is None:
            error = f"unknown goal type {row['name']!r} in this worker"
        elif goal_type.achieve is not None:
            try:
                goal_type.validate(row["params"])
                decision = await self._planning().first(goal_type.achieve, row["params"] or {})
                error = decision.error
                steps = decision.steps or []
                extra = {"reason": decision.reason, "detail": decision.detail}
            except GoalrtError as exc:
                error = str(exc)
            except Exception as exc:  # a bug in the planner: fail the goal, do not loop on it
                error = f"planning goal {row['name']} failed: {type(exc).__name__}: {exc}"
        else:
            try:
                planned = goal_type.plan(row["params"])
                steps = [step.as_json() for step in planned]
                dumps(steps)
                unknown = [a for step in planned for a in step.actions() if a not in self.registry.actions]
                if unknown:
                    known = ", ".join(sorted(self.registry.actions)) or "none"
                    error = f"step uses unknown action {unknown[0]!r} (this worker has: {known})"
            except GoalrtError as exc:
                error = str(exc)
            except Exception as exc:  # the goal type's own code failed
                error = f"planning goal {row['name']} failed: {type(exc).__name__}: {exc}"
        if error is not None:
            await self._fail(lease.goal_id, lease.epoch, error)
            self._forget(lease)
            return None
        answer = await self._planner.submit({"goal_id": lease.goal_id, "epoch": lease.epoch, "steps": steps, **extra})
        if answer is not None and answer["outcome"] == "error":
            await self._fail(lease.goal_id, lease.epoch, f"plan refused: {answer['error']}")
            self._forget(lease)
            return None
        if answer is None or answer["outcome"] != "planned":
            self._forget(lease)
            return None
        return StepRun.of(lease.goal_id, row["name"], row["params"], lease.epoch, answer)

    async def _execute(self, run: StepRun, lease: Lease) -> dict[str, Any]:
        assert self._pool is not None and self._loop is not None
        action = self.registry.actions.get(run.action)
        reader = StateReader(self._pool, self.schema)
        ctx = ActionContext(
            goal_id=run.goal_id,
            goal_name=run.goal_name,
            params=run.params,
            step=run.seq,
            action=run.action,
            attempt=run.attempt,
            idempotency_key=idempotency_key(run.goal_id, run.seq),
            worker=self.id,
            state=reader if action is None or action.is_async else SyncStateReader(reader, self._loop),
            log=logging.LoggerAdapter(
                logging.getLogger(f"goalrt.action.{run.action}"), {"goal_id": run.goal_id, "step": run.seq}
            ),
        )
        lease.ctx = ctx
        self.stats.steps += 1
        return await run_step(
            run, self.registry, ctx, executor=self._executor, semaphore=self._semaphores.get(run.action)
        )

    async def _complete(self, run: StepRun, item: dict[str, Any]) -> StepRun | None:
        """Send a step's outcome; return the next step when the lease continues with it."""
        answer = await self._completer.submit(item) or {"outcome": "refused", "error": "no answer"}
        if answer["outcome"] in ("change_refused", "error"):
            # The state change (or the item) was refused: a failed attempt like
            # any other; an invalid change (GR003) or a refused item cannot succeed later.
            action = self.registry.actions.get(run.action)
            permanent = answer["outcome"] == "error" or "(GR003)" in str(answer.get("error"))
            retry = failure_item(run, action, f"{run.action}: {answer['error']}", permanent=permanent)
            retry["continue"] = False
            item = retry
            answer = await self._completer.submit(retry) or {"outcome": "refused", "error": "no answer"}
        outcome = answer["outcome"]
        if outcome in ("continue", "already_applied") and answer.get("action") is not None:
            return StepRun.of(run.goal_id, run.goal_name, run.params, run.epoch, answer)
        counter = {
            "complete": "completed",
            "failed": "failed",
            "retry": "retried",
            "refused": "refused",
            "waiting": "waiting",
            "blocked": "blocked",
        }.get(outcome)
        if counter:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if outcome == "retry":
            assert self._loop is not None
            self._loop.call_later(float(item.get("retry_in") or 0), self._wake.set)
        elif outcome == "refused":
            log.warning(
                "worker %s: goal %s step %s: result refused (%s)", self.id, run.goal_id, run.seq, answer.get("error")
            )
        return None

    # -- batched calls -------------------------------------------------------------------

    async def _flush_plans(self, items: list[dict[str, Any]]) -> dict[int, Any]:
        return await self._flush("goals_plan", items)

    async def _flush_completions(self, items: list[dict[str, Any]]) -> dict[int, Any]:
        return await self._flush("steps_complete", items)

    async def _flush(self, query: str, items: list[dict[str, Any]]) -> dict[int, Any]:
        """Send a batch of plans or completions; an item the database refuses is answered alone."""
        try:
            rows = await self._db(query, self.id, items, self.lease)
        except GoalrtError as exc:  # _db retries what is transient; this is not (e.g. a child of an unknown type)
            if len(items) == 1:
                # Answer it, so its goal fails clearly.
                return {items[0]["goal_id"]: {"outcome": "error", "error": str(exc)}}
            answers: dict[int, Any] = {}
            for item in items:  # find the bad one; the others go through
                answers.update(await self._flush(query, [item]))
            return answers
        return {r["goal_id"]: dict(r) for r in rows}

    # -- leases --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = max(self.lease / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            snapshot = list(self._held.values())
            try:
                rows = await self._db(
                    "leases_heartbeat",
                    self.id,
                    [lease.goal_id for lease in snapshot],
                    [lease.epoch for lease in snapshot],
                    self.lease,
                )
            except GoalrtError as exc:
                log.error("worker %s: heartbeat failed: %s", self.id, exc)
                continue
            held = {r["goal_id"] for r in rows}
            for lease in snapshot:
                if lease.goal_id not in held and self._held.get(lease.goal_id) is lease and lease.ctx is not None:
                    # Tell the handler (ctx.cancelled) but let it finish: its
                    # late result is then refused and recorded, never applied.
                    if not lease.ctx.cancelled.is_set():
                        log.warning(
                            "worker %s: goal %s: lease lost; its result will be refused", self.id, lease.goal_id
                        )
                    lease.ctx.cancelled.set()

    def _cancel(self, lease: Lease) -> None:
        """Stop running a cancelled goal: the handler is cancelled and its result discarded."""
        log.info("worker %s: goal %s cancelled; stopping its step", self.id, lease.goal_id)
        if lease.ctx is not None:
            lease.ctx.cancelled.set()
        if lease.task is not None and not lease.task.done():
            lease.task.cancel()
        self._forget(lease)

    async def _release(self, leases: Sequence[Lease]) -> None:
        if not leases:
            return
        rows = await self._db(
            "leases_release", self.id, [lease.goal_id for lease in leases], [lease.epoch for lease in leases]
        )
        self.stats.released += len(rows)

    async def _drain(self) -> None:
        tasks = [lease.task for lease in self._held.values() if lease.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await asyncio.wait_for(self._completer.drained(), 10)
        except TimeoutError:
            log.warning("worker %s: results still unsent after 10s (database down?); leaving them", self.id)
        leftover = list(self._held.values())
        if leftover:
            try:
                await asyncio.wait_for(self._release(leftover), 10)
                log.info("worker %s: released %d goal(s) it could not finish", self.id, len(leftover))
            except Exception as exc:
                log.warning("worker %s: could not release leases (%s); they expire in %gs", self.id, exc, self.lease)
        self._held.clear()

    # -- notifications -------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(self.url), timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(self._goals_channel, self._on_goals)
                await conn.add_listener(self._cancel_channel, self._on_cancel)
                await conn.add_listener(self._gdl_channel, self._on_gdl)
                delay = 0.1
                self._wake.set()  # anything submitted while we were not listening
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), 5)
                    except TimeoutError:
                        if conn.is_closed():
                            break
                        await conn.execute("SELECT 1")  # notices a dead socket
            except asyncio.CancelledError:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
                raise
            except Exception as exc:
                log.warning("worker %s: listener: %s; reconnecting in %.1fs", self.id, exc, delay)
            if conn is not None and not conn.is_closed():
                conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_goals(self, *_args: Any) -> None:
        self._wake.set()

    def _on_gdl(self, *_args: Any) -> None:
        self._gdl_changed = True
        self._wake.set()

    def _on_cancel(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            goal_id = int(payload)
        except ValueError:
            return
        lease = self._held.get(goal_id)
        if lease is not None:
            self._cancel(lease)


def _set_event(event: asyncio.Event, *_args: Any) -> None:
    event.set()


__all__ = ["Lease", "Partitions", "Worker", "WorkerStats", "is_connection_error"]
