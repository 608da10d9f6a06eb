# The source of goalrt/log/eventlog.py: edit this file, then run tools/async_to_sync.py.
"""The event log, asynchronous API (asyncpg).

    async with await AsyncEventLog.connect() as log:
        event_id = await log.append("order:o1", "order.created", {"amount": 20})
        for event in await log.read(after=0):
            ...

Every call runs a goalrt SQL function; see docs/sql.md. Appends are
committed as they are made, or together inside ``async with log.transaction():``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from goalrt.db.async_client import AsyncClient
from goalrt.db.driver import AsyncConnection
from goalrt.db.resources import MAIN_SCHEMA
from goalrt.log import bus
from goalrt.log.anchors import Anchor
from goalrt.log.event import ChainReport, Event, NewEvent, coerce_events, new_event


class AsyncEventLog(AsyncClient):
    """Append to and read from the event log over one connection."""

    _group = "eventlog"

    def __init__(self, conn: AsyncConnection, *, schema: str = MAIN_SCHEMA, owns_connection: bool = False) -> None:
        super().__init__(conn, schema=schema, owns_connection=owns_connection)
        self._notifier = bus.AppendNotifier()
        self._tx_depth = 0
        self._appended_in_tx = False

    # -- writing ---------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncEventLog]:
        """Group appends into one transaction; subscribers are woken after commit."""
        self._tx_depth += 1
        try:
            async with self._db.transaction():
                yield self
        finally:
            self._tx_depth -= 1
        if self._tx_depth == 0 and self._appended_in_tx and not self._db.in_transaction():
            self._appended_in_tx = False
            await self._wake()

    async def _after_append(self) -> None:
        # Never notify inside the appending transaction (see goalrt.log.bus):
        # the notification waits for the end of the transaction block.
        if self._tx_depth or self._db.in_transaction():
            self._appended_in_tx = True
        else:
            await self._wake()

    async def _wake(self) -> None:
        if self._notifier.due():
            await self._run("appends_notify")

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
        db = self._db
        rows = await self._run("event_append", (event.stream, event.type, db.json(event.data), db.json(event.metadata)))
        await self._after_append()
        return int(rows[0][0])

    async def append_many(self, events: Iterable[NewEvent | Mapping[str, Any]]) -> list[int]:
        """Append a batch atomically; return the ids in the order given."""
        batch = coerce_events(events)
        if not batch:
            return []
        rows = await self._run("events_append", (self._db.json([e.as_json() for e in batch]),))
        await self._after_append()
        return [int(r[0]) for r in rows]

    # -- the clock -------------------------------------------------------------

    async def tick(self, wait_ms: int = 200) -> int:
        """Position every committed event not yet positioned; return the head.

        The tick commits on its own at once (``CALL goalrt.tick_commit``), so
        inside a transaction nothing is positioned: that returns the head.
        """
        if self._db.in_transaction():
            return await self.head()
        rows = await self._run("clock_tick", (wait_ms,))
        return int(rows[0][0])

    async def head(self) -> int:
        """Return the last position handed out (without ticking)."""
        rows = await self._run("clock_head")
        return int(rows[0][0])

    async def position(self, event_id: int, *, tick: bool = True) -> int | None:
        """Return the position of a committed event, ticking first if asked."""
        if tick:
            await self.tick()
        rows = await self._run("event_position", (event_id,))
        return int(rows[0][0]) if rows else None

    # -- reading ---------------------------------------------------------------

    async def read(
        self, after: int = 0, limit: int = 1000, *, stream: str | None = None, type: str | None = None
    ) -> list[Event]:
        """Return up to ``limit`` events with pos > ``after``, in pos order.

        ``type`` is a glob (``order.*``). Outside a transaction the clock is
        first advanced by a tick committed on its own, so everything committed
        before the call is included; inside one, only what is already
        positioned is read (the database ticks only as a transaction's single
        statement, so that no transaction can hold the clock).
        """
        if not self._db.in_transaction():
            await self.tick()
        return await self._read_page(after, limit, stream, type)

    async def _read_page(self, after: int, limit: int, stream: str | None, type: str | None) -> list[Event]:
        # Never advance inside the read: read_events leaves out the positions
        # its own transaction assigns, so a tick there would only delay them.
        rows = await self._run("events_read", (after, limit, stream, type, False))
        return [Event.from_row(r) for r in rows]

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
        """Yield every event after ``after`` as it commits, until ``stop`` is set.

        Catches up first, then waits on LISTEN/NOTIFY with a polling fallback.
        Uses this log's connection, which (with psycopg) must be in autocommit mode.
        """
        pacer = bus.FollowPacer(idle_poll=idle_poll)
        async with self._db.listen(bus.channels(self.schema)) as listener:
            while stop is None or not stop.is_set():
                # One tick per poll, committed on its own before the read (a
                # read never returns what its own transaction positioned); its
                # head is where a short page may skip to.
                head = await self.tick()
                events = await self._read_page(after, batch, stream, type)
                for event in events:
                    yield event
                after = bus.advance(after, events, head, batch)
                wait, wake_on_notify = pacer.wait_after(len(events), batch)
                if wait > 0:
                    await listener.wait(wait, stop, notify=wake_on_notify)

    # -- integrity -------------------------------------------------------------

    async def verify(self, anchors: Iterable[Anchor | str] = ()) -> ChainReport:
        """Recompute the hash chain over the whole log, and check that it still holds each of ``anchors``.

        An anchor is an ``Anchor`` or its text ``POS:HASH`` (``InvalidAnchorError``
        if it is not). Without anchors this proves the log agrees with itself;
        with them, also that it holds the prefix each anchor was taken from
        (docs/event-log.md, "Anchors").
        """
        given = [a if isinstance(a, Anchor) else Anchor.parse(a) for a in anchors]
        if not given:
            rows = await self._run("chain_verify")
            ok, checked, bad, problem = rows[0]
            return ChainReport(bool(ok), int(checked), bad, problem)
        rows = await self._run("anchors_verify", ([a.pos for a in given], [a.hash_bytes for a in given]))
        ok, checked, bad, problem, anchor_pos, anchor_hash = rows[0]
        failed = None if anchor_pos is None else Anchor(int(anchor_pos), bytes(anchor_hash).hex())
        return ChainReport(bool(ok), int(checked), bad, problem, anchors=len(given), anchor=failed)

    async def verify_or_raise(self, anchors: Iterable[Anchor | str] = ()) -> ChainReport:
        """Verify as ``verify`` does; raise ``ChainBrokenError`` naming the first bad position or anchor on failure."""
        report = await self.verify(anchors)
        if not report.ok:
            raise report.error()
        return report

    async def head_anchor(self) -> Anchor:
        """Return the head of the hash chain (the last position handed out and its hash) as an ``Anchor``.

        Keep it where the database's owner cannot write
        (``log.head_anchor().append_to(path)``); ``verify(anchors=...)`` checks it later.
        """
        rows = await self._run("chain_head")
        pos, hash = rows[0]
        return Anchor(int(pos), bytes(hash).hex())


__all__ = ["AsyncEventLog"]
