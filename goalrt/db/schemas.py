"""Which schema a connection acts on: the main line's (``goalrt``) or a fork's.

Every client opens its connection here. A fork is a schema of its own
(``goalrt_fork_<name>``, see ``goalrt.state.forks``); its name is checked
before it goes into any SQL text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import psycopg

from goalrt.db.config import database_url
from goalrt.db.connect import connect, connect_async
from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import InvalidStateChangeError, OutOfRangeError, translated

if TYPE_CHECKING:
    import asyncpg

FORK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SCHEMA_PREFIX = "goalrt_fork_"
Q = queries("forks")


def schema_name(name: str) -> str:
    """Return the schema of fork ``name``, refusing a name that could not be one."""
    if not isinstance(name, str) or not FORK_NAME.match(name):
        raise InvalidStateChangeError(
            f"invalid fork name {name!r}: lowercase letters, digits and _, starting with a letter (at most 40)"
        )
    return SCHEMA_PREFIX + name


def unknown_fork(name: str) -> OutOfRangeError:
    """Return the error for a fork name nothing is registered under."""
    return OutOfRangeError(f"no fork named {name!r} (`goalrt fork list` shows the forks)")


def checked_schema(fork: str, stored: object, foreign_owner: str | None = None) -> str:
    """Return fork ``fork``'s schema, given the schema name its registry row holds (None: no row).

    ``foreign_owner`` is the schema's owner when that is neither goalrt's
    owner nor the current user (``fork_lookup``): such a fork is refused.
    """
    # The schema name goes into SQL text: use the one derived from the
    # validated fork name, never the stored one, and refuse a registry row
    # that disagrees with it.
    schema = schema_name(fork)
    if stored is None:
        raise unknown_fork(fork)
    if stored != schema:
        raise OutOfRangeError(f"fork {fork!r} is registered with schema {stored!r}, not {schema!r}; refusing it")
    if foreign_owner is not None:
        raise OutOfRangeError(
            f"fork {fork!r} belongs to role {foreign_owner}, not to goalrt's owner: its functions would run"
            " that role's code as you; refusing it"
        )
    return schema


def schema_for(conn: psycopg.Connection[Any], fork: str | None) -> str:
    """Return the schema to act on: the main one, or fork ``fork`` (which must exist)."""
    if fork is None:
        return MAIN_SCHEMA
    schema_name(fork)
    with translated(), psycopg.RawCursor(conn) as cur:
        row = cur.execute(Q["fork_lookup"], (fork,)).fetchone()
    return checked_schema(fork, *(row or (None,)))


async def schema_for_async(conn: asyncpg.Connection, fork: str | None) -> str:
    """Async ``schema_for``."""
    if fork is None:
        return MAIN_SCHEMA
    schema_name(fork)
    with translated():
        row = await conn.fetchrow(Q["fork_lookup"], fork)
    return checked_schema(fork, *(row or (None,)))


def open_connection(url: str | None, fork: str | None) -> tuple[psycopg.Connection[Any], str]:
    """Connect to ``url`` (default: GOALRT_DATABASE_URL or the embedded server) and resolve ``fork``.

    Returns the connection and the schema to act on; the connection is
    closed again if the fork does not exist.
    """
    conn = connect(database_url(url))
    try:
        return conn, schema_for(conn, fork)
    except BaseException:
        conn.close()
        raise


async def open_connection_async(url: str | None, fork: str | None) -> tuple[asyncpg.Connection, str]:
    """Async ``open_connection``."""
    conn = await connect_async(database_url(url))
    try:
        return conn, await schema_for_async(conn, fork)
    except BaseException:
        await conn.close()
        raise
