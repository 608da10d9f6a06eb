"""Ticks commit alone and durably: no reader sees a position that could vanish.

A position must be committed and durable before anyone can see it (issue 15,
items 1 and 4): a tick run inside a reader's transaction, then rolled back,
once let the next tick order a late-committing lower id before an event the
reader had already seen; a tick inside a transaction kept open stopped the
clock for everyone; a tick under synchronous_commit=off was visible before
its commit was flushed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.log.eventlog import EventLog


@contextmanager
def reader_role(server_url: str, db_url: str) -> Iterator[str]:
    """Create a real LOGIN role that is only a goalrt_reader; yield its URL to ``db_url``."""
    name = f"goalrt_test_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE goalrt_reader").format(sql.Identifier(name)))
    params = conninfo_to_dict(db_url)
    params["user"] = name
    params.pop("password", None)
    try:
        yield make_conninfo("", **params)
    finally:
        # A closed session's backend may still be dropping its temporary objects (a test creates one):
        # wait for it to be gone, then drop what the role still owns in the test's database, then the role.
        with psycopg.connect(db_url, autocommit=True) as c:
            deadline = time.monotonic() + 30
            while c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (name,)).fetchone() != (0,):
                assert time.monotonic() < deadline, f"sessions of {name} did not end"
                time.sleep(0.05)
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with psycopg.connect(server_url, autocommit=True) as c:
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def reader_url(server_url: str, db_url: str) -> Iterator[str]:
    """Return the URL of a real LOGIN role that is only a goalrt_reader."""
    with reader_role(server_url, db_url) as url:
        yield url


def owner_tick(conn: psycopg.Connection) -> int:
    """Tick as the owner, as a statement of its own."""
    return int(conn.execute("SELECT goalrt.tick()").fetchone()[0])  # type: ignore[index]


def test_reader_that_rolls_back_gets_every_event_once_in_order(
    db_url: str, reader_url: str, conn: psycopg.Connection
) -> None:
    with (
        psycopg.connect(db_url) as slow_writer,
        psycopg.connect(reader_url) as reader,
    ):
        # Y takes the lower id but commits after X.
        y = slow_writer.execute("SELECT goalrt.append_event('s', 'y')").fetchone()[0]  # type: ignore[index]
        x = conn.execute("SELECT goalrt.append_event('s', 'x')").fetchone()[0]  # type: ignore[index]
        assert y < x
        # The reader reads in a transaction that then rolls back; what it was
        # shown, it keeps (its cursor moves on).
        seen = reader.execute("SELECT pos, id FROM goalrt.read_events(0, 100)").fetchall()
        slow_writer.commit()
        reader.rollback()
        reader.autocommit = True
        after = seen[-1][0] if seen else 0
        owner_tick(conn)
        seen += reader.execute("SELECT pos, id FROM goalrt.read_events(%s, 100)", (after,)).fetchall()
    log = conn.execute("SELECT pos, id FROM goalrt.events ORDER BY pos").fetchall()
    assert sorted(id_ for _, id_ in log) == [y, x]
    assert seen == log, f"the reader saw {seen}, the log is {log}"


def test_a_reader_holding_a_transaction_open_does_not_stop_the_clock(
    db_url: str, reader_url: str, conn: psycopg.Connection
) -> None:
    conn.execute("SELECT goalrt.append_event('s', 'before')")
    with psycopg.connect(reader_url) as reader:
        # In a transaction it keeps open: a tick and a read that ticks.
        reader.execute("SELECT goalrt.tick()")
        reader.execute("SELECT * FROM goalrt.read_events(0, 100)")
        conn.execute("SELECT goalrt.append_event('s', 'after')")
        assert owner_tick(conn) == 2
        assert conn.execute("SELECT type FROM goalrt.events ORDER BY pos").fetchall() == [("before",), ("after",)]
        # Its CALL, the way readers tick, cannot run inside the transaction.
        conn.execute("SELECT goalrt.append_event('s', 'third')")
        with pytest.raises(psycopg.errors.InvalidTransactionTermination):
            reader.execute("CALL goalrt.tick_commit()")
        reader.rollback()
        assert conn.execute("SELECT head FROM goalrt.clock").fetchone() == (2,)
        # Outside a transaction it ticks, and commits at once.
        reader.autocommit = True
        assert reader.execute("CALL goalrt.tick_commit()").fetchone() == (3,)
        assert reader.execute("SELECT count(*) FROM goalrt.read_events(0, 100)").fetchone() == (3,)
        with psycopg.connect(db_url) as other:
            assert other.execute("SELECT head FROM goalrt.clock").fetchone() == (3,)


def test_readers_other_than_the_owner_never_tick_inside_their_statements(
    reader_url: str, conn: psycopg.Connection
) -> None:
    conn.execute("SELECT goalrt.append_event('s', 'e')")
    with psycopg.connect(reader_url, autocommit=True) as reader:
        assert reader.execute("SELECT goalrt.tick()").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM goalrt.read_events(0, 10)").fetchone() == (0,)
        # A procedure of its own under the same name is not tick_commit.
        reader.execute(
            "CREATE PROCEDURE pg_temp.tick_commit(wait_ms integer DEFAULT 200, INOUT head bigint DEFAULT NULL)"
            " LANGUAGE plpgsql AS $$ BEGIN head := goalrt.tick(wait_ms); END $$"
        )
        with reader.transaction():
            assert reader.execute("CALL pg_temp.tick_commit()").fetchone() == (0,)
    assert conn.execute("SELECT head FROM goalrt.clock").fetchone() == (0,)


def test_own_uncommitted_positions_are_never_shown(conn: psycopg.Connection, log: EventLog) -> None:
    log.append("s", "first")
    log.tick()
    log.append("s", "second")
    # One query string, one transaction: the tick positions "second", but the
    # view and read_events show only what committed ticks positioned.
    cur = conn.execute(
        "BEGIN; SELECT goalrt.tick(); SELECT count(*) FROM goalrt.events;"
        " SELECT count(*) FROM goalrt.read_events(0, 10, advance => false)"
    )
    results = []
    while True:
        if cur.pgresult is not None and cur.pgresult.ntuples:
            results.append(cur.fetchone())
        if not cur.nextset():
            break
    assert results == [(2,), (1,), (1,)]  # the tick's head, the view, read_events
    conn.execute("ROLLBACK")
    assert [e.type for e in log.read()] == ["first", "second"]


def test_ticks_commit_synchronously_whatever_the_session_says(conn: psycopg.Connection) -> None:
    conn.execute("SET synchronous_commit = off")
    conn.execute("SELECT goalrt.append_event('s', 'e')")
    # In the tick's own transaction, after it: its commit will be flushed.
    assert conn.execute("SELECT goalrt.tick(), current_setting('synchronous_commit')").fetchone() == (1, "on")
    assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
    # An idle tick writes nothing, so it changes nothing.
    assert conn.execute("SELECT goalrt.tick(), current_setting('synchronous_commit')").fetchone() == (1, "off")
