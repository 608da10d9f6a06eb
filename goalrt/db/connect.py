"""Open connections to PostgreSQL with errors a person can act on.

Both drivers connect through here: psycopg for the CLI, the sync API and
alembic; asyncpg for the async API. A bad URL or an unreachable server
becomes a one-line ``ConfigError`` / ``DatabaseUnavailableError`` that names
the host and port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads

from goalrt.db.jsontext import decode, dumps, encode
from goalrt.errors import ConfigError, DatabaseUnavailableError

if TYPE_CHECKING:
    import asyncpg

CONNECT_TIMEOUT_S = 10


def describe_target(url: str) -> str:
    """Return "host:port/dbname" (or the socket folder) for messages; never the password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid database URL: {_first_line(exc)}") from exc
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = params.get("dbname")
    where = f"socket {host} port {port}" if host.startswith("/") else f"{host}:{port}"
    return f"{where}/{dbname}" if dbname else where


def _first_line(exc: BaseException) -> str:
    """Return the gist of a driver message ("Connection refused", not the libpq preamble)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0].rsplit(" failed: ", 1)[-1]


def connect(url: str, *, autocommit: bool = True, raw: bool = True) -> psycopg.Connection[Any]:
    """Open a psycopg connection (autocommit, ``$1`` placeholders by default)."""
    target = describe_target(url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            cursor_factory=psycopg.RawCursor if raw else psycopg.Cursor,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL at {target}: {_first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid database URL: {_first_line(exc)}") from exc
    setup_connection(conn)
    return conn


def setup_connection(conn: psycopg.Connection[Any]) -> None:
    """Make a psycopg connection decode json/jsonb with exact numbers, never raising on a bad row."""
    set_json_loads(decode, conn)


async def connect_async(url: str) -> asyncpg.Connection:
    """Open an asyncpg connection that encodes and decodes json/jsonb as Python values."""
    import asyncpg

    target = describe_target(url)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL at {target}: {_first_line(exc)}") from exc
    except (ValueError, asyncpg.InterfaceError) as exc:
        raise ConfigError(f"invalid database URL: {_first_line(exc)}") from exc
    await setup_async_connection(conn)
    return conn


async def setup_async_connection(conn: asyncpg.Connection) -> None:
    """Register the json codecs goalrt relies on (usable as a pool ``init``): exact numbers, no raising on a bad row."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=encode, decoder=decode, schema="pg_catalog")


def asyncpg_dsn(url: str) -> str:
    """Return ``url`` as a postgresql:// URL, the only form asyncpg accepts.

    libpq's ``key=value`` strings and SQLAlchemy's ``postgresql+driver://``
    spelling are rewritten; every parameter other than user, password and
    dbname travels as a query argument (host may be a socket folder).
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        return f"postgresql://{rest}"
    params = conninfo_to_dict(url)
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    userinfo = f"{user}:{quote(str(password), safe='')}@" if password is not None else (f"{user}@" if user else "")
    dbname = quote(str(params.pop("dbname", "")), safe="")
    query = urlencode({k: str(v) for k, v in params.items()})
    return f"postgresql://{userinfo}/{dbname}" + (f"?{query}" if query else "")


__all__ = ["asyncpg_dsn", "connect", "connect_async", "describe_target", "dumps", "setup_async_connection"]
