"""``goalrt demo``: goalrt's main job end to end on the default database.

Until goal workspaces exist this is a self-check of the foundation: migrate,
append single events and a batch, read them back in order from the gap-free
log, and verify the hash chain.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from goalrt import migrate
from goalrt.errors import GoalrtError
from goalrt.eventlog import EventLog


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

        report = log.verify_or_raise()
        say(f"hash chain intact over {report.checked} events (head {log.head()})")
    say("demo ok")
