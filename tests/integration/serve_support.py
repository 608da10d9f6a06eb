"""Run ``goalrt serve``'s app in a real uvicorn server on 127.0.0.1, in a thread, for the HTTP tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from goalrt.goals.registry import Registry
from goalrt.serve.access import Pools
from goalrt.serve.app import create_app, uvicorn_server
from goalrt.serve.context import Server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(
    url: str, *, tokens: dict[str, str] | None = None, registry: Registry | None = None, pool_size: int = 4
) -> Iterator[str]:
    """Serve ``url`` (and ``tokens``) on a free port; yield the base URL, and stop the server after the block.

    /metrics reads the database's figures afresh on every scrape here.
    """
    app = create_app(Server(url, tokens, Pools(pool_size), registry, figures_ttl=0.0))
    server = uvicorn_server(app, "127.0.0.1", free_port())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the server did not start")
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def counts(url: str) -> tuple[int, int]:
    """Return how many goals and events the database holds (to show that a refused request wrote nothing)."""
    with psycopg.connect(url) as conn:
        row: Any = conn.execute("SELECT (SELECT count(*) FROM goalrt.goals), (SELECT count(*) FROM goalrt.events)")
        goals, events = row.fetchone()
    return int(goals), int(events)
