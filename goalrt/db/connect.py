"""Open connections to PostgreSQL with errors a person can act on.

Both drivers connect through here: psycopg for the CLI, the sync API and
alembic; asyncpg for the async API. A bad URL or an unreachable server
becomes a one-line ``ConfigError`` / ``DatabaseUnavailableError`` that names
the host and port.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from goalrt.errors import ConfigError, DatabaseUnavailableError

if TYPE_CHECKING:
    import asyncpg

CONNECT_TIMEOUT_S = 10

# How deeply JSON values goalrt accepts may nest: deeper ones are refused
# with a message (Python's json recursion and PostgreSQL's stack give out
# somewhere in the thousands, with errors that name nothing).
MAX_JSON_DEPTH = 100


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
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            cursor_factory=psycopg.RawCursor if raw else psycopg.Cursor,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL at {target}: {_first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid database URL: {_first_line(exc)}") from exc


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
    """Register the json codecs goalrt relies on (usable as a pool ``init``)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=dumps, decoder=json.loads, schema="pg_catalog")


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


def json_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Return whether ``value`` nests lists and mappings deeper than ``limit`` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds_nul(v) for v in value)
    return False


def dumps(value: Any) -> str:
    """Serialise a value as strict JSON (NaN, Infinity and U+0000 are refused).

    PostgreSQL's jsonb cannot hold the character U+0000 (``\\u0000``): it is
    refused here, with a message, rather than by the server.
    """
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    # The text test is cheap; the walk tells "\u0000" apart from an escaped backslash before "u0000".
    if "\\u0000" in text and _holds_nul(value):
        raise ValueError("JSON strings cannot hold the character U+0000 (PostgreSQL's jsonb refuses it)")
    return text
