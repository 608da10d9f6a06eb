"""Run one claimed goal under its lease: plan it, check each step, run it, commit its outcome, go on.

One task per goal. Plans and step outcomes are sent through batchers, so a
busy worker commits many of them per round trip (``plan_goals_v1``,
``complete_steps_v1``). A step's outcome, its state changes and events and
the advance to the next step are one transaction, applied only while the
lease is held at its epoch; the answer says which step (if any) this worker
runs next.

Before each step the task takes the registry the worker has now: a GDL
version loaded meanwhile re-plans a goal declared by a condition (its plan
was made with the old one, see ``planning``), and a goal whose type the
worker no longer has is released. A step already running finishes with the
registry it started with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from goalrt import tracing
from goalrt.db.jsontext import UnreadableJson
from goalrt.errors import GoalrtError
from goalrt.goals.conditions import Achieve
from goalrt.goals.registry import Registry
from goalrt.memory.handler import HandlerMemory, SyncHandlerMemory
from goalrt.worker.batcher import Batcher
from goalrt.worker.database import WorkerDatabase
from goalrt.worker.dispatcher import (
    ActionContext,
    HandlerCalls,
    StateReader,
    StepRun,
    failure_item,
    idempotency_key,
    run_step,
)
from goalrt.worker.leases import Lease, Leases
from goalrt.worker.metrics import WorkerMetrics
from goalrt.worker.planner_bridge import RECHECK
from goalrt.worker.planning import Decision, Planning
from goalrt.worker.progress import Progress
from goalrt.worker.protocol import (
    INVALID_CHANGE_SQLSTATE,
    ClaimedGoal,
    CompletionAnswer,
    CompletionOutcome,
    FailItem,
    PlanAnswer,
    PlanItem,
    PlanOutcome,
    Rejected,
    StepItem,
    StepOutcome,
)
from goalrt.worker.start_gate import StartGates
from goalrt.worker.stats import WorkerStats
from goalrt.worker.sync_reads import SyncStateReader

log = logging.getLogger("goalrt.worker")

# The counter of WorkerStats each final answer of a step adds to.
_COUNTERS = {
    CompletionOutcome.COMPLETE: "completed",
    CompletionOutcome.FAILED: "failed",
    CompletionOutcome.RETRY: "retried",
    CompletionOutcome.REFUSED: "refused",
    CompletionOutcome.WAITING: "waiting",
    CompletionOutcome.BLOCKED: "blocked",
}


class GoalRunner:
    """Run the goals one worker claimed, each in a task of its own."""

    def __init__(
        self,
        db: WorkerDatabase,
        leases: Leases,
        stats: WorkerStats,
        executor: Executor,
        calls: HandlerCalls,
        *,
        worker_id: str,
        schema: str,
        batch: int,
        stopping: asyncio.Event,
        wake: asyncio.Event,
        catch_up: Callable[[], Awaitable[None]] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or WorkerMetrics()
        self._leases = leases
        self._stats = stats
        self._executor = executor
        self._calls = calls
        self._id = worker_id
        self._schema = schema
        self._stopping = stopping
        self._wake = wake
        # Loads a newer GDL version than the worker's, if there is one (a plan made with it was claimed).
        self._catch_up = catch_up
        self._loop = asyncio.get_running_loop()
        self._planner: Batcher[PlanItem, PlanAnswer | Rejected] = Batcher(self._flush_plans, max_batch=batch)
        self._gates = StartGates(db, worker_id, max_batch=batch)
        self._completer: Batcher[StepItem, CompletionAnswer | Rejected] = Batcher(
            self._flush_completions, max_batch=batch
        )
        self.registry = Registry()
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._planning: Planning | None = None
        self._gdl_version: int | None = None

    def configure(self, registry: Registry, gdl_version: int | None) -> None:
        """Plan and run with ``registry`` from now on (steps already running finish with the one they had)."""
        self.registry = registry
        self._gdl_version = gdl_version
        self._semaphores = {
            name: asyncio.Semaphore(a.concurrency) for name, a in registry.actions.items() if a.concurrency
        }
        self._planning = None

    def start(self) -> None:
        self._planner.start()
        self._completer.start()
        self._gates.start()

    async def stop(self, timeout: float) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds each) and stop the batchers."""
        await self._completer.stop(timeout=timeout)
        await self._planner.stop(timeout=timeout)
        await self._gates.stop(timeout=timeout)

    async def sent(self) -> None:
        """Wait until every step outcome queued has been sent."""
        await self._completer.drained()

    def run(self, claim: ClaimedGoal, sent_at: int, answered_at: int) -> None:
        """Start running a goal just claimed by a claim call sent and answered at these times (ns since the epoch)."""
        self._stats.claimed += 1
        self._metrics.claimed(claim.name)
        lease = self._leases.take(claim.goal_id, claim.epoch)
        lease.claimed_at = answered_at
        lease.task = asyncio.create_task(
            self._traced_goal(claim, lease, sent_at, answered_at), name=f"goalrt-goal-{lease.goal_id}"
        )

    def planning(self) -> Planning:
        if self._planning is None:
            self._planning = Planning(self._db.pool, self.registry, self._executor, self._schema, self._gdl_version)
        return self._planning

    async def _traced_goal(self, claim: ClaimedGoal, lease: Lease, sent_at: int, answered_at: int) -> None:
        """Run a claimed goal in a span of its own (tracing on): the claim, plans, steps and commits its children.

        The span continues the caller's trace when the goal was submitted with
        one (``trace_context``), else it starts a trace of its own.
        """
        attributes = {"goalrt.goal_id": claim.goal_id, "goalrt.goal_type": claim.name, "goalrt.epoch": claim.epoch}
        parent = tracing.root(claim.trace_context)
        with tracing.span("goalrt.goal", attributes, kind="consumer", parent=parent, start_time=sent_at):
            tracing.record("goalrt.claim", sent_at, answered_at, attributes)
            await self._run_goal(claim, lease)

    async def _run_goal(self, claim: ClaimedGoal, lease: Lease) -> None:
        drained = False
        try:
            run: StepRun | None
            unreadable = _unreadable(claim)
            if unreadable is not None:  # e.g. params nested 2000 deep by SQL: fail this goal, not the whole claim
                await self._fail(lease.goal_id, lease.epoch, claim.name, unreadable)
                return
            # The GDL version the goal's plan was made with.
            version = claim.plan_gdl_version
            if claim.step is None:
                version = self.planning().gdl_version
                run = await self._plan(claim, lease)
            else:
                run = StepRun.of(lease.goal_id, claim.name, claim.params, lease.epoch, claim.step)
            while run is not None:
                planning = await self._planning_for(version)
                if claim.name not in planning.registry.goal_types:
                    # A new GDL version dropped the goal type: leave the goal,
                    # as its unclaimed peers, to a worker that has the type.
                    log.warning(
                        "worker %s: goal %s: goal type %s is gone; releasing it", self._id, lease.goal_id, claim.name
                    )
                    await self._leases.release([lease])
                    return
                achieve = planning.achieve_of(claim.name)
                if achieve is not None:
                    # A planned goal: is this step still the way to the goal?
                    decision = await planning.before(achieve, run, version)
                    if decision is not None:
                        version = planning.gdl_version
                        run = await self._replan(run, decision)
                        continue
                if not self._can_run(planning.registry, run.action):
                    await self._hand_over(run, lease)
                    return
                # With the registry the decision above was made with (a reload may have come meanwhile).
                item = await self._execute(run, lease, planning.registry)
                if item is None:
                    # The goal (or an ancestor) ended, or the lease was lost, before the handler could start.
                    self._leases.not_started(lease, run.seq)
                    return
                if achieve is not None and item.outcome is StepOutcome.FAIL:
                    # Around the failed step with what the worker has now (a version loaded while it ran).
                    planning = await self._planning_for(version)
                    achieve = planning.achieve_of(claim.name)
                    if achieve is not None:
                        item = await self._plan_around(planning, achieve, run, item)
                        version = planning.gdl_version
                # While draining, finish this step but leave the next one to other workers.
                item = dataclasses.replace(item, keep=not self._stopping.is_set())
                run = await self._complete(run, item)
        except asyncio.CancelledError:
            # Cancelled by the drain: the lease stays listed so the drain releases it.
            drained = self._stopping.is_set()
            raise
        except Exception:
            log.exception("worker %s: goal %s: unexpected error; releasing its lease", self._id, lease.goal_id)
            try:
                await self._leases.release([lease])
            except GoalrtError as exc:
                log.warning("worker %s: could not release goal %s (%s)", self._id, lease.goal_id, exc)
        finally:
            if not drained:
                self._leases.forget(lease)

    async def _planning_for(self, plan_version: int | None) -> Planning:
        """Return the planning of the worker's registry; first catch up when the plan is of a newer GDL version.

        The worker may not have heard of that version yet (its notification is
        on its way): re-planning under an older one would undo the plan.
        """
        planning = self.planning()
        mine = planning.gdl_version
        if self._catch_up is not None and plan_version is not None and (mine is None or plan_version > mine):
            await self._catch_up()
            planning = self.planning()
        return planning

    @staticmethod
    def _can_run(registry: Registry, action: str) -> bool:
        known = registry.actions.get(action)
        return action == RECHECK or (known is not None and known.runnable)

    async def _hand_over(self, run: StepRun, lease: Lease) -> None:
        """Give back a goal whose step this worker cannot run, its attempt uncounted, for a worker that can.

        The database hands such steps over by itself (the claim and the
        advance to a next step check the actions a worker registered); this
        catches the moment between a new GDL version and the registration
        that follows it.
        """
        log.info(
            "worker %s: goal %s step %s (%s): no handler here; handing it over",
            self._id,
            run.goal_id,
            run.seq,
            run.action,
        )
        await self._leases.release([lease])

    async def _fail(self, goal_id: int, epoch: int, goal_type: str, error: str) -> None:
        """Fail a goal this worker holds before (or instead of) running a step."""
        await self._db.fail([FailItem(goal_id, epoch, error)])
        self._stats.failed += 1
        self._metrics.ended(goal_type, "failed")

    async def _plan(self, claim: ClaimedGoal, lease: Lease) -> StepRun | None:
        """Make and store a newly claimed goal's first plan; return its first step to run here."""
        with tracing.span("goalrt.plan", {"goalrt.goal_id": lease.goal_id, "goalrt.reason": "initial"}) as span:
            decision = await self.planning().initial(claim.name, claim.params)
            if decision.error is not None:
                tracing.failed(span, decision.error)
                await self._fail(lease.goal_id, lease.epoch, claim.name, decision.error)
                self._leases.forget(lease)
                return None
            answer = await self._planner.submit(decision.item(lease.goal_id, lease.epoch))
            if isinstance(answer, Rejected):
                tracing.failed(span, answer.error)
                await self._fail(lease.goal_id, lease.epoch, claim.name, f"plan refused: {answer.error}")
                self._leases.forget(lease)
                return None
            self._planned(claim.name, answer)
        if answer is None or answer.outcome is not PlanOutcome.PLANNED or answer.step is None:
            self._leases.forget(lease)
            return None
        return StepRun.of(lease.goal_id, claim.name, claim.params, lease.epoch, answer.step)

    async def _replan(self, run: StepRun, decision: Decision) -> StepRun | None:
        """Replace the rest of a planned goal's plan before running ``run`` (or fail it)."""
        reason = None if decision.reason is None else str(decision.reason)
        with tracing.span("goalrt.plan", {"goalrt.goal_id": run.goal_id, "goalrt.reason": reason or "replan"}) as span:
            if decision.error is not None:
                tracing.failed(span, decision.error)
                await self._fail(run.goal_id, run.epoch, run.goal_name, decision.error)
                return None
            answer = await self._planner.submit(decision.item(run.goal_id, run.epoch, replan=True))
            if isinstance(answer, PlanAnswer):
                self._planned(run.goal_name, answer)
        if not isinstance(answer, PlanAnswer) or answer.outcome is not PlanOutcome.PLANNED or answer.step is None:
            if isinstance(answer, PlanAnswer) and answer.outcome is PlanOutcome.COMPLETE:
                self._stats.completed += 1
            return None
        return StepRun.of(run.goal_id, run.goal_name, run.params, run.epoch, answer.step)

    def _planned(self, goal_type: str, answer: PlanAnswer | None) -> None:
        """Count what a stored plan did to its goal: completed it (nothing to do), or was refused."""
        if answer is not None and answer.outcome is PlanOutcome.COMPLETE:
            self._metrics.ended(goal_type, "completed")
        elif answer is not None and answer.outcome is PlanOutcome.REFUSED:
            self._metrics.refused()

    async def _plan_around(self, planning: Planning, achieve: Achieve, run: StepRun, item: StepItem) -> StepItem:
        """Turn a planned goal's failed step into a re-plan around it, when there is one."""
        decision = await planning.after_failure(achieve, run, str(item.error))
        if decision.error is not None:
            return dataclasses.replace(item, error=f"{item.error}; {decision.error}")
        return dataclasses.replace(
            item, outcome=StepOutcome.REPLAN, steps=decision.steps, reason=decision.reason, detail=decision.detail
        )

    async def _execute(self, run: StepRun, lease: Lease, registry: Registry) -> StepItem | None:
        action = registry.actions.get(run.action)
        reader = StateReader(self._db.pool, self._schema)
        memory = HandlerMemory(self._db.pool, self._schema)
        ctx = ActionContext(
            goal_id=run.goal_id,
            goal_name=run.goal_name,
            params=run.params,
            step=run.seq,
            action=run.action,
            attempt=run.attempt,
            idempotency_key=idempotency_key(run.goal_id, run.seq),
            worker=self._id,
            state=reader if action is None or action.is_async else SyncStateReader(reader, self._loop),
            memory=memory if action is None or action.is_async else SyncHandlerMemory(memory, self._loop),
            log=logging.LoggerAdapter(
                logging.getLogger(f"goalrt.action.{run.action}"), {"goal_id": run.goal_id, "step": run.seq}
            ),
        )
        lease.ctx = ctx
        ctx.reporter = reporter = Progress(
            self._loop,
            lambda fraction, message: self._db.progress(run.goal_id, run.epoch, run.seq, fraction, message),
            lambda stored: self._metrics.progress(run.action, stored),
        )
        self._stats.steps += 1
        started: list[int] = []

        async def gate(start: Callable[[], Awaitable[None]]) -> bool:
            async def timed() -> None:
                started.append(time.time_ns())
                await start()

            return await self._gates.run(run.goal_id, run.epoch, run.seq, timed)

        attributes = {"goalrt.goal_id": run.goal_id, "goalrt.step": run.seq, "goalrt.attempt": run.attempt}
        with tracing.span(f"goalrt.step {run.action}", {**attributes, "goalrt.action": run.action}) as span:
            try:
                item = await run_step(
                    run,
                    registry,
                    ctx,
                    executor=self._executor,
                    calls=self._calls,
                    gate=gate,
                    semaphore=self._semaphores.get(run.action),
                )
            finally:
                # No handler runs now: a lease lost or a goal ended from here on is told by the completion's answer.
                lease.ctx = None
                await reporter.close()  # the last report still waiting, before the step's outcome
            if item is not None and started:
                self._metrics.step(run.action, item.outcome.value, (time.time_ns() - started[0]) / 1e9)
                if lease.claimed_at is not None:  # the first handler since the claim
                    self._metrics.started((started[0] - lease.claimed_at) / 1e9)
                    lease.claimed_at = None
                if span is not None:
                    span.set_attribute("goalrt.outcome", item.outcome.value)
                    if item.error is not None:
                        tracing.failed(span, item.error)
            return item

    async def _send(self, item: StepItem) -> CompletionAnswer | Rejected:
        answer = await self._completer.submit(item)
        return answer or CompletionAnswer(item.goal_id, CompletionOutcome.REFUSED, None, "no answer")

    async def _complete(self, run: StepRun, item: StepItem) -> StepRun | None:
        """Send a step's outcome (in a span: the commit); return the next step when the lease continues with it."""
        with tracing.span("goalrt.commit", {"goalrt.goal_id": run.goal_id, "goalrt.step": run.seq}) as span:
            answer, item = await self._commit(run, item)
            if span is not None:
                span.set_attribute(
                    "goalrt.outcome", answer.outcome.value if isinstance(answer, CompletionAnswer) else "rejected"
                )
        if isinstance(answer, Rejected):
            return None
        outcome = answer.outcome
        if outcome in (CompletionOutcome.CONTINUE, CompletionOutcome.ALREADY_APPLIED) and answer.step is not None:
            return StepRun.of(run.goal_id, run.goal_name, run.params, run.epoch, answer.step)
        counter = _COUNTERS.get(outcome)
        if counter:
            setattr(self._stats, counter, getattr(self._stats, counter) + 1)
        if outcome is CompletionOutcome.COMPLETE:
            self._metrics.ended(run.goal_name, "completed")
        elif outcome is CompletionOutcome.FAILED:
            self._metrics.ended(run.goal_name, "failed")
        elif outcome is CompletionOutcome.RETRY:
            self._metrics.retried(run.action)
            self._loop.call_later(float(item.retry_in or 0), self._wake.set)
        elif outcome is CompletionOutcome.REFUSED:
            self._metrics.refused()
            log.warning("worker %s: goal %s step %s: result refused (%s)", self._id, run.goal_id, run.seq, answer.error)
        return None

    async def _commit(self, run: StepRun, item: StepItem) -> tuple[CompletionAnswer | Rejected, StepItem]:
        """Send a step's outcome (a refused state change again, as a failed attempt); return the answer and item."""
        answer = await self._send(item)
        if isinstance(answer, Rejected) or answer.outcome is CompletionOutcome.CHANGE_REFUSED:
            # The state change (or the item) was refused: a failed attempt like
            # any other; an invalid change or a refused item cannot succeed later.
            action = self.registry.actions.get(run.action)
            permanent = isinstance(answer, Rejected) or f"({INVALID_CHANGE_SQLSTATE})" in str(answer.error)
            item = dataclasses.replace(
                failure_item(run, action, f"{run.action}: {answer.error}", permanent=permanent), keep=False
            )
            answer = await self._send(item)
        return answer, item

    async def _flush_plans(self, items: list[PlanItem]) -> dict[int, PlanAnswer | Rejected]:
        return await self._db.plan(items, self._leases.seconds)

    async def _flush_completions(self, items: list[StepItem]) -> dict[int, CompletionAnswer | Rejected]:
        return await self._db.complete(items, self._leases.seconds)


def _unreadable(claim: ClaimedGoal) -> str | None:
    """Return why a claimed goal's params or step args cannot be used (decoded as ``UnreadableJson``), or None."""
    if isinstance(claim.params, UnreadableJson):
        return f"the goal's params cannot be read: {claim.params.reason}"
    if claim.step is not None and isinstance(claim.step.args, UnreadableJson):
        return f"step {claim.step.seq} args cannot be read: {claim.step.args.reason}"
    return None


__all__ = ["GoalRunner"]
