"""Run one step of a goal: the handler, its timeout, and what its outcome becomes.

The dispatcher turns whatever happens into one item for
``goalrt.complete_steps_v1``:

- the handler returned: ``complete`` with the result, state changes and events;
- it raised ``goalrt.PermanentError``, returned something that is not JSON,
  or asked for an invalid change: ``fail`` at once;
- it raised anything else or timed out: ``retry`` after a deterministic
  backoff while the action's retry policy allows, then ``fail``.

Handlers never write to the database themselves: their effects are committed
by the worker with the step's completion, in one transaction, under the
lease (see docs/goals.md for the exactly-once guarantee this gives).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goalrt.db.resources import queries
from goalrt.errors import InvalidEventError, InvalidStateChangeError, PermanentError
from goalrt.goals.registry import Action, Registry, Result, check_json
from goalrt.state.async_state import AsyncState
from goalrt.state.state import Change, StateEntry, changes_json
from goalrt.worker.planner_bridge import effect_changes
from goalrt.worker.protocol import NextStep, StepItem, StepOutcome

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("goalrt.dispatcher")


def idempotency_key(goal_id: int, seq: int) -> str:
    """Return the key of a step: the same for every attempt, so an external system can drop duplicates."""
    return f"{goal_id}:{seq}"


@dataclass(frozen=True, slots=True)
class StepRun:
    """A step a worker is about to run under a lease."""

    goal_id: int
    goal_name: str
    params: Any
    epoch: int
    seq: int
    action: str
    args: Any
    attempt: int

    @classmethod
    def of(cls, goal_id: int, goal_name: str, params: Any, epoch: int, step: NextStep) -> StepRun:
        """Return the run of ``step`` (of a claimed goal, or the next step a plan or completion answered)."""
        return cls(goal_id, goal_name, params, epoch, step.seq, step.action, step.args, step.attempt)


class StateReader:
    """Read access to the state for async handlers: ``await ctx.state.get("orders.o1.status")``."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._schema = schema

    async def get(self, path: str) -> StateEntry | None:
        async with self._pool.acquire() as conn:
            return await AsyncState(conn, schema=self._schema).get(path)

    async def value(self, path: str, default: Any = None) -> Any:
        entry = await self.get(path)
        return default if entry is None else entry.value

    async def list(self, pattern: str | None = None) -> list[StateEntry]:
        async with self._pool.acquire() as conn:
            return await AsyncState(conn, schema=self._schema).list(pattern)

    async def step_results(self, goal_id: int) -> dict[str, Any]:
        """Return the results of a goal's completed, labelled steps (waits and actions) by label."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(queries("goals", self._schema)["goal_results"], goal_id)
        return {row["label"]: row["result"] for row in rows}


class SyncStateReader:
    """The same reads for sync handlers (they run in a thread; the reads run on the worker's loop)."""

    def __init__(self, reader: StateReader, loop: asyncio.AbstractEventLoop, timeout: float = 30.0) -> None:
        self._reader = reader
        self._loop = loop
        self._timeout = timeout

    def get(self, path: str) -> StateEntry | None:
        return asyncio.run_coroutine_threadsafe(self._reader.get(path), self._loop).result(self._timeout)

    def value(self, path: str, default: Any = None) -> Any:
        return asyncio.run_coroutine_threadsafe(self._reader.value(path, default), self._loop).result(self._timeout)

    def list(self, pattern: str | None = None) -> list[StateEntry]:
        return asyncio.run_coroutine_threadsafe(self._reader.list(pattern), self._loop).result(self._timeout)

    def step_results(self, goal_id: int) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self._reader.step_results(goal_id), self._loop).result(self._timeout)


@dataclass(slots=True)
class ActionContext:
    """What a handler gets besides its arguments."""

    goal_id: int
    goal_name: str
    params: Any
    step: int
    action: str
    attempt: int
    idempotency_key: str
    worker: str
    state: StateReader | SyncStateReader
    log: logging.LoggerAdapter[logging.Logger]
    # Set when the goal is cancelled or its lease is lost: a sync handler
    # may check it and stop early (an async one is cancelled instead).
    cancelled: threading.Event = field(default_factory=threading.Event)

    def results(self) -> Any:
        """Return the results of the goal's completed, labelled steps by label.

        What a wait returned (the event, the answer, the children) is here.
        An async handler awaits it (``await ctx.results()``); a sync one calls it.
        """
        return self.state.step_results(self.goal_id)


