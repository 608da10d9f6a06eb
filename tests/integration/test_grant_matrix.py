"""Every goalrt function and table against every group role, with real login roles (issue 18).

The matrix below is the specification, written by hand from the jobs in
docs/security.md, not read from the grants. For each role a LOGIN role
granted it calls every function in schema goalrt (with NULL arguments from
a sub-select, inside a transaction that is rolled back: a constant NULL
would let the planner fold a STRICT function's call away before any
privilege check) and touches every table: a call or
statement the role may not make must fail with SQLSTATE 42501, and one it
may make must not. A function added to the schema and granted to anyone
without being added here fails the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

READER = {
    "anchor_problem", "auto_snapshot", "base_pos", "chain_hash", "chain_head", "check_pos", "current_tenant",
    "event_digest",
    "fold_changes", "fold_value", "foreign_objects", "glob_to_like", "goal_tree", "json_depth_error",
    "json_problem", "json_too_deep", "memory_mode", "memory_search", "memory_status", "params_problem", "partition_of",
    "path_pattern_prefix",
    "path_pattern_regex", "policy_equal", "policy_holds", "policy_key_live", "policy_keys", "policy_term",
    "pos_at", "read_events", "schema_types", "state_at", "state_at_time", "state_fold", "state_history",
    "step_problem", "tick", "tick_commit", "unserved_action", "valid_path", "verify_anchors", "verify_chain",
}  # fmt: skip
APP = {
    "append_event", "append_events", "cancel_goal", "change_state", "drop_schedule", "resume_goal", "retry_goal",
    "set_schedule", "state_freeze", "submit_goal", "submit_goals",
}  # fmt: skip
WORKER = {
    "claim_goals_v1", "claim_goals_v2", "claim_goals_v3", "complete_steps_v1", "deregister_worker_v1",
    "fail_goals_v1", "fire_schedules_v1", "heartbeat_v1", "plan_goals_v1", "register_goal_type",
    "register_worker_v1", "register_worker_v2", "release_goals_v1", "step_progress_v1", "step_start_v1",
    "step_start_v2", "step_started_v1", "wake_due_v1",
}  # fmt: skip
ADMIN = {
    "advance_timers", "create_snapshot", "drop_limit", "load_gdl", "memory_index", "memory_pending", "memory_reset",
    "set_limit",
}  # fmt: skip
FUNCTIONS = {
    "goalrt_reader": READER,
    "goalrt_app": READER | APP,
    "goalrt_worker": READER | WORKER,
    "goalrt_writer": READER | APP | WORKER,
    "goalrt_admin": READER | APP | WORKER | ADMIN,
}
# Tables and views every role reads; what admins may also write.
READABLE = {
    "alembic_version", "clock", "event_data", "event_order", "events", "forks", "gdl_events", "gdl_policies",
    "gdl_triggers",
    "gdl_versions",
    "goal_steps", "goal_types", "goal_waits", "goals", "limit_buckets", "limit_holders", "limits", "schedules",
    "settings", "snapshot_entries", "snapshots", "state", "state_data", "tenant_roles", "waiting_goals", "workers",
}  # fmt: skip
ADMIN_WRITES = {"settings", "forks"}
ROLES = tuple(FUNCTIONS)


@pytest.fixture(params=ROLES)
def session(request: pytest.FixtureRequest, db_url: str, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A connection of a new LOGIN role granted the group role the test runs for."""
    group = request.param
    role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(role), sql.Identifier(group)))
    params = conninfo_to_dict(db_url)
    params["user"] = role
    params.pop("password", None)
    c = psycopg.connect(make_conninfo("", **params))
    c.info  # noqa: B018 (connected)
    setattr(c, "goalrt_group", group)  # noqa: B010
    try:
        yield c
    finally:
        c.close()
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def sqlstate(c: psycopg.Connection, statement: sql.Composable) -> str | None:
    """Run ``statement`` in a transaction that is rolled back; return the SQLSTATE it failed with (None: ran)."""
    try:
        with c.transaction(force_rollback=True):
            c.execute("SET LOCAL statement_timeout = '3s'")
            c.execute("SET LOCAL lock_timeout = '1s'")
            c.execute(statement)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def routines(conn: psycopg.Connection) -> list[tuple[str, str, str, list[str]]]:
    """(name, kind, return type, argument types) of every function and procedure in schema goalrt."""
    return [
        (r[0], r[1], r[2], list(r[3] or []))
        for r in conn.execute(
            """
            SELECT p.proname, p.prokind, p.prorettype::regtype::text,
                   ARRAY(SELECT t::regtype::text FROM unnest(p.proargtypes) t)
              FROM pg_proc p WHERE p.pronamespace = 'goalrt'::regnamespace ORDER BY 1, 4
            """
        ).fetchall()
    ]


