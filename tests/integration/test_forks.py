"""Forks: isolated copies of the state; nothing crosses between a fork and the main line."""

from __future__ import annotations

import psycopg
import pytest

from goalrt.errors import InvalidStateChangeError, OutOfRangeError
from goalrt.log.eventlog import EventLog
from goalrt.state import forks, replay, snapshots
from goalrt.state.state import Change, State


def entries(st: State) -> dict[str, tuple[object, int]]:
    return {e.path: (e.value, e.version) for e in st.list()}


def test_changes_never_cross_between_fork_and_main(db_url: str) -> None:
    with State.connect(db_url) as main:
        main.change([Change.set("o.status", "created"), Change.inc("u.balance", 100), Change.set("gone", 1)])
        main.delete("gone")
        fork = forks.create(main.connection, "sim")
        assert fork.base_pos == 2 and fork.schema == "goalrt_fork_sim"
        with State.connect(db_url, fork="sim") as sim:
            assert entries(sim) == entries(main)
            assert sim.version("gone") == 2  # tombstones and versions come along
            sim.set("o.status", "shipped")
            sim.increment("u.balance", -30)
            sim.set("only.in.fork", True)
            main.set("o.status", "cancelled")
            main.set("only.in.main", True)
            assert sim.value("o.status") == "shipped" and sim.value("u.balance") == 70
            assert sim.get("only.in.main") is None
            assert main.value("o.status") == "cancelled" and main.value("u.balance") == 100
            assert main.get("only.in.fork") is None
            # The fork's log continues from the fork point, its chain from the main line's hash.
            with EventLog.connect(db_url, fork="sim") as flog, EventLog.connect(db_url) as mlog:
                assert [e.pos for e in flog.read()] == [3, 4, 5]
                assert [e.pos for e in mlog.read()] == [1, 2, 3, 4]
                main_hash_at_fork = mlog.read(after=1, limit=1)[0].hash
                assert flog.read(limit=1)[0].prev_hash == main_hash_at_fork
                assert flog.verify().ok and mlog.verify().ok
            # History in the fork starts from the fork point.
            assert [(h.op, h.value) for h in sim.history("o.status")] == [("base", "created"), ("set", "shipped")]
            assert sim.value("o.status", at=2) == "created"
            with pytest.raises(OutOfRangeError, match="before the start of this log"):
                sim.list(at=1)
            snapshots.create(sim, "fork-snap")
            assert snapshots.list_snapshots(main) == []
            assert replay.verify(sim).identical
        assert replay.verify(main).identical


def test_fork_at_a_past_position(db_url: str) -> None:
    with State.connect(db_url) as main:
        for i in range(5):
            main.set("x", i)
        forks.create(main.connection, "past", at=2)
        with State.connect(db_url, fork="past") as past:
            entry = past.get("x")
            assert entry is not None and (entry.value, entry.version, entry.pos) == (1, 2, 2)
            past.set("x", "new")
            assert past.version("x") == 3
            assert replay.verify(past).identical
        assert main.value("x") == 4


def test_fork_registry_and_bad_names(db_url: str) -> None:
    with State.connect(db_url) as main:
        main.set("a", 1)
        forks.create(main.connection, "one")
        forks.create(main.connection, "two")
        assert [f.name for f in forks.list_forks(main.connection)] == ["one", "two"]
        with pytest.raises(InvalidStateChangeError, match="already exists"):
            forks.create(main.connection, "one")
        for bad in ("Upper", "1x", "has-dash", "x" * 41, ""):
            with pytest.raises(InvalidStateChangeError, match="invalid fork name"):
                forks.create(main.connection, bad)
        with pytest.raises(OutOfRangeError, match="after the head"):
            forks.create(main.connection, "future", at=99)
        assert [f.name for f in forks.list_forks(main.connection)] == ["one", "two"]
        forks.drop(main.connection, "one")
        with pytest.raises(OutOfRangeError, match="no fork named 'one'"):
            forks.drop(main.connection, "one")
        with pytest.raises(OutOfRangeError, match="no fork named 'one'"):
            State.connect(db_url, fork="one")
        schemas = main.connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'goalrt_fork_%' ORDER BY 1"
        ).fetchall()
        assert schemas == [("goalrt_fork_two",)]


def test_failed_fork_leaves_nothing(db_url: str) -> None:
    with State.connect(db_url) as main, psycopg.connect(db_url, autocommit=True) as other:
        main.set("a", 1)
        other.execute("CREATE SCHEMA goalrt_fork_taken")  # someone else's schema in the way
        with pytest.raises(Exception, match="goalrt_fork_taken"):
            forks.create(main.connection, "taken")
        assert forks.list_forks(main.connection) == []
        assert (
            other.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'goalrt_fork_taken'::regnamespace"
            ).fetchone()[0]
            == 0
        )


def test_advance_timers_moves_a_forks_timers_and_is_refused_on_the_main_line(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT goalrt.register_goal_type('later', '{}')")
        fork = forks.create(conn, "clock")
        s = fork.schema
        conn.execute(f"SELECT {s}.register_goal_type('later', '{{}}')")
        (gid,) = conn.execute(  # type: ignore[misc]
            f"""SELECT id FROM {s}.submit_goal('later', '{{}}', '{{"delay": 3600, "deadline": 7200}}')"""
        ).fetchone()
        (main_gid,) = conn.execute(  # type: ignore[misc]
            """SELECT id FROM goalrt.submit_goal('later', '{}', '{"delay": 3600}')"""
        ).fetchone()
        assert conn.execute(f"SELECT {s}.advance_timers(1800)").fetchone() == (1,)
        left = conn.execute(
            f"SELECT extract(epoch FROM run_at - now()), extract(epoch FROM deadline_at - now()) FROM {s}.goals"
            " WHERE id = %s",
            (gid,),
        ).fetchone()
        assert left is not None and 1790 < left[0] < 1810 and 5390 < left[1] < 5410
        conn.execute(f"SELECT {s}.advance_timers(1e6)")  # a start already due stays due, never in the past
        row = conn.execute(f"SELECT run_at <= now() FROM {s}.goals WHERE id = %s", (gid,)).fetchone()
        assert row == (True,)
        for bad in ("-1", "'infinity'", "NULL"):
            with pytest.raises(psycopg.Error, match="seconds must be a finite number"):
                conn.execute(f"SELECT {s}.advance_timers({bad})")
        # The main line's timers are real.
        with pytest.raises(psycopg.Error, match="advance_timers works in a fork only"):
            conn.execute("SELECT goalrt.advance_timers(60)")
        row = conn.execute("SELECT run_at > now() + interval '3500 s' FROM goalrt.goals WHERE id = %s", (main_gid,))
        assert row.fetchone() == (True,)
