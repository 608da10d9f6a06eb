"""The worker's wake-ups: LISTEN on its channels over a connection of its own, reconnecting when it drops.

A notification is a hint, never the data: the worker's claim loop also polls,
so a lost notification or a dropped connection delays work but loses none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from goalrt.db.connect import asyncpg_dsn

log = logging.getLogger("goalrt.worker")

# An asyncpg notification callback: (connection, pid, channel, payload).
Callback = Callable[[Any, int, str, str], None]


async def listen(url: str, channels: Mapping[str, Callback], on_connect: Callable[[], None], who: str) -> None:
    """Call each channel's callback on its notifications until cancelled; ``on_connect`` after each (re)connect."""
    delay = 0.1
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
            lost = asyncio.Event()
            conn.add_termination_listener(functools.partial(_set_event, lost))
            for channel, callback in channels.items():
                await conn.add_listener(channel, callback)
            delay = 0.1
            on_connect()
            while not lost.is_set():
                try:
                    async with asyncio.timeout(5):
                        await lost.wait()
                except TimeoutError:
                    if conn.is_closed():
                        break
                    await conn.execute("SELECT 1")  # notices a dead socket
        except asyncio.CancelledError:
            if conn is not None and not conn.is_closed():
                conn.terminate()
            raise
        except Exception as exc:
            log.warning("worker %s: listener: %s; reconnecting in %.1fs", who, exc, delay)
        if conn is not None and not conn.is_closed():
            conn.terminate()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def _set_event(event: asyncio.Event, *_args: Any) -> None:
    event.set()


__all__ = ["listen"]
