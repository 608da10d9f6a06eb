"""Group concurrent calls of one database function into one round trip.

Each goal's task submits one item and awaits its answer. While a flush is
in flight, new items queue up; the next flush takes them all (up to
``max_batch``). So an idle worker sends a lone item at once, with no timer
adding latency, and a busy one commits many results per transaction (River's
job completer works the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar


class Keyed(Protocol):
    """An item of a batch: one per goal."""

    @property
    def goal_id(self) -> int: ...


Item = TypeVar("Item", bound=Keyed)
Answer = TypeVar("Answer")


class Batcher(Generic[Item, Answer]):
    """Queue items keyed by ``goal_id``; a background task flushes them in batches."""

    def __init__(self, flush: Callable[[list[Item]], Awaitable[dict[int, Answer]]], *, max_batch: int = 100) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future[Answer | None]]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="goalrt-batcher")

    async def submit(self, item: Item) -> Answer | None:
        """Queue ``item`` and return its answer (what the flush returned for its goal_id; None: no answer)."""
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._idle.clear()
        self._wake.set()
        return await future

    async def drained(self) -> None:
        """Wait until every queued item has been flushed."""
        await self._idle.wait()

    async def stop(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` seconds) for queued items to be flushed, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.drained()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                try:
                    answers = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for item, future in batch:
                        if not future.done():
                            future.set_result(answers.get(item.goal_id))
            self._idle.set()


__all__ = ["Batcher"]
