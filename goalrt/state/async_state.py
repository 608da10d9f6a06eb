"""The state over asyncpg: the same operations as ``goalrt.state.state.State``.

    async with await AsyncState.connect() as state:
        await state.increment("user.u1.balance", -10)
        entry = await state.get("user.u1.balance")

Both APIs run the same named queries (sql/queries/state.sql), so there is no
query logic to keep in sync between them.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import translated
from goalrt.state import forks
from goalrt.state.state import At, Change, ChangeResult, HistoryEntry, StateEntry, changes_json, check_path, parse_at

if TYPE_CHECKING:
    import asyncpg


class AsyncState:
    """Read and change the state over one asyncpg connection (main line or a fork)."""

    def __init__(self, conn: asyncpg.Connection, *, schema: str = MAIN_SCHEMA, owns_connection: bool = False) -> None:
        self._conn = conn
        self.schema = schema
        self._owns = owns_connection
        self._q = queries("state", schema)

    @classmethod
    async def connect(cls, url: str | None = None, *, fork: str | None = None) -> AsyncState:
        conn, schema = await forks.open_connection_async(url, fork)
        return cls(conn, schema=schema, owns_connection=True)

    @property
    def connection(self) -> asyncpg.Connection:
        return self._conn

    async def close(self) -> None:
        if self._owns:
            await self._conn.close()

    async def __aenter__(self) -> AsyncState:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _fetch(self, name: str, *args: Any) -> builtins.list[Any]:
        with translated():
            rows: builtins.list[Any] = await self._conn.fetch(self._q[name], *args)
        return rows

    async def _fresh(self) -> None:
        if not self._conn.is_in_transaction():
            await self.tick()

    # -- writing ---------------------------------------------------------------

    async def change(
        self,
        changes: Iterable[Change | Mapping[str, Any]],
        *,
        stream: str = "state",
        metadata: Mapping[str, Any] | None = None,
    ) -> ChangeResult:
        """Apply a change set atomically (one event); refused whole on any conflict."""
        rows = await self._fetch("state_change", changes_json(changes), stream, dict(metadata or {}))
        return ChangeResult.from_rows(rows)

    async def set(self, path: str, value: Any, *, expect_version: int | None = None) -> int:
        return (await self.change([Change.set(path, value, expect_version=expect_version)])).versions[path]

    async def delete(self, path: str, *, expect_version: int | None = None) -> int:
        return (await self.change([Change.delete(path, expect_version=expect_version)])).versions[path]

    async def increment(self, path: str, by: int | float = 1, *, expect_version: int | None = None) -> Any:
        return (await self.change([Change.inc(path, by, expect_version=expect_version)])).values[path]

    # -- reading ---------------------------------------------------------------

    async def tick(self) -> int:
        return int((await self._fetch("clock_tick"))[0][0])

    async def position(self, at: At) -> int:
        return await self._position(at, fresh=True)

    async def _position(self, at: At, *, fresh: bool = False) -> int:
        point = parse_at(at)
        if isinstance(point, int):
            return point
        if fresh:
            await self._fresh()
        return int((await self._fetch("pos_at_time", point))[0][0])

    async def list(self, pattern: str | None = None, *, at: At | None = None) -> builtins.list[StateEntry]:
        await self._fresh()
        if at is not None:
            rows = await self._fetch("state_at", await self._position(at), pattern)
        else:
            prefix = None
            if pattern is not None:
                prefix = (await self._fetch("pattern_check", pattern))[0][1]
            rows = await self._fetch("state_list", pattern, prefix)
        return [StateEntry.from_row(tuple(r)) for r in rows]

    async def get(self, path: str, *, at: At | None = None) -> StateEntry | None:
        check_path(path)
        if at is not None:
            return next((e for e in await self.list(path, at=at) if e.path == path), None)
        await self._fresh()
        rows = await self._fetch("state_get", path)
        return StateEntry.from_row(tuple(rows[0])) if rows else None

    async def value(self, path: str, default: Any = None, *, at: At | None = None) -> Any:
        entry = await self.get(path, at=at)
        return default if entry is None else entry.value

    async def version(self, path: str) -> int:
        check_path(path)
        rows = await self._fetch("state_version", path)
        return int(rows[0][0]) if rows else 0

    async def history(self, path: str) -> builtins.list[HistoryEntry]:
        check_path(path)
        await self._fresh()
        return [HistoryEntry.from_row(tuple(r)) for r in await self._fetch("state_history", path)]


__all__ = ["AsyncState"]
