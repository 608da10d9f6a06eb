"""The live part of the demo: a worker in this process, the orders, the goals, the answer to the ask."""

from __future__ import annotations

import asyncio
import json
import time

from goalrt.demo.model import ANSWER, GOALS_TIMEOUT, ORDERS, Run, Say
from goalrt.demo.report import short
from goalrt.errors import GoalrtError, InvalidStateChangeError
from goalrt.goals.async_goals import AsyncGoals
from goalrt.goals.goals import GoalInfo, GoalStatus
from goalrt.goals.registry import default_registry
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.state.async_state import AsyncState
from goalrt.state.state import Change
from goalrt.worker.worker import Worker


async def live(run: Run, say: Say) -> None:
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
            f"{k} {short(values[k]) if k in values else '-':<{width}}"
            for k, width in (("amount", 3), ("status", 7), ("paid_by", 7), ("label", 7), ("refund", 4))
        )
        say(f"  {oid}  {shown.rstrip()}")
        paid_by, refund = expected[order.short]
        got = (values.get("status"), values.get("paid_by"), values.get("refund"))
        if got != ("shipped", paid_by, refund):
            raise GoalrtError(f"demo: orders.{oid} is {got}, expected {('shipped', paid_by, refund)}")
