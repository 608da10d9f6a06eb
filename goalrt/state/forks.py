"""Forks: isolated branches of the state for simulation and tests.

A fork is a PostgreSQL schema (``goalrt_fork_<name>``) built from the
files of ``sql/schema`` (less the extensions), holding the main line's state at a position and an event
log of its own that continues from that position (its hash chain links to
the main line's hash there). Anything done with ``--fork NAME`` (or
``fork=`` in Python) reads and writes only that schema.

What a fork copies: the state (values, versions, tombstones) as it was at
the fork point. What it does not: the main line's events before that point
(read them on the main line), its snapshots, goals or settings other than
``snapshot_every``. A fork keeps the schema of the goalrt version that made
it; after ``goalrt migrate``, drop and re-create forks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from goalrt.db.resources import EXTENSIONS_FILE, in_schema, queries, schema_sql
from goalrt.db.schemas import checked_schema, schema_name, unknown_fork
from goalrt.errors import DatabaseError, InvalidStateChangeError, translated

if TYPE_CHECKING:
    pass

Q = queries("forks")


@dataclass(frozen=True, slots=True)
class Fork:
    name: str
    schema: str
    base_pos: int
    revision: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Fork:
        name, schema, base_pos, revision, created_at = row
        return cls(name, schema, int(base_pos), revision, created_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schema": self.schema,
            "base_pos": self.base_pos,
            "revision": self.revision,
            "created_at": self.created_at.isoformat(),
        }


def create(conn: psycopg.Connection[Any], name: str, *, at: int | None = None) -> Fork:
    """Create fork ``name`` holding the main line's state at ``at`` (default: the head).

    Atomic: on any error nothing of the fork remains. ``conn`` must be in
    autocommit mode (the fork is built in one transaction of its own).
    """
    schema = schema_name(name)
    if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise DatabaseError("creating a fork needs an autocommit connection outside any transaction")
    with translated(), psycopg.RawCursor(conn) as cur:
        if cur.execute(Q["fork_lookup"], (name,)).fetchone() is not None:
            raise InvalidStateChangeError(f"a fork named {name!r} already exists")
        # Tick outside the fork's transaction: a tick holds the clock's lock
        # until its transaction ends.
        head = int(cur.execute("SELECT goalrt.tick()").fetchone()[0])  # type: ignore[index]
        pos = head if at is None else at
        cur.execute(Q["fork_check_pos"], (pos,))
        with conn.transaction():
            base_hash = bytes(cur.execute(Q["fork_base_hash"], (pos,)).fetchone()[0])  # type: ignore[index]
            s = sql.Identifier(schema)
            # Explicitly, so an existing schema of that name is an error, not reused.
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(s))
            cur.execute(fork_schema_sql(schema))
            cur.execute(
                sql.SQL(
                    "UPDATE {}.clock SET head = $1, head_hash = $2, base_pos = $1, base_hash = $2,"
                    " snapshot = pg_current_snapshot()"
                ).format(s),
                (pos, base_hash),
            )
            cur.execute("SELECT set_config($1, 'on', true)", (f"{schema}.applying",))
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.state_data (path, value, version, inherited_pos)"
                    " SELECT path, value, version, pos FROM goalrt.state_fold($1, NULL, true)"
                ).format(s),
                (pos,),
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {0}.snapshot_entries (path, valid_from, valid_to, value, version, pos)"
                    " SELECT path, $1, NULL, value, version, inherited_pos FROM {0}.state_data;"
                ).format(s),
                (pos,),
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {0}.snapshots (pos, name, auto, note, paths, written)"
                    " SELECT $1, NULL, true, 'fork base', count(*) FILTER (WHERE value IS NOT NULL), count(*)"
                    " FROM {0}.state_data"
                ).format(s),
                (pos,),
            )
            cur.execute("SELECT set_config($1, 'off', true)", (f"{schema}.applying",))
            cur.execute(
                sql.SQL(
                    "UPDATE {}.settings f SET value = m.value FROM goalrt.settings m"
                    " WHERE m.key = f.key AND m.key = 'snapshot_every'"
                ).format(s)
            )
            row = cur.execute(Q["fork_register"], (name, schema, pos, base_hash)).fetchone()
    return Fork.from_row(row)


def fork_schema_sql(schema: str) -> str:
    """Return the schema for a fork: every object in ``schema``.

    Extensions are database-wide: the main line created them already, so
    their file is left out.
    """
    return in_schema(schema_sql(skip=(EXTENSIONS_FILE,)), schema)


def list_forks(conn: psycopg.Connection[Any]) -> list[Fork]:
    with translated(), psycopg.RawCursor(conn) as cur:
        return [Fork.from_row(r) for r in cur.execute(Q["forks_list"]).fetchall()]


def get(conn: psycopg.Connection[Any], name: str) -> Fork:
    schema_name(name)
    with translated(), psycopg.RawCursor(conn) as cur:
        row = cur.execute(Q["fork_get"], (name,)).fetchone()
    if row is None:
        raise unknown_fork(name)
    return Fork.from_row(row)


def drop(conn: psycopg.Connection[Any], name: str) -> None:
    """Drop fork ``name``: its schema and everything in it."""
    fork = get(conn, name)
    schema = checked_schema(name, fork.schema)
    with translated(), conn.transaction(), psycopg.RawCursor(conn) as cur:
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        cur.execute(Q["fork_unregister"], (name,))


__all__ = [
    "Fork",
    "create",
    "drop",
    "get",
    "list_forks",
]
