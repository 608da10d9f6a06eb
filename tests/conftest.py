"""Test fixtures: a real PostgreSQL, never a mock.

The server is GOALRT_TEST_DATABASE_URL when set (and the run aborts loudly if
it is unreachable), else an embedded PostgreSQL under .goalrt/test-server.
One template database is migrated per session; each test that needs a
database gets a fresh clone of it (CREATE DATABASE ... TEMPLATE), so tests
may commit, NOTIFY and run concurrent sessions freely.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.db import migrate
from goalrt.db.embedded import EmbeddedServer
from goalrt.log.eventlog import EventLog
from goalrt.state import replay
from goalrt.state.state import State

REPO = Path(__file__).resolve().parent.parent
ENV_TEST_URL = "GOALRT_TEST_DATABASE_URL"
_counter = itertools.count()


def with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a maintenance database on the test server."""
    url = os.environ.get(ENV_TEST_URL)
    if url:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            pytest.exit(f"{ENV_TEST_URL} is set but unreachable: {exc}", returncode=3)
        yield url
        return
    server = EmbeddedServer(REPO / ".goalrt" / "test-server")
    already_running = server.status().running
    embedded_url = server.start()
    yield with_dbname(embedded_url, "postgres")
    if not already_running:
        server.stop()


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


def create_database(server_url: str, template: str | None = None) -> str:
    name = f"goalrt_t{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    with _admin(server_url) as conn:
        if template:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server_url: str, name: str) -> None:
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    name = create_database(server_url)
    migrate.upgrade(with_dbname(server_url, name))
    yield name
    drop_database(server_url, name)


@pytest.fixture
def db_url(server_url: str, template_db: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database of its own.

    After the test, the state rebuilt from the log alone must equal the
    materialized state, whatever the test did (unless it is marked
    ``tampers_state``).
    """
    name = create_database(server_url, template_db)
    url = with_dbname(server_url, name)
    yield url
    try:
        if request.node.get_closest_marker("tampers_state") is None:
            assert_replay_identical(url)
    finally:
        drop_database(server_url, name)


def assert_replay_identical(url: str) -> None:
    """Fail unless `goalrt replay --verify` would say identical (skipped if state is not migrated)."""
    with psycopg.connect(url, autocommit=True) as c:
        present = c.execute("SELECT to_regclass('goalrt.state_data') IS NOT NULL").fetchone()
    if not present or not present[0]:
        return
    with State.connect(url) as state:
        report = replay.verify(state)
    assert report.identical, f"after the test, replay {report.describe()}"


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with no goalrt schema."""
    name = create_database(server_url)
    yield with_dbname(server_url, name)
    drop_database(server_url, name)


@pytest.fixture
def log(db_url: str) -> Iterator[EventLog]:
    with EventLog.connect(db_url) as event_log:
        yield event_log


@pytest.fixture
def state(db_url: str) -> Iterator[State]:
    with State.connect(db_url) as st:
        yield st


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit psycopg connection to the test database."""
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c
