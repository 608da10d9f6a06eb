"""The event log, asynchronous API (asyncpg), for workers and async apps.

Same operations and the same SQL functions as ``goalrt.log.eventlog.EventLog``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import ChainBrokenError, translated
from goalrt.log import bus
from goalrt.log.event import ChainReport, Event, NewEvent, coerce_events, new_event
from goalrt.state import forks


class AsyncEventLog:
    """Append to and read from the event log over one asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection, *, schema: str = MAIN_SCHEMA, owns_connection: bool = False) -> None:
        self._conn = conn
        self.schema = schema
        self._q = queries("eventlog", schema)
        self._owns = owns_connection
        self._notifier = bus.AppendNotifier()
        self._appended_in_tx = False

    @classmethod
    async def connect(cls, url: str | None = None, *, fork: str | None = None) -> AsyncEventLog:
        """Open a log on ``url`` (default: GOALRT_DATABASE_URL or the embedded server).

        With ``fork``, the log of that fork instead of the main line.
        """
        conn, schema = await forks.open_connection_async(url, fork)
        return cls(conn, schema=schema, owns_connection=True)

    @property
    def connection(self) -> asyncpg.Connection:
        return self._conn

    async def close(self) -> None:
        if self._owns:
            await self._conn.close()

    async def __aenter__(self) -> AsyncEventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        with translated():
            rows: list[asyncpg.Record] = await self._conn.fetch(self._q[name], *args)
        return rows

    # -- writing ---------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncEventLog]:
        """Group appends into one transaction; subscribers are woken after commit."""
        with translated():
            async with self._conn.transaction():
                yield self
        if not self._conn.is_in_transaction() and self._appended_in_tx:
            self._appended_in_tx = False
            await self._wake()

    async def _after_append(self) -> None:
        if self._conn.is_in_transaction():
            self._appended_in_tx = True
        else:
            await self._wake()

    async def _wake(self) -> None:
        if self._notifier.due():
            await self._fetch("appends_notify")

    async def append(
        self,
        stream: str,
        type: str,
        data: Any = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        causation_id: str | int | None = None,
        correlation_id: str | int | None = None,
        actor: str | None = None,
    ) -> int:
        """Append one event and return its id (its pos is given by the next tick)."""
        event = new_event(
            stream,
            type,
            data,
            metadata=metadata,
            causation_id=causation_id,
            correlation_id=correlation_id,
            actor=actor,
        )
        rows = await self._fetch("event_append", event.stream, event.type, event.data, event.metadata)
        await self._after_append()
        return int(rows[0][0])

    async def append_many(self, events: Iterable[NewEvent | Mapping[str, Any]]) -> list[int]:
        """Append a batch atomically; return the ids in the order given."""
        batch = coerce_events(events)
        if not batch:
            return []
        rows = await self._fetch("events_append", [e.as_json() for e in batch])
        await self._after_append()
        return [int(r[0]) for r in rows]

    # -- the clock -------------------------------------------------------------

    async def tick(self, wait_ms: int = 200) -> int:
        """Position every committed event not yet positioned; return the head."""
        return int((await self._fetch("clock_tick", wait_ms))[0][0])

    async def head(self) -> int:
        return int((await self._fetch("clock_head"))[0][0])

    async def position(self, event_id: int, *, tick: bool = True) -> int | None:
        if tick:
            await self.tick()
        rows = await self._fetch("event_position", event_id)
        return int(rows[0][0]) if rows else None

    # -- reading ---------------------------------------------------------------

    async def read(
        self, after: int = 0, limit: int = 1000, *, stream: str | None = None, type: str | None = None
    ) -> list[Event]:
        """Return up to ``limit`` events with pos > ``after``, in pos order."""
        return await self._read_page(after, limit, stream, type, advance=not self._conn.is_in_transaction())

    async def _read_page(
        self, after: int, limit: int, stream: str | None, type: str | None, *, advance: bool
    ) -> list[Event]:
        rows = await self._fetch("events_read", after, limit, stream, type, advance)
        return [Event.from_row(tuple(r)) for r in rows]

    async def follow(
        self,
        after: int = 0,
        *,
        stream: str | None = None,
        type: str | None = None,
        batch: int = 500,
        idle_poll: float = 0.5,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[Event]:
        """Yield every event after ``after`` as it commits, until ``stop`` is set."""
        pacer = bus.FollowPacer(idle_poll=idle_poll)
        woken = asyncio.Event()

        def on_notify(*_: object) -> None:
            woken.set()

        for channel in bus.channels(self.schema):
            await self._conn.add_listener(channel, on_notify)
        try:
            while stop is None or not stop.is_set():
                woken.clear()
                # One tick per poll. A filtered follower ticks first, for the
                # head it may skip to; an unfiltered one lets the read tick.
                filtered = stream is not None or type is not None
                head = await self.tick() if filtered else 0
                events = await self._read_page(after, batch, stream, type, advance=not filtered)
                for event in events:
                    yield event
                after = bus.advance(after, events, head, batch)
                wait, wake_on_notify = pacer.wait_after(len(events), batch)
                if wait > 0 and not wake_on_notify:
                    await asyncio.sleep(wait)
                elif wait > 0:
                    waiters = [asyncio.ensure_future(woken.wait())]
                    if stop is not None:
                        waiters.append(asyncio.ensure_future(stop.wait()))
                    _, pending = await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                    for task in pending:
                        task.cancel()
        finally:
            if not self._conn.is_closed():
                for channel in bus.channels(self.schema):
                    await self._conn.remove_listener(channel, on_notify)

    # -- integrity -------------------------------------------------------------

    async def verify(self) -> ChainReport:
        ok, checked, bad, problem = (await self._fetch("chain_verify"))[0]
        return ChainReport(bool(ok), int(checked), bad, problem)

    async def verify_or_raise(self) -> ChainReport:
        report = await self.verify()
        if not report.ok:
            raise ChainBrokenError(report.first_bad_pos or 0, report.problem or "unknown")
        return report
