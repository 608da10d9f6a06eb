"""Every event records the database role that appended it (issue 18, item 3).

``goalrt.event_data.db_role`` is the session's login role (``session_user``),
set by the column default: no goalrt function names the column, and no role
below the owner may write the table. The hash chain covers it. Each test logs
in as a real role granted ``goalrt_writer``; roles are cluster-wide, so their
names are unique and they are dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.db import migrate
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.log.event import Event
from goalrt.log.eventlog import EventLog

RoleUrl = Callable[..., tuple[str, str]]


def url_as(url: str, role: str) -> str:
    params = conninfo_to_dict(url)
    params["user"] = role
    params.pop("password", None)
    return make_conninfo("", **params)


@pytest.fixture
def login_as(db_url: str, conn: psycopg.Connection) -> Iterator[RoleUrl]:
    """``login_as(*groups, login=True)`` makes a role in those groups; returns (role, url to log in as it)."""
    made: list[str] = []

    def make(*groups: str, login: bool = True) -> tuple[str, str]:
        role = f"goalrt_who_{uuid.uuid4().hex[:10]}"
        conn.execute(
            sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), sql.SQL("LOGIN" if login else "NOLOGIN"))
        )
        for group in groups:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
        made.append(role)
        return role, url_as(db_url, role)

    yield make
    for role in reversed(made):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def roles_after(c: psycopg.Connection, after: int) -> list[tuple[str, Any]]:
    """(type, db_role) of every event after position ``after``, ticking first."""
    c.execute("CALL goalrt.tick_commit(60000, NULL::bigint)")
    return [
        (r[0], r[1]) for r in c.execute("SELECT type, db_role FROM goalrt.events WHERE pos > %s ORDER BY pos", (after,))
    ]


def head(c: psycopg.Connection) -> int:
    row = c.execute("SELECT head FROM goalrt.clock").fetchone()
    assert row is not None
    return int(row[0])


def test_every_event_a_writer_causes_records_its_login_role(login_as: RoleUrl) -> None:
    role, url = login_as("goalrt_writer")
    with psycopg.connect(url, autocommit=True) as c:
        start = head(c)
        c.execute("SELECT goalrt.append_event('order:o1', 'order.created', '{}', '{\"actor\": \"alice\"}')")
        c.execute("""SELECT goalrt.append_events('[{"stream": "s", "type": "a"}, {"stream": "s", "type": "b"}]')""")
        c.execute("""SELECT * FROM goalrt.change_state('[{"op": "set", "path": "who.x", "value": 1}]')""")
        c.execute("SELECT goalrt.register_goal_type('who.job', '{}')")
        (gid,) = c.execute("SELECT id FROM goalrt.submit_goal('who.job', '{}')").fetchone() or (None,)
        (claimed,) = c.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v1('w1', 10, 30)").fetchall()
        assert claimed == (gid, 1)
        steps = [{"goal_id": gid, "epoch": 1, "steps": [{"action": "do"}]}]
        c.execute("SELECT * FROM goalrt.plan_goals_v1('w1', %s, 30)", (json.dumps(steps),))
        done = [{"goal_id": gid, "epoch": 1, "seq": 1, "outcome": "complete", "result": 1,
                 "events": [{"type": "job.did", "data": {}}],
                 "changes": [{"op": "set", "path": "who.y", "value": 2}]}]  # fmt: skip
        (outcome,) = c.execute(
            "SELECT outcome FROM goalrt.complete_steps_v1('w1', %s, 30)", (json.dumps(done),)
        ).fetchone() or (None,)
        assert outcome == "complete"
        seen = roles_after(c, start)
    types = [t for t, _ in seen]
    # The worker's events are there too: the plan, the step's own event, the completion.
    assert {"order.created", "a", "b", "state.changed", "goal.submitted", "goal.planned", "job.did",
            "goal.completed"} <= set(types)  # fmt: skip
    assert {r for _, r in seen} == {role}, seen


def test_the_python_clients_show_the_role_and_the_caller_keeps_its_actor(login_as: RoleUrl) -> None:
    role, url = login_as("goalrt_writer")
    with EventLog.connect(url) as log:
        start = log.head()
        log.append("order:o1", "order.created", {"n": 1}, actor="someone else")
        (event,) = log.read(after=start)
    assert event.db_role == role
    assert event.metadata == {"actor": "someone else"}
    assert event.to_json()["db_role"] == role

    async def read_async() -> list[Event]:
        async with await AsyncEventLog.connect(url) as alog:
            return await alog.read(after=start)

    assert [e.db_role for e in asyncio.run(read_async())] == [role]


def test_set_role_does_not_change_it(login_as: RoleUrl, conn: psycopg.Connection) -> None:
    other, _ = login_as("goalrt_writer", login=False)
    role, url = login_as("goalrt_writer", other)
    with psycopg.connect(url, autocommit=True) as c:
        start = head(c)
        c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(other)))
        assert c.execute("SELECT current_user").fetchone() == (other,)
        c.execute("SELECT goalrt.append_event('s', 'under.set.role')")
        assert roles_after(c, start) == [("under.set.role", role)]
    # A superuser taking on the writer's role is still recorded as itself.
    me = conn.execute("SELECT session_user").fetchone()
    assert me is not None
    start = head(conn)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    try:
        conn.execute("SELECT goalrt.append_event('s', 'superuser.as.writer')")
        assert roles_after(conn, start) == [("superuser.as.writer", me[0])]
    finally:
        conn.execute("RESET ROLE")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO goalrt.event_data (stream, type, db_role) VALUES ('s', 't', 'postgres')",
        "INSERT INTO goalrt.event_data (stream, type) VALUES ('s', 't')",
        "UPDATE goalrt.event_data SET db_role = 'postgres'",
        "INSERT INTO goalrt.event_order (pos, event_id, prev_hash, hash, log_time) VALUES (0, 0, '', '', now())",
    ],
)
def test_a_writer_cannot_write_the_log_directly(login_as: RoleUrl, statement: str) -> None:
    _, url = login_as("goalrt_writer")
    with psycopg.connect(url, autocommit=True) as c, pytest.raises(psycopg.Error) as info:
        c.execute(statement)
    assert info.value.sqlstate == "42501"


def test_nothing_a_writer_passes_sets_the_role(login_as: RoleUrl) -> None:
    role, url = login_as("goalrt_writer")
    with psycopg.connect(url, autocommit=True) as c:
        start = head(c)
        # append_events takes stream, type, data and metadata; another key is not a column.
        c.execute(
            """SELECT goalrt.append_events('[{"stream": "s", "type": "t", "db_role": "postgres",
                                              "metadata": {"db_role": "postgres"}}]')"""
        )
        assert roles_after(c, start) == [("t", role)]
        (meta,) = c.execute("SELECT metadata FROM goalrt.events WHERE pos > %s", (start,)).fetchone() or (None,)
    assert meta == {"db_role": "postgres"}


