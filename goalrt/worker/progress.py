"""A running step's progress (``ctx.progress``): checked, throttled, written under the lease.

A handler reports ``ctx.progress(fraction, message)`` as often as it likes,
from the worker's loop (an async handler) or from its thread (a sync one).
Each report is checked at once (``fraction`` a number from 0 to 1, the
message cut to ``MESSAGE_CHARS``); at most one write per ``INTERVAL``
seconds reaches the database for a step: a report that comes sooner waits
there, replaced by any later one, and is written when the interval is up.
When the step's handler has returned, ``close`` writes the report still
waiting (if any), so the last value reported is the one stored; a report
after that is dropped. The write is ``step_progress_v1``, which stores it
only while the worker holds the goal's lease at this epoch: a fenced
worker's progress is refused (and counted), never an error of the step.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("goalrt.worker")

# At most one write per step in this many seconds.
INTERVAL = 1.0
# The longest message kept (the column's CHECK says the same).
MESSAGE_CHARS = 200
# The longest a step's end waits for its last report to be written.
CLOSE_S = 5.0

# Writes (fraction, message) for the step; returns whether the database stored it (False: lease not held).
Write = Callable[[float, str | None], Awaitable[bool]]


def checked(fraction: object, message: object) -> tuple[float, str | None]:
    """Return a report as stored, or raise ``ValueError`` saying in one line what is wrong with it."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not math.isfinite(fraction):
        raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r:.80}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise ValueError(f"a progress message must be a string, got {type(message).__name__}")
    if message is not None:
        message = message.replace("\x00", "")[:MESSAGE_CHARS]
    return float(fraction), message


class Progress:
    """One step's reports: at most one write per ``interval``, the last one written by ``close``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        write: Write,
        counted: Callable[[bool], None] = lambda stored: None,
        *,
        interval: float = INTERVAL,
    ) -> None:
        """Made on the loop's thread; ``counted`` is told each write's answer (stored or refused)."""
        self._loop = loop
        self._thread = threading.get_ident()
        self._write = write
        self._counted = counted
        self._interval = interval
        self._pending: tuple[float, str | None] | None = None
        self._last_write = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._closed = False
        self.written = 0
        self.refused = 0

    def report(self, fraction: object, message: object = None) -> None:
        """Take a report (from the loop's thread or any other); raise ``ValueError`` if it is malformed."""
        value = checked(fraction, message)
        if threading.get_ident() == self._thread:
            self._offer(value)
        else:  # a sync handler's thread
            self._loop.call_soon_threadsafe(self._offer, value)

    def _offer(self, value: tuple[float, str | None]) -> None:
        if self._closed:
            return
        self._pending = value
        if self._writing is not None or self._timer is not None:
            return  # written when the write in flight ends, or when the timer fires
        self._schedule()

    def _schedule(self) -> None:
        wait = self._last_write + self._interval - time.monotonic()
        if wait <= 0:
            self._start()
        else:
            self._timer = self._loop.call_later(wait, self._start)

    def _start(self) -> None:
        self._timer = None
        if self._pending is None or self._writing is not None:
            return
        value, self._pending = self._pending, None
        self._last_write = time.monotonic()
        self._writing = self._loop.create_task(self._send(value))
        self._writing.add_done_callback(self._sent)

    async def _send(self, value: tuple[float, str | None]) -> None:
        try:
            stored = await self._write(*value)
            if stored:
                self.written += 1
            else:
                self.refused += 1
            self._counted(stored)
        except Exception as exc:  # progress is a hint: a failed write never fails the step
            log.debug("progress not written: %s", exc)

    def _sent(self, _task: asyncio.Task[None]) -> None:
        self._writing = None
        if self._pending is not None and not self._closed:
            self._schedule()

    async def close(self) -> None:
        """The handler has returned: write the report still waiting (if any); drop any later one.

        Waits at most ``CLOSE_S`` seconds (a busy pool, a slow server): the
        step's outcome is not held up for a hint.
        """
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is None and self._pending is None:
            return  # (most steps report nothing: no timeout armed for them)
        try:
            async with asyncio.timeout(CLOSE_S):
                if self._writing is not None:
                    await asyncio.shield(self._writing)
                if self._pending is not None:
                    value, self._pending = self._pending, None
                    await self._send(value)
        except TimeoutError:
            log.debug("progress: the last report was not written in %s s; dropped", CLOSE_S)


__all__ = ["INTERVAL", "MESSAGE_CHARS", "Progress", "checked"]
