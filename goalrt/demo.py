"""``goalrt demo``: goalrt's main job end to end on the default database.

Until goal workspaces exist this is a self-check of what is built: migrate,
append events and read them back in order from the gap-free log, change
state and read it back now and as it was, take a snapshot, try a change in
a fork without touching the main line, rebuild the state from the log and
compare, run goals through a worker (with a retry and an idempotent
resubmit), and verify the hash chain.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from goalrt import forks, migrate, replay, snapshots
from goalrt.async_goals import AsyncGoals
from goalrt.dispatcher import ActionContext
from goalrt.errors import GoalrtError
from goalrt.eventlog import EventLog
from goalrt.goals import Goals
from goalrt.registry import Registry, Result, Step
from goalrt.retry import Retry
from goalrt.state import Change, State
from goalrt.waits import ask, wait_event
from goalrt.worker import Worker


def run(url: str, say: Callable[[str], None]) -> None:
    """Run the demo against ``url``, reporting each step through ``say``."""
    state = migrate.upgrade(url)
    say(f"migrated: database at revision {state.current}")

    stream = f"demo:{uuid.uuid4().hex[:8]}"
    with EventLog.connect(url) as log:
        start = log.tick()
        first = log.append(stream, "demo.started", {"step": 0}, actor="goalrt demo")
        batch = log.append_many(
            {"stream": stream, "type": "demo.step", "data": {"step": i}, "metadata": {"causation_id": str(first)}}
            for i in range(1, 4)
        )
        with log.transaction():
            log.append(stream, "demo.finished", {"steps": 3}, causation_id=batch[-1])
        say(f"appended 5 events to stream {stream}")

        events = log.read(after=start, stream=stream)
        types = [e.type for e in events]
        expected = ["demo.started", "demo.step", "demo.step", "demo.step", "demo.finished"]
        if types != expected:
            raise GoalrtError(f"demo read back {types}, expected {expected}")
        positions = [e.pos for e in events]
        say(f"read them back in order at positions {positions[0]}..{positions[-1]}")

    run_state(url, say, stream.split(":", 1)[1])
    run_goals(url, say, stream.split(":", 1)[1])

    with EventLog.connect(url) as log:
        report = log.verify_or_raise()
        say(f"hash chain intact over {report.checked} events (head {log.head()})")
    say("demo ok")


def _expect(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise GoalrtError(f"demo: {what} is {got!r}, expected {expected!r}")


def run_state(url: str, say: Callable[[str], None], tag: str) -> None:
    """State: change sets, versions, time travel, a snapshot, a fork, a replay."""
    order, balance = f"demo.orders.o{tag}", f"demo.users.u{tag}.balance"
    with State.connect(url) as state:
        state.change([Change.set(f"{order}.status", "created"), Change.set(balance, 100)])
        created_at = state.tick()
        state.change([Change.set(f"{order}.status", "paid"), Change.inc(balance, -20)])
        say(f"state: {order}.status = {state.value(f'{order}.status')!r}, balance {state.value(balance)}")
        _expect("the status before payment", state.value(f"{order}.status", at=created_at), "created")
        say(f"time travel: at pos {created_at} the status was 'created' and the balance 100")

        snap = snapshots.create(state, f"demo-{tag}", tags=["demo"], note="after payment")
        say(f"snapshot {snap.name} at pos {snap.pos} ({snap.written} entries written, {snap.paths} paths)")

        fork = forks.create(state.connection, f"demo_{tag}")
        try:
            with State.connect(url, fork=fork.name) as sim:
                sim.set(f"{order}.status", "refunded")
                sim.increment(balance, 20)
                _expect("the balance in the fork", sim.value(balance), 100)
            _expect("the status on the main line", state.value(f"{order}.status"), "paid")
            say(f"fork {fork.name}: refunded there, still paid on the main line")
        finally:
            forks.drop(state.connection, fork.name)

        result = replay.verify(state)
        if not result.identical:
            raise GoalrtError(f"demo: replay {result.describe()}")
        say(f"replay from the log alone: {result.describe()}")


class _Order(BaseModel):
    order: str
    amount: float
    tag: str


def _demo_registry() -> Registry:
    registry = Registry()

    @registry.goal("demo.checkout", params=_Order)
    def checkout(p: _Order) -> list[Step]:
        return [
            Step("demo.charge", {"order": p.order, "amount": p.amount, "tag": p.tag}),
            Step("demo.ship", {"order": p.order, "tag": p.tag}),
        ]

    @registry.goal("demo.approved_order", params=_Order)
    def approved_order(p: _Order) -> list[Step]:
        # Waits the database runs: an answer from a person, then a webhook.
        return [
            ask(f"Ship order {p.order}?", {"type": "object", "properties": {"ok": {"type": "boolean"}}}),
            wait_event("demo.payment_settled", where={"order": p.order, "tag": p.tag}, timeout=60),
            Step("demo.ship", {"order": p.order, "tag": p.tag}),
        ]

    @registry.action("demo.charge", retry=Retry(max_attempts=3, backoff=0.05))
    async def charge(args: dict[str, Any], ctx: ActionContext) -> Result:
        if args["order"].endswith("-flaky") and ctx.attempt == 1:
            raise ConnectionError("payment API timed out")  # retried with backoff
        return Result({"charged": args["amount"]}, changes=[Change.inc(f"demo.revenue_{args['tag']}", args["amount"])])

    @registry.action("demo.ship")
    async def ship(args: dict[str, Any], ctx: ActionContext) -> Result:
        shipped = Change.set(f"demo.shipped_{args['tag']}.{args['order']}", True)
        return Result({"tracking": f"trk-{args['order']}"}, changes=[shipped])

    return registry


def run_goals(url: str, say: Callable[[str], None], tag: str) -> None:
    """Goals: submit (one twice with the same key), a worker runs them, one step retries."""
    registry = _demo_registry()
    name = "demo.checkout"
    with Goals.connect(url, registry=registry) as goals:
        goals.register()
        ids = [
            goals.submit(name, {"order": "o1", "amount": 20, "tag": tag}, key=f"demo-{tag}-o1").id,
            goals.submit(name, {"order": "o2-flaky", "amount": 5, "tag": tag}, priority=5).id,
        ]
        again = goals.submit(name, {"order": "o1", "amount": 20, "tag": tag}, key=f"demo-{tag}-o1")
        _expect("the resubmitted goal", (again.id, again.created), (ids[0], False))
        say(f"goals: submitted {ids} (a second submit with the same key returned goal {again.id})")

        waiting = goals.submit("demo.approved_order", {"order": "o3", "amount": 1, "tag": tag}).id
        ids.append(waiting)

        async def work() -> None:
            worker = Worker(url, registry, concurrency=4, poll=0.05, lease=10, name="demo")
            task = asyncio.create_task(worker.run())
            deadline = time.monotonic() + 30
            async with await AsyncGoals.connect(url) as watch:
                while (await watch.get(waiting)).status != "waiting":
                    if time.monotonic() > deadline:
                        raise GoalrtError("demo: the approval goal did not start waiting in 30 s")
                    await asyncio.sleep(0.05)
                say(f"goal {waiting} waits for an answer, holding no worker; answering it (goalrt resume)")
                await watch.resume(waiting, {"ok": True}, actor="demo")
                say(f"goal {waiting} now waits for a webhook; appending demo.payment_settled")
                with EventLog.connect(url) as events:  # as any other application would
                    events.append("webhooks", "demo.payment_settled", {"order": "o3", "tag": tag})
                while any(s not in ("complete", "failed") for s in [(await watch.get(i)).status for i in ids]):
                    if time.monotonic() > deadline:
                        raise GoalrtError("demo: goals did not finish in 30 s")
                    await asyncio.sleep(0.05)
            worker.request_stop()
            await task

        asyncio.run(work())
        for gid in ids:
            info = goals.get(gid)
            _expect(f"goal {gid}", info.status, "complete")
            attempts = ", ".join(f"{s.action} x{s.attempts}" if s.kind == "action" else s.action for s in info.steps)
            say(f"goal {gid} complete: {attempts}; result {info.result}; {len(info.events)} events")
    with State.connect(url) as state:
        _expect("the revenue", state.value(f"demo.revenue_{tag}"), 25)
        say(f"state after the goals: demo.revenue_{tag} = 25 (each charge applied exactly once)")
