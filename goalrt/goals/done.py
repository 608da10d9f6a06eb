"""The ``goalrt_done`` channel: who waits for a goal's end is told after the commit that ended it.

A worker (and the Python ``cancel``) notifies it outside any transaction, with
the ids of the goals that ended; ``Goals.wait`` listens and re-reads its goal.
A hint, never the data: a waiter also re-checks on its own (docs/sql.md,
"Notifications").
"""

from __future__ import annotations

from collections.abc import Sequence


def done_channel(schema: str = "goalrt") -> str:
    """Return the channel a worker notifies after the commit that ended goals (their ids, comma-separated)."""
    return f"{schema}_done"


def done_payloads(goal_ids: Sequence[int], limit: int = 7900) -> list[str]:
    """Return ``goal_ids`` as comma-separated payloads of at most ``limit`` bytes (NOTIFY takes under 8000)."""
    payloads: list[str] = []
    current = ""
    for goal_id in goal_ids:
        text = str(goal_id)
        if current and len(current) + 1 + len(text) > limit:
            payloads.append(current)
            current = ""
        current = f"{current},{text}" if current else text
    if current:
        payloads.append(current)
    return payloads
