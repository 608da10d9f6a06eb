"""What `goalrt health` and `goalrt metrics` read and decide: the queue's figures, recent goals' times, the checks.

The figures come from named queries of ``sql/queries/goals.sql``
(``queue_figures``, also a worker's metrics; ``goals_recent_figures``;
``goals_unserved``; ``goals_per_minute``, the console's charts), each bounded however large the database grows. The
checks are pure functions of them, so what is healthy is decided in one
place and tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# A worker seen within this many seconds counts as alive (workers heartbeat at least every 20 s).
WORKER_ALIVE_S = 30.0


def alive_workers(workers: Iterable[Mapping[str, Any]]) -> int:
    """Return how many of ``Goals.workers()``' rows were seen within ``WORKER_ALIVE_S``."""
    return sum(1 for w in workers if w["seconds_since_seen"] < WORKER_ALIVE_S)


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """The queue as a whole, now (the same figures a worker's metrics serve)."""

    runnable: int  # goals a claim could take now
    oldest_runnable: float  # seconds the oldest of them has been due (0: none)
    waiting: int  # goals waiting for an event, a sleep, an ask or children
    parked: int  # goals a limit holds back
    head: int  # the log's last position
    unpositioned: int  # committed events the clock has not positioned yet
    tick_lag: float  # seconds the oldest of them has waited (0: caught up)
    expired: int  # active goals whose lease ran out

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> QueueFigures:
        return cls(
            int(row[0]), float(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), float(row[6]), int(row[7])
        )


@dataclass(frozen=True, slots=True)
class Finished:
    """Goals that ended recently with one status: how many, and seconds from submit to end."""

    status: str
    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Finished:
        return cls(str(row[0]), int(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))


@dataclass(frozen=True, slots=True)
class Minute:
    """One minute of recent history: how many goals ended in it, by status; how long the complete ones took."""

    start: datetime
    ended: Mapping[str, int]  # status -> goals that ended in the minute (only statuses with some)
    p50: float | None  # seconds from submit to end of the goals that completed in the minute (None: none did)
    p95: float | None


@dataclass(frozen=True, slots=True)
class History:
    """Recent minutes (oldest first) and, when the bound on goals looked at cut the window, where it cut it."""

    minutes: Sequence[Minute]
    # The creation time of the oldest goal looked at, when there were as many as the bound; else None.
    since: datetime | None

    @property
    def cut(self) -> bool:
        """Return whether goals older than ``since`` could have ended in the window (the first minutes count fewer)."""
        return self.since is not None and bool(self.minutes) and self.since > self.minutes[0].start


def history_of(rows: Iterable[Sequence[Any]]) -> History:
    """Return the minutes of ``goals_per_minute``'s rows (minute, status, count, p50, p95, since), oldest first."""
    ended: dict[datetime, dict[str, int]] = {}
    took: dict[datetime, tuple[float | None, float | None]] = {}
    since = None
    for minute, status, count, p50, p95, oldest in rows:
        since = oldest
        ended.setdefault(minute, {})
        if status is not None and count:
            ended[minute][str(status)] = int(count)
            if status == "complete":
                took[minute] = (float(p50), float(p95))
    minutes = [Minute(m, counts, *took.get(m, (None, None))) for m, counts in sorted(ended.items())]
    return History(minutes, since)


class Level(StrEnum):
    """How a check came out: ``fail`` makes `goalrt health` exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of `goalrt health`."""

    name: str
    level: Level
    detail: str


def queue_checks(
    figures: QueueFigures,
    workers_alive: int,
    unserved: int,
    *,
    max_wait: float = 60.0,
    max_tick_lag: float = 10.0,
) -> list[Check]:
    """Return the checks of a database that answered and is migrated: workers, backlog, leases, the clock.

    ``workers_alive`` counts workers seen recently; ``unserved`` the
    runnable goals (of the first ones in claim order) whose next step no
    live worker has a handler for.
    """
    checks = []
    if workers_alive:
        checks.append(Check("workers", Level.OK, f"{workers_alive} alive"))
    elif figures.runnable:
        checks.append(Check("workers", Level.FAIL, f"none alive, and {figures.runnable} goal(s) are runnable"))
    else:
        checks.append(Check("workers", Level.WARN, "none alive (nothing is runnable now)"))
    backlog = f"{figures.runnable} runnable, the oldest due {figures.oldest_runnable:.1f}s ago"
    if figures.runnable and figures.oldest_runnable > max_wait:
        checks.append(Check("backlog", Level.WARN, f"{backlog} (more than {max_wait:g}s)"))
    else:
        checks.append(Check("backlog", Level.OK, backlog if figures.runnable else "empty"))
    if unserved:
        checks.append(
            Check("handlers", Level.WARN, f"{unserved} runnable goal(s) wait for a worker with their step's handler")
        )
    else:
        checks.append(Check("handlers", Level.OK, "no runnable goal waits for a worker with its step's handler"))
    if figures.expired:
        detail = f"{figures.expired} active goal(s) whose lease ran out (a worker died or stalled; a claim takes them)"
        checks.append(Check("leases", Level.WARN, detail))
    else:
        checks.append(Check("leases", Level.OK, "no expired lease"))
    clock = f"head {figures.head}, {figures.unpositioned} event(s) to position"
    if figures.unpositioned and figures.tick_lag > max_tick_lag:
        detail = f"{clock}, the oldest for {figures.tick_lag:.1f}s (nobody ticks? `goalrt events list` ticks)"
        checks.append(Check("clock", Level.WARN, detail))
    else:
        checks.append(Check("clock", Level.OK, clock))
    return checks


__all__ = [
    "WORKER_ALIVE_S",
    "Check",
    "Finished",
    "History",
    "Level",
    "Minute",
    "QueueFigures",
    "alive_workers",
    "history_of",
    "queue_checks",
]
