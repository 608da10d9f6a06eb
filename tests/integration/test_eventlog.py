"""Appending and reading through the SQL functions and the sync API."""

from __future__ import annotations

import itertools

import psycopg
import pytest

from goalrt.errors import InvalidEventError
from goalrt.log.eventlog import EventLog


def count_rows(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM goalrt.event_data").fetchone()
    assert row is not None
    return int(row[0])


def test_append_and_read_back_in_order(log: EventLog) -> None:
    first = log.append("order:o1", "order.created", {"amount": 20}, actor="test", correlation_id="c1")
    ids = log.append_many(
        [
            {"stream": "order:o1", "type": "order.paid", "data": {"amount": 20}},
            {"stream": "order:o2", "type": "order.created", "data": None, "metadata": {"causation_id": str(first)}},
        ]
    )
    events = log.read()
    assert [(e.pos, e.id) for e in events] == [(1, first), (2, ids[0]), (3, ids[1])]
    assert events[0].data == {"amount": 20}
    assert events[0].metadata == {"actor": "test", "correlation_id": "c1"}
    assert events[2].data is None
    assert log.head() == 3


def test_positions_are_gapless_and_chain_links(log: EventLog) -> None:
    for i in range(5):
        log.append("s", "t", {"i": i})
    log.append_many({"stream": "s", "type": "t", "data": {"i": i}} for i in range(5, 50))
    events = log.read(limit=1000)
    assert [e.pos for e in events] == list(range(1, 51))
    assert events[0].prev_hash == bytes(32)
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert log.verify().ok


def test_read_after_limit_stream_and_type_glob(log: EventLog) -> None:
    log.append_many(
        [
            {"stream": "a", "type": "order.created"},
            {"stream": "b", "type": "order.paid"},
            {"stream": "a", "type": "payment.done"},
            {"stream": "a", "type": "order_x"},
            {"stream": "a", "type": "order%y"},
        ]
    )
    assert [e.pos for e in log.read(after=1, limit=2)] == [2, 3]
    assert [e.pos for e in log.read(stream="a")] == [1, 3, 4, 5]
    assert [e.type for e in log.read(type="order.*")] == ["order.created", "order.paid"]
    # LIKE's own wildcards are literal in a glob.
    assert [e.type for e in log.read(type="order_*")] == ["order_x"]
    assert [e.type for e in log.read(type="order%y")] == ["order%y"]
    assert [e.type for e in log.read(type="order?y")] == ["order%y"]
    assert log.read(stream="nope") == []


def test_invalid_events_write_nothing(log: EventLog, conn: psycopg.Connection) -> None:
    with pytest.raises(InvalidEventError, match=r"^type: must not be empty$"):
        log.append("s", "")
    with pytest.raises(InvalidEventError, match=r"^events\[2\]\.type"):
        log.append_many([{"stream": "s", "type": "ok"}, {"stream": "s", "type": "ok"}, {"stream": "s", "type": ""}])
    assert count_rows(conn) == 0


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ('{"not": "an array"}', "events must be a JSON array of event objects"),
        ('[{"stream": "s", "type": "t"}, 3]', "events[1] must be an object"),
        ('[{"stream": "s"}]', "events[0].type must be a non-empty string"),
        ('[{"stream": 5, "type": "t"}]', "events[0].stream must be a non-empty string"),
        ('[{"stream": "s", "type": "t", "metadata": []}]', "events[0].metadata must be a JSON object"),
    ],
)
def test_sql_batch_validation_names_the_element(conn: psycopg.Connection, batch: str, message: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT goalrt.append_events(%s::jsonb)", (batch,))
    assert info.value.sqlstate == "GR002"
    assert str(info.value).splitlines()[0] == message
    assert count_rows(conn) == 0


def test_sql_single_append_validation(conn: psycopg.Connection) -> None:
    for args in [("", "t"), ("s", ""), (None, "t")]:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT goalrt.append_event(%s, %s)", args)
        assert info.value.sqlstate == "GR002"
    with pytest.raises(psycopg.Error, match="metadata must be a JSON object"):
        conn.execute("SELECT goalrt.append_event('s', 't', '{}', '[1]')")
    assert count_rows(conn) == 0


def test_rolled_back_appends_never_appear(log: EventLog, conn: psycopg.Connection) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), log.transaction():
        log.append("s", "lost")
        raise Boom
    kept = log.append("s", "kept")
    assert [e.id for e in log.read()] == [kept]


