"""The schema files and the migrations agree, old databases upgrade with their data, and down goes back up.

"The old way" is tests/fixtures/schema_0005.sql.gz: the schema as revision
0005 built it before the development revisions were folded into the
baseline (see tests/fixtures/README.md).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from goalrt.db import migrate
from goalrt.db.migrations_support import BASELINE
from goalrt.db.resources import migrations_dir
from goalrt.errors import MigrationError, NotMigratedError
from goalrt.log.eventlog import EventLog
from goalrt.state import forks, replay
from goalrt.state.state import State

from ..conftest import create_database, drop_database, with_dbname
from .catalog import describe

LEGACY_SCHEMA = Path(__file__).resolve().parent.parent / "fixtures" / "schema_0005.sql.gz"


def build_legacy(url: str, revision: str | None = BASELINE) -> None:
    """Build a database the old way: the frozen 0005 schema, stamped by alembic as its migrations left it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(gzip.decompress(LEGACY_SCHEMA.read_bytes()).decode("utf-8"))
    if revision is None:
        return
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            context = MigrationContext.configure(conn, opts={"version_table_schema": "goalrt"})
            if revision == BASELINE:
                context.stamp(ScriptDirectory.from_config(migrate.alembic_config(url)), revision)
            else:
                # A revision folded into the baseline, which alembic no longer knows:
                # its version table as alembic creates it.
                conn.exec_driver_sql(
                    "CREATE TABLE goalrt.alembic_version (version_num varchar(32) NOT NULL,"
                    " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
                )
                conn.exec_driver_sql("INSERT INTO goalrt.alembic_version VALUES (%s)", (revision,))
    finally:
        engine.dispose()


@pytest.fixture
def legacy_db_url(empty_db_url: str) -> str:
    """A database at 0005 built the old way, without data."""
    build_legacy(empty_db_url)
    return empty_db_url


def assert_same_catalog(left: str, right: str) -> None:
    a, b = describe(left), describe(right)
    for kind in a:
        assert a[kind] == b[kind], f"{kind} differ between {left} and {right}"
    assert a["functions"], "the catalog description found no functions"


def test_migrations_equal_schema_files(legacy_db_url: str, db_url: str) -> None:
    # db_url was built by `migrate.upgrade` on an empty database: from sql/schema.
    if migrate.head_revision() == BASELINE:
        # No delta yet: the old way's catalog itself must be the schema files'.
        assert_same_catalog(legacy_db_url, db_url)
    assert migrate.status(legacy_db_url).current == BASELINE
    # An old database through the deltas (none yet) reaches what the schema files build.
    assert migrate.upgrade(legacy_db_url).up_to_date
    assert_same_catalog(legacy_db_url, db_url)


def test_each_delta_downgrade_restores_the_catalog_below_it(legacy_db_url: str) -> None:
    """Every delta's down migration brings the catalog back to exactly the revision below it.

    A down file copies the functions the revision below had: when two deltas
    change the same function, the later one's down must hold the earlier
    one's text, not the baseline's.
    """
    script = ScriptDirectory.from_config(migrate.alembic_config(legacy_db_url))
    deltas = [r.revision for r in reversed(list(script.walk_revisions())) if r.down_revision is not None]
    below = BASELINE
    for revision in deltas:
        before = describe(legacy_db_url)
        migrate.upgrade(legacy_db_url, revision)
        migrate.downgrade(legacy_db_url, below)
        after = describe(legacy_db_url)
        for kind in before:
            assert before[kind] == after[kind], f"{kind} differ after {revision} went up and down again"
        migrate.upgrade(legacy_db_url, revision)
        below = revision
    assert below == migrate.head_revision()


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalrt", "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_0005_database_upgrades_with_its_data(legacy_db_url: str) -> None:
    url = legacy_db_url
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(3):
            conn.execute("SELECT goalrt.append_event('order:o1', 'order.created', %s::jsonb)", (f'{{"i": {i}}}',))
        conn.execute("""SELECT goalrt.append_events('[{"stream": "s", "type": "t"}, {"stream": "s", "type": "u"}]')""")
        conn.execute("""SELECT * FROM goalrt.change_state('[{"op": "set", "path": "orders.o1", "value": "new"}]')""")
        conn.execute("""SELECT * FROM goalrt.change_state('[{"op": "inc", "path": "stock.apples", "by": 5}]')""")
        conn.execute("SELECT goalrt.tick()")
        conn.execute("SELECT goalrt.create_snapshot('before-upgrade')")
        conn.execute("""SELECT * FROM goalrt.change_state('[{"op": "delete", "path": "orders.o1"}]')""")
        conn.execute("SELECT goalrt.register_goal_type('order.ship', '{}')")
        submitted = conn.execute("""SELECT id FROM goalrt.submit_goal('order.ship', '{"order": "o1"}')""").fetchone()
        conn.execute("SELECT goalrt.tick()")
        head = conn.execute("SELECT head FROM goalrt.clock").fetchone()
    assert submitted is not None and head is not None

    result = migrate.upgrade(url)
    assert result.up_to_date and result.before == BASELINE

    with EventLog.connect(url) as log:
        assert log.verify().ok
        assert [e.pos for e in log.read()] == list(range(1, head[0] + 1))
    with State.connect(url) as state:
        assert replay.verify(state).identical
    for args in (("verify",), ("replay", "--verify")):
        cli = run_cli(url, *args)
        assert cli.returncode == 0, (args, cli.stdout, cli.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM goalrt.state WHERE path = 'stock.apples'").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM goalrt.snapshots WHERE name = 'before-upgrade'").fetchone() == (1,)
        again = conn.execute("""SELECT id FROM goalrt.submit_goal('order.ship', '{"order": "o2"}')""").fetchone()
        claimed = conn.execute("SELECT goal_id FROM goalrt.claim_goals_v1('w1', 10, 30)").fetchall()
    assert again is not None
    assert sorted(r[0] for r in claimed) == sorted([submitted[0], again[0]])


