"""Anchors for the hash chain (issue 18, item 4).

verify_chain() proves the log agrees with itself. The owner or a superuser can
rewrite an event and recompute every later hash (and the clock's head_hash),
or drop the newest events and roll the clock back: the chain still verifies.
An anchor (a position and its hash, kept elsewhere) makes both evident. Each
tampering test first shows plain verify passing on the forged log, then the
anchor failing on it.
"""

from __future__ import annotations

import psycopg
import pytest

from goalrt.errors import ChainBrokenError, DatabaseError, InvalidAnchorError
from goalrt.log.anchors import Anchor
from goalrt.log.eventlog import EventLog
from goalrt.state import forks

ZERO_HASH = "00" * 32

# Recompute every link from the start of the log, and the clock's head_hash:
# what an owner who changed an event does so that verify_chain() passes again.
REHASH = """
DO $$
DECLARE
    r record;
    h bytea := (SELECT base_hash FROM goalrt.clock);
BEGIN
    FOR r IN SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, e.db_role
               FROM goalrt.event_order o JOIN goalrt.event_data e ON e.id = o.event_id ORDER BY o.pos LOOP
        UPDATE goalrt.event_order SET prev_hash = h,
               hash = goalrt.chain_hash(h, r.pos, goalrt.event_digest(r.id, r.stream, r.type, r.data, r.metadata,
                                                                      r.recorded_at, r.db_role))
         WHERE pos = r.pos RETURNING hash INTO h;
    END LOOP;
    UPDATE goalrt.clock SET head_hash = h;
END
$$;
"""


def cut_back(keep: int) -> str:
    """Drop the events after position ``keep`` and roll the clock back to it."""
    return f"""
    DELETE FROM goalrt.event_data WHERE id IN (SELECT event_id FROM goalrt.event_order WHERE pos > {keep});
    DELETE FROM goalrt.event_order WHERE pos > {keep};
    UPDATE goalrt.clock SET head = {keep}, head_hash = (SELECT hash FROM goalrt.event_order WHERE pos = {keep});
    """