def failure_item(run: StepRun, action: Action | None, error: str, *, permanent: bool) -> StepItem:
    """Return a retry item while the policy allows one, else a fail item."""
    if not permanent and action is not None and action.retry.should_retry(run.attempt):
        delay = action.retry.delay(run.goal_id, run.seq, run.attempt)
        return StepItem(run.goal_id, run.epoch, run.seq, StepOutcome.RETRY, error=error, retry_in=round(delay, 6))
    if not permanent and action is not None and action.retry.max_attempts > 1:
        error = f"{error} (after {run.attempt} attempts)"
    return StepItem(run.goal_id, run.epoch, run.seq, StepOutcome.FAIL, error=error)


def completion_item(run: StepRun, value: Any, declared: list[Change] | None = None) -> StepItem:
    """Return the complete item for what a handler returned; raise ``ValueError`` if it is unusable.

    ``declared`` are the action's declared effects (for the planner); the
    handler's own changes win on the paths both touch.
    """
    result = value if isinstance(value, Result) else Result(value)
    check_json(result.value, f"the result of action {run.action}")
    changes = changes_json(result.changes) if result.changes else []
    if declared:
        touched = {c.get("path") for c in changes if isinstance(c, Mapping)}
        changes = [c for c in changes_json(declared) if c.get("path") not in touched] + changes
    events = []
    for i, event in enumerate(result.events):
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str) or not event["type"]:
            raise InvalidEventError(f"events[{i}] must be a mapping with a non-empty 'type'")
        if event["type"] == "state.changed" or len(event["type"]) > 512:
            raise InvalidEventError(f"events[{i}].type {event['type']!r} is reserved or too long")
        unknown = sorted(set(event) - {"type", "data"})
        if unknown:
            raise InvalidEventError(f"events[{i}].{unknown[0]} is not a field of an event (type, data)")
        check_json(event.get("data", {}), f"events[{i}].data")
        events.append({"type": event["type"], "data": event.get("data", {})})
    return StepItem(
        run.goal_id,
        run.epoch,
        run.seq,
        StepOutcome.COMPLETE,
        result=result.value,
        changes=changes or None,
        events=events or None,
    )


async def run_step(
    run: StepRun,
    registry: Registry,
    ctx: ActionContext,
    *,
    executor: Executor,
    semaphore: asyncio.Semaphore | None = None,
) -> StepItem:
    """Run the handler for ``run`` and return its outcome item (never raises but on cancellation)."""
    action = registry.actions.get(run.action)
    if action is None:
        known = ", ".join(sorted(registry.actions)) or "none"
        return failure_item(run, None, f"unknown action {run.action!r} (this worker has: {known})", permanent=True)
    try:
        if semaphore is not None:
            async with semaphore:
                value = await _call(action, run, ctx, executor)
        else:
            value = await _call(action, run, ctx, executor)
    except asyncio.CancelledError:
        ctx.cancelled.set()
        raise
    except PermanentError as exc:
        return failure_item(run, action, f"{run.action}: {exc}", permanent=True)
    except TimeoutError:
        ctx.cancelled.set()
        return failure_item(run, action, f"{run.action}: timed out after {action.timeout:g}s", permanent=False)
    except Exception as exc:  # a handler's failure is data, not a crash of the worker
        return failure_item(run, action, f"{run.action}: {type(exc).__name__}: {exc}", permanent=False)
    try:
        declared = effect_changes(action.schema, run.args or {}) if action.schema is not None else None
        return completion_item(run, value, declared)
    except (TypeError, ValueError, InvalidStateChangeError, InvalidEventError) as exc:
        return failure_item(run, action, f"{run.action}: {exc}", permanent=True)


async def _call(action: Action, run: StepRun, ctx: ActionContext, executor: Executor) -> Any:
    args = run.args if run.args is not None else {}
    if action.is_async:
        coro = action.fn(args, ctx)
    else:
        loop = asyncio.get_running_loop()
        # A sync handler that outlives its timeout keeps its thread until it
        # returns (threads cannot be killed); its result is then dropped.
        coro = loop.run_in_executor(executor, functools.partial(action.fn, args, ctx))
    if action.timeout is None:
        return await coro
    return await asyncio.wait_for(coro, action.timeout)


__all__ = ["ActionContext", "StateReader", "StepRun", "SyncStateReader", "idempotency_key", "run_step"]
