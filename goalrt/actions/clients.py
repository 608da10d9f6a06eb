"""The HTTP clients of the built-ins, one per event loop, and closing them (without importing httpx).

A worker has one loop; tests start many. Connections are pooled between
steps of a loop; the worker closes its loop's client when it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

_clients: dict[asyncio.AbstractEventLoop, Any] = {}


def client_for_loop(make: Callable[[], Any]) -> Any:
    """Return the running loop's client, made by ``make`` the first time (clients of closed loops are dropped)."""
    loop = asyncio.get_running_loop()
    for other in [lp for lp in _clients if lp.is_closed()]:
        del _clients[other]
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = make()
    return client


async def close_clients() -> None:
    """Close the running loop's client, if a step made one."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


__all__ = ["client_for_loop", "close_clients"]