def tamper(conn: psycopg.Connection, statement: str) -> None:
    """Change the log as the owner or a superuser can: with the append-only triggers off."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement)


@pytest.fixture
def filled(log: EventLog) -> EventLog:
    log.append_many({"stream": f"s{i % 3}", "type": "t", "data": {"i": i}} for i in range(10))
    assert log.tick() == 10
    return log


def test_the_head_anchor_verifies_and_still_does_after_more_appends(filled: EventLog) -> None:
    anchor = filled.head_anchor()
    assert anchor.pos == filled.head() == 10
    assert anchor.hash == filled.read(after=9)[0].hash.hex()
    assert Anchor.parse(str(anchor)) == anchor
    report = filled.verify([anchor])
    assert report.ok and report.checked == 10 and report.anchors == 1 and report.anchor is None
    filled.append_many({"stream": "s", "type": "later", "data": i} for i in range(5))
    filled.tick()
    later = filled.head_anchor()
    assert later.pos == 15
    # Anchors as objects or text, in any order, the same one twice.
    report = filled.verify_or_raise([later, str(anchor), anchor])
    assert report.ok and report.anchors == 3 and report.checked == 15


def test_an_empty_log_has_the_zero_anchor(log: EventLog) -> None:
    assert log.head_anchor() == Anchor(0, ZERO_HASH)
    assert log.verify([f"0:{ZERO_HASH}"]).ok


def test_a_rewrite_re_hashed_by_the_owner_passes_plain_verify_and_fails_the_anchor(
    filled: EventLog, conn: psycopg.Connection
) -> None:
    before = filled.read(after=2, limit=1)[0]
    early = Anchor(3, before.hash.hex())
    head = filled.head_anchor()
    tamper(conn, "UPDATE goalrt.event_data SET data = '{\"i\": 99}' WHERE id = 5")
    tamper(conn, REHASH)
    assert filled.read(after=4, limit=1)[0].data == {"i": 99}
    # Without an anchor the forged log is undetectable: it agrees with itself.
    plain = filled.verify()
    assert plain.ok and plain.checked == 10
    # The head anchor, taken before, is not held any more.
    report = filled.verify([head])
    assert not report.ok and report.anchor == head and report.first_bad_pos == 10
    assert report.problem == f"anchor {head}: position 10 holds hash {filled.head_anchor().hash}"
    # An anchor below the change still holds: a change after the newest anchor is not detected.
    assert filled.verify([early]).ok
    report = filled.verify([early, head])
    assert not report.ok and report.anchor == head
    with pytest.raises(ChainBrokenError) as info:
        filled.verify_or_raise([head])
    assert info.value.anchor == str(head) and info.value.pos == 10
    assert str(info.value) == f"the log does not hold anchor {head}: position 10 holds hash {filled.head_anchor().hash}"


def test_dropping_the_newest_events_passes_plain_verify_and_fails_the_anchor(
    filled: EventLog, conn: psycopg.Connection
) -> None:
    head = filled.head_anchor()
    middle = Anchor(7, filled.read(after=6, limit=1)[0].hash.hex())
    tamper(conn, cut_back(7))
    assert filled.head() == 7
    plain = filled.verify()
    assert plain.ok and plain.checked == 7
    report = filled.verify([middle, head])
    assert not report.ok and report.anchor == head and report.first_bad_pos == 10
    assert report.problem == f"anchor {head}: the log ends at position 7, before the anchor"
    assert filled.verify([middle]).ok
    # New events appended to the same length do not bring the anchor back.
    filled.append_many({"stream": "s", "type": "forged"} for _ in range(3))
    assert filled.tick() == 10
    assert filled.verify().ok
    report = filled.verify([head])
    assert not report.ok and report.problem is not None and "position 10 holds hash" in report.problem


def test_a_clock_rolled_back_over_rows_left_in_place_fails_the_anchor(
    filled: EventLog, conn: psycopg.Connection
) -> None:
    head = filled.head_anchor()
    tamper(conn, "UPDATE goalrt.clock SET head = 6, head_hash = (SELECT hash FROM goalrt.event_order WHERE pos = 6)")
    assert filled.verify().ok
    report = filled.verify([head])
    assert not report.ok and report.problem == f"anchor {head}: the log ends at position 6, before the anchor"


def test_a_broken_chain_is_reported_before_the_anchors(filled: EventLog, conn: psycopg.Connection) -> None:
    head = filled.head_anchor()
    tamper(conn, "UPDATE goalrt.event_data SET data = '{}' WHERE id = 4")
    report = filled.verify([head])
    assert not report.ok and report.anchor is None and report.first_bad_pos == 4
    assert report.problem == "content does not match its hash"


def test_a_missing_position_below_the_head_is_named(filled: EventLog, conn: psycopg.Connection) -> None:
    # The chain is broken too (verify_chain names it); anchor_problem alone names the position.
    head = filled.head_anchor()
    tamper(conn, "DELETE FROM goalrt.event_order WHERE pos = 10")
    row = conn.execute("SELECT goalrt.anchor_problem(%s, %s)", (head.pos, head.hash_bytes)).fetchone()
    assert row == ("position 10 is missing from the log",)
    assert not filled.verify([head]).ok


def test_anchors_from_sql(filled: EventLog, conn: psycopg.Connection) -> None:
    pos, hash = conn.execute("SELECT pos, hash FROM goalrt.chain_head()").fetchone() or (None, None)
    assert (pos, bytes(hash).hex()) == (10, filled.head_anchor().hash)
    row = conn.execute("SELECT * FROM goalrt.verify_anchors(ARRAY[%s::bigint], ARRAY[%s::bytea])", (pos, hash))
    assert row.fetchone() == (True, 10, None, None, None, None)
    assert conn.execute("SELECT goalrt.anchor_problem(10, %s)", (hash,)).fetchone() == (None,)
    other = bytes(32)
    row = conn.execute(
        "SELECT ok, anchor_pos, anchor_hash FROM goalrt.verify_anchors('{4}', ARRAY[%s::bytea])", (other,)
    )
    assert row.fetchone() == (False, 4, other)
    for call, params in [
        ("SELECT * FROM goalrt.verify_anchors('{1,2}', ARRAY[%s::bytea])", (hash,)),
        ("SELECT * FROM goalrt.verify_anchors(NULL, NULL)", None),
        ("SELECT goalrt.anchor_problem(1, '\\x00')", None),
        ("SELECT goalrt.anchor_problem(NULL, %s)", (hash,)),
    ]:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute(call, params)


def test_bad_anchor_text_is_refused_before_the_database(filled: EventLog) -> None:
    with pytest.raises(InvalidAnchorError, match="expected POS:HASH"):
        filled.verify(["10:abc"])
    # An Anchor made by hand with a short hash reaches the database, which refuses it.
    with pytest.raises(DatabaseError, match="1 bytes long; a sha256 hash is 32"):
        filled.verify([Anchor(1, "00")])


def test_an_anchor_taken_in_a_fork_verifies_in_the_fork(db_url: str, filled: EventLog) -> None:
    main_head = filled.head_anchor()
    fork = forks.create(filled.connection, "sim", at=6)
    assert fork.base_pos == 6
    with EventLog.connect(db_url, fork="sim") as sim:
        at_fork = sim.head_anchor()
        assert at_fork == Anchor(6, filled.read(after=5, limit=1)[0].hash.hex())
        assert sim.verify([at_fork]).ok
        sim.append("s", "in.fork")
        sim.tick()
        in_fork = sim.head_anchor()
        assert in_fork.pos == 7
        assert sim.verify([at_fork, in_fork]).ok
        report = sim.verify([Anchor(3, main_head.hash)])
        assert not report.ok and report.problem is not None
        assert report.problem.endswith("the anchor is before the start of this log (position 6)")
        # The main line's position 7 is not the fork's.
        assert not sim.verify([Anchor(7, filled.read(after=6, limit=1)[0].hash.hex())]).ok
    assert not filled.verify([in_fork]).ok
    assert filled.verify([at_fork, main_head]).ok
