"""The state: writes, versions, reads, time travel, history, and bad input."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt.errors import (
    DirectWriteError,
    InvalidEventError,
    InvalidStateChangeError,
    OutOfRangeError,
    VersionConflictError,
    translate,
)
from goalrt.log.eventlog import EventLog
from goalrt.state import snapshots
from goalrt.state.state import Change, State


def count_events(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM goalrt.event_data").fetchone()[0])


def test_set_get_list_and_versions(state: State) -> None:
    assert state.set("orders.o1.status", "created") == 1
    assert state.set("orders.o1.status", "paid") == 2
    state.set("orders.o1.amount", 200)
    state.set("orders.o2.status", None)  # a JSON null is a value, not a delete
    entry = state.get("orders.o1.status")
    assert entry is not None and entry.value == "paid" and entry.version == 2 and entry.pos is not None
    assert state.get("orders.o2.status") is not None and state.value("orders.o2.status", "x") is None
    assert state.get("orders.o3.status") is None
    assert [e.path for e in state.list("orders.o1")] == ["orders.o1.amount", "orders.o1.status"]
    assert [e.path for e in state.list("orders.*.status")] == ["orders.o1.status", "orders.o2.status"]
    assert [e.path for e in state.list("orders.*")] == ["orders.o1.amount", "orders.o1.status", "orders.o2.status"]
    assert [e.path for e in state.list()] == ["orders.o1.amount", "orders.o1.status", "orders.o2.status"]


def test_prefix_is_segment_aligned(state: State) -> None:
    state.change([Change.set(p, 1) for p in ("o1", "o1.a", "o10.a", "o1-x.a", "o1_a")])
    assert [e.path for e in state.list("o1")] == ["o1", "o1.a"]
    assert [e.path for e in state.list("o1.*")] == ["o1.a"]
    assert [e.path for e in state.list("*.a")] == ["o1-x.a", "o1.a", "o10.a"]


def test_delete_keeps_counting_versions(state: State) -> None:
    state.set("a.b", 1)
    assert state.delete("a.b") == 2
    assert state.get("a.b") is None and state.version("a.b") == 2
    assert state.delete("a.b") == 3  # deleting an absent path is still a change
    assert state.version("never.written") == 0
    with pytest.raises(VersionConflictError, match=r"path a\.b: expected version 0, found 3"):
        state.set("a.b", 5, expect_version=0)
    assert state.set("a.b", 5, expect_version=3) == 4


def test_increment_is_exact_decimal_and_counts_from_zero(state: State) -> None:
    assert state.increment("u.balance", 0.1) == 0.1
    assert state.increment("u.balance", 0.2) == 0.3  # numeric, not float: 0.1 + 0.2 is 0.3
    assert state.increment("u.balance", -10) == -9.7
    state.delete("u.balance")
    assert state.increment("u.balance", 5) == 5
    state.set("u.name", "x")
    with pytest.raises(InvalidStateChangeError, match=r"cannot inc path u\.name: it holds a string"):
        state.increment("u.name", 1)
    state.set("u.nothing", None)
    with pytest.raises(InvalidStateChangeError, match="it holds a null"):
        state.increment("u.nothing", 1)


def test_change_set_is_atomic_and_one_event(state: State, conn: psycopg.Connection) -> None:
    before = count_events(conn)
    result = state.change([Change.set("a.x", 1), Change.inc("a.y", 2), Change.delete("a.z")])
    assert result.versions == {"a.x": 1, "a.y": 1, "a.z": 1}
    assert count_events(conn) == before + 1
    event = conn.execute("SELECT type, stream, data FROM goalrt.event_data ORDER BY id DESC LIMIT 1").fetchone()
    assert event[0] == "state.changed" and event[1] == "state" and len(event[2]["changes"]) == 3
    # One stale expectation refuses the whole set: nothing of it is applied or logged.
    with pytest.raises(VersionConflictError, match=r"path a\.y"):
        state.change([Change.set("a.x", 2, expect_version=1), Change.inc("a.y", 1, expect_version=7)])
    assert state.value("a.x") == 1 and state.value("a.y") == 2
    assert count_events(conn) == before + 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([], "non-empty"),
        ([{"op": "put", "path": "a", "value": 1}], r'changes\[0\]\.op must be "set", "delete" or "inc"'),
        ([{"op": "set", "path": "a..b", "value": 1}], r"changes\[0\]\.path 'a\.\.b' is not a valid path"),
        ([{"op": "set", "path": "", "value": 1}], r"changes\[0\]\.path '' is not a valid path"),
        ([{"op": "set", "path": "a b", "value": 1}], "is not a valid path"),
        ([{"op": "set", "path": "a.*", "value": 1}], "is not a valid path"),
        ([{"op": "set", "path": 5, "value": 1}], r"changes\[0\]\.path must be a string"),
        ([{"op": "set", "path": "a"}], r"changes\[0\]\.value is required for set"),
        ([{"op": "inc", "path": "a", "by": "3"}], r"changes\[0\]\.by must be a number"),
        ([{"op": "inc", "path": "a"}], r"changes\[0\]\.by must be a number"),
        ([{"op": "delete", "path": "a", "value": 1}], r"changes\[0\]\.value is only for set"),
        ([{"op": "set", "path": "a", "value": 1, "expect_version": -1}], "expect_version must be a non-negative"),
        ([{"op": "set", "path": "a", "value": 1, "expect_version": 1.5}], "expect_version must be a non-negative"),
        ([{"op": "set", "path": "a", "value": 1, "colour": 1}], r"changes\[0\]\.colour is not a field"),
        ([{"op": "set", "path": "ok", "value": 1}, "x"], r"changes\[1\] must be an object"),
        ([{"op": "set", "path": "a", "value": 1}, {"op": "delete", "path": "a"}], "path a appears more than once"),
        ([{"op": "set", "path": "a", "value": float("nan")}], r"changes\[0\]: not JSON"),
    ],
)
def test_bad_change_sets_are_refused_whole(state: State, conn: psycopg.Connection, changes: list, message: str) -> None:
    before = count_events(conn)
    with pytest.raises(InvalidStateChangeError, match=message):
        state.change(changes)
    assert count_events(conn) == before
    assert conn.execute("SELECT count(*) FROM goalrt.state_data").fetchone()[0] == 0


def test_sql_rejects_non_array_and_bad_stream(conn: psycopg.Connection) -> None:
    for arg, message in (('{"op": "set"}', "non-empty JSON array"), ("null", "non-empty JSON array")):
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT * FROM goalrt.change_state(%s::jsonb)", (arg,))
        assert message in str(translate(info.value))
    with pytest.raises(psycopg.Error) as info:
        conn.execute('SELECT * FROM goalrt.change_state(\'[{"op":"delete","path":"a"}]\', \'\')')
    assert isinstance(translate(info.value), InvalidEventError)


def test_state_tables_refuse_direct_writes(conn: psycopg.Connection, state: State) -> None:
    state.set("a", 1)
    for statement in (
        "INSERT INTO goalrt.state_data (path, value, version, event_id) VALUES ('b', '1', 1, 1)",
        "UPDATE goalrt.state_data SET value = '2'",
        "DELETE FROM goalrt.state_data",
        "TRUNCATE goalrt.state_data",
        "DELETE FROM goalrt.snapshot_entries",
    ):
        with pytest.raises(psycopg.Error) as info:
            conn.execute(statement)
        assert isinstance(translate(info.value), DirectWriteError), statement
    assert state.value("a") == 1


def test_state_changed_is_reserved(log: EventLog) -> None:
    with pytest.raises(InvalidEventError, match="reserved"):
        log.append("s", "state.changed", {"changes": []})
    with pytest.raises(InvalidEventError, match=r"events\[1\]\.type state.changed is reserved"):
        log.append_many([{"stream": "s", "type": "ok"}, {"stream": "s", "type": "state.changed"}])
    assert log.read() == []


def test_python_and_sql_agree_on_valid_paths(conn: psycopg.Connection) -> None:
    from goalrt.state.model import MAX_PATH, PATH

    samples = [
        "a\n",
        "a.b\n",
        "a",
        "a.b",
        "A-b_c:d@e.f",
        "a.",
        ".a",
        "a..b",
        "a b",
        "a/b",
        "é",
        "a.*",
        "",
        "x" * 512,
        "x" * 513,
    ]
    for sample in samples:
        sql_ok = conn.execute("SELECT goalrt.valid_path(%s)", (sample,)).fetchone()[0]
        py_ok = bool(PATH.fullmatch(sample)) and len(sample) <= MAX_PATH
        assert sql_ok == py_ok, sample


def test_bad_patterns(state: State) -> None:
    for pattern in ("a..b", "a.**", "a.b*", "", "a b"):
        with pytest.raises(InvalidStateChangeError, match="invalid path pattern"):
            state.list(pattern)


def test_state_at_positions_and_times(state: State, log: EventLog) -> None:
    state.set("p.x", 1)
    p1 = log.tick()
    time.sleep(0.05)
    middle = datetime.now(UTC)
    time.sleep(0.05)
    state.set("p.x", 2)
    state.set("p.y", "y")
    p3 = log.tick()
    assert [(e.path, e.value, e.version) for e in state.list(at=p1)] == [("p.x", 1, 1)]
    assert state.get("p.x", at=p3).value == 2  # type: ignore[union-attr]
    assert state.get("p.x", at=0) is None
    assert state.value("p.x", at=middle) == 1
    assert state.value("p.x", at=middle.isoformat()) == 1
    assert state.value("p.x", at=(middle - timedelta(days=1)).isoformat()) is None
    assert state.position(middle) == p1
    with pytest.raises(OutOfRangeError, match="after the head"):
        state.list(at=p3 + 1)
    with pytest.raises(OutOfRangeError, match="invalid position or time"):
        state.list(at="yesterday")
    with pytest.raises(OutOfRangeError, match="positions are >= 0"):
        state.list(at=-1)


def test_history_lists_every_value(state: State) -> None:
    state.set("h.v", 10)
    state.increment("h.v", 5)
    state.set("other", 1)
    state.delete("h.v")
    state.increment("h.v", -1)
    rows = state.history("h.v")
    assert [(h.op, h.value, h.deleted, h.version) for h in rows] == [
        ("set", 10, False, 1),
        ("inc", 15, False, 2),
        ("delete", None, True, 3),
        ("inc", -1, False, 4),
    ]
    assert [h.pos for h in rows] == sorted(h.pos for h in rows)
    assert state.history("never.set") == []


def test_named_snapshots(state: State) -> None:
    state.set("s.a", 1)
    first = snapshots.create(state, "before", tags=["t1", "t2"], note="first")
    state.set("s.a", 2)
    state.set("s.b", 3)
    second = snapshots.create(state, "after")
    assert (first.pos, first.paths, first.tags, first.note) == (1, 1, ["t1", "t2"], "first")
    assert (second.pos, second.paths) == (3, 2)
    assert [s.name for s in snapshots.list_snapshots(state)] == ["before", "after"]
    assert [(e.path, e.value) for e in snapshots.contents(state, snapshots.get(state, "before"))] == [("s.a", 1)]
    with pytest.raises(InvalidStateChangeError, match="already exists"):
        snapshots.create(state, "before")
    with pytest.raises(InvalidStateChangeError, match="invalid snapshot name"):
        snapshots.create(state, "has space")
    with pytest.raises(OutOfRangeError, match="no snapshot named"):
        snapshots.get(state, "nope")


def test_snapshots_write_only_what_changed(state: State) -> None:
    snapshots.set_interval(state, 0)
    state.change([Change.set(f"big.k{i}", i) for i in range(500)])
    full = snapshots.create(state, "full")
    state.set("big.k7", "changed")
    small = snapshots.create(state, "small")
    assert (full.written, full.paths) == (500, 500)
    assert (small.written, small.paths) == (1, 500)
    assert state.value("big.k7", at=full.pos) == 7 and state.value("big.k7", at=small.pos) == "changed"


def test_automatic_snapshots_keep_reads_bounded(state: State, conn: psycopg.Connection) -> None:
    snapshots.set_interval(state, 10)
    for i in range(35):
        state.increment(f"auto.k{i % 4}", 1)
    head = state.tick()
    assert head == 35
    assert snapshots.take_due(state) == 3
    autos = [s.pos for s in snapshots.list_snapshots(state, include_auto=True) if s.auto]
    assert autos == [10, 20, 30]
    # Every position is at most 10 events from a snapshot, and reads agree with replay.
    for pos in range(head + 1):
        replayed = {(e.path, e.value, e.version, e.pos) for e in state.replayed(pos)}
        assert {(e.path, e.value, e.version, e.pos) for e in state.list(at=pos)} == replayed


def test_named_snapshot_takes_due_automatic_ones_first(state: State) -> None:
    snapshots.set_interval(state, 5)
    for i in range(12):
        state.set("n.x", i)
    named = snapshots.create(state, "late")
    assert named.pos == 12
    assert [s.pos for s in snapshots.list_snapshots(state, include_auto=True)] == [5, 10, 12]


def test_reader_role_can_time_travel(conn: psycopg.Connection, state: State, db_url: str) -> None:
    state.set("r.x", 1)
    state.tick()
    role = f"goalrt_test_reader_{abs(hash(db_url)) % 100000}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE goalrt_reader")
    try:
        params = psycopg.conninfo.conninfo_to_dict(db_url)
        params["user"] = role
        params.pop("password", None)
        with psycopg.connect(**params, autocommit=True) as reader:
            rows = reader.execute("SELECT path, value FROM goalrt.state_at(1)").fetchall()
            assert rows == [("r.x", 1)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute("SELECT * FROM goalrt.change_state(%s)", (Jsonb([{"op": "delete", "path": "r.x"}]),))
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_the_nul_character_is_refused_with_a_message_and_nothing_lands(state: State, log: EventLog) -> None:
    # PostgreSQL's jsonb cannot hold U+0000; a value, a goal param or event data holding it is refused
    # before it reaches the server, naming the change, and an escaped backslash before "u0000" is fine.
    with pytest.raises(InvalidStateChangeError, match=r"changes\[0\]: not JSON: .*U\+0000"):
        state.change([Change.set("a", "x\x00y")])
    with pytest.raises(InvalidEventError, match="U\\+0000"):
        log.append("s", "t", {"k\x00": 1})
    assert state.get("a") is None and log.read() == []
    state.change([Change.set("a", "\\u0000")])
    entry = state.get("a")
    assert entry is not None and entry.value == "\\u0000"
