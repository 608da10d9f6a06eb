"""The driver layer: what the clients need from psycopg (sync) and asyncpg (async).

The clients are written once, as async code over ``AsyncDriver``; their sync
twins are generated from it (tools/async_to_sync.py) and run over ``Driver``.
So everything that differs between the two drivers lives here, and nowhere
else: running a named query from sql/queries/*.sql (``$1`` placeholders for
both), rows as tuples, JSON parameters, transactions, whether a transaction
is open, and LISTEN for following the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb, set_json_loads

from goalrt.db.jsontext import decode, encode
from goalrt.errors import translated

if TYPE_CHECKING:
    import asyncpg

Connection: TypeAlias = "psycopg.Connection[Any]"
AsyncConnection: TypeAlias = "asyncpg.Connection"
Row: TypeAlias = tuple[Any, ...]


class Driver:
    """Run goalrt's named queries over one psycopg connection."""

    def __init__(self, conn: Connection, queries: Mapping[str, str]) -> None:
        self.conn = conn
        self.queries = queries
        # Also on a connection the caller opened: exact numbers, and a bad row never raises mid-fetch.
        set_json_loads(decode, conn)

    def run(self, name: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Run the named query; return its rows (none for a statement without a result)."""
        with translated(), psycopg.RawCursor(self.conn) as cur:
            cur.execute(self.queries[name], params or None)
            return cur.fetchall() if cur.description else []

    def json(self, value: Any) -> Jsonb:
        """Return ``value`` as a jsonb parameter."""
        return Jsonb(value, dumps=encode)

    def in_transaction(self) -> bool:
        """Return whether a transaction is open on the connection."""
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in a transaction (a savepoint inside one)."""
        with translated(), self.conn.transaction():
            yield

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def listen(self, channels: Iterable[str]) -> Iterator[Listener]:
        """LISTEN on ``channels`` for the block (the connection must be in autocommit mode)."""
        channels = tuple(channels)
        for channel in channels:
            self.conn.execute(f"LISTEN {channel}")
        try:
            yield Listener(self.conn)
        finally:
            # Interrupted mid-query (Ctrl-C, SIGTERM), the connection may still
            # be busy or broken: then there is nothing to unlisten on.
            if not self.conn.closed and not self.in_transaction():
                with contextlib.suppress(psycopg.Error):
                    for channel in channels:
                        self.conn.execute(f"UNLISTEN {channel}")


class Listener:
    """Wait for a notification on a psycopg connection that LISTENs."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def wait(self, timeout: float, stop: threading.Event | None, *, notify: bool) -> None:
        """Return after ``timeout`` seconds, or at the first notification when ``notify``."""
        # ``stop`` is checked by the caller between waits: psycopg cannot wait on both.
        if not notify:
            time.sleep(timeout)
            return
        with translated():
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                pass


class AsyncDriver:
    """Run goalrt's named queries over one asyncpg connection."""

    def __init__(self, conn: AsyncConnection, queries: Mapping[str, str]) -> None:
        self.conn = conn
        self.queries = queries

    async def run(self, name: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Run the named query; return its rows (none for a statement without a result)."""
        with translated():
            rows = await self.conn.fetch(self.queries[name], *params)
        return [tuple(row) for row in rows]

    def json(self, value: Any) -> Any:
        """Return ``value`` as a jsonb parameter."""
        # The connection's codec encodes it (goalrt.db.connect.setup_async_connection).
        return value

    def in_transaction(self) -> bool:
        """Return whether a transaction is open on the connection."""
        return bool(self.conn.is_in_transaction())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the block in a transaction (a savepoint inside one)."""
        with translated():
            async with self.conn.transaction():
                yield

    async def close(self) -> None:
        """Close the connection."""
        await self.conn.close()

    @asynccontextmanager
    async def listen(self, channels: Iterable[str]) -> AsyncIterator[AsyncListener]:
        """LISTEN on ``channels`` for the block."""
        channels = tuple(channels)
        listener = AsyncListener()
        for channel in channels:
            await self.conn.add_listener(channel, listener.notified)
        try:
            yield listener
        finally:
            if not self.conn.is_closed():
                for channel in channels:
                    await self.conn.remove_listener(channel, listener.notified)


class AsyncListener:
    """Wait for a notification that asyncpg delivers to ``notified``."""

    def __init__(self) -> None:
        self._woken = asyncio.Event()

    def notified(self, *_: object) -> None:
        """Take a notification (asyncpg's listener callback)."""
        self._woken.set()

    async def wait(self, timeout: float, stop: asyncio.Event | None, *, notify: bool) -> None:
        """Return after ``timeout`` seconds, or at the first notification (or ``stop``) when ``notify``."""
        if not notify:
            await asyncio.sleep(timeout)
            return
        waiters = [asyncio.ensure_future(self._woken.wait())]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        # Cleared before the caller reads again: a notification that comes during that read wakes the next wait.
        self._woken.clear()
