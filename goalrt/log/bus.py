"""The event bus: LISTEN/NOTIFY as a wake-up hint, never as the data.

Appenders send at most one ``goalrt_append`` notification per interval per
connection, after commit and never inside the appending transaction (a NOTIFY
in a writing transaction takes a database-wide lock until commit). Each tick
that positions events sends one ``goalrt_events``. Followers listen to both,
but always read from their own position, and poll, so a lost notification
delays an event and never loses it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from goalrt.log.event import Event


def channels(schema: str = "goalrt") -> tuple[str, str]:
    """Return the (append, events) channels of a schema: a fork has its own."""
    return (f"{schema}_append", f"{schema}_events")


def goal_channels(schema: str = "goalrt") -> tuple[str, str]:
    """Return the (goals, cancel) channels workers listen on: submits and releases, and cancels of leased goals."""
    return (f"{schema}_goals", f"{schema}_cancel")


class AppendNotifier:
    """Decide when an appender should notify: at most once per ``interval`` seconds.

    The first append after a quiet spell always notifies, so an idle follower
    wakes at once; appends in a burst are covered by the follower's fast
    polling after activity (see ``FollowPacer``).
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._last = float("-inf")

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


class FollowPacer:
    """Decide how long a follower pauses before polling again, and whether a notification ends the pause.

    - After a full page: no pause (there is more to read).
    - After a short page with events: ``coalesce`` seconds, not cut short by
      notifications. Every poll ticks the clock, and each tick that finds
      events is a committing write; pausing lets one tick position a batch
      instead of a handful, at the price of a few milliseconds of lag.
    - For ``active_window`` seconds after the last event: ``active_poll``,
      which catches appends whose notification was coalesced away.
    - Otherwise: up to ``idle_poll``, ended early by a notification.
    """

    def __init__(
        self, idle_poll: float = 0.5, active_poll: float = 0.01, active_window: float = 0.25, coalesce: float = 0.02
    ) -> None:
        self.idle_poll = idle_poll
        self.active_poll = active_poll
        self.active_window = active_window
        self.coalesce = coalesce
        self._last_activity = float("-inf")

    def wait_after(self, got: int, limit: int, now: float | None = None) -> tuple[float, bool]:
        """Return (seconds to pause, whether a notification may end the pause)."""
        now = time.monotonic() if now is None else now
        if got:
            self._last_activity = now
            return (0.0, False) if got >= limit else (self.coalesce, False)
        if now - self._last_activity < self.active_window:
            return min(self.active_poll, self.idle_poll), True
        return self.idle_poll, True


def advance(after: int, events: Sequence[Event], head: int, limit: int) -> int:
    """Return the position to read after next.

    ``head`` must have been read before ``events`` were (so every event at or
    below it is in their snapshot). A full page moves to its last event; a
    short page means nothing else matched up to the head, so a filtered
    follower can skip the unmatched stretch instead of rescanning it.
    """
    if len(events) >= limit:
        return events[-1].pos
    last = events[-1].pos if events else after
    return max(after, last, head)
