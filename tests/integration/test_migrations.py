"""The migrations build exactly sql/schema.sql, and go down and up again."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from goalrt.db import migrate
from goalrt.db.resources import read_sql
from goalrt.errors import NotMigratedError
from goalrt.log.eventlog import EventLog

from .catalog import describe


def apply_schema_sql(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(read_sql("schema.sql"))


def assert_same_catalog(left: str, right: str) -> None:
    a, b = describe(left), describe(right)
    for kind in a:
        assert a[kind] == b[kind], f"{kind} differ between {left} and {right}"
    assert a["functions"], "the catalog description found no functions"


def test_migrations_equal_canonical_schema(db_url: str, empty_db_url: str) -> None:
    apply_schema_sql(empty_db_url)
    assert_same_catalog(db_url, empty_db_url)


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    assert migrate.status(empty_db_url).current is None
    migrate.upgrade(empty_db_url)
    first = describe(empty_db_url)
    with EventLog.connect(empty_db_url) as log:
        log.append("s", "t")
        assert log.read()
    down = migrate.downgrade(empty_db_url, "base")
    assert down.current is None
    with psycopg.connect(empty_db_url) as conn:
        left = conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'goalrt'::regnamespace "
            "AND c.relname NOT LIKE 'alembic_version%' UNION ALL "
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'goalrt'::regnamespace"
        ).fetchall()
    assert left == []
    up = migrate.upgrade(empty_db_url)
    assert up.up_to_date
    assert describe(empty_db_url) == first
    with EventLog.connect(empty_db_url) as log:
        assert log.read() == []  # the downgrade removed the data; the clock restarts
        log.append("s", "t")
        assert [e.pos for e in log.read()] == [1]
        assert log.verify().ok


def test_upgrade_is_idempotent(db_url: str) -> None:
    before = describe(db_url)
    assert migrate.upgrade(db_url).up_to_date
    assert migrate.upgrade(db_url).up_to_date
    assert describe(db_url) == before


def test_status_reports_behind_on_an_empty_database(empty_db_url: str) -> None:
    st = migrate.status(empty_db_url)
    assert not st.up_to_date and st.current is None and st.head == migrate.head_revision()


def test_concurrent_migrate_processes_serialise(empty_db_url: str) -> None:
    # alembic keeps module-level state, so the real case is several processes.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "goalrt", "--database-url", empty_db_url, "migrate"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append((p.returncode, out, err))
    assert all(code == 0 for code, _, _ in results), results
    outputs = sorted(out.strip() for _, out, _ in results)
    assert sum("migrated database from empty" in o for o in outputs) == 1, outputs
    assert migrate.status(empty_db_url).up_to_date


def test_using_an_unmigrated_database_says_so(empty_db_url: str) -> None:
    with EventLog.connect(empty_db_url) as log, pytest.raises(NotMigratedError, match="goalrt migrate"):
        log.append("s", "t")


def test_vector_extension_is_used_only_where_available(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        available = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        installed = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert available == installed


def test_upgrade_from_0001_keeps_the_log_and_downgrade_restores_it(empty_db_url: str, db_url: str) -> None:
    # A database at 0001 with events in it, as a user of the previous release has.
    migrate.upgrade(empty_db_url, "0001")
    at_0001 = describe(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for i in range(5):
            conn.execute("SELECT goalrt.append_event('s', 't', %s::jsonb)", (f'{{"i": {i}}}',))
        conn.execute("SELECT goalrt.tick()")
    assert migrate.upgrade(empty_db_url).up_to_date
    with EventLog.connect(empty_db_url) as log:
        assert [e.pos for e in log.read()] == [1, 2, 3, 4, 5]
        assert log.verify().ok
        log.append("s", "after")
        assert log.read(after=5)[0].pos == 6
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        times = [r[0] for r in conn.execute("SELECT log_time FROM goalrt.event_order ORDER BY pos")]
        assert times == sorted(times) and None not in times
        conn.execute("""SELECT * FROM goalrt.change_state('[{"op": "set", "path": "a", "value": 1}]')""")
    # Down to 0001: the catalog is 0001's again, and the log still verifies.
    migrate.downgrade(empty_db_url, "0001")
    assert describe(empty_db_url) == at_0001
    with EventLog.connect(empty_db_url) as log:
        assert log.verify().ok
        assert len(log.read()) == 7
    migrate.upgrade(empty_db_url)
    assert describe(empty_db_url) == describe(db_url)
