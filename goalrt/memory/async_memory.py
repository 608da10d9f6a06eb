# The source of goalrt/memory/memory.py: edit this file, then run tools/async_to_sync.py.
"""Agent memory, asynchronous API (asyncpg): search the history by words and meaning.

    async with await AsyncMemory.connect() as memory:
        for hit in await memory.search("why did the payment fail?", limit=3):
            print(hit.pos, hit.type, hit.text)

Search is a hybrid: the entries whose text holds the query's words (ranked
by PostgreSQL's full-text search) and, where the server has pgvector and an
embedder is configured, the entries nearest the query's embedding (HNSW),
fused by reciprocal rank. Without pgvector (or without an embedder) it is by
words alone, and says so once (a warning on the ``goalrt.memory`` logger).
The index is built by a follower, ``index`` (``goalrt memory index``): see
docs/memory.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self

from goalrt.db.async_client import AsyncClient
from goalrt.db.driver import AsyncConnection
from goalrt.db.resources import MAIN_SCHEMA
from goalrt.db.schemas import open_connection_async
from goalrt.errors import GoalrtError
from goalrt.log import bus
from goalrt.memory.embedders import Embedder, embedder_from_env
from goalrt.memory.model import MemoryHit, MemoryStatus, check_search, note_data, say_once, vector_text
from goalrt.memory.text import event_text, meaning_text

log = logging.getLogger("goalrt.memory")

# SQLSTATE of memory_index when another indexer moved the cursor first.
_MOVED = "40001"


class AsyncMemory(AsyncClient):
    """Search, remember and index agent memory over one connection.

    ``embedder``: the embedder of queries and of indexed text; by default the
    one ``GOALRT_MEMORY_EMBEDDER`` names (``embedder_from_env``); None for
    words alone.
    """

    _group = "memory"

    def __init__(
        self,
        conn: AsyncConnection,
        *,
        schema: str = MAIN_SCHEMA,
        owns_connection: bool = False,
        embedder: Embedder | str | None = "env",
    ) -> None:
        super().__init__(conn, schema=schema, owns_connection=owns_connection)
        self._embedder = embedder_from_env() if isinstance(embedder, str) else embedder

    @classmethod
    async def connect(
        cls, url: str | None = None, *, fork: str | None = None, embedder: Embedder | str | None = "env"
    ) -> Self:
        """Open a client on ``url`` (default: GOALRT_DATABASE_URL or the embedded server), with ``embedder``.

        With ``fork``, the client acts on that fork instead of the main line.
        """
        conn, schema = await open_connection_async(url, fork)
        return cls(conn, schema=schema, owns_connection=True, embedder=embedder)

    @property
    def embedder(self) -> Embedder | None:
        """The embedder of queries and indexed text (None: words alone); may be set."""
        return self._embedder

    @embedder.setter
    def embedder(self, embedder: Embedder | None) -> None:
        self._embedder = embedder

    async def status(self) -> MemoryStatus:
        """Return whether memory has vectors, how far it is indexed, and by which embedder."""
        rows = await self._run("memory_status")
        return MemoryStatus.from_row(rows[0])

    async def _query_vector(self, query: str) -> list[float] | None:
        """Return the query's embedding when search can use vectors, else None (and say why, once)."""
        rows = await self._run("memory_mode")
        vectors, indexed_by = bool(rows[0][0]), rows[0][1]
        if not vectors:
            say_once("no-pgvector", "memory: this PostgreSQL has no pgvector; search is by full text only")
            return None
        if self._embedder is None:
            say_once(
                "no-embedder",
                "memory: no embedder (pip install 'goalrt[memory]' or set GOALRT_MEMORY_EMBEDDER); "
                "search is by full text only",
            )
            return None
        if indexed_by is not None and indexed_by != self._embedder.name:
            say_once(
                "other-embedder",
                f"memory: the index holds vectors of {indexed_by}, not {self._embedder.name}; "
                "search is by full text only",
            )
            return None
        embedded = await self._embedder.aembed([query])
        return embedded[0]

    async def search(
        self, query: str, *, type: str | None = None, since: datetime | None = None, limit: int = 10
    ) -> list[MemoryHit]:
        """Return the indexed events of the caller's tenant closest to ``query``, best first.

        ``type`` is a glob (``goal.*``); ``since`` keeps events recorded at or
        after it (an aware datetime; naive means UTC). ``InvalidQueryError``
        for an empty or too long query, a bad limit or since.
        """
        query, since = check_search(query, since, limit)
        vector = await self._query_vector(query)
        db = self._db
        rows = await self._run(
            "memory_search", (query, None if vector is None else db.json(vector), type, since, limit)
        )
        return [MemoryHit.from_row(r) for r in rows]

    async def remember(self, text: str, *, stream: str = "memory", data: Mapping[str, Any] | None = None) -> int:
        """Append a ``memory.noted`` event holding ``text`` (and ``data``); return its id.

        It is searchable once the indexer has passed it. A handler calls
        ``ctx.memory.remember`` instead: its note commits with its step.
        """
        rows = await self._run("memory_note", (stream, self._db.json(note_data(text, data))))
        if not self._db.in_transaction():
            await self._run("appends_notify")
        return int(rows[0][0])

    async def reset(self) -> None:
        """Forget the index (admins); the next ``index`` rebuilds it from the start of the log."""
        await self._run("memory_reset")

    async def index(self, *, batch: int = 500, max_events: int | None = None) -> int:
        """Index the events committed after the memory cursor, batch by batch, up to the head; return how many.

        Each batch's entries and the cursor move commit together, so an
        indexer stopped at any point resumes exactly where it stopped: no
        event is indexed twice or skipped. Two indexers at once share the
        work safely (the one that finds the cursor moved reads it again).
        Needs ``goalrt_admin`` (the indexer reads every tenant's events).
        """
        if not 1 <= batch <= 10_000:
            raise ValueError("batch must be between 1 and 10000")
        await self._run("clock_tick", (200,))
        rows = await self._run("memory_mode")
        embedder = self._embedder if rows[0][0] else None
        done = 0
        while max_events is None or done < max_events:
            size = batch if max_events is None else min(batch, max_events - done)
            got = await self._index_batch(size, embedder)
            if got < 0:
                continue  # another indexer moved the cursor: read again from where it is
            if got == 0:
                break
            done += got
        return done

    async def _index_batch(self, size: int, embedder: Embedder | None) -> int:
        """Index up to ``size`` pending events; return how many, 0 when none, -1 when another indexer won."""
        rows = await self._run("memory_pending", (size,))
        if not rows:
            return 0
        # Positions are gapless: the first pending event is the one right after the cursor.
        after, upto = int(rows[0][0]) - 1, int(rows[-1][0])
        entries: list[dict[str, Any]] = [{"pos": int(r[0]), "body": event_text(r[3], r[2], r[4])} for r in rows]
        if embedder is not None:
            # One embedding per distinct meaning in the batch (routine events repeat a few texts).
            firsts: dict[str, tuple[str, dict[str, Any]]] = {}
            for r, entry in zip(rows, entries, strict=True):
                meaning = meaning_text(r[3], r[4])
                entry["digest"] = hashlib.sha256(meaning.encode()).hexdigest()
                firsts.setdefault(entry["digest"], (meaning, entry))
            vectors = await embedder.aembed([meaning for meaning, _ in firsts.values()])
            for (_, entry), vector in zip(firsts.values(), vectors, strict=True):
                entry["embedding"] = vector_text(vector)
        name, dims = (embedder.name, embedder.dims) if embedder is not None else (None, None)
        try:
            await self._run("memory_index", (after, upto, self._db.json(entries), name, dims))
        except GoalrtError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == _MOVED:
                return -1
            raise
        return len(rows)

    async def follow(self, *, batch: int = 500, idle_poll: float = 1.0, stop: asyncio.Event | None = None) -> int:
        """Index as events commit until ``stop`` is set (at least one pass); return how many were indexed.

        Catches up, then waits on LISTEN/NOTIFY, polling as the fallback.
        Uses this client's connection, which (with psycopg) must be in autocommit mode.
        """
        total = 0
        async with self._db.listen(bus.channels(self.schema)) as listener:
            while True:
                got = await self.index(batch=batch)
                total += got
                if got:
                    log.info("memory: indexed %d events", got)
                if stop is not None and stop.is_set():
                    return total
                if not got:
                    await listener.wait(idle_poll, stop, notify=True)


__all__ = ["AsyncMemory"]
