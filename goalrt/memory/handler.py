"""``ctx.memory``: what a handler gets of agent memory (docs/memory.md, "In a handler").

``search`` reads the index as ``Memory.search`` does, over a connection of
the worker's pool (an async handler awaits it; a sync one calls it).
``remember`` records nothing at once: the note becomes a ``memory.noted``
event committed with the step's completion, under its lease, so a step run
again after a crash notes it once, and a step that fails notes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from goalrt.memory.async_memory import AsyncMemory
from goalrt.memory.embedders import Embedder, embedder_from_env
from goalrt.memory.model import MemoryHit, check_search, note_data

if TYPE_CHECKING:
    import asyncpg

# The event a note becomes.
NOTE_TYPE = "memory.noted"


class HandlerMemory:
    """``ctx.memory`` for async handlers: ``await ctx.memory.search(...)``, ``ctx.memory.remember(...)``."""

    def __init__(self, pool: asyncpg.Pool, schema: str, embedder: Callable[[], Embedder | None] = embedder_from_env):
        self._pool = pool
        self._schema = schema
        self._embedder = embedder
        self._notes: list[dict[str, Any]] = []

    async def search(
        self, query: str, *, type: str | None = None, since: datetime | None = None, limit: int = 5
    ) -> list[MemoryHit]:
        """Return the indexed events closest to ``query``, best first (see ``Memory.search``)."""
        check_search(query, since, limit)
        embedder = await asyncio.to_thread(self._embedder)
        async with self._pool.acquire() as conn:
            memory = AsyncMemory(conn, schema=self._schema, embedder=embedder)
            return await memory.search(query, type=type, since=since, limit=limit)

    def remember(self, text: str, **data: Any) -> None:
        """Note ``text`` (and ``data``) as a ``memory.noted`` event committed with this step's completion."""
        self._notes.append({"type": NOTE_TYPE, "data": note_data(text, data)})

    def notes(self) -> list[dict[str, Any]]:
        """Return the events of the notes remembered so far (for the step's completion)."""
        return list(self._notes)


class SyncHandlerMemory:
    """``ctx.memory`` for sync handlers (they run in a thread; searches run on the worker's loop)."""

    def __init__(self, memory: HandlerMemory, loop: asyncio.AbstractEventLoop) -> None:
        self._memory = memory
        self._loop = loop

    def search(
        self, query: str, *, type: str | None = None, since: datetime | None = None, limit: int = 5
    ) -> list[MemoryHit]:
        """Return the indexed events closest to ``query``, best first (see ``Memory.search``)."""
        coro = self._memory.search(query, type=type, since=since, limit=limit)
        hits: list[MemoryHit] = asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return hits

    def remember(self, text: str, **data: Any) -> None:
        """Note ``text`` (and ``data``) as a ``memory.noted`` event committed with this step's completion."""
        self._memory.remember(text, **data)

    def notes(self) -> list[dict[str, Any]]:
        """Return the events of the notes remembered so far (for the step's completion)."""
        return self._memory.notes()


__all__ = ["NOTE_TYPE", "HandlerMemory", "SyncHandlerMemory"]
