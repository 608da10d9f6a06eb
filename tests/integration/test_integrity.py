"""Append-only enforcement, tamper detection and role privileges."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from goalrt.log.eventlog import EventLog

from ..conftest import with_dbname


@pytest.fixture
def filled(log: EventLog) -> EventLog:
    log.append_many({"stream": f"s{i % 3}", "type": "t", "data": {"i": i}} for i in range(10))
    log.tick()
    return log


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE goalrt.event_data SET data = '{}'",
        "DELETE FROM goalrt.event_data",
        "TRUNCATE goalrt.event_data CASCADE",
        "UPDATE goalrt.event_order SET hash = prev_hash",
        "DELETE FROM goalrt.event_order WHERE pos = 10",
        "TRUNCATE goalrt.event_order",
        "DELETE FROM goalrt.clock",
        # even a change that touches no row is refused
        "DELETE FROM goalrt.event_data WHERE false",
    ],
)
def test_log_tables_are_append_only_even_for_the_owner(
    filled: EventLog, conn: psycopg.Connection, statement: str
) -> None:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(statement)
    assert info.value.sqlstate == "GR001"
    assert "append-only" in str(info.value)
    assert filled.verify().ok


def tamper(conn: psycopg.Connection, statement: str) -> None:
    """Change the log the way only a superuser could: with triggers disabled."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement)


@pytest.mark.parametrize(
    ("statement", "bad_pos"),
    [
        ("UPDATE goalrt.event_data SET data = '{\"i\": 99}' WHERE id = 4", 4),
        ("UPDATE goalrt.event_data SET type = 'x' WHERE id = 7", 7),
        ("UPDATE goalrt.event_data SET recorded_at = recorded_at + interval '1 us' WHERE id = 2", 2),
        ('UPDATE goalrt.event_data SET metadata = \'{"actor": "mallory"}\' WHERE id = 1', 1),
        ("UPDATE goalrt.event_data SET db_role = 'mallory' WHERE id = 8", 8),
        # Passing an event off as one appended before roles were recorded (0016).
        ("UPDATE goalrt.event_data SET db_role = NULL WHERE id = 9", 9),
        ("UPDATE goalrt.event_order SET hash = sha256('x') WHERE pos = 5", 5),
        ("DELETE FROM goalrt.event_order WHERE pos = 6", 7),
        ("DELETE FROM goalrt.event_order WHERE pos = 10", 10),
        ("DELETE FROM goalrt.event_data WHERE id = 3", 3),
    ],
)
def test_tampering_is_detected_at_the_first_bad_position(
    filled: EventLog, conn: psycopg.Connection, statement: str, bad_pos: int
) -> None:
    assert filled.verify().ok
    tamper(conn, statement)
    report = filled.verify()
    assert not report.ok
    assert report.first_bad_pos == bad_pos
    assert report.problem


def test_rewriting_a_whole_suffix_consistently_is_still_caught_by_the_clock(
    filled: EventLog, conn: psycopg.Connection
) -> None:
    # Recompute the last event's hash after changing it: the chain itself is
    # consistent again, but the clock's head_hash no longer matches.
    tamper(
        conn,
        """
        UPDATE goalrt.event_data SET data = '{"i": -1}' WHERE id = 10;
        UPDATE goalrt.event_order o SET hash = goalrt.chain_hash(o.prev_hash, o.pos,
               goalrt.event_digest(e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, e.db_role))
          FROM goalrt.event_data e WHERE e.id = o.event_id AND o.pos = 10;
    """,
    )
    report = filled.verify()
    assert not report.ok and report.first_bad_pos == 11


@pytest.fixture
def login_role(server_url: str) -> Iterator[str]:
    name = f"goalrt_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def as_role(db_url: str, role: str) -> psycopg.Connection:
    c = psycopg.connect(db_url, autocommit=True)
    c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    return c


def grant(conn: psycopg.Connection, group: str, role: str) -> None:
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))


def test_reader_reads_but_cannot_append(
    db_url: str, filled: EventLog, conn: psycopg.Connection, login_role: str
) -> None:
    grant(conn, "goalrt_reader", login_role)
    with as_role(db_url, login_role) as c:
        assert c.execute("SELECT count(*) FROM goalrt.events").fetchone() == (10,)
        assert len(c.execute("SELECT * FROM goalrt.read_events(0, 100)").fetchall()) == 10
        assert c.execute("SELECT ok FROM goalrt.verify_chain()").fetchone() == (True,)
        assert c.execute(
            "SELECT ok FROM goalrt.chain_head() h, goalrt.verify_anchors(ARRAY[h.pos], ARRAY[h.hash])"
        ).fetchone() == (True,)
        for statement in [
            "SELECT goalrt.append_event('s', 't')",
            "SELECT goalrt.append_events('[]')",
            "INSERT INTO goalrt.event_data (stream, type) VALUES ('s', 't')",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(statement)


def test_writer_appends_only_through_functions(
    db_url: str, filled: EventLog, conn: psycopg.Connection, login_role: str
) -> None:
    grant(conn, "goalrt_writer", login_role)
    with as_role(db_url, login_role) as c:
        c.execute("SELECT goalrt.append_event('s', 'by-writer')")
        c.execute("CALL goalrt.tick_commit()")
        assert c.execute("SELECT type FROM goalrt.read_events(10, 10)").fetchall() == [("by-writer",)]
        for statement in [
            "INSERT INTO goalrt.event_data (stream, type) VALUES ('s', 't')",
            "INSERT INTO goalrt.event_order VALUES (100, 1, '', '')",
            "UPDATE goalrt.clock SET head = 0",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(statement)


def test_public_has_no_access(db_url: str, filled: EventLog, login_role: str) -> None:
    with as_role(db_url, login_role) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT * FROM goalrt.read_events(0, 1)")


def test_roles_exist_and_are_nologin(server_url: str, filled: EventLog) -> None:
    with psycopg.connect(with_dbname(server_url, "postgres")) as c:
        rows = c.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'goalrt\\_%' "
            "AND rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin') ORDER BY 1"
        ).fetchall()
    assert rows == [("goalrt_admin", False), ("goalrt_reader", False), ("goalrt_writer", False)]
