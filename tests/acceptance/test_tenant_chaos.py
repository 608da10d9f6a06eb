"""The SIGKILL chaos run with two tenants: all-tenant workers killed at random, each tenant's goals exactly once.

The database is migrated by an ordinary owner (row-level security applies),
two application roles submit into tenants 'a' and 'b', and three worker
processes log in as one role mapped to '*'. What test_worker_processes'
chaos run checks must hold in each tenant, seen from that tenant's own
role, and neither tenant may see the other's goals, state or events.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.acceptance.test_worker_processes import Workers, check_exactly_once, submit, wait_until
from tests.integration.test_tenants import Tenancy, tenancy  # noqa: F401 - the fixture

STEPS = 3


def url_of(conn: psycopg.Connection) -> str:
    """The conninfo a connection logged in with (its role, no password: trust auth)."""
    params = conninfo_to_dict(conn.info.dsn)
    return make_conninfo("", **{k: v for k, v in params.items() if k in ("host", "port", "dbname", "user")})


@pytest.fixture
def side_table(tenancy: Tenancy) -> Iterator[None]:  # noqa: F811 - the fixture
    tenancy.owner.execute(
        "CREATE TABLE chaos_calls (id bigserial PRIMARY KEY, goal_id bigint, seq int, key text, attempt int, "
        "worker text, phase text, at timestamptz DEFAULT clock_timestamp())"
    )
    yield


def test_sigkill_chaos_with_two_tenants(tenancy: Tenancy, side_table: None, tmp_path: Path) -> None:  # noqa: F811
    rng = random.Random(20261208)
    worker = tenancy.login("goalrt_worker", "*")
    every = tenancy.login("goalrt_reader", "*")
    apps = {"a": tenancy.login("goalrt_app", "a"), "b": tenancy.login("goalrt_app", "b")}
    worker_role = worker.info.user
    tenancy.owner.execute(
        sql.SQL("GRANT INSERT, SELECT ON chaos_calls TO {0}; GRANT USAGE ON SEQUENCE chaos_calls_id_seq TO {0}").format(
            sql.Identifier(worker_role)
        )
    )
    for c in apps.values():
        tenancy.owner.execute(sql.SQL("GRANT SELECT ON chaos_calls TO {}").format(sql.Identifier(c.info.user)))
    workers = Workers(url_of(worker), tmp_path)
    names = ["w0", "w1", "w2"]
    try:
        for name in names:
            workers.start(name)

        def registered() -> bool:
            row = every.execute(
                "SELECT (SELECT count(*) FROM goalrt.workers), (SELECT count(*) FROM goalrt.goal_types"
                " WHERE name = 'chaos')"
            ).fetchone()
            return row == (3, 1)

        wait_until(registered, 60, workers, "workers registered")
        count = 60
        ids = {t: submit(url_of(c), count, STEPS, rng) for t, c in apps.items()}

        def unfinished() -> int:
            failed = every.execute("SELECT id, last_error FROM goalrt.goals WHERE status IN ('failed', 'cancelled')")
            assert not failed.fetchall()
            row = every.execute("SELECT count(*) FROM goalrt.goals WHERE status <> 'complete'").fetchone()
            assert row is not None
            return int(row[0])

        kills = 0
        deadline = time.monotonic() + 60 + 2 * count * 0.2
        while unfinished():
            assert time.monotonic() < deadline, f"goals still unfinished after {kills} kills\n{workers.tail()}"
            time.sleep(rng.uniform(0.4, 1.2))
            if not unfinished():
                break
            victim = rng.choice(names)
            workers.kill(victim)
            kills += 1
            workers.start(victim)
    finally:
        workers.stop_all()
    tenancy.owner.execute("SELECT goalrt.tick()")  # the owner positions every tenant's events
    reports = {t: check_exactly_once(c, ids[t], STEPS) for t, c in apps.items()}
    for t, c in apps.items():
        other = ids["b" if t == "a" else "a"]
        mine = {r[0] for r in c.execute("SELECT id FROM goalrt.goals").fetchall()}
        assert mine == set(ids[t])
        assert not mine & set(other)
        tenants = {r[0] for r in c.execute("SELECT DISTINCT tenant FROM goalrt.event_data").fetchall()}
        assert tenants == {t}
        (total,) = c.execute("SELECT value FROM goalrt.state WHERE path = 'chaos.total'").fetchone()  # type: ignore[misc]
        assert total == count * STEPS
    assert kills >= 2, "the run finished before the chaos started; raise the load"
    print(f"two-tenant chaos: {count} goals x {STEPS} steps per tenant, {kills} kills, {reports}")
