# The source of goalrt/state/state.py: edit this file, then run tools/async_to_sync.py.
"""The state: paths holding JSON values, changed only through events (asynchronous API, asyncpg).

    async with await AsyncState.connect() as state:
        await state.set("orders.o1.status", "created")
        await state.increment("user.u1.balance", -10)
        entry = await state.get("orders.o1.status")   # entry.value == "created"
        await state.list("orders.*")                    # every path under orders
        await state.list("orders", at=120)              # as it was at position 120

Each change set is one ``state.changed`` event, applied to the materialized
rows in the same transaction by ``goalrt.change_state`` (see docs/state.md).
Reads of the current state come from the materialized rows in one snapshot;
reads ``at=`` a position or time fold the log from the nearest snapshot.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal
from typing import Any

from goalrt.db.async_client import AsyncClient
from goalrt.state.model import At, parse_at
from goalrt.state.model import Change as Change
from goalrt.state.model import ChangeResult as ChangeResult
from goalrt.state.model import HistoryEntry as HistoryEntry
from goalrt.state.model import StateEntry as StateEntry
from goalrt.state.model import changes_json as changes_json
from goalrt.state.model import check_path as check_path


class AsyncState(AsyncClient):
    """Read and change the state over one connection (main line or a fork)."""

    _group = "state"

    # -- writing ---------------------------------------------------------------

    async def change(
        self,
        changes: Iterable[Change | Mapping[str, Any]],
        *,
        stream: str = "state",
        metadata: Mapping[str, Any] | None = None,
    ) -> ChangeResult:
        """Apply a change set atomically (one event); refused whole on any conflict."""
        payload = changes_json(changes)
        rows = await self._run("state_change", (self._db.json(payload), stream, self._db.json(dict(metadata or {}))))
        return ChangeResult.from_rows(rows)

    async def set(self, path: str, value: Any, *, expect_version: int | None = None) -> int:
        """Set ``path`` to ``value``; return its new version."""
        result = await self.change([Change.set(path, value, expect_version=expect_version)])
        return result.versions[path]

    async def delete(self, path: str, *, expect_version: int | None = None) -> int:
        """Delete ``path`` (its version keeps counting); return its new version."""
        result = await self.change([Change.delete(path, expect_version=expect_version)])
        return result.versions[path]

    async def increment(self, path: str, by: int | float | Decimal = 1, *, expect_version: int | None = None) -> Any:
        """Add ``by`` to the number at ``path`` (0 if absent); return the new value."""
        result = await self.change([Change.inc(path, by, expect_version=expect_version)])
        return result.values[path]

    # -- reading ---------------------------------------------------------------

    async def tick(self) -> int:
        """Give positions to committed changes (see EventLog.tick); return the head."""
        # A tick commits on its own; inside a transaction only read the head.
        rows = await self._run("clock_head" if self._db.in_transaction() else "clock_tick")
        return int(rows[0][0])

    async def _fresh(self) -> None:
        # Outside a transaction, position what has committed so entries carry
        # their pos; inside one nothing can be (a tick commits on its own).
        if not self._db.in_transaction():
            await self.tick()

    async def position(self, at: At) -> int:
        """Return the log position ``at`` names (a time maps to the last position recorded by then)."""
        return await self._position(at, fresh=True)

    async def _position(self, at: At, *, fresh: bool = False) -> int:
        point = parse_at(at)
        if isinstance(point, int):
            return point
        if fresh:
            await self._fresh()
        rows = await self._run("pos_at_time", (point,))
        return int(rows[0][0])

    async def list(self, pattern: str | None = None, *, at: At | None = None) -> builtins.list[StateEntry]:
        """Return the live paths matching ``pattern``, now or at a past position or time.

        ``orders.o1`` is that path and everything beneath it; ``*`` is one
        segment (``orders.*.status``), a trailing ``*`` any depth beneath.
        """
        await self._fresh()
        if at is not None:
            rows = await self._run("state_at", (await self._position(at), pattern))
        else:
            prefix = None
            if pattern is not None:
                checked = await self._run("pattern_check", (pattern,))
                prefix = checked[0][1]
            rows = await self._run("state_list", (pattern, prefix))
        return [StateEntry.from_row(r) for r in rows]

    async def get(self, path: str, *, at: At | None = None) -> StateEntry | None:
        """Return ``path``'s entry (None if it does not exist), now or at a past point."""
        check_path(path)
        if at is not None:
            entries = await self.list(path, at=at)
            return next((e for e in entries if e.path == path), None)
        await self._fresh()
        rows = await self._run("state_get", (path,))
        return StateEntry.from_row(rows[0]) if rows else None

    async def value(self, path: str, default: Any = None, *, at: At | None = None) -> Any:
        """Return ``path``'s value (``default`` if it does not exist), now or at a past point."""
        entry = await self.get(path, at=at)
        return default if entry is None else entry.value

    async def version(self, path: str) -> int:
        """Return ``path``'s version: 0 if never written; a deleted path keeps its count."""
        check_path(path)
        rows = await self._run("state_version", (path,))
        return int(rows[0][0]) if rows else 0

    async def history(self, path: str) -> builtins.list[HistoryEntry]:
        """Return every value ``path`` has held, oldest first, from the log."""
        check_path(path)
        await self._fresh()
        rows = await self._run("state_history", (path,))
        return [HistoryEntry.from_row(r) for r in rows]

    async def replayed(self, to: int, pattern: str | None = None) -> builtins.list[StateEntry]:
        """Return the state at ``to`` computed from the events alone (no snapshots)."""
        await self._fresh()
        rows = await self._run("state_replayed", (to, pattern))
        return [StateEntry(r[0], r[1], int(r[2]), int(r[3]), None) for r in rows]

    async def __aiter__(self) -> AsyncIterator[StateEntry]:
        for entry in await self.list():
            yield entry


# The model names imported ``as`` themselves are re-exported: the rest of goalrt imports them from here.
__all__ = ["AsyncState"]
