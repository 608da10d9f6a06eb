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

A handler is called only through a start gate (``StartGate``): under the
goal's start lock, once the database said the goal still runs the step
under this lease, so no handler starts once its goal's cancel committed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goalrt.db.resources import queries
from goalrt.errors import GoalrtError, InvalidEventError, InvalidStateChangeError, PermanentError, translate
from goalrt.goals.registry import Action, Registry, Result, check_json
from goalrt.memory.handler import HandlerMemory, SyncHandlerMemory
from goalrt.state.async_state import AsyncState
from goalrt.state.state import Change, StateEntry, changes_json
from goalrt.worker.database import is_connection_error
from goalrt.worker.planner_bridge import effect_changes
from goalrt.worker.progress import Progress, checked
from goalrt.worker.protocol import NextStep, StepItem, StepOutcome

if TYPE_CHECKING:
    import asyncpg

    from goalrt.worker.sync_reads import SyncStateReader

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
    """Read access to the state for async handlers: ``await ctx.state.get("orders.o1.status")``.

    Each read takes a connection of its own from the worker's pool (handlers
    running at once never share one), and a read cut off by a lost
    connection waits and tries again, as the worker's own calls do; the
    handler's timeout bounds the wait.
    """

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._schema = schema

    async def _read(self, read: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        delay = 0.05
        while True:
            try:
                async with self._pool.acquire() as conn:
                    return await read(conn)
            except Exception as exc:
                # The state client raises goalrt's errors: whether to retry is the driver's error's to say.
                cause = exc.__cause__ if isinstance(exc, GoalrtError) and exc.__cause__ is not None else exc
                if not is_connection_error(cause):
                    if isinstance(exc, GoalrtError):
                        raise
                    raise translate(exc) from exc
                log.warning("handler read: database unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def get(self, path: str) -> StateEntry | None:
        entry: StateEntry | None = await self._read(lambda conn: AsyncState(conn, schema=self._schema).get(path))
        return entry

    async def value(self, path: str, default: Any = None) -> Any:
        entry = await self.get(path)
        return default if entry is None else entry.value

    async def list(self, pattern: str | None = None) -> list[StateEntry]:
        entries: list[StateEntry] = await self._read(lambda conn: AsyncState(conn, schema=self._schema).list(pattern))
        return entries

    async def step_results(self, goal_id: int) -> dict[str, Any]:
        """Return the results of a goal's completed, labelled steps (waits and actions) by label."""
        query = queries("goals", self._schema)["goal_results"]
        rows = await self._read(lambda conn: conn.fetch(query, goal_id))
        return {row["label"]: row["result"] for row in rows}


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
    # Set when the goal is cancelled or its lease is lost: a sync handler may check it and stop early.
    cancelled: threading.Event = field(default_factory=threading.Event)
    memory: HandlerMemory | SyncHandlerMemory | None = None  # search; notes commit with the step
    # Where ctx.progress reports go (None: nowhere, once checked).
    reporter: Progress | None = None

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the step has got: ``fraction`` from 0 to 1, an optional message (cut to 200 characters).

        Shown by ``goalrt get``, the HTTP API and the console while the step
        runs. Call it as often as you like (sync or async handlers, no await):
        the worker writes at most one report a second, and the last one when
        the handler returns. A malformed report raises ``ValueError``.
        """
        if self.reporter is None:
            checked(fraction, message)
        else:
            self.reporter.report(fraction, message)

    def results(self) -> Any:
        """Return the results of the goal's completed, labelled steps by label (what waits returned too).

        An async handler awaits it (``await ctx.results()``); a sync one calls it.
        """
        return self.state.step_results(self.goal_id)


# The most of a handler's traceback kept with its step's failure (the end: the innermost frames).
TRACEBACK_CHARS = 8000


def handler_traceback(exc: BaseException) -> str:
    """Return the traceback of what a handler raised (from the worker's call down to where it raised), capped."""
    cause = exc.__cause__ if isinstance(exc, HandlerRaised) and exc.__cause__ is not None else exc
    text = "".join(traceback.format_exception(cause))
    return text if len(text) <= TRACEBACK_CHARS else "...\n" + text[-(TRACEBACK_CHARS - 4) :]


def failure_item(
    run: StepRun, action: Action | None, error: str, *, permanent: bool, trace: str | None = None
) -> StepItem:
    """Return a retry item while the policy allows one, else a fail item (``trace``: the handler's traceback)."""
    if not permanent and action is not None and action.retry.should_retry(run.attempt):
        delay = action.retry.delay(run.goal_id, run.seq, run.attempt)
        return StepItem(
            run.goal_id, run.epoch, run.seq, StepOutcome.RETRY, error=error, traceback=trace, retry_in=round(delay, 6)
        )
    if not permanent and action is not None and action.retry.max_attempts > 1:
        error = f"{error} (after {run.attempt} attempts)"
    return StepItem(run.goal_id, run.epoch, run.seq, StepOutcome.FAIL, error=error, traceback=trace)


def completion_item(
    run: StepRun, value: Any, declared: list[Change] | None = None, notes: Sequence[Any] = ()
) -> StepItem:
    """Return the complete item for what a handler returned; raise ``ValueError`` if it is unusable.

    ``declared`` are the action's declared effects (for the planner); the handler's own changes win
    on the paths both touch. ``notes``: the events ``ctx.memory.remember`` made, after the handler's.
    """
    result = value if isinstance(value, Result) else Result(value)
    check_json(result.value, f"the result of action {run.action}")
    changes = changes_json(result.changes) if result.changes else []
    for change in changes:
        check_json(change.get("value") if isinstance(change, Mapping) else change, f"a change of action {run.action}")
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
    events += notes
    return StepItem(
        run.goal_id,
        run.epoch,
        run.seq,
        StepOutcome.COMPLETE,
        result=result.value,
        changes=changes or None,
        events=events or None,
    )


# Runs a function that starts a step's handler (and returns once the handler
# has begun) under the goal's start lock, if the step may still start;
# returns whether it ran it (see ``WorkerDatabase.start_step``).
StartGate = Callable[[Callable[[], Awaitable[None]]], Awaitable[bool]]


class _NotStarted(Exception):
    """The step may no longer start: its goal or an ancestor ended, or the lease was lost."""


class _Turn:
    """When a sync handler's thread may call it: once the loop holds the goal's start lock.

    The thread says it is ready (so the lock is never held while every
    thread is busy), waits for the answer, and says it is calling the
    handler; the first answer counts, and a refusal sends the thread back
    without calling it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.ready = asyncio.Event()
        self.started = asyncio.Event()
        self._answered = threading.Event()
        self._allowed = False

    def wait(self) -> bool:
        """In the thread: wait for the answer; True means call the handler now."""
        self._loop.call_soon_threadsafe(self.ready.set)
        self._answered.wait()
        if self._allowed:
            self._loop.call_soon_threadsafe(self.started.set)
        return self._allowed

    def answer(self, allowed: bool) -> None:
        if not self._answered.is_set():
            self._allowed = allowed
            self._answered.set()

    async def start(self) -> None:
        """Let the thread call the handler; return once it does."""
        self.answer(True)
        await self.started.wait()


class HandlerRaised(Exception):
    """A handler raised a ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``, its own ``CancelledError``)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"handler raised {exc!r}")


class _TimedOut(Exception):
    """The worker stopped waiting for a handler that outlived its timeout."""


class HandlerCalls:
    """The handler runs a worker cannot stop: sync calls in their threads, async tasks it abandoned."""

    def __init__(self) -> None:
        self._threads = 0
        self._lock = threading.Lock()
        # Strong references: an abandoned task must not be collected while it runs.
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> int:
        """Return how many handler runs are still going: sync calls in a thread, abandoned async tasks."""
        return self._threads + sum(1 for task in self._abandoned if not task.done())

    def call_sync(self, fn: Any, args: Any, ctx: ActionContext, turn: _Turn) -> Any:
        """Call a sync handler in the current (pool) thread when its turn comes; whatever it raises is an ``Exception``.

        Returns ``_NotStarted`` (the class) without calling it when the turn is refused.
        """
        with self._lock:
            self._threads += 1
        try:
            if not turn.wait():
                return _NotStarted
            return fn(args, ctx)
        except Exception:
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: the step fails, never the worker
            raise HandlerRaised(exc) from None
        finally:
            with self._lock:
                self._threads -= 1

    def abandon(self, waiting: asyncio.Future[Any]) -> None:
        """Stop waiting for a handler: cancel it, and keep an async one referenced until it ends (if ever)."""
        waiting.cancel()
        if isinstance(waiting, asyncio.Task) and not waiting.done():
            self._abandoned.add(waiting)
            waiting.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its result no longer matters


async def _guarded(coro: Any, started: asyncio.Event) -> Any:
    """Set ``started`` and await an async handler; whatever it raises that is not an ``Exception`` becomes one.

    The handler runs up to its first await in this same step of the task,
    before anyone waiting for ``started`` runs again. ``SystemExit`` and
    ``KeyboardInterrupt`` escaping a task would stop the event loop (and the
    worker); a ``CancelledError`` the handler raised itself, not because its
    task was cancelled, is a failure like any other.
    """
    started.set()
    try:
        return await coro
    except Exception:
        raise
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise HandlerRaised(exc) from None
    except BaseException as exc:
        raise HandlerRaised(exc) from None


async def run_step(
    run: StepRun,
    registry: Registry,
    ctx: ActionContext,
    *,
    executor: Executor,
    calls: HandlerCalls,
    gate: StartGate,
    semaphore: asyncio.Semaphore | None = None,
) -> StepItem | None:
    """Run the handler for ``run`` and return its outcome item (never raises but on cancellation).

    The handler is started through ``gate``: None when the step may no
    longer start (its goal or an ancestor ended, or the lease was lost), and
    nothing ran.
    """
    action = registry.actions.get(run.action)
    if action is None or action.fn is None:
        # The runner hands over a step it cannot run before it gets here.
        known = ", ".join(registry.runnable_actions()) or "none"
        return failure_item(run, None, f"unknown action {run.action!r} (this worker has: {known})", permanent=True)
    try:
        if semaphore is not None:
            async with semaphore:
                value = await _call(action, run, ctx, executor, calls, gate)
        else:
            value = await _call(action, run, ctx, executor, calls, gate)
    except asyncio.CancelledError:
        ctx.cancelled.set()
        raise
    except _NotStarted:
        return None
    except PermanentError as exc:
        return failure_item(run, action, f"{run.action}: {exc}", permanent=True, trace=handler_traceback(exc))
    except HandlerRaised as exc:
        return failure_item(run, action, f"{run.action}: {exc}", permanent=False, trace=handler_traceback(exc))
    except _TimedOut:
        ctx.cancelled.set()
        return failure_item(run, action, f"{run.action}: timed out after {action.timeout:g}s", permanent=False)
    except Exception as exc:  # a handler's failure is data, not a crash of the worker
        error = f"{run.action}: {type(exc).__name__}: {exc}"
        return failure_item(run, action, error, permanent=False, trace=handler_traceback(exc))
    try:
        declared = effect_changes(action.schema, run.args or {}) if action.schema is not None else None
        return completion_item(run, value, declared, ctx.memory.notes() if ctx.memory else ())
    except (TypeError, ValueError, RecursionError, InvalidStateChangeError, InvalidEventError) as exc:
        return failure_item(run, action, f"{run.action}: {exc}", permanent=True)


async def _call(
    action: Action, run: StepRun, ctx: ActionContext, executor: Executor, calls: HandlerCalls, gate: StartGate
) -> Any:
    """Start the handler through ``gate`` and wait for it, at most its timeout; never wait for one given up on.

    Raises ``_NotStarted`` when the gate says the step may no longer start.
    """
    fn = action.fn
    assert fn is not None, "run_step runs only actions with a handler"
    args = run.args if run.args is not None else {}
    loop = asyncio.get_running_loop()
    deadline = None if action.timeout is None else loop.time() + action.timeout
    waiting: asyncio.Future[Any]
    if action.is_async:
        started = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []

        async def start() -> None:
            tasks.append(
                asyncio.create_task(_guarded(fn(args, ctx), started), name=f"goalrt-handler-{run.goal_id}-{run.seq}")
            )
            await started.wait()

        try:
            allowed = await gate(start)
        except BaseException:
            for task in tasks:
                calls.abandon(task)
            raise
        if not allowed:
            raise _NotStarted
        waiting = tasks[0]
    else:
        # A sync handler that outlives its timeout keeps its thread until it
        # returns (threads cannot be killed); its result is then dropped.
        turn = _Turn(loop)
        # In the step's context (its span, for a handler's own spans): run_in_executor does not carry it.
        call = functools.partial(contextvars.copy_context().run, calls.call_sync, fn, args, ctx, turn)
        waiting = loop.run_in_executor(executor, call)
        try:
            # A thread first: the start lock is never held while every thread is busy.
            ready = asyncio.ensure_future(turn.ready.wait())
            try:
                await asyncio.wait({ready, waiting}, timeout=_left(loop, deadline), return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
            if not turn.ready.is_set():
                if waiting.done():
                    return waiting.result()  # the thread failed before its turn: raise that
                calls.abandon(waiting)
                raise _TimedOut
            if not await gate(turn.start):
                raise _NotStarted
        except asyncio.CancelledError:
            calls.abandon(waiting)
            raise
        finally:
            turn.answer(False)  # a thread still waiting for its turn goes back without calling the handler
    try:
        done, _ = await asyncio.wait({waiting}, timeout=_left(loop, deadline))
    except asyncio.CancelledError:
        # The worker cancelled the step (a cancel, the drain): a handler that
        # ignores its own cancellation must not hold the worker.
        calls.abandon(waiting)
        raise
    if not done:
        calls.abandon(waiting)
        raise _TimedOut
    return waiting.result()


def _left(loop: asyncio.AbstractEventLoop, deadline: float | None) -> float | None:
    """Return the seconds left until ``deadline`` (None: no deadline)."""
    return None if deadline is None else max(deadline - loop.time(), 0.0)


__all__ = [
    "ActionContext",
    "HandlerCalls",
    "HandlerRaised",
    "StartGate",
    "StateReader",
    "StepRun",
    "idempotency_key",
    "run_step",
]
