"""Tenants enforced by row-level security (issue 18, item 2).

A database migrated by an owner that row-level security applies to (not a
superuser), and real LOGIN roles mapped to tenants 'a', 'b' and '*'. Both
tenants use the same state paths, idempotency keys, goal names and streams;
each must see and change only its own rows, by hand and through goalrt's
functions, and a worker scoped to a tenant claims only that tenant's goals.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.db import migrate
from tests.conftest import create_database, drop_database, with_dbname
from tests.integration.catalog import describe

PATH = "orders.o1.status"
KEY = "order-o1"

# The tables a reader may select from that hold tenants' rows (wait_rechecks
# has a tenant too, and no reader grant).
TENANT_TABLES = ["goals", "goal_steps", "goal_waits", "state_data", "event_data", "event_order", "snapshot_entries"]


@dataclass
class Tenancy:
    url: str
    owner: psycopg.Connection
    login: Callable[[str, str], psycopg.Connection]


@pytest.fixture
def tenancy(server_url: str) -> Iterator[Tenancy]:
    """A database whose owner is an ordinary role; ``login(group, tenant)`` makes a mapped LOGIN role."""
    suffix = uuid.uuid4().hex[:8]
    owner_role = f"goalrt_t_owner_{suffix}"
    roles: list[str] = [owner_role]
    conns: list[psycopg.Connection] = []
    with psycopg.connect(server_url, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner_role)))
        name = create_database(server_url)
        su.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner_role)))

        def as_role(role: str) -> str:
            params = conninfo_to_dict(with_dbname(server_url, name))
            params["user"] = role
            params.pop("password", None)
            return make_conninfo("", **params)

        url = as_role(owner_role)
        migrate.upgrade(url)
        owner = psycopg.connect(url, autocommit=True)
        conns.append(owner)

        def login(group: str, tenant: str) -> psycopg.Connection:
            role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
            su.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(role), sql.Identifier(group)))
            roles.append(role)
            owner.execute("SELECT goalrt.set_tenant_role(%s, %s)", (role, tenant))
            c = psycopg.connect(as_role(role), autocommit=True)
            conns.append(c)
            return c

        try:
            yield Tenancy(url, owner, login)
        finally:
            for c in conns:
                c.close()
            drop_database(server_url, name)
            for role in reversed(roles):
                su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def tick(c: psycopg.Connection) -> None:
    c.execute("CALL goalrt.tick_commit()")


def seed(app: psycopg.Connection, value: str) -> int:
    """Submit 'job' with KEY, set PATH, append an order event: the same names in every tenant."""
    row = app.execute(
        "SELECT id FROM goalrt.submit_goal('job', '{}', %s::jsonb)", (json.dumps({"key": KEY}),)
    ).fetchone()
    assert row is not None
    app.execute(
        "SELECT * FROM goalrt.change_state(%s::jsonb)",
        (json.dumps([{"op": "set", "path": PATH, "value": value, "expect_version": 0}]),),
    )
    app.execute("SELECT goalrt.append_event('orders', 'order.placed', %s::jsonb)", (json.dumps({"who": value}),))
    return int(row[0])


def visible_tenants(c: psycopg.Connection) -> dict[str, set[str]]:
    return {t: {r[0] for r in c.execute(f"SELECT DISTINCT tenant FROM goalrt.{t}").fetchall()} for t in TENANT_TABLES}


def two_tenants(t: Tenancy) -> tuple[psycopg.Connection, psycopg.Connection, int, int]:
    t.owner.execute("SELECT goalrt.register_goal_type('job', '{}')")
    a, b = t.login("goalrt_app", "a"), t.login("goalrt_app", "b")
    ga, gb = seed(a, "a"), seed(b, "b")
    tick(a)
    return a, b, ga, gb


def assert_isolated(a: psycopg.Connection, b: psycopg.Connection, ga: int, gb: int) -> None:
    for c, mine, other, tenant in ((a, ga, gb, "a"), (b, gb, ga, "b")):
        seen = visible_tenants(c)
        assert all(v <= {tenant} for v in seen.values()), seen
        assert [r[0] for r in c.execute("SELECT id FROM goalrt.goals").fetchall()] == [mine]
        assert c.execute("SELECT path, value FROM goalrt.state").fetchall() == [(PATH, tenant)]
        events = c.execute("SELECT stream, data FROM goalrt.events ORDER BY pos").fetchall()
        assert {s for s, _ in events} == {f"goal:{mine}", "state", "orders"}
        assert [d for s, d in events if s == "orders"] == [{"who": tenant}]
        read = c.execute("SELECT stream FROM goalrt.read_events(0, 1000)").fetchall()
        assert {r[0] for r in read} == {f"goal:{mine}", "state", "orders"}
        filtered = c.execute("SELECT data FROM goalrt.read_events(0, 1000, 'orders')").fetchall()
        assert [r[0] for r in filtered] == [{"who": tenant}]
        head = c.execute("SELECT pos FROM goalrt.chain_head()").fetchone()[0]  # type: ignore[index]
        assert c.execute("SELECT path, value FROM goalrt.state_at(%s)", (head,)).fetchall() == [(PATH, tenant)]
        assert [r[0] for r in c.execute("SELECT value FROM goalrt.state_history(%s)", (PATH,)).fetchall()] == [tenant]
        assert c.execute("SELECT count(*) FROM goalrt.goal_tree(%s)", (other,)).fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM goalrt.waiting_goals").fetchone() == (0,)
        for call in (
            "SELECT goalrt.cancel_goal(%s)",
            "SELECT * FROM goalrt.retry_goal(%s)",
            "SELECT goalrt.resume_goal(%s, '{}')",
        ):
            with pytest.raises(psycopg.Error) as err:
                c.execute(call, (other,))
            assert err.value.sqlstate in ("GR009", "GR007"), (call, err.value.sqlstate, str(err.value))


def test_two_tenants_with_the_same_names_see_and_change_only_their_own(tenancy: Tenancy) -> None:
    a, b, ga, gb = two_tenants(tenancy)
    assert ga != gb  # the same idempotency key made one goal in each tenant
    assert_isolated(a, b, ga, gb)
    # The same path has its own version in each tenant: b's expect_version 1 holds whatever a does.
    a.execute("SELECT * FROM goalrt.change_state(%s::jsonb)", (json.dumps([{"op": "set", "path": PATH, "value": 1}]),))
    row = b.execute(
        "SELECT version FROM goalrt.change_state(%s::jsonb)",
        (json.dumps([{"op": "set", "path": PATH, "value": 2, "expect_version": 1}]),),
    ).fetchone()
    assert row == (2,)
    # By hand: no write reaches another tenant's rows, and a reader of a tenant reads only its rows.
    reader = tenancy.login("goalrt_reader", "a")
    assert reader.execute("SELECT id FROM goalrt.goals").fetchall() == [(ga,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        b.execute("UPDATE goalrt.goals SET priority = 9 WHERE id = %s", (ga,))
    # The chain is global: any tenant verifies all of it without reading the other's events.
    assert b.execute("SELECT ok FROM goalrt.verify_chain()").fetchone() == (True,)


def test_the_isolation_check_fails_without_a_policy(tenancy: Tenancy) -> None:
    a, b, ga, gb = two_tenants(tenancy)
    tenancy.owner.execute("DROP POLICY tenant_rows ON goalrt.goals")
    with pytest.raises(AssertionError):
        assert_isolated(a, b, ga, gb)


def test_a_worker_scoped_to_a_tenant_claims_only_its_goals(tenancy: Tenancy) -> None:
    tenancy.owner.execute("SELECT goalrt.register_goal_type('job', '{}')")
    a, b = tenancy.login("goalrt_app", "a"), tenancy.login("goalrt_app", "b")
    ids = {
        "a": {int(a.execute("SELECT id FROM goalrt.submit_goal('job')").fetchone()[0]) for _ in range(5)},  # type: ignore[index]
        "b": {int(b.execute("SELECT id FROM goalrt.submit_goal('job')").fetchone()[0]) for _ in range(5)},  # type: ignore[index]
    }
    for tenant in ("a", "b"):
        w = tenancy.login("goalrt_worker", tenant)
        claimed = {int(r[0]) for r in w.execute("SELECT goal_id FROM goalrt.claim_goals_v2('w', 100, 30)").fetchall()}
        assert claimed == ids[tenant]
        assert w.execute("SELECT count(*) FROM goalrt.claim_goals_v2('w2', 100, 30)").fetchone() == (0,)


def test_a_worker_for_every_tenant_writes_each_goals_rows_in_its_tenant(tenancy: Tenancy) -> None:
    tenancy.owner.execute("SELECT goalrt.register_goal_type('job', '{}')")
    apps = {t: tenancy.login("goalrt_app", t) for t in ("a", "b")}
    goals = {t: int(c.execute("SELECT id FROM goalrt.submit_goal('job')").fetchone()[0]) for t, c in apps.items()}  # type: ignore[index]
    star = tenancy.login("goalrt_worker", "*")
    claimed = star.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2('w', 100, 30)").fetchall()
    assert {int(r[0]) for r in claimed} == set(goals.values())
    plan = [{"goal_id": g, "epoch": e, "steps": [{"action": "noop", "args": {}}]} for g, e in claimed]
    star.execute("SELECT * FROM goalrt.plan_goals_v1('w', %s::jsonb, 30)", (json.dumps(plan),))
    done = [
        {
            "goal_id": g,
            "epoch": e,
            "seq": 1,
            "outcome": "complete",
            "result": {"g": g},
            "changes": [{"op": "set", "path": PATH, "value": g}],
            "events": [{"type": "job.done", "data": {"g": g}}],
        }
        for g, e in claimed
    ]
    out = star.execute(
        "SELECT goal_id, outcome FROM goalrt.complete_steps_v1('w', %s::jsonb, 30)", (json.dumps(done),)
    ).fetchall()
    assert {r[1] for r in out} == {"complete"}
    tick(star)
    for t, c in apps.items():
        g = goals[t]
        assert c.execute("SELECT status FROM goalrt.goals").fetchall() == [("complete",)]
        assert c.execute("SELECT path, value FROM goalrt.state").fetchall() == [(PATH, g)]
        assert [r[0] for r in c.execute("SELECT data FROM goalrt.events WHERE type = 'job.done'").fetchall()] == [
            {"g": g}
        ]
        assert c.execute("SELECT DISTINCT stream FROM goalrt.events WHERE stream LIKE 'goal:%'").fetchall() == [
            (f"goal:{g}",)
        ]
    # The star worker sees both tenants' rows.
    assert star.execute("SELECT count(*) FROM goalrt.state_data").fetchone() == (2,)


def test_an_event_of_one_tenant_never_ends_a_wait_of_another(tenancy: Tenancy) -> None:
    tenancy.owner.execute("SELECT goalrt.register_goal_type('job', '{}')")
    a, b = tenancy.login("goalrt_app", "a"), tenancy.login("goalrt_app", "b")
    wa = tenancy.login("goalrt_worker", "a")
    ga = int(a.execute("SELECT id FROM goalrt.submit_goal('job')").fetchone()[0])  # type: ignore[index]
    ((g, e),) = wa.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2('w', 10, 30)").fetchall()
    assert g == ga
    plan = [{"goal_id": g, "epoch": e, "steps": [{"kind": "event", "action": "wait", "args": {"event": "paid"}}]}]
    wa.execute("SELECT * FROM goalrt.plan_goals_v1('w', %s::jsonb, 30)", (json.dumps(plan),))
    status = a.execute("SELECT status FROM goalrt.goals WHERE id = %s", (ga,)).fetchone()
    if status != ("waiting",):
        pytest.skip(f"the event step's plan shape differs here: {status}")
    b.execute("SELECT goalrt.append_event('orders', 'paid', '{}')")
    assert a.execute("SELECT status FROM goalrt.goals WHERE id = %s", (ga,)).fetchone() == ("waiting",)
    a.execute("SELECT goalrt.append_event('orders', 'paid', '{}')")
    assert a.execute("SELECT status FROM goalrt.goals WHERE id = %s", (ga,)).fetchone() != ("waiting",)


def test_tenants_are_refused_while_the_owner_skips_row_level_security(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error) as err:
        conn.execute("SELECT goalrt.set_tenant_role(current_user, 'a')")
    assert err.value.sqlstate == "GR008"
    assert "superuser or BYPASSRLS" in str(err.value)


def tenancy_state(c: psycopg.Connection) -> dict[str, tuple[bool, bool, str | None, bool]]:
    """Each tenant table's (row-level security, forced, the tenant column's default, an all-tenant trigger).

    Not memory's: the indexer copies each entry's tenant from the log, no role reads the table, and
    memory_search keeps to the caller's tenant by hand (tests/integration/test_memory.py)."""
    rows = c.execute(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_expr(d.adbin, d.adrelid),
               EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = c.relname || '_tenant')
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant'
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'goalrt'::regnamespace AND c.relkind = 'r'
           AND c.relname NOT IN ('tenant_roles', 'memory')
        """
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def test_tenancy_is_on_only_while_a_role_is_mapped_to_another_tenant(tenancy: Tenancy) -> None:
    """One tenant evaluates no policy and defaults no tenant; a mapping switches both on, and off again."""
    owner = tenancy.owner
    schema = describe(tenancy.url)
    off = tenancy_state(owner)
    assert set(off) == {*TENANT_TABLES, "wait_rechecks"}
    assert not any(rls or force or trg for rls, force, _, trg in off.values()), off
    assert {d for _, _, d, _ in off.values()} == {"''::text"}
    owner.execute("SELECT goalrt.register_goal_type('job', '{}')")
    app = tenancy.login("goalrt_app", "")  # a mapping to the default tenant changes nothing
    seed(app, "default")
    assert tenancy_state(owner) == off

    # The first mapping to a tenant: on, committed with it; c's first statements see nothing of the default's.
    c = tenancy.login("goalrt_app", "c")
    on = tenancy_state(owner)
    assert all(rls for rls, _, _, _ in on.values())
    forced = {"goals", "goal_steps", "goal_waits", "wait_rechecks", "state_data"}
    assert {t for t, (_, force, _, _) in on.items() if force} == forced
    assert {t for t, (_, _, d, _) in on.items() if d == "goalrt.current_tenant()"} == forced | {"event_data"}
    assert not any(trg for *_, trg in on.values())
    for table in TENANT_TABLES:
        assert c.execute(sql.SQL("SELECT count(*) FROM goalrt.{}").format(sql.Identifier(table))).fetchone() == (0,)
    assert c.execute("SELECT count(*) FROM goalrt.read_events(0, 1000)").fetchone() == (0,)
    assert c.execute("SELECT count(*) FROM goalrt.state").fetchone() == (0,)
    # '*' adds the all-tenant triggers; its last mapping takes them away.
    star = tenancy.login("goalrt_worker", "*")
    assert {t for t, (*_, trg) in tenancy_state(owner).items() if trg} == forced - {"state_data"} | {"event_data"}
    assert owner.execute("SELECT goalrt.drop_tenant_role(%s)", (star.info.user,)).fetchone() == (True,)
    assert tenancy_state(owner) == on
    # c wrote nothing: its mapping gone, tenancy is off and the catalog is what the schema files build.
    assert owner.execute("SELECT goalrt.drop_tenant_role(%s)", (c.info.user,)).fetchone() == (True,)
    assert tenancy_state(owner) == off
    assert describe(tenancy.url) == schema
    assert app.execute("SELECT path, value FROM goalrt.state").fetchall() == [(PATH, "default")]

    # On again for b, whose rows are its own from its first statement on.
    b = tenancy.login("goalrt_app", "b")
    assert tenancy_state(owner) == on
    gb = seed(b, "b")
    tick(b)
    assert b.execute("SELECT path, value FROM goalrt.state").fetchall() == [(PATH, "b")]
    assert {r[0] for r in b.execute("SELECT stream FROM goalrt.read_events(0, 1000)").fetchall()} == {
        f"goal:{gb}", "state", "orders"
    }  # fmt: skip
    assert app.execute("SELECT count(*) FROM goalrt.goals WHERE id = %s", (gb,)).fetchone() == (0,)
    assert app.execute("SELECT path, value FROM goalrt.state").fetchall() == [(PATH, "default")]
    # app's session planned its functions while tenancy was off: what it writes now is still the default's.
    ga = int(app.execute("SELECT id FROM goalrt.submit_goal('job')").fetchone()[0])  # type: ignore[index]
    app.execute("SELECT goalrt.append_event('orders', 'order.placed', '{}')")
    assert b.execute("SELECT count(*) FROM goalrt.goals WHERE id = %s", (ga,)).fetchone() == (0,)
    assert owner.execute("SELECT tenant FROM goalrt.goals WHERE id = %s", (ga,)).fetchone() == ("",)
    assert [r[0] for r in b.execute("SELECT data FROM goalrt.event_data WHERE stream = 'orders'").fetchall()] == [
        {"who": "b"}
    ]
    assert owner.execute(
        "SELECT count(*) FROM goalrt.event_data WHERE stream = 'orders' AND tenant = ''"
    ).fetchone() == (2,)
    # b's mapping gone while its rows remain: tenancy stays on (off, every role would see them).
    assert owner.execute("SELECT goalrt.drop_tenant_role(%s)", (b.info.user,)).fetchone() == (True,)
    assert tenancy_state(owner) == on
    assert app.execute("SELECT count(*) FROM goalrt.goals WHERE id = %s", (gb,)).fetchone() == (0,)


def rows_read(c: psycopg.Connection, table: str) -> int:
    """Rows this transaction has read so far from a goalrt table, by scans and by index (its own counters)."""
    row = c.execute(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_all_tables"
        " WHERE relid = %s::regclass",
        (f"goalrt.{table}",),
    ).fetchone()
    return int(row[0]) if row else 0


def test_the_hot_path_reads_only_its_own_rows_while_tenancy_is_on(tenancy: Tenancy) -> None:
    """A policy lets only leakproof conditions into an index scan: joins on keys read from JSON must not scan.

    Hash and merge joins are switched off, so the planner must find the
    index lookup a join on a leakproof condition allows (on tables this
    small it might otherwise scan by choice, with or without tenants).
    """
    tenancy.owner.execute("SELECT goalrt.register_goal_type('job', '{}')")
    many = 300
    for tenant in ("b", "a"):
        app, worker = tenancy.login("goalrt_app", tenant), tenancy.login("goalrt_worker", tenant)
        n = many if tenant == "b" else 2
        app.execute("SELECT goalrt.submit_goals(%s::jsonb)", (json.dumps([{"name": "job"}] * n),))
        claimed = worker.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2('w', %s, 30)", (n,)).fetchall()
        plan = [{"goal_id": g, "epoch": e, "steps": [{"action": "noop", "args": {}}]} for g, e in claimed]
        worker.execute("SELECT * FROM goalrt.plan_goals_v1('w', %s::jsonb, 30)", (json.dumps(plan),))
        done = [{"goal_id": g, "epoch": e, "seq": 1, "outcome": "complete", "result": None} for g, e in claimed]
        if tenant == "b":
            worker.execute("SELECT * FROM goalrt.complete_steps_v1('w', %s::jsonb, 30)", (json.dumps(done),))
            changes = [{"op": "set", "path": f"p.n{i}", "value": i} for i in range(many)]
            app.execute("SELECT * FROM goalrt.change_state(%s::jsonb)", (json.dumps(changes),))
    # a's two goals complete, and a changes one path, reading a handful of rows, not b's hundreds.
    no_scan = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_seqscan = off"
    with worker.transaction():
        worker.execute(no_scan)
        out = worker.execute(
            "SELECT goal_id, outcome FROM goalrt.complete_steps_v1('w', %s::jsonb, 30)", (json.dumps(done),)
        ).fetchall()
        assert {r[1] for r in out} == {"complete"}
        assert rows_read(worker, "goal_steps") < 50
        assert rows_read(worker, "goals") < 50
    with app.transaction():
        app.execute(no_scan)
        app.execute('SELECT * FROM goalrt.change_state(\'[{"op": "set", "path": "p.n1", "value": 0}]\')')
        assert rows_read(app, "state_data") < 20
