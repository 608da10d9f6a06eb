"""``db.query``: one parameterised statement on a database the configuration names, with psycopg.

Arguments (gdl/builtin/db.gdl): ``database`` (a name of ``[actions.db.databases]``
or ``$GOALRT_DB_<NAME>``), ``sql`` (one statement, placeholders ``$1``,
``$2``, ...; in GDL a constant: nothing is ever spliced into it), ``params``
(the values, bound by the server), ``write`` (false), ``max_rows`` (default
``[actions.db] max_rows``, else 1000) and ``timeout`` (seconds, the statement
timeout; default ``[actions.db] timeout``, else 30).

The statement runs in a READ ONLY transaction unless the step says ``write``
and ``[actions.db] writable`` lists the database; otherwise a write is
refused by PostgreSQL (SQLSTATE 25006) and fails the step for good. It is
sent with the extended protocol, so it is exactly one statement. A read's
rows are read one at a time, and reading stops past ``max_rows`` (a write's
are all read, so that it completes); at most ``max_rows`` are kept: the result is
``{"columns", "rows", "row_count", "truncated"}`` (rows as objects by column
name), plus for a write ``"command"`` (the server's tag, ``INSERT 0 3``).

Failures: a connection that cannot be made or is lost, a statement timeout
(57014), a serialization failure or deadlock (40001, 40P01), and the server
being short of resources or shutting down (53xxx, 57P0x) are retryable;
any other SQL error (syntax, a missing table, a constraint, the read-only
refusal) fails the step for good, naming the SQLSTATE.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from goalrt.errors import ActionFailedError, PermanentError

DEFAULT_MAX_ROWS = 1000
DEFAULT_TIMEOUT = 30.0
_ARGS = frozenset({"database", "sql", "params", "write", "max_rows", "timeout"})
# SQLSTATEs worth another attempt: the statement may well succeed later.
_RETRYABLE_CLASSES = ("08", "53", "58")
_RETRYABLE = frozenset({"57014", "57P01", "57P02", "57P03", "57P05", "40001", "40P01", "55P03"})


def _setting(args: Mapping[str, Any], settings: Mapping[str, Any], key: str, default: Any, kind: type) -> Any:
    value = args.get(key)
    if value is None:
        value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise PermanentError(f"db.query: {key} must be a {'integer' if kind is int else 'number'}, got {value!r}")
    if value <= 0:
        raise PermanentError(f"db.query: {key} must be positive, got {value!r}")
    return value


def _failure(name: str, exc: psycopg.Error) -> Exception:
    """Return the step's error for a driver error: retryable or permanent by SQLSTATE."""
    state = exc.sqlstate
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if state is None:
        # No SQLSTATE: the connection could not be made or broke (the client's own error).
        return ActionFailedError(f"db.query on {name}: {type(exc).__name__}: {first}")
    text = f"db.query on {name}: {first} (SQLSTATE {state})"
    if state == "25006":
        text += f"; to write, give write = true and list {name} in [actions.db] writable"
    if state.startswith(_RETRYABLE_CLASSES) or state in _RETRYABLE:
        return ActionFailedError(text)
    return PermanentError(text)


async def db_query(args: dict[str, Any], ctx: Any, call: Any) -> dict[str, Any]:
    """Run one ``db.query`` step (see the module's docstring)."""
    unknown = sorted(set(args) - _ARGS)
    if unknown:
        raise PermanentError(f"db.query: unknown argument {unknown[0]}")
    name, sql = args.get("database"), args.get("sql")
    if not isinstance(name, str) or not name:
        raise PermanentError("db.query: database (a configured name) is required")
    if not isinstance(sql, str) or not sql.strip():
        raise PermanentError("db.query: sql (one statement) is required")
    params = args.get("params") or []
    if not isinstance(params, list):
        raise PermanentError(f"db.query: params must be a list, got {params!r}")
    settings = call.config.section("db")
    databases = call.config.databases()
    url = databases.get(name.lower())
    if url is None:
        known = ", ".join(sorted(databases)) or "none"
        raise PermanentError(
            f"db.query: no database named {name} (configured: {known}; "
            f"add it to [actions.db.databases] or set GOALRT_DB_{name.upper()})"
        )
    write = args.get("write") is True
    writable = {str(n).lower() for n in settings.get("writable", [])}
    if write and name.lower() not in writable:
        raise PermanentError(f"db.query: writes to {name} are not allowed (list it in [actions.db] writable)")
    max_rows = _setting(args, settings, "max_rows", DEFAULT_MAX_ROWS, int)
    timeout = _setting(args, settings, "timeout", DEFAULT_TIMEOUT, float)
    conninfo = call.secrets.substitute(url)
    try:
        conn = await psycopg.AsyncConnection.connect(
            conninfo, autocommit=False, connect_timeout=max(1, round(timeout)), application_name="goalrt db.query"
        )
    except psycopg.Error as exc:
        raise _failure(name, exc) from None
    try:
        async with conn:
            await conn.set_read_only(not write)
            async with conn.transaction():
                # SET LOCAL: the timeout ends with the transaction, and the statement cannot change it first.
                await conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout * 1000)}ms",))
                return await _run(conn, sql, params, max_rows, write)
    except psycopg.Error as exc:
        raise _failure(name, exc) from None


async def _run(
    conn: psycopg.AsyncConnection[Any], sql: str, params: list[Any], max_rows: int, write: bool
) -> dict[str, Any]:
    """Run the statement, keeping at most ``max_rows`` rows.

    A read streams rows one at a time and stops reading (the statement is
    cancelled) past ``max_rows``. A write is run whole, so that it completes
    and commits; the rows it returns are all read by the client.
    """
    rows: list[dict[str, Any]] = []
    seen = 0
    async with psycopg.AsyncRawCursor(conn, row_factory=dict_row) as cur:
        if write:
            # prepare=True: the extended protocol even with no parameters, so it is one statement.
            await cur.execute(sql, params, prepare=True)
            if cur.description is not None:
                rows = await cur.fetchmany(max_rows + 1)
                seen = len(rows) if len(rows) <= max_rows else max(cur.rowcount, len(rows))
                rows = rows[:max_rows]
        else:
            try:
                # stream(): one row at a time, always with the extended protocol (one statement, parameters bound).
                async for row in cur.stream(sql, params):
                    seen += 1
                    if seen > max_rows:
                        break
                    rows.append(row)
            except psycopg.ProgrammingError as exc:
                if exc.sqlstate is not None:
                    raise
                raise PermanentError(
                    "db.query: the statement returns no rows; a read-only step runs a query (SELECT, VALUES, "
                    "WITH ... SELECT); a statement that changes something needs write = true"
                ) from None
        columns = [c.name for c in cur.description or ()]
        command = cur.statusmessage if write else None
        count = cur.rowcount
    result: dict[str, Any] = {
        "columns": columns,
        "rows": [{k: _json(v) for k, v in row.items()} for row in rows],
        "row_count": len(rows) if columns else max(count, 0),
        "truncated": seen > max_rows,
    }
    if command:
        result["command"] = command
    return result


def _json(value: Any) -> Any:
    """Return a column's value as JSON: numbers (Decimal exact), text, booleans, lists, objects; others as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, Decimal) and value.is_finite():
        return value
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


__all__ = ["DEFAULT_MAX_ROWS", "db_query"]
