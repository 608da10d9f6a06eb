# The source of goalrt/db/client.py: edit this file, then run tools/async_to_sync.py.
"""What every client shares: one connection, the schema it acts on, its named queries.

The event log, state and goals clients of this flavour build on it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from goalrt.db.driver import AsyncConnection, AsyncDriver, Row
from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.db.schemas import open_connection_async


class AsyncClient:
    """A client of one group of named queries (sql/queries/<group>.sql) over one connection."""

    _group: ClassVar[str]

    def __init__(self, conn: AsyncConnection, *, schema: str = MAIN_SCHEMA, owns_connection: bool = False) -> None:
        self.schema = schema
        self._db = AsyncDriver(conn, queries(self._group, schema))
        self._owns = owns_connection

    @classmethod
    async def connect(cls, url: str | None = None, *, fork: str | None = None) -> Self:
        """Open a client on ``url`` (default: GOALRT_DATABASE_URL or the embedded server).

        With ``fork``, the client acts on that fork instead of the main line.
        """
        conn, schema = await open_connection_async(url, fork)
        return cls(conn, schema=schema, owns_connection=True)

    @property
    def connection(self) -> AsyncConnection:
        """Return the connection: psycopg's for the sync clients, asyncpg's for the async ones."""
        return self._db.conn

    async def close(self) -> None:
        """Close the connection if this client opened it (``connect``)."""
        if self._owns:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, name: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return await self._db.run(name, params)


__all__ = ["AsyncClient"]
