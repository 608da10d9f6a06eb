"""CLI command ``goalrt query``: run one SQL statement in a read-only transaction and print its rows."""

from __future__ import annotations

from typing import Any

import click

from goalrt.cli.support import AppContext, clip, emit_json, json_option, pass_app, print_table, show_json
from goalrt.durations import parse_duration
from goalrt.errors import ConfigError


@click.command("query")
@click.argument("sql")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, show_default=True, help="Rows at most.")
@click.option("--timeout", default="30s", show_default=True, metavar="DURATION", help="Statement timeout.")
@json_option("Print one JSON object per row.")
@pass_app
def query(app: AppContext, sql: str, limit: int, timeout: str, as_json: bool) -> None:
    """Run one SQL statement (e.g. a SELECT on goalrt.events) in a read-only transaction; print the rows.

    The transaction is READ ONLY and rolled back at the end, so no table
    changes, whatever the statement; it runs with your login role's
    privileges. One statement only: a second one (`; COMMIT; ...`) is refused.
    """
    seconds = parse_duration(timeout, what="--timeout")
    if not sql.strip():
        raise ConfigError(
            "give an SQL statement, e.g. goalrt query 'SELECT type, count(*) FROM goalrt.events GROUP BY 1'"
        )
    import psycopg

    from goalrt.db.connect import connect
    from goalrt.errors import translated

    with connect(app.url, autocommit=False, raw=False) as conn, translated():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(int(seconds * 1000), 1)}ms",))
        # Prepared (the extended protocol's Parse): exactly one statement. A
        # simple query would run "COMMIT; DELETE ..." past the read-only transaction.
        cur = conn.cursor()
        try:
            cur.execute(sql.replace("%", "%%"), (), prepare=True)
        except psycopg.errors.SyntaxError as exc:
            if "multiple commands" not in str(exc):
                raise
            raise ConfigError("goalrt query runs one SQL statement: give one, with no ';' between statements") from None
        columns = [c.name for c in cur.description or ()]
        rows = cur.fetchmany(limit) if columns else []
        more = bool(columns) and cur.fetchone() is not None
        conn.rollback()
    if not columns:
        click.echo(cur.statusmessage or "OK")
        return
    if as_json:
        for row in rows:
            emit_json({c: _json_value(v) for c, v in zip(columns, row, strict=True)})
    else:
        print_table(columns, [[_cell(v) for v in row] for row in rows])
    if more:
        click.echo(f"(first {limit} rows; give --limit for more)", err=True)


def _json_value(value: Any) -> Any:
    """Return ``value`` as JSON can hold it: times as ISO 8601, bytes as hex, other non-JSON values as text."""
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    from decimal import Decimal

    return value if isinstance(value, Decimal) else str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return clip(show_json(value), 80)
    return clip(str(value), 80)


COMMANDS = (query,)
