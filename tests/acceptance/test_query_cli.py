"""goalrt query: one SQL statement in a read-only transaction (issue 19, item 4); nothing it runs can write."""

from __future__ import annotations

import json

import psycopg

from tests.acceptance.test_cli import goalrt
from tests.acceptance.test_goals_cli import one_line_error


def settings(db_url: str) -> list[tuple[str, object]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT key, value FROM goalrt.settings ORDER BY key").fetchall()


def test_rows_print_as_a_table_or_json(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT goalrt.append_event('s', 'order.placed', '{\"n\": 1}')")
    table = goalrt(db_url, "query", "SELECT type, data FROM goalrt.event_data ORDER BY id")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == ["type          data", 'order.placed  {"n":1}']
    rows = goalrt(
        db_url,
        "query",
        "SELECT 1.5::numeric AS n, decode('ff', 'hex') AS b, '100%' AS p, NULL AS z, now() AS t",
        "--json",
    )
    row = json.loads(rows.stdout)
    assert (row["n"], row["b"], row["p"], row["z"]) == (1.5, "ff", "100%", None) and "T" in row["t"]
    many = goalrt(db_url, "query", "SELECT g FROM generate_series(1, 5) g", "--limit", "2")
    assert many.stdout == "g\n1\n2\n" and "first 2 rows" in many.stderr


def test_nothing_it_runs_can_write(db_url: str) -> None:
    before = settings(db_url)
    one_line_error(goalrt(db_url, "query", "DELETE FROM goalrt.settings"), 1, "read-only transaction")
    # A second statement after a COMMIT would run outside the read-only transaction: refused.
    for text in (
        "COMMIT; DELETE FROM goalrt.settings",
        "SELECT 1; COMMIT; INSERT INTO goalrt.settings VALUES ('x', '1')",
    ):
        one_line_error(goalrt(db_url, "query", text), 1, "runs one SQL statement")
    one_line_error(
        goalrt(db_url, "query", "DO $$ BEGIN COMMIT; DELETE FROM goalrt.settings; END $$"),
        1,
        "invalid transaction termination",
    )
    one_line_error(goalrt(db_url, "query", "SELECT goalrt.append_event('s', 't')"), 1, "read-only transaction")
    assert settings(db_url) == before
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM goalrt.event_data").fetchone() == (0,)


def test_bad_input_is_one_line(db_url: str) -> None:
    one_line_error(goalrt(db_url, "query", "SELEC 1"), 1, 'syntax error at or near "SELEC"')
    one_line_error(goalrt(db_url, "query", "  "), 1, "give an SQL statement")
    one_line_error(goalrt(db_url, "query", "SELECT pg_sleep(5)", "--timeout", "0.2s"), 1, "statement timeout")
    one_line_error(goalrt(db_url, "query", "SELECT 1", "--timeout", "soon"), 1, "--timeout")
