"""Regression tests for problems found in review: each failed before its fix."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from goalrt.log.eventlog import EventLog
from goalrt.state import replay, snapshots
from goalrt.state.state import Change, State


@pytest.fixture
def reader_url(db_url: str, conn: psycopg.Connection) -> Iterator[str]:
    role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE goalrt_reader")
    params = conninfo_to_dict(db_url)
    params["user"] = role
    params.pop("password", None)
    yield psycopg.conninfo.make_conninfo("", **params)
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_temp_types_cannot_run_code_inside_goalrt_functions(reader_url: str, state: State, log: EventLog) -> None:
    state.set("a.b", 1)
    log.append("s", "t")  # something for the reader's tick to position
    with psycopg.connect(reader_url, autocommit=True) as reader:
        for name in ("text", "jsonb", "bytea", "int8", "numeric"):
            reader.execute(
                f"CREATE DOMAIN pg_temp.{name} AS pg_catalog.{name} CHECK "
                "(pg_catalog.set_config('goalrt_test.leak', CURRENT_USER::pg_catalog.text, false)"
                " IS NOT NULL)"
            )
        reader.execute("CALL goalrt.tick_commit()")
        reader.execute("SELECT goalrt.tick()")
        reader.execute("SELECT * FROM goalrt.read_events()")
        reader.execute("SELECT * FROM goalrt.verify_chain()")
        reader.execute("SELECT * FROM goalrt.state_at(1, 'a')")
        reader.execute("SELECT * FROM goalrt.state_history('a.b')")
        leak = reader.execute("SELECT current_setting('goalrt_test.leak', true)").fetchone()[0]
    assert not leak, f"a temp domain's check ran inside a goalrt function as {leak}"


def test_fork_registry_rows_cannot_name_another_schema(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO goalrt.forks (name, schema_name, base_pos, base_hash, revision) "
            "VALUES ('pub', 'public', 0, '\\x00', '0002')"
        )


def test_snapshots_from_a_repeatable_read_reader_do_not_duplicate(db_url: str, state: State) -> None:
    snapshots.set_interval(state, 3)
    for i in range(4):
        state.set("rr.x", i)
    state.tick()
    with psycopg.connect(db_url) as rr, State.connect(db_url) as other:
        rr.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        rr.execute("SELECT 1 FROM goalrt.clock").fetchone()
        other.list(at=3)  # takes the snapshot due at 3
        rows = rr.execute("SELECT path, value FROM goalrt.state_at(3)").fetchall()
        rr.execute("COMMIT")
    assert rows == [("rr.x", 2)]
    assert [s.pos for s in snapshots.list_snapshots(state, include_auto=True)] == [3]
    assert [(e.path, e.value) for e in state.list(at=3)] == [("rr.x", 2)]


def test_a_waiting_snapshot_does_not_stop_the_clock(db_url: str, state: State, log: EventLog) -> None:
    state.set("c.x", 1)
    state.tick()  # (a tick inside the holder's open transaction would hold the clock: documented)
    holder = psycopg.connect(db_url)
    holder.execute("SELECT goalrt.create_snapshot('held')")  # holds the snapshot lock until commit
    done: list[object] = []

    def second() -> None:
        with State.connect(db_url) as st:
            done.append(snapshots.create(st, "second"))

    t = threading.Thread(target=second)
    t.start()
    try:
        # While the second snapshot waits for the lock, events still get positions.
        log.append("s", "during")
        assert [e.type for e in log.read(after=1)] == ["during"]
    finally:
        holder.commit()
        holder.close()
        t.join(timeout=60)
    assert done and isinstance(done[0], snapshots.Snapshot) and done[0].pos == 2


def test_replay_verify_does_not_hold_writers_behind_a_busy_clock(db_url: str, state: State, log: EventLog) -> None:
    state.set("busy.x", 1)
    log.append("s", "e")
    clock_holder = psycopg.connect(db_url)
    assert clock_holder.execute("SELECT goalrt.tick()").fetchone()[0] == 2  # holds the clock lock
    state.set("busy.x", 2)  # committed, but cannot be positioned while the lock is held
    results: list[object] = []

    def verify() -> None:
        with State.connect(db_url) as st:
            results.append(replay.verify(st))

    verifier = threading.Thread(target=verify)
    verifier.start()
    try:
        with State.connect(db_url) as writer:
            writer.connection.execute("SET statement_timeout = '30s'")
            for i in range(5):  # writers keep getting through while verify retries
                writer.set("busy.y", i)
        assert verifier.is_alive(), "verify cannot have finished while the clock is held"
    finally:
        clock_holder.commit()
        clock_holder.close()
        verifier.join(timeout=60)
    assert results and results[0].identical  # type: ignore[attr-defined]


def test_time_travel_by_time_excludes_what_had_not_committed(db_url: str, state: State) -> None:
    tracked = state.connection.execute("SHOW track_commit_timestamp").fetchone()[0]
    if tracked != "on":
        pytest.skip("needs track_commit_timestamp (on in the embedded server); otherwise times are approximate")
    slow = State(psycopg.connect(db_url))
    slow.connection.execute("BEGIN")
    slow.set("tt.slow", "late")  # recorded now, committed later
    state.set("tt.fast", "early")
    state.tick()
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    slow.connection.commit()
    slow.connection.close()
    assert state.get("tt.slow") is not None
    assert [e.path for e in state.list(at=between)] == ["tt.fast"]


def test_a_fork_never_creates_extensions(db_url: str, state: State) -> None:
    from goalrt.state.forks import fork_schema_sql

    assert "CREATE EXTENSION" not in fork_schema_sql("goalrt_fork_x")
    state.change([Change.set("e.x", 1)])
