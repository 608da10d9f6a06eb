"""Worker processes against handlers that misbehave, a database that is away, and their own log lines.

A handler can fail its step, never its worker: ``SystemExit``,
``KeyboardInterrupt``, other ``BaseException``s, poison results and handlers
that ignore their cancellation each fail (or, on a drain, release) their
goal while every worker stays up and exits 0 on SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt import Goals
from tests.acceptance.test_worker_processes import HANDLERS, POISON, REPO, Workers, finished, wait_until


def poison_workers(url: str, logs: Path) -> Workers:
    return Workers(url, logs, handlers=POISON)


def test_drain_abandons_a_handler_that_ignores_cancellation_and_exits(db_url: str, tmp_path: Path) -> None:
    workers = poison_workers(db_url, tmp_path)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            proc = workers.start("d0", "--grace", "0.5s")
            wait_until(lambda: registered_name(conn, "d0"), 60, workers, "worker registered")
            with Goals.connect(db_url) as goals:
                gid = goals.submit("poison", {"kind": "stubborn_forever"}).id
            wait_until(
                lambda: conn.execute("SELECT step_seq FROM goalrt.goals WHERE id = %s", (gid,)).fetchone() == (1,),
                60,
                workers,
                "step running",
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, workers.tail()
            row = conn.execute("SELECT status, lease_owner FROM goalrt.goals WHERE id = %s", (gid,)).fetchone()
            assert row == ("active", None), row  # released: any worker may take it at once
            conn.execute("SELECT goalrt.tick()")  # position what was committed, for the reads of goalrt.events
            released = conn.execute(
                "SELECT count(*) FROM goalrt.events WHERE stream = %s AND type = 'goal.released'", (f"goal:{gid}",)
            ).fetchone()
            assert released == (1,)
        log = workers.tail()
        assert "leaving 1 handler(s) still running" in log, log
    finally:
        workers.stop_all()


class Forward:
    """A TCP port that forwards to the test server once ``open()`` is called (refuses until then)."""

    def __init__(self, url: str) -> None:
        params = conninfo_to_dict(url)
        host = str(params.get("host") or "localhost")
        port = int(params.get("port") or 5432)
        self.target: tuple[int, str | tuple[str, int]] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else (socket.AF_INET, (host, port))
        )
        with socket.socket() as probe:  # a port nothing listens on (yet)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = make_conninfo(url, host="127.0.0.1", port=str(self.port))
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self) -> None:
        for sock in [*self._sockets, *([self._server] if self._server else [])]:
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(self.target[0])
            self._sockets += [client, upstream]
            upstream.connect(self.target[1])
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            return
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_worker_started_while_the_server_is_away_waits_then_runs(db_url: str, tmp_path: Path) -> None:
    forward = Forward(db_url)
    workers = poison_workers(forward.url, tmp_path)
    try:
        proc = workers.start("s0")
        log = next(tmp_path.glob("s0-*.log"))
        wait_until(lambda: "waiting for the server" in log.read_text(), 60, workers, "waiting logged")
        # Still waiting after several backoff rounds (0.1 s, 0.2 s, ... 1.5 s).
        time.sleep(2)
        assert proc.poll() is None, workers.tail()
        forward.open()
        with psycopg.connect(db_url, autocommit=True) as conn:
            wait_until(lambda: registered_name(conn, "s0"), 60, workers, "worker registered")
            with Goals.connect(db_url) as goals:
                gid = goals.submit("poison", {"kind": "ok"}).id
            wait_until(lambda: finished(conn, [gid]), 60, workers, "goal finished")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, workers.tail()
        text = log.read_text()
        assert text.count("waiting for the server") == 1, text
        assert "Traceback" not in text, text
    finally:
        workers.stop_all()
        forward.close()


def test_worker_stopped_while_waiting_for_the_server_exits_0(db_url: str, tmp_path: Path) -> None:
    forward = Forward(db_url)
    workers = poison_workers(forward.url, tmp_path)
    proc = workers.start("s1")
    log = next(tmp_path.glob("s1-*.log"))
    wait_until(lambda: "waiting for the server" in log.read_text(), 60, workers, "waiting logged")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, workers.tail()


def registered_name(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT count(*) FROM goalrt.workers WHERE name = %s", (name,)).fetchone()
    return bool(row and row[0])


def run_worker_once(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalrt", "worker", "--handlers", POISON],
        cwd=REPO,
        env={**Workers(url, Path()).env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_worker_on_an_unmigrated_database_says_so_in_one_line(empty_db_url: str) -> None:
    result = run_worker_once(empty_db_url)
    assert result.returncode == 1, result.stderr
    assert "not migrated; run `goalrt migrate`" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_worker_on_an_older_revision_says_so_in_one_line(empty_db_url: str) -> None:
    from alembic.script import ScriptDirectory

    from goalrt.db.migrate import alembic_config, upgrade

    from ..integration.test_migrations import build_legacy

    head = ScriptDirectory.from_config(alembic_config("")).get_revision("head")
    assert head is not None
    older = head.down_revision
    if not isinstance(older, str):
        pytest.skip("goalrt has a single revision: there is no older one to be at")
    # A new database is built at head only: an older one is the baseline's catalog upgraded to ``older``.
    build_legacy(empty_db_url)
    upgrade(empty_db_url, older)
    result = run_worker_once(empty_db_url)
    assert result.returncode == 1, result.stderr
    assert f"is at revision {older}" in result.stderr and "run `goalrt migrate`" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["ok", "permanent", "exit_sync"])
def test_clean_stop_logs_only_what_happened(db_url: str, tmp_path: Path, kind: str) -> None:
    """No "handler threads still running" when none runs; no "cancelled" or "lease lost" for goals that ended."""
    workers = poison_workers(db_url, tmp_path)
    try:
        proc = workers.start("m0", "--lease", "0.3s", "--handlers", HANDLERS)
        with Goals.connect(db_url) as goals, psycopg.connect(db_url, autocommit=True) as conn:
            wait_until(lambda: registered_name(conn, "m0"), 60, workers, "worker registered")
            ids = [goals.submit("poison", {"kind": kind}).id for _ in range(40)]
            wait_until(lambda: finished(conn, ids), 120, workers, "goals finished")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, workers.tail()
        text = next(tmp_path.glob("m0-*.log")).read_text()
        assert "still running" not in text, text
        assert "cancelled" not in text, text
        assert "lease lost" not in text, text
    finally:
        workers.stop_all()