def test_uncommitted_events_are_invisible_until_commit(db_url: str, log: EventLog) -> None:
    with psycopg.connect(db_url) as writer:  # not autocommit: stays open
        writer.execute("SELECT goalrt.append_event('s', 'slow')")
        later = log.append("s", "fast")
        assert [e.id for e in log.read()] == [later]  # the slow one is not skipped, just not yet committed
        writer.commit()
    events = log.read()
    assert [e.type for e in events] == ["fast", "slow"]
    assert [e.pos for e in events] == [1, 2]


def test_transaction_groups_appends_and_reads_only_positioned(log: EventLog) -> None:
    log.append("s", "before")
    log.tick()
    with log.transaction():
        log.append("s", "a")
        log.append("s", "b")
        # Inside a transaction read() does not tick: it sees only what is positioned.
        assert [e.type for e in log.read()] == ["before"]
    assert [e.type for e in log.read()] == ["before", "a", "b"]


def test_tick_does_nothing_in_repeatable_read_or_after_writes(db_url: str, log: EventLog) -> None:
    log.connection.execute("SELECT goalrt.append_event('s', 'x')")
    with psycopg.connect(db_url) as c:
        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert c.execute("SELECT goalrt.tick()").fetchone() == (0,)
        c.rollback()
        c.execute("SELECT goalrt.append_event('s', 'mine')")
        # this transaction has written: its own events must not be positioned by it
        assert c.execute("SELECT goalrt.tick()").fetchone() == (0,)
        c.rollback()
    assert [e.type for e in log.read()] == ["x"]


def test_reads_work_in_read_only_transactions(db_url: str, log: EventLog) -> None:
    log.append("s", "positioned")
    log.tick()
    log.append("s", "not-yet")
    with psycopg.connect(db_url) as c:
        c.execute("SET TRANSACTION READ ONLY")
        rows = c.execute("SELECT type FROM goalrt.read_events(0, 10)").fetchall()
        assert rows == [("positioned",)]
        c.rollback()
    assert [e.type for e in log.read()] == ["positioned", "not-yet"]


def test_subtransaction_events_follow_the_top_level_commit(log: EventLog) -> None:
    conn = log.connection
    with log.transaction():
        log.append("s", "outer")
        with conn.transaction():
            log.append("s", "inner-kept")
        with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
            log.append("s", "inner-lost")
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'undo savepoint'; END $$")
    assert [e.type for e in log.read()] == ["outer", "inner-kept"]


def test_position_of_event(log: EventLog) -> None:
    a = log.append("s", "t")
    assert log.position(a) == 1
    assert log.position(999) is None


def test_read_events_from_plain_sql(conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.append_event('s', 't', '{\"k\": 1}')")
    conn.execute("CALL goalrt.tick_commit()")
    rows = conn.execute("SELECT pos, stream, type, data FROM goalrt.read_events(0, 10)").fetchall()
    assert rows == [(1, "s", "t", {"k": 1})]
    # The owner's read_events also ticks, but never shows what its own
    # (uncommitted) tick positioned: that comes with the next call.
    conn.execute("SELECT goalrt.append_event('s', 'u')")
    assert conn.execute("SELECT pos FROM goalrt.read_events(1, 10)").fetchall() == []
    assert conn.execute("SELECT pos FROM goalrt.read_events(1, 10)").fetchall() == [(2,)]
    by_hand = conn.execute("SELECT pos, type FROM goalrt.events WHERE pos > 0 ORDER BY pos").fetchall()
    assert by_hand == [(1, "t"), (2, "u")]
    with pytest.raises(psycopg.Error, match="max_count must be a positive integer"):
        conn.execute("SELECT * FROM goalrt.read_events(0, 0)")


def test_notifications_are_sent_after_commit_not_per_event(db_url: str, log: EventLog) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN goalrt_append")
        listener.execute("LISTEN goalrt_events")
        with log.transaction():
            for i in range(10):
                log.append("s", "t", {"i": i})
        log.tick()
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=2, stop_after=2)]
    assert ("goalrt_append", "") in got
    assert ("goalrt_events", "10") in got
