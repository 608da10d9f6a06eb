"""Roles by job, and leases bound to the database role that took them (issue 18, item 1).

Each test logs in as real LOGIN roles granted goalrt's group roles. What a
role may not call is refused by PostgreSQL (42501); what it may call but
must not do to another role's goals is refused by goalrt's functions: a
forged completion is answered as a lost lease and changes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

Login = Callable[[str], psycopg.Connection]

COMPLETE = "SELECT goal_id, outcome, error FROM goalrt.complete_steps_v1(%s, %s::jsonb, 30)"


@pytest.fixture
def login(db_url: str, conn: psycopg.Connection) -> Iterator[Login]:
    """``login(group)``: an autocommit connection of a new LOGIN role granted ``group``."""
    made: list[tuple[str, psycopg.Connection]] = []

    def make(group: str) -> psycopg.Connection:
        role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(role), sql.Identifier(group)))
        params = conninfo_to_dict(db_url)
        params["user"] = role
        params.pop("password", None)
        c = psycopg.connect(make_conninfo("", **params), autocommit=True)
        made.append((role, c))
        return c

    yield make
    for role, c in made:
        c.close()
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def one_step_goal(conn: psycopg.Connection) -> int:
    conn.execute("SELECT goalrt.register_goal_type('job', '{}')")
    row = conn.execute("SELECT id FROM goalrt.submit_goal('job', '{}')").fetchone()
    assert row is not None
    return int(row[0])


def claim_and_plan(worker: psycopg.Connection, worker_id: str) -> tuple[int, int]:
    """Claim the goal as ``worker_id`` and plan one step; return (goal id, epoch)."""
    rows = worker.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2(%s, 10, 30)", (worker_id,)).fetchall()
    assert len(rows) == 1
    goal_id, epoch = int(rows[0][0]), int(rows[0][1])
    plan = [{"goal_id": goal_id, "epoch": epoch, "steps": [{"action": "noop", "args": {}}]}]
    worker.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s::jsonb, 30)", (worker_id, json.dumps(plan)))
    return goal_id, epoch


def completion(goal_id: int, epoch: int, result: object) -> str:
    return json.dumps([{"goal_id": goal_id, "epoch": epoch, "seq": 1, "outcome": "complete", "result": result}])


def test_a_forged_completion_by_another_worker_role_changes_nothing(conn: psycopg.Connection, login: Login) -> None:
    goal_id = one_step_goal(conn)
    victim, thief = login("goalrt_worker"), login("goalrt_worker")
    _, epoch = claim_and_plan(victim, "w-victim")
    # The thief reads the lease from the table, as any reader can, and sends a completion under it.
    owner, lease_epoch = thief.execute(
        "SELECT lease_owner, lease_epoch FROM goalrt.goals WHERE id = %s", (goal_id,)
    ).fetchone()  # type: ignore[misc]
    assert (owner, lease_epoch) == ("w-victim", epoch)
    answer = thief.execute(COMPLETE, (owner, completion(goal_id, lease_epoch, {"forged": True}))).fetchall()
    assert [(a[0], a[1]) for a in answer] == [(goal_id, "refused")]
    assert "database role" in answer[0][2]
    # Nor can it fail, heartbeat, release or start a step of it.
    fail = json.dumps([{"goal_id": goal_id, "epoch": epoch, "error": "forged"}])
    assert thief.execute("SELECT * FROM goalrt.fail_goals_v1(%s, %s::jsonb)", (owner, fail)).fetchall() != [
        (goal_id, "failed")
    ]
    beat = "SELECT * FROM goalrt.heartbeat_v1(%s, ARRAY[%s]::bigint[], ARRAY[%s]::bigint[], 3600)"
    assert thief.execute(beat, (owner, goal_id, epoch)).fetchall() == []
    release = "SELECT * FROM goalrt.release_goals_v1(%s, ARRAY[%s]::bigint[], ARRAY[%s]::bigint[])"
    assert thief.execute(release, (owner, goal_id, epoch)).fetchall() == []
    start = "SELECT * FROM goalrt.step_start_v2(%s, ARRAY[%s]::bigint[], ARRAY[%s]::bigint[], ARRAY[1])"
    assert [r[-1] for r in thief.execute(start, (owner, goal_id, epoch)).fetchall()] == ["refused"]
    row = conn.execute(
        "SELECT status, result, lease_owner, lease_epoch, lease_expires_at < now() + interval '1 minute'"
        " FROM goalrt.goals WHERE id = %s",
        (goal_id,),
    ).fetchone()
    assert row == ("active", None, "w-victim", epoch, True)
    # The victim completes it.
    answer = victim.execute(COMPLETE, ("w-victim", completion(goal_id, epoch, {"real": True}))).fetchall()
    assert [(a[0], a[1]) for a in answer] == [(goal_id, "complete")]
    assert conn.execute("SELECT result FROM goalrt.goals WHERE id = %s", (goal_id,)).fetchone() == ({"real": True},)
    forged = conn.execute("SELECT count(*) FROM goalrt.events WHERE data::text LIKE '%forged%'").fetchone()
    assert forged == (0,)


def test_sessions_of_one_worker_role_share_its_leases(conn: psycopg.Connection, db_url: str, login: Login) -> None:
    goal_id = one_step_goal(conn)
    first = login("goalrt_worker")
    _, epoch = claim_and_plan(first, "w1")
    role = first.info.user
    params = conninfo_to_dict(db_url)
    params.update(user=role)
    params.pop("password", None)
    # Another process of the same login role (a fleet sharing one role) may finish what the first began.
    with psycopg.connect(make_conninfo("", **params), autocommit=True) as second:
        answer = second.execute(COMPLETE, ("w1", completion(goal_id, epoch, 1))).fetchall()
    assert [(a[0], a[1]) for a in answer] == [(goal_id, "complete")]


def test_an_application_role_cannot_call_any_worker_function(conn: psycopg.Connection, login: Login) -> None:
    goal_id = one_step_goal(conn)
    app = login("goalrt_app")
    for call, args in (
        ("SELECT * FROM goalrt.claim_goals_v2('w', 10, 30)", ()),
        (COMPLETE, ("w", completion(goal_id, 1, 1))),
        ("SELECT * FROM goalrt.plan_goals_v1('w', '[]', 30)", ()),
        ("SELECT * FROM goalrt.fail_goals_v1('w', '[]')", ()),
        ("SELECT * FROM goalrt.heartbeat_v1('w', '{}', '{}', 30)", ()),
        ("SELECT * FROM goalrt.release_goals_v1('w', '{}', '{}')", ()),
        ("SELECT goalrt.register_worker_v2('w', 'w', 'h', 1, 1, '{}', '{}', NULL, NULL)", ()),
        ("SELECT goalrt.deregister_worker_v1('w')", ()),
        ("SELECT * FROM goalrt.wake_due_v1(10)", ()),
        ("SELECT goalrt.register_goal_type('job', '{\"type\": \"object\"}')", ()),
        ("SELECT * FROM goalrt.set_limit('noop', '{\"concurrency\": 1}')", ()),
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute(call, args)
    # What an application is for works.
    row = app.execute("SELECT id FROM goalrt.submit_goal('job', '{}')").fetchone()
    assert row is not None
    app.execute("SELECT goalrt.cancel_goal(%s, 'changed my mind')", (row[0],))


def test_a_worker_role_cannot_submit_append_or_change_state(login: Login) -> None:
    worker = login("goalrt_worker")
    for call in (
        "SELECT * FROM goalrt.submit_goal('job', '{}')",
        "SELECT goalrt.append_event('s', 't')",
        'SELECT * FROM goalrt.change_state(\'[{"op": "set", "path": "a", "value": 1}]\')',
        "SELECT goalrt.cancel_goal(1)",
        "SELECT * FROM goalrt.load_gdl('ws', repeat('a', 64), '{}', '{}')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute(call)


def test_a_worker_id_belongs_to_the_role_that_registered_it(conn: psycopg.Connection, login: Login) -> None:
    register = "SELECT goalrt.register_worker_v2(%s, 'w', 'h', 1, 1, '{job}', '{noop}', NULL, NULL)"
    owner, other = login("goalrt_worker"), login("goalrt_worker")
    owner.execute(register, ("w-1",))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="registered by database role"):
        other.execute(register, ("w-1",))
    other.execute("SELECT goalrt.deregister_worker_v1('w-1')")
    other.execute("SELECT * FROM goalrt.heartbeat_v1('w-1', '{}', '{}', 30)")
    row = conn.execute("SELECT db_role, actions FROM goalrt.workers WHERE id = 'w-1'").fetchone()
    assert row == (owner.info.user, ["noop"])
    owner.execute("SELECT goalrt.deregister_worker_v1('w-1')")
    assert conn.execute("SELECT count(*) FROM goalrt.workers").fetchone() == (0,)


def test_gdl_installed_schemas_and_limits_change_only_by_an_admin(conn: psycopg.Connection, login: Login) -> None:
    schema = {"type": "object", "properties": {"amount": {"type": "integer"}}, "required": ["amount"]}
    runtime = {
        "goal_types": [{"name": "checkout", "params_schema": schema, "defaults": {}}],
        "limits": [{"action": "warehouse.pack", "options": {"concurrency": 2}}],
    }
    admin = login("goalrt_admin")
    admin.execute("SELECT * FROM goalrt.load_gdl('shop', %s, '{}', %s::jsonb)", ("a" * 64, json.dumps(runtime)))
    for group in ("goalrt_worker", "goalrt_writer"):
        other = login(group)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="installed by GDL version 1"):
            other.execute("SELECT goalrt.register_goal_type('checkout', '{\"type\": \"object\"}')")
        # Registering the same schema again is no change, and allowed.
        other.execute("SELECT goalrt.register_goal_type('checkout', %s::jsonb)", (json.dumps(schema),))
        for call in (
            "SELECT goalrt.drop_limit('warehouse.pack', NULL)",
            "SELECT * FROM goalrt.set_limit('warehouse.pack', '{\"concurrency\": 100}')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute(call)
    row = conn.execute("SELECT params_schema, gdl_version FROM goalrt.goal_types WHERE name = 'checkout'").fetchone()
    assert row == (schema, 1)
    assert conn.execute("SELECT action, max_concurrent FROM goalrt.limits").fetchall() == [("warehouse.pack", 2)]
    # The database still checks params against the GDL schema.
    with pytest.raises(psycopg.Error, match="amount"):
        conn.execute("SELECT goalrt.submit_goal('checkout', '{}')")
    # An admin may change it by hand.
    admin.execute("SELECT goalrt.register_goal_type('checkout', '{\"type\": \"object\"}')")
    admin.execute("SELECT goalrt.drop_limit('warehouse.pack', NULL)")