def test_every_function_is_callable_exactly_by_the_roles_whose_job_needs_it(
    conn: psycopg.Connection, session: psycopg.Connection
) -> None:
    group = session.goalrt_group  # type: ignore[attr-defined]
    allowed = FUNCTIONS[group]
    wrong: list[str] = []
    for name, kind, returns, args in routines(conn):
        fn = sql.SQL("goalrt.{}({})").format(
            sql.Identifier(name), sql.SQL(", ").join(sql.SQL("(SELECT NULL::{})").format(sql.SQL(a)) for a in args)
        )
        if returns == "trigger":
            # Trigger functions cannot be called; nobody may execute them.
            row = session.execute("SELECT has_function_privilege(%s, 'EXECUTE')", (f"goalrt.{name}()",)).fetchone()
            if row != (False,):
                wrong.append(f"{name}: a trigger function {group} may execute")
            continue
        state = sqlstate(session, sql.SQL("CALL {}" if kind == "p" else "SELECT {}").format(fn))
        refused = state == "42501"
        if refused == (name in allowed):
            wrong.append(f"{name}({', '.join(args)}): {'refused' if refused else 'allowed'} (SQLSTATE {state})")
    assert wrong == [], f"{group}: " + "; ".join(wrong)


def test_every_table_is_read_by_every_role_and_written_by_none_but_admins_settings(
    conn: psycopg.Connection, session: psycopg.Connection
) -> None:
    group = session.goalrt_group  # type: ignore[attr-defined]
    relations = conn.execute(
        "SELECT c.relname, c.relkind,"
        " (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        "   AND a.attidentity = '' AND a.attgenerated = ''"
        "   ORDER BY a.attnum LIMIT 1)"
        " FROM pg_class c WHERE c.relnamespace = 'goalrt'::regnamespace AND c.relkind IN ('r', 'p', 'v') ORDER BY 1"
    ).fetchall()
    # Read by no role but through functions: memory (memory_search keeps to the caller's tenant).
    unread = {
        "alembic_version", "late_events", "limit_rechecks", "memory", "memory_cursor", "memory_meanings",
        "wait_rechecks",
    }  # fmt: skip
    assert {r[0] for r in relations} == READABLE | unread
    wrong: list[str] = []
    for name, kind, column in relations:
        t, col = sql.Identifier("goalrt", name), sql.Identifier(column)
        statements = {
            "SELECT": sql.SQL("SELECT 1 FROM {} LIMIT 0").format(t),
            "INSERT": sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t),
            "UPDATE": sql.SQL("UPDATE {} SET {} = {} WHERE false").format(t, col, col),
            "DELETE": sql.SQL("DELETE FROM {} WHERE false").format(t),
        }
        if kind != "v":
            statements["TRUNCATE"] = sql.SQL("TRUNCATE {}").format(t)
        for what, statement in statements.items():
            may = name in READABLE if what == "SELECT" else group == "goalrt_admin" and name in ADMIN_WRITES
            if what == "TRUNCATE":
                may = False
            if kind == "v" and what != "SELECT":
                # goalrt's views cannot be written by anyone (55000 comes before the privilege check).
                row = session.execute("SELECT has_table_privilege(%s, %s)", (f"goalrt.{name}", what)).fetchone()
                if row != (False,):
                    wrong.append(f"{what} on view {name} granted")
                continue
            state = sqlstate(session, statement)
            if (state == "42501") == may:
                wrong.append(f"{what} {name}: SQLSTATE {state}")
    assert wrong == [], f"{group}: " + "; ".join(wrong)
