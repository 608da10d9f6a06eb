"""The live event stream's fan-out: one reader of the log per database role and fork, however many subscribers.

A ``Hub`` holds one connection of its own (per database URL, i.e. role, and
fork) that follows the log as ``AsyncEventLog.follow`` does (LISTEN/NOTIFY
as a wake-up, polling as the fallback) and keeps the events it read in a
window of the last ``WINDOW`` events: it holds every event the role can see
with a position in ``(base, last]``. Each subscriber serves itself from that
window, from its own position, with its own filters, and waits for the next
change; so 100 subscribers cost one LISTEN connection and one read per
batch, not 100.

A subscriber whose position is below the window (it resumed from an old
``Last-Event-ID``, or fell more than ``WINDOW`` events behind) reads pages
by position from the server's pool, with its filters in SQL, until it
reaches the window. Positions only grow and an event's position never
changes, so both paths give every event after the subscriber's position
once, in log order.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from functools import lru_cache

from goalrt.db.connect import connect_async
from goalrt.db.schemas import schema_for_async
from goalrt.errors import GoalrtError
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.log.committed import Event

log = logging.getLogger("goalrt.serve")

# The most events a hub keeps for its subscribers (a subscriber further behind reads from the pool).
WINDOW = 10_000
# Events a catching-up subscriber reads at once.
PAGE = 500

# Reads up to PAGE events after a position with a stream and a type glob, on a pooled connection.
PageReader = Callable[[int, int, str | None, str | None], Awaitable[list[Event]]]


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """The type glob as ``goalrt.glob_to_like`` reads it: ``*`` any text, ``?`` one character, the rest literal."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def matches(event: Event, stream: str | None, type: str | None) -> bool:
    """Whether ``event`` passes the stream's filters, as ``read_events`` applies them."""
    return (stream is None or event.stream == stream) and (type is None or bool(_glob(type).fullmatch(event.type)))


class HubFailedError(Exception):
    """The hub lost its reader (the database went away): its subscribers end, and clients reconnect."""


class Hub:
    """One follower of the log for a database URL and fork, and the window of what it read."""

    def __init__(self, url: str, fork: str | None) -> None:
        self.url = url
        self.fork = fork
        self.subscribers = 0
        self._positions: list[int] = []
        self._events: list[Event] = []
        # Every event the role can see with base < pos <= the last one read is in the window.
        self.base = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._wake_due = False
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Open the hub's connection and start following from the head (once; later callers wait for it)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="goalrt-sse-hub")
        await self._started.wait()
        if self.error is not None:
            if isinstance(self.error, GoalrtError):  # e.g. the database is away, no such fork: the request's error
                raise self.error
            raise HubFailedError(str(self.error)) from self.error

    async def _run(self) -> None:
        try:
            conn = await connect_async(self.url)
            try:
                events = AsyncEventLog(conn, schema=await schema_for_async(conn, self.fork), owns_connection=True)
            except BaseException:
                await conn.close()
                raise
            try:
                self.base = await events.tick()
                self._started.set()
                async for event in events.follow(self.base):
                    self._add(event)
            finally:
                await events.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("event stream: the reader of the log stopped: %s", exc)
            self.error = exc
        finally:
            self._started.set()
            self._wake()

    def _add(self, event: Event) -> None:
        self._positions.append(event.pos)
        self._events.append(event)
        if len(self._events) > WINDOW + WINDOW // 10:  # trim in chunks, not one by one
            cut = len(self._events) - WINDOW
            self.base = self._positions[cut - 1]
            del self._positions[:cut], self._events[:cut]
        # Wake the subscribers once per burst: when the loop next runs, not per event.
        if not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_due = False
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def since(self, after: int, stream: str | None, type: str | None) -> tuple[list[Event], int] | None:
        """Return the window's events after ``after`` that pass the filters, and the position to go on from.

        None when ``after`` is below the window: read from the pool first.
        """
        if after < self.base:
            return None
        start = bisect.bisect_right(self._positions, after)
        found = [e for e in self._events[start:] if matches(e, stream, type)]
        last = self._positions[-1] if self._positions else self.base
        return found, max(after, last)

    async def changed(self, seen: asyncio.Event, timeout: float) -> bool:
        """Wait until the window changes after ``seen`` was current, or ``timeout``; return whether it did."""
        try:
            async with asyncio.timeout(timeout):
                await seen.wait()
        except TimeoutError:
            return False
        return True

    @property
    def current(self) -> asyncio.Event:
        """The event the next change sets (take it before reading the window)."""
        return self._changed

    async def close(self) -> None:
        """Stop the reader; its subscribers end (the server is stopping, or the last one left)."""
        if self.error is None:
            self.error = HubFailedError("the server stopped following the log")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Hubs:
    """The server's hubs, one per (database URL, fork), opened by the first subscriber and closed by the last."""

    def __init__(self) -> None:
        self._hubs: dict[tuple[str, str | None], Hub] = {}

    @contextlib.asynccontextmanager
    async def hub(self, url: str, fork: str | None) -> AsyncIterator[Hub]:
        key = (url, fork)
        hub = self._hubs.get(key)
        if hub is None or hub.error is not None:
            hub = self._hubs[key] = Hub(url, fork)
        hub.subscribers += 1
        try:
            await hub.start()
            yield hub
        finally:
            hub.subscribers -= 1
            if hub.subscribers == 0 and self._hubs.get(key) is hub:
                del self._hubs[key]
                await hub.close()

    def __len__(self) -> int:
        return len(self._hubs)

    async def close(self) -> None:
        hubs, self._hubs = list(self._hubs.values()), {}
        for hub in hubs:
            await hub.close()


async def subscribe(
    hub: Hub, read: PageReader, after: int, stream: str | None, type: str | None, keepalive: float
) -> AsyncGenerator[Event | None, None]:
    """Yield every event after ``after`` that passes the filters, once, in log order; None when idle ``keepalive`` s.

    Raises ``HubFailedError`` when the hub's reader stopped.
    """
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    while True:
        if hub.error is not None:
            raise HubFailedError(str(hub.error))
        seen = hub.current
        served = hub.since(after, stream, type)
        if served is None:  # below the window: a page from the pool, by position
            floor = hub.base  # every event at or below it is positioned and visible
            page = await read(after, PAGE, stream, type)
            for event in page:
                yield event
            after = page[-1].pos if len(page) >= PAGE else max(after, page[-1].pos if page else after, floor)
            last_sent = loop.time() if page else last_sent
            continue
        events, after = served
        for event in events:
            yield event
        if events:
            last_sent = loop.time()
            continue
        wait = last_sent + keepalive - loop.time()
        if wait <= 0 or not await hub.changed(seen, wait):
            yield None
            last_sent = loop.time()


__all__ = ["PAGE", "WINDOW", "Hub", "HubFailedError", "Hubs", "matches", "subscribe"]
