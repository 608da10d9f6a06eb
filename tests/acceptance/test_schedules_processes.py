"""Schedules under 3 worker processes, one SIGKILLed, and the PostgreSQL server restarted (issue 20 item 4).

The server is a private embedded PostgreSQL in a folder of the test's own
(never the shared test server, which other runs use). A schedule ticks every
second with catch_up all; while its ticks are being fired, a worker is killed
with SIGKILL and the server is restarted. Afterwards every second from the
first tick to the last has exactly one goal (keyed by its tick), the schedule
counts as many ticks as there are goals, and every goal completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from goalrt.db import migrate
from goalrt.db.embedded import EmbeddedServer, _embedded_postgres
from goalrt.goals.schedules import tick_key
from tests.acceptance.test_worker_processes import Workers, wait_until

REPO = Path(__file__).resolve().parents[2]
HANDLERS = "tests.acceptance.schedule_handlers"


@pytest.fixture
def private_server() -> Iterator[tuple[str, Path]]:
    """A migrated database on an embedded PostgreSQL of this test's own: (its URL, its data folder)."""
    # Readable by the server's own system user when the tests run as root (pytest's folders are 0700).
    home = Path(tempfile.mkdtemp(prefix="goalrt-schedules-"))
    home.chmod(0o755)
    server = EmbeddedServer(home)
    try:
        url = server.start()
        migrate.upgrade(url)
        yield url, server.pgdata
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(home, ignore_errors=True)


def restart(pgdata: Path) -> None:
    module, _ = _embedded_postgres()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    module.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=user, timeout=60)


def goalrt_cli(url: str, *args: str) -> str:
    env = {**os.environ, "GOALRT_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "goalrt", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fired(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT fired FROM goalrt.schedules WHERE name = 'beat'").fetchone()
    except psycopg.OperationalError:
        return -1  # restarting
    return -1 if row is None else int(row[0])


@pytest.mark.timeout(600)
def test_each_tick_is_submitted_once_through_a_kill_and_a_server_restart(
    private_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, pgdata = private_server
    workers = Workers(url, tmp_path, HANDLERS)
    try:
        for name in ("s0", "s1", "s2"):
            workers.start(name)
        with psycopg.connect(url, autocommit=True) as conn:
            wait_until(
                lambda: conn.execute("SELECT count(*) FROM goalrt.workers").fetchone() == (3,), 60, workers, "workers"
            )
        goalrt_cli(url, "schedules", "set", "beat", "beat", "--every", "1s", "--catch-up", "all")
        wait_until(lambda: fired(url) >= 5, 60, workers, "the first ticks fired")
        workers.kill("s0")
        seen = fired(url)
        wait_until(lambda: fired(url) >= seen + 3, 60, workers, "ticks fired after the kill")
        restart(pgdata)
        seen = fired(url)
        wait_until(lambda: fired(url) >= seen + 5, 120, workers, "ticks fired after the restart")
        listing = goalrt_cli(url, "schedules", "list")
        goalrt_cli(url, "schedules", "set", "beat", "beat", "--every", "1s", "--paused")
        ticks = fired(url)
        with psycopg.connect(url, autocommit=True) as conn:
            wait_until(
                lambda: conn.execute("SELECT count(*) FROM goalrt.goals WHERE status <> 'complete'").fetchone() == (0,),
                120,
                workers,
                "every goal complete",
            )
            keys = [r[0] for r in conn.execute("SELECT idempotency_key FROM goalrt.goals ORDER BY id").fetchall()]
            submitted = conn.execute("SELECT count(*) FROM goalrt.event_data WHERE type = 'goal.submitted'").fetchone()
        assert all(p.poll() is None for n, p in workers.procs.items() if n != "s0"), "a worker died"
    finally:
        workers.stop_all()
    assert "beat" in listing and "every 1s" in listing
    # One goal per tick, and no tick missing from the first to the last, through the kill and the restart.
    first = datetime.fromisoformat(keys[0].removeprefix("schedule:beat:").replace("Z", "+00:00"))
    expected = [tick_key("beat", first + timedelta(seconds=i)) for i in range(len(keys))]
    assert sorted(keys) == expected, "ticks missing or twice"
    assert submitted == (len(keys),) and ticks == len(keys)
    assert workers.procs["s0"].returncode == -signal.SIGKILL
    assert len(keys) >= 13