def test_0009_leaves_no_role_but_the_owner_create_in_goalrts_schemas(legacy_db_url: str) -> None:
    url = legacy_db_url
    migrate.upgrade(url, "0008")
    role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        forks.create(conn, "old")
        # As 0008 built a fork's schema (fork_schema_sql is today's schema files).
        conn.execute("GRANT CREATE ON SCHEMA goalrt_fork_old TO goalrt_admin")
        conn.execute(sql.SQL("CREATE ROLE {} IN ROLE goalrt_admin").format(sql.Identifier(role)))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            # What 0008 let an admin do.
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            conn.execute("CREATE FUNCTION goalrt.format(text, bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$")
        cli = run_cli(url, "migrate")
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.strip() == f"migrated database from 0008 to {migrate.head_revision()}"
        [warning] = cli.stderr.splitlines()
        assert warning.startswith("warning: goalrt's schemas hold what roles other than the owner put there")
        assert warning.endswith(f"function goalrt.format(text,bigint) ({role})")
        with psycopg.connect(url, autocommit=True) as conn:
            creators = conn.execute(
                "SELECT n.nspname, a.grantee::regrole::text FROM pg_namespace n, aclexplode(n.nspacl) a"
                " WHERE n.nspname LIKE 'goalrt%' AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner"
            ).fetchall()
            assert creators == []
            found = conn.execute("SELECT kind, object, role FROM goalrt.foreign_objects()").fetchall()
            assert found == [("function", "goalrt.format(text,bigint)", role)]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_database_older_than_the_baseline_is_refused_in_one_line(empty_db_url: str) -> None:
    build_legacy(empty_db_url, "0003")
    with pytest.raises(MigrationError, match="predates the baseline revision 0005") as caught:
        migrate.upgrade(empty_db_url)
    assert "\n" not in str(caught.value)
    assert "goalrt migrate" in str(caught.value)


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
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'goalrt'::regnamespace UNION ALL "
            "SELECT t.typname FROM pg_type t WHERE t.typnamespace = 'goalrt'::regnamespace "
            "AND t.typname NOT LIKE '%alembic_version%'"
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


def test_downgrade_removes_forks(db_url: str) -> None:
    assert run_cli(db_url, "fork", "create", "sim").returncode == 0
    migrate.downgrade(db_url, "base")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regnamespace('goalrt_fork_sim')").fetchone() == (None,)
    migrate.upgrade(db_url)


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
    head = migrate.head_revision()
    assert outputs.count(f"migrated database from empty to {head}") == 1, outputs
    assert outputs.count(f"database already at head (revision {head})") == 3, outputs
    assert migrate.status(empty_db_url).up_to_date


def test_using_an_unmigrated_database_says_so(empty_db_url: str) -> None:
    with EventLog.connect(empty_db_url) as log, pytest.raises(NotMigratedError, match="goalrt migrate"):
        log.append("s", "t")


def test_vector_extension_is_used_only_where_available(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        available = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        installed = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert available == installed


# -- a delta after the baseline --------------------------------------------------------
# No delta exists yet, so one is written for the test into a copy of the
# alembic folder: it shows how the two ways of reaching head divide the work.

PROBE_DELTA = '''"""Probe: a delta migration written by the test.

Revision ID: 9001
Revises: {down}
"""

from alembic import op

revision = "9001"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE goalrt.probe_delta (ran boolean)")


def downgrade() -> None:
    op.execute("DROP TABLE goalrt.probe_delta")
'''


@pytest.fixture
def probe_config(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9001_probe.py").write_text(PROBE_DELTA.format(down=migrate.head_revision()))
    yield scripts, "9001"


@pytest.fixture
def second_empty_db_url(server_url: str) -> Iterator[str]:
    name = create_database(server_url)
    yield with_dbname(server_url, name)
    drop_database(server_url, name)


def probe_upgrade(scripts: Path, url: str, revision: str) -> None:
    config = migrate.alembic_config(url)
    config.set_main_option("script_location", str(scripts))
    command.upgrade(config, revision)


def has_probe(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('goalrt.probe_delta') IS NOT NULL").fetchone()
    return bool(row and row[0])


def test_an_empty_database_is_built_from_the_schema_files_and_stamped_head(
    probe_config: tuple[Path, str], legacy_db_url: str, second_empty_db_url: str
) -> None:
    scripts, head = probe_config
    # Empty: the schema files are the current schema, so the delta is not replayed.
    probe_upgrade(scripts, second_empty_db_url, "head")
    assert migrate.current_revision(second_empty_db_url) == head
    assert not has_probe(second_empty_db_url)
    # At the baseline: the delta runs.
    probe_upgrade(scripts, legacy_db_url, "head")
    assert migrate.current_revision(legacy_db_url) == head
    assert has_probe(legacy_db_url)


def test_an_empty_database_is_built_at_head_only(probe_config: tuple[Path, str], empty_db_url: str) -> None:
    scripts, head = probe_config
    with pytest.raises(MigrationError, match=f"only be built at the head revision {head}, not {BASELINE}") as caught:
        probe_upgrade(scripts, empty_db_url, BASELINE)
    assert "\n" not in str(caught.value)
    assert migrate.current_revision(empty_db_url) is None