def test_a_log_from_before_0016_verifies_after_it(empty_db_url: str) -> None:
    url = empty_db_url
    # An empty database is built at head only; 0016's down brings it back to exactly 0015 (test_migrations).
    migrate.upgrade(url)
    migrate.downgrade(url, "0015")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("""SELECT goalrt.append_events('[{"stream": "s", "type": "old"}, {"stream": "s", "type": "old"}]')""")
        c.execute("SELECT goalrt.tick()")
        old = c.execute("SELECT pos, hash FROM goalrt.chain_head()").fetchone()
    assert old is not None and old[0] == 2
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as c:
        me = c.execute("SELECT session_user").fetchone()
        # The old events were appended before anyone recorded who did: NULL, not the migrating role.
        assert c.execute("SELECT db_role FROM goalrt.events ORDER BY pos").fetchall() == [(None,), (None,)]
        c.execute("SELECT goalrt.append_event('s', 'new')")
        c.execute("SELECT goalrt.tick()")
        assert c.execute("SELECT db_role FROM goalrt.events WHERE pos = 3").fetchone() == me
        assert c.execute(
            "SELECT ok FROM goalrt.verify_anchors(ARRAY[%s::bigint], ARRAY[%s::bytea])", old
        ).fetchone() == (True,)
        # Claiming an old event for a role afterwards breaks the chain there.
        with c.transaction():
            c.execute("SET LOCAL session_replication_role = replica")
            c.execute("UPDATE goalrt.event_data SET db_role = 'mallory' WHERE id = 2")
        assert c.execute("SELECT ok, first_bad_pos FROM goalrt.verify_chain()").fetchone() == (False, 2)
