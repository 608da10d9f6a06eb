"""The event log, synchronous API (psycopg).

    with EventLog.connect() as log:
        event_id = log.append("order:o1", "order.created", {"amount": 20})
        for event in log.read(after=0):
            ...

Every call runs a goalrt SQL function; see docs/sql.md. Appends are
committed as they are made, or together inside ``with log.transaction():``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from goalrt.db.connect import dumps
from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import ChainBrokenError, translated
from goalrt.log import bus
from goalrt.log.event import ChainReport, Event, NewEvent, coerce_events, new_event
from goalrt.state import forks


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=dumps)


class EventLog:
    """Append to and read from the event log over one psycopg connection."""

    def __init__(
        self, conn: psycopg.Connection[Any], *, schema: str = MAIN_SCHEMA, owns_connection: bool = False
    ) -> None:
        self._conn = conn
        self.schema = schema
        self._q = queries("eventlog", schema)
        self._owns = owns_connection
        self._notifier = bus.AppendNotifier()
        self._tx_depth = 0
        self._appended_in_tx = False

    @classmethod
    def connect(cls, url: str | None = None, *, fork: str | None = None) -> EventLog:
        """Open a log on ``url`` (default: GOALRT_DATABASE_URL or the embedded server).

        With ``fork``, the log of that fork instead of the main line.
        """
        conn, schema = forks.open_connection(url, fork)
        return cls(conn, schema=schema, owns_connection=True)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def close(self) -> None:
        if self._owns:
            self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, name: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with translated(), psycopg.RawCursor(self._conn) as cur:
            cur.execute(self._q[name], params or None)
            return cur.fetchall() if cur.description else []

    # -- writing ---------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[EventLog]:
        """Group appends into one transaction; subscribers are woken after commit."""
        self._tx_depth += 1
        try:
            with translated(), self._conn.transaction():
                yield self
        finally:
            self._tx_depth -= 1
        if self._tx_depth == 0 and self._appended_in_tx:
            self._appended_in_tx = False
            self._wake()

    def _after_append(self) -> None:
        if self._tx_depth or not self._conn.autocommit:
            self._appended_in_tx = True
        else:
            self._wake()

    def _wake(self) -> None:
        if self._notifier.due():
            self._run("appends_notify")

    def append(
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
        rows = self._run("event_append", (event.stream, event.type, _jsonb(event.data), _jsonb(event.metadata)))
        self._after_append()
        return int(rows[0][0])

    def append_many(self, events: Iterable[NewEvent | Mapping[str, Any]]) -> list[int]:
        """Append a batch atomically; return the ids in the order given."""
        batch = coerce_events(events)
        if not batch:
            return []
        rows = self._run("events_append", (_jsonb([e.as_json() for e in batch]),))
        self._after_append()
        return [int(r[0]) for r in rows]

    # -- the clock ---------------------------------------------------------------

    def tick(self, wait_ms: int = 200) -> int:
        """Position every committed event not yet positioned; return the head."""
        return int(self._run("clock_tick", (wait_ms,))[0][0])

    def head(self) -> int:
        """Return the last position handed out (without ticking)."""
        return int(self._run("clock_head")[0][0])

    def position(self, event_id: int, *, tick: bool = True) -> int | None:
        """Return the position of a committed event, ticking first if asked."""
        if tick:
            self.tick()
        rows = self._run("event_position", (event_id,))
        return int(rows[0][0]) if rows else None

    # -- reading -------------------------------------------------------------------

    def read(
        self, after: int = 0, limit: int = 1000, *, stream: str | None = None, type: str | None = None
    ) -> list[Event]:
        """Return up to ``limit`` events with pos > ``after``, in pos order.

        ``type`` is a glob (``order.*``). Outside a transaction the clock is
        advanced first, so everything committed before the call is included;
        inside one, only what is already positioned is read (a tick would hold
        the clock's lock until the transaction ends).
        """
        idle = self._conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        return self._read_page(after, limit, stream, type, advance=idle)

    def _read_page(self, after: int, limit: int, stream: str | None, type: str | None, *, advance: bool) -> list[Event]:
        rows = self._run("events_read", (after, limit, stream, type, advance))
        return [Event.from_row(r) for r in rows]

    def follow(
        self,
        after: int = 0,
        *,
        stream: str | None = None,
        type: str | None = None,
        batch: int = 500,
        idle_poll: float = 0.5,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield every event after ``after`` as it commits, until ``stop`` is set.

        Catches up first, then waits on LISTEN/NOTIFY with a polling fallback.
        Uses this log's connection, which must be in autocommit mode.
        """
        pacer = bus.FollowPacer(idle_poll=idle_poll)
        for channel in bus.channels(self.schema):
            self._conn.execute(f"LISTEN {channel}")
        try:
            while stop is None or not stop.is_set():
                # One tick per poll. A filtered follower ticks first, for the
                # head it may skip to; an unfiltered one lets the read tick.
                filtered = stream is not None or type is not None
                head = self.tick() if filtered else 0
                events = self._read_page(after, batch, stream, type, advance=not filtered)
                yield from events
                after = bus.advance(after, events, head, batch)
                wait, wake_on_notify = pacer.wait_after(len(events), batch)
                if wait > 0 and wake_on_notify:
                    with translated():
                        for _ in self._conn.notifies(timeout=wait, stop_after=1):
                            pass
                elif wait > 0:
                    time.sleep(wait)
        finally:
            # Interrupted mid-query (Ctrl-C, SIGTERM), the connection may still
            # be busy or broken: then there is nothing to unlisten on.
            if not self._conn.closed and self._conn.info.transaction_status == TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    for channel in bus.channels(self.schema):
                        self._conn.execute(f"UNLISTEN {channel}")

    # -- integrity -------------------------------------------------------------------

    def verify(self) -> ChainReport:
        """Recompute the hash chain over the whole log."""
        ok, checked, bad, problem = self._run("chain_verify")[0]
        return ChainReport(bool(ok), int(checked), bad, problem)

    def verify_or_raise(self) -> ChainReport:
        report = self.verify()
        if not report.ok:
            raise ChainBrokenError(report.first_bad_pos or 0, report.problem or "unknown")
        return report
