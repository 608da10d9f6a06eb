"""``goalrt demo``: goalrt's main job end to end on the default database.

Until goal workspaces exist this is a self-check of what is built: migrate,
append events and read them back in order from the gap-free log, change
state and read it back now and as it was, take a snapshot, try a change in
a fork without touching the main line, rebuild the state from the log and
compare, and verify the hash chain.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from goalrt import forks, migrate, replay, snapshots
from goalrt.errors import GoalrtError
from goalrt.eventlog import EventLog
from goalrt.state import Change, State


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
