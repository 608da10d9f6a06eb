"""The CLI keeps numbers exact and makes bad JSON, huge numbers and names one short line (issue 15 items 5, 6, 8)."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest

from goalrt.db.jsontext import MAX_JSON_DEPTH, decode

from .test_cli import event_count, goalrt

DEEP_1200 = "[" * 1200 + "]" * 1200  # past Python's recursion limit
DEEP_300 = '{"a":' * 300 + "1" + "}" * 300  # past pydantic's limit, under Python's
BIG_INT = "7" * 5000  # past Python's 4300-digit int() limit


def ok(url: str, *args: str) -> str:
    result = goalrt(url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sql_value(url: str, query: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return str(row[0])


def test_numbers_are_stored_and_printed_exactly(db_url: str) -> None:
    ok(db_url, "state", "set", "p", "0.10000000000000000000001")
    assert sql_value(db_url, "SELECT value::text FROM goalrt.state WHERE path = 'p'") == "0.10000000000000000000001"
    got = json.loads(ok(db_url, "state", "get", "p", "--json"), parse_float=Decimal)
    assert got["value"] == Decimal("0.10000000000000000000001")
    assert ok(db_url, "state", "get", "p").startswith("p = 0.10000000000000000000001 ")

    ok(db_url, "state", "inc", "q", "12345678901234567890.12345")
    assert sql_value(db_url, "SELECT value::text FROM goalrt.state WHERE path = 'q'") == "12345678901234567890.12345"
    ok(db_url, "state", "inc", "big", BIG_INT)
    assert sql_value(db_url, "SELECT value::text FROM goalrt.state WHERE path = 'big'") == BIG_INT
    assert ok(db_url, "state", "get", "big").startswith(f"big = {BIG_INT} ")

    ok(db_url, "events", "append", "--stream", "s", "--type", "t", "--data", '{"amount": 19.999999999999999999}')
    ok(db_url, "events", "append", "--stream", "s", "--type", "t", "--data", "1e400")
    data = sql_value(db_url, "SELECT string_agg(data::text, ' ' ORDER BY id) FROM goalrt.events WHERE stream = 's'")
    assert data == '{"amount": 19.999999999999999999} 1' + "0" * 400
    # decode: the exact reader (Python's json cannot read the 5000-digit increment in the log).
    listed = [decode(line) for line in ok(db_url, "events", "list", "--json").splitlines()]
    assert [e["data"] for e in listed if e["stream"] == "s"] == [
        {"amount": Decimal("19.999999999999999999")},
        10**400,
    ]

    ok(db_url, "state", "set", "x", "-5")  # a negative value, not an option
    assert sql_value(db_url, "SELECT value::text FROM goalrt.state WHERE path = 'x'") == "-5"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["events", "append", "--stream", "s", "--type", "t", "--data", DEEP_1200], "nested deeper than"),
        (["events", "append", "--stream", "s", "--type", "t", "--data", DEEP_300], "nested deeper than"),
        (["events", "append", "--stream", "s", "--type", "t", "--metadata", DEEP_1200], "nested deeper than"),
        (["events", "append", "--stream", "s", "--type", "t", "--data", f'{{"n": {BIG_INT}, "x": [}}'], "not valid"),
        (["state", "set", "p", DEEP_1200], "nested deeper than"),
        (["state", "set", "p", DEEP_300], "nested deeper than"),
        (["state", "inc", "p", "[1]"], "BY must be a number"),
        (["state", "get", "a" * 100_000], "invalid path"),
        (["state", "set", "a" * 100_000, "1"], "invalid path"),
        (["submit", "job", "--params", DEEP_1200], "nested deeper than"),
        (["submit", "job", f"k={DEEP_1200}"], "nested deeper than"),
        (["submit", "a" * 100_000], "unknown goal type"),
        (["resume", "1", "--data", DEEP_1200], "nested deeper than"),
        (["resume", "1", "--data", DEEP_300], "nested deeper than"),
    ],
)
def test_bad_input_is_one_short_line_and_writes_nothing(db_url: str, args: list[str], needle: str) -> None:
    result = goalrt(db_url, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("goalrt: error: "), result.stderr[:500]
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr) < 400, result.stderr[:500]
    assert event_count(db_url) == 0


def test_the_limit_is_named(db_url: str) -> None:
    result = goalrt(db_url, "state", "set", "p", DEEP_300)
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in result.stderr
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    ok(db_url, "state", "set", "p", at_limit)


def test_an_undecodable_event_is_listed_with_a_marker(db_url: str) -> None:
    ok(db_url, "events", "append", "--stream", "s", "--type", "before")
    with psycopg.connect(db_url, autocommit=True) as conn:
        deep = "[" * 2000 + "]" * 2000
        # As the tables' owner: a row from before migration 0010 (goalrt's functions refuse it now).
        conn.execute("INSERT INTO goalrt.event_data (stream, type, data) VALUES ('s', 'poison', %s::jsonb)", (deep,))
    ok(db_url, "events", "append", "--stream", "s", "--type", "after")
    result = goalrt(db_url, "events", "list", "--json")
    assert result.returncode == 0, result.stderr[-500:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["before", "poison", "after"]
    assert events[1]["data"].startswith("<unreadable JSON")
    assert "event at pos 2: data is unreadable JSON" in result.stderr
    table = goalrt(db_url, "events", "list")
    assert table.returncode == 0 and "<unreadable JSON" in table.stdout
