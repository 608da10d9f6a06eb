"""No role below the owner can make the owner run its code (issue 15, item 7).

goalrt's SECURITY DEFINER functions run as the owner and look names up in
their search_path (pg_catalog, their schema, pg_temp). If a lower role could
put a function there whose signature fits better than pg_catalog's (an exact
goalrt.format(text, bigint) beats format(text, VARIADIC "any")), the owner
would run it. Each test logs in as a role granted one of goalrt's group roles.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.db import schemas
from goalrt.errors import OutOfRangeError
from goalrt.state import forks

GROUPS = ("goalrt_reader", "goalrt_app", "goalrt_worker", "goalrt_writer", "goalrt_admin")
FORK_SCHEMA = "goalrt_fork_sim"

# The reproduction from the issue: the error text of complete_steps_v1 is made with format(text, bigint).
IMPOSTOR = "CREATE FUNCTION {}.format(text, bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'ran as ' || current_user $$"
COMPLETE = (
    "SELECT error FROM {}.complete_steps_v1('x',"
    ' \'[{{"goal_id":987654321,"epoch":1,"seq":1,"outcome":"complete"}}]\', 30)'
)

RoleUrl = Callable[[str], tuple[str, str]]


@pytest.fixture
def login_as(db_url: str, conn: psycopg.Connection) -> Iterator[RoleUrl]:
    """Make login roles granted a group role: ``login_as(group)`` returns (role, url)."""
    made: list[str] = []

    def make(group: str) -> tuple[str, str]:
        role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(role), sql.Identifier(group)))
        made.append(role)
        params = conninfo_to_dict(db_url)
        params["user"] = role
        params.pop("password", None)
        return role, make_conninfo("", **params)

    yield make
    for role in made:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def fork(conn: psycopg.Connection) -> str:
    forks.create(conn, "sim")
    return FORK_SCHEMA


@pytest.mark.parametrize("group", GROUPS)
def test_no_group_role_may_create_objects_in_goalrt_or_a_fork(login_as: RoleUrl, fork: str, group: str) -> None:
    _, url = login_as(group)
    with psycopg.connect(url, autocommit=True) as c:
        for schema in ("goalrt", fork):
            s = sql.Identifier(schema)
            for statement in (
                sql.SQL(IMPOSTOR).format(s),
                sql.SQL("CREATE TABLE {}.mine (x int)").format(s),
                sql.SQL("CREATE OPERATOR {}.=== (function = int4eq, leftarg = int4, rightarg = int4)").format(s),
                sql.SQL("CREATE DOMAIN {}.int8 AS pg_catalog.int8").format(s),
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(statement)
            row = c.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,)).fetchone()
            assert row == (False,), f"{group} may create in {schema}"


@pytest.mark.parametrize("group", ["goalrt_writer", "goalrt_admin"])
def test_the_reproduction_runs_nothing_as_the_owner(
    login_as: RoleUrl, fork: str, conn: psycopg.Connection, group: str
) -> None:
    role, url = login_as(group)
    # The role's own schema and public, on its own search_path: the ways left to it.
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    dbname = conn.info.dbname
    conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(role)))
    with psycopg.connect(url, autocommit=True) as c:
        for schema in ("goalrt", fork):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql.SQL(IMPOSTOR).format(sql.Identifier(schema)))
        c.execute("CREATE SCHEMA mine")
        for schema in ("mine", "public", "pg_temp"):
            c.execute(sql.SQL(IMPOSTOR).format(sql.Identifier(schema)))
        c.execute("SET search_path = mine, public, pg_temp")
        for schema in ("goalrt", fork):
            row = c.execute(sql.SQL(COMPLETE).format(sql.Identifier(schema))).fetchone()
            assert row is not None and "ran as" not in (row[0] or ""), f"{schema}: {row}"


# Calls each group may make, none needing more than an empty database.
READER_CALLS = (
    "CALL goalrt.tick_commit()",
    "SELECT * FROM goalrt.read_events(0, 10)",
    "SELECT * FROM goalrt.read_events(0, 10, 's', 't*')",
    "SELECT * FROM goalrt.verify_chain()",
    "SELECT * FROM goalrt.chain_head()",
    "SELECT * FROM goalrt.verify_anchors((SELECT array_agg(pos) FROM goalrt.chain_head()),"
    " (SELECT array_agg(hash) FROM goalrt.chain_head()))",
    "SELECT goalrt.anchor_problem(0, decode(repeat('00', 32), 'hex'))",
    "SELECT * FROM goalrt.state_at(1, 'a.*')",
    "SELECT * FROM goalrt.state_history('a.b')",
    "SELECT goalrt.pos_at(now())",
    "SELECT * FROM goalrt.goal_tree(1)",
)
APP_CALLS = (
    "SELECT goalrt.append_event('s', 't', '{\"n\": 1}')",
    'SELECT * FROM goalrt.change_state(\'[{"op": "inc", "path": "a.n", "by": 1}]\')',
    "CALL goalrt.tick_commit()",
    "SELECT * FROM goalrt.submit_goal('t.job', '{}')",
)
WORKER_CALLS = (
    "SELECT goalrt.register_goal_type('t.job', '{}')",
    "SELECT goalrt.register_worker_v2('w', 'w', 'h', 1, 1, '{t.job}', '{}', NULL, NULL)",
    "SELECT * FROM goalrt.claim_goals_v2('w', 10, 30)",
    COMPLETE.format("goalrt"),
    "SELECT * FROM goalrt.wake_due_v1(10)",
    "SELECT goalrt.deregister_worker_v1('w')",
)
ADMIN_CALLS = (
    "SELECT goalrt.create_snapshot('snap')",
    "SELECT * FROM goalrt.set_limit('a', '{\"concurrency\": 1}')",
)
CALLS = {
    "goalrt_reader": READER_CALLS,
    "goalrt_app": (*READER_CALLS, *APP_CALLS),
    "goalrt_worker": (*READER_CALLS, *WORKER_CALLS),
    "goalrt_writer": (*READER_CALLS, *WORKER_CALLS, *APP_CALLS),
    "goalrt_admin": (*READER_CALLS, *WORKER_CALLS, *APP_CALLS, *ADMIN_CALLS),
}


@pytest.mark.parametrize("group", GROUPS)
def test_temporary_objects_run_nothing_as_the_owner(login_as: RoleUrl, conn: psycopg.Connection, group: str) -> None:
    conn.execute("SELECT goalrt.append_event('s', 't')")
    conn.execute("SELECT goalrt.register_goal_type('t.job', '{}')")
    relations = [
        r[0]
        for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'goalrt'::regnamespace AND relkind IN ('r', 'v', 'p')"
        ).fetchall()
    ]
    _, url = login_as(group)
    with psycopg.connect(url, autocommit=True) as c:
        leak = (
            "RETURNS pg_catalog.text LANGUAGE sql AS $$ SELECT pg_catalog.set_config("
            "'goalrt_test.leak', CURRENT_USER::pg_catalog.text, false) $$"
        )
        c.execute(f"CREATE FUNCTION pg_temp.leak() {leak}")
        c.execute(f"CREATE FUNCTION pg_temp.format(pg_catalog.text, pg_catalog.int8) {leak}")
        c.execute(f"CREATE FUNCTION pg_temp.concat_ws(pg_catalog.text, pg_catalog.int8) {leak}")
        # A temp view is found by an unqualified relation name goalrt's schema does not hold first.
        for name in relations:
            c.execute(sql.SQL("CREATE TEMP VIEW {} AS SELECT pg_temp.leak() AS leak").format(sql.Identifier(name)))
        for name in ("text", "jsonb", "bytea", "int8", "int4", "numeric", "bool", "timestamptz"):
            c.execute(f"CREATE DOMAIN pg_temp.{name} AS pg_catalog.{name} CHECK (pg_temp.leak() IS NOT NULL)")
        for call in CALLS[group]:
            c.execute(call)
        row = c.execute("SELECT current_setting('goalrt_test.leak', true)").fetchone()
    assert row is not None and not row[0], f"a temporary object ran inside a goalrt function as {row[0]}"


def test_security_definer_functions_look_names_up_only_where_the_owner_alone_creates(
    conn: psycopg.Connection, fork: str
) -> None:
    definers = conn.execute(
        """
        SELECT p.oid::regprocedure::text, p.proowner = n.nspowner, p.proconfig
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('goalrt', %s) AND p.prosecdef
        """,
        (fork,),
    ).fetchall()
    names = {d[0] for d in definers}
    assert {"goalrt.complete_steps_v1(text,jsonb,double precision)", f"{fork}.tick(integer)"} <= names
    searched: set[str] = set()
    for name, owned, config in definers:
        assert owned, f"{name} is not owned by its schema's owner"
        paths = [c.removeprefix("search_path=") for c in config or [] if c.startswith("search_path=")]
        assert len(paths) == 1, f"{name} sets no search_path"
        path = [s.strip() for s in paths[0].split(",")]
        assert path[-1] == "pg_temp", f"{name}: pg_temp is not last in {path}"
        assert "public" not in path and "$user" not in path, f"{name}: {path}"
        searched.update(path[:-1])
    assert searched == {"pg_catalog", "goalrt", fork}
    # Any function that sets a search_path puts pg_temp last.
    for name, path in conn.execute(
        """
        SELECT p.oid::regprocedure::text, c FROM pg_proc p, unnest(p.proconfig) c
         WHERE p.pronamespace IN ('goalrt'::regnamespace, %s::regnamespace) AND c LIKE 'search_path=%%'
        """,
        (fork,),
    ).fetchall():
        assert path.split(",")[-1].strip() == "pg_temp", f"{name}: {path}"
    # No role below a schema's owner may create in a schema on those paths.
    creators = conn.execute(
        """
        SELECT n.nspname, r.rolname FROM pg_namespace n, pg_roles r
         WHERE n.nspname = ANY(%s) AND NOT r.rolsuper AND NOT pg_has_role(r.oid, n.nspowner, 'MEMBER')
           AND has_schema_privilege(r.oid, n.oid, 'CREATE')
        """,
        (sorted(searched),),
    ).fetchall()
    assert creators == []


def test_nothing_is_granted_to_public_and_no_lower_role_may_add_triggers(conn: psycopg.Connection, fork: str) -> None:
    schemas_ = ["goalrt", fork]
    # A NULL proacl means the default: EXECUTE for PUBLIC.
    public = conn.execute(
        """
        SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY(%s)
           AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
        """,
        (schemas_,),
    ).fetchall()
    assert public == []
    triggers = conn.execute(
        """
        SELECT c.oid::regclass::text, r.rolname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
               pg_roles r
         WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v')
           AND NOT r.rolsuper AND NOT pg_has_role(r.oid, n.nspowner, 'MEMBER')
           AND has_table_privilege(r.oid, c.oid, 'TRIGGER')
        """,
        (schemas_,),
    ).fetchall()
    assert triggers == []
    defaults = conn.execute(
        "SELECT count(*) FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace"
        " WHERE n.nspname = ANY(%s)",
        (schemas_,),
    ).fetchone()
    assert defaults == (0,)


def test_foreign_objects_names_what_other_roles_put_in_goalrts_schemas(
    login_as: RoleUrl, conn: psycopg.Connection, fork: str
) -> None:
    assert conn.execute("SELECT * FROM goalrt.foreign_objects()").fetchall() == []
    role, url = login_as("goalrt_reader")
    r = sql.Identifier(role)
    # What a superuser or an older goalrt could have let happen.
    conn.execute(sql.SQL(IMPOSTOR).format(sql.Identifier("goalrt")))
    conn.execute(sql.SQL("ALTER FUNCTION goalrt.format(text, bigint) OWNER TO {}").format(r))
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(sql.Identifier(fork), r))
    conn.execute(sql.SQL("CREATE SCHEMA goalrt_fork_other AUTHORIZATION {}").format(r))
    conn.execute(
        "INSERT INTO goalrt.forks (name, schema_name, base_pos, base_hash, revision)"
        " VALUES ('other', 'goalrt_fork_other', 0, '\\x00', '0009')"
    )
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE goalrt_fork_other.t (x int)")  # in its own schema: the schema is reported
        found = c.execute("SELECT * FROM goalrt.foreign_objects()").fetchall()
    assert found == [
        ("goalrt", "function", "goalrt.format(text,bigint)", role),
        ("goalrt_fork_other", "schema", "goalrt_fork_other", role),
        (fork, "CREATE privilege", fork, role),
    ]
    conn.execute("DELETE FROM goalrt.forks WHERE name = 'other'")


def test_a_fork_another_role_owns_is_refused(login_as: RoleUrl, conn: psycopg.Connection, db_url: str) -> None:
    # A role that may create schemas and edit the registry made a "fork": its
    # code, called from the owner's session, would run as the owner.
    role, url = login_as("goalrt_admin")
    conn.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(conn.info.dbname), sql.Identifier(role))
    )
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA goalrt_fork_evil")
        c.execute(
            "INSERT INTO goalrt.forks (name, schema_name, base_pos, base_hash, revision)"
            " VALUES ('evil', 'goalrt_fork_evil', 0, '\\x00', '0009')"
        )
        assert schemas.schema_for(c, "evil") == "goalrt_fork_evil"  # its own fork
    with pytest.raises(OutOfRangeError, match=f"fork 'evil' belongs to role {role}, not to goalrt's owner"):
        schemas.schema_for(conn, "evil")

    async def lookup() -> None:
        c, _ = await schemas.open_connection_async(db_url, None)
        try:
            await schemas.schema_for_async(c, "evil")
        finally:
            await c.close()

    with pytest.raises(OutOfRangeError, match="belongs to role"):
        asyncio.run(lookup())
    conn.execute("DELETE FROM goalrt.forks WHERE name = 'evil'")


def test_a_trusted_extension_another_role_installs_in_goalrt_is_named(
    login_as: RoleUrl, conn: psycopg.Connection
) -> None:
    available = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'citext'").fetchone()
    if available != (1,):
        pytest.skip("the server has no citext")
    # PostgreSQL lets a role that may create in the database install a trusted
    # extension into any schema, whatever its rights there.
    role, url = login_as("goalrt_admin")
    conn.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(conn.info.dbname), sql.Identifier(role))
    )
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE EXTENSION citext SCHEMA goalrt")
    assert conn.execute("SELECT * FROM goalrt.foreign_objects()").fetchall() == [
        ("goalrt", "extension", "citext", role)
    ]
    conn.execute("DROP EXTENSION citext")
