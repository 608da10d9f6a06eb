"""State reads for sync handlers: they run in a thread, the reads run on the worker's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from goalrt.state.state import StateEntry
    from goalrt.worker.dispatcher import StateReader


class SyncStateReader:
    """The same reads for sync handlers (they run in a thread; the reads run on the worker's loop)."""

    def __init__(self, reader: StateReader, loop: asyncio.AbstractEventLoop) -> None:
        self._reader = reader
        self._loop = loop

    def _wait(self, coro: Coroutine[Any, Any, Any]) -> Any:
        # No timeout of its own: a read waits for the server like the worker (the step's timeout bounds it).
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get(self, path: str) -> StateEntry | None:
        entry: StateEntry | None = self._wait(self._reader.get(path))
        return entry

    def value(self, path: str, default: Any = None) -> Any:
        return self._wait(self._reader.value(path, default))

    def list(self, pattern: str | None = None) -> list[StateEntry]:
        entries: list[StateEntry] = self._wait(self._reader.list(pattern))
        return entries

    def step_results(self, goal_id: int) -> dict[str, Any]:
        results: dict[str, Any] = self._wait(self._reader.step_results(goal_id))
        return results


__all__ = ["SyncStateReader"]
