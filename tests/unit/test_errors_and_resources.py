from __future__ import annotations

import re

import pytest

from goalrt import errors
from goalrt.db.resources import queries, schema_sql


class FakeDriverError(Exception):
    """Stands in for a driver exception: only .sqlstate and the module matter."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


FakeDriverError.__module__ = "psycopg.errors"


@pytest.mark.parametrize(
    ("state", "message", "cls"),
    [
        ("GR001", "goalrt.event_data is append-only: UPDATE refused", errors.AppendOnlyError),
        ("GR002", "event type must be a non-empty string", errors.InvalidEventError),
        ("GR010", "data is nested 101 levels deep; the limit is 100", errors.InvalidJsonError),
        ("42883", "function goalrt.tick(integer) does not exist", errors.NotMigratedError),
        ("3F000", 'schema "goalrt" does not exist', errors.NotMigratedError),
        ("08006", "server closed the connection", errors.DatabaseUnavailableError),
        ("22P02", "invalid input syntax", errors.DatabaseError),
    ],
)
def test_translate_maps_sqlstates_and_keeps_cause(state: str, message: str, cls: type) -> None:
    original = FakeDriverError(state, message + "\nCONTEXT: detail")
    with pytest.raises(cls) as info, errors.translated():
        raise original
    assert info.value.__cause__ is original
    assert "\n" not in str(info.value)


def test_translated_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), errors.translated():
        raise KeyError("x")


def test_sql_error_codes_match_python_constants() -> None:
    schema = schema_sql()
    declared = set(re.findall(r"--\s+(GR\d{3})\s", schema))
    raised = set(re.findall(r"ERRCODE = '(GR\d{3})'", schema))
    python = {value for name, value in vars(errors).items() if name.startswith("SQLSTATE_")}
    assert declared == raised == python


def test_named_queries_load_with_native_placeholders() -> None:
    q = queries("eventlog")
    assert {
        "event_append",
        "events_append",
        "events_read",
        "clock_tick",
        "clock_head",
        "event_position",
        "chain_verify",
        "appends_notify",
    } <= set(q)
    assert all("%s" not in text and not text.endswith(";") for text in q.values())
    assert "$5::boolean" in q["events_read"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5/d", "postgresql://u:p@h:5/d"),
        ("postgresql+psycopg://u@h/d", "postgresql://u@h/d"),
        ("postgres://u@h/d", "postgresql://u@h/d"),
        ("user=postgres dbname=x host=/tmp/sock", "postgresql://postgres@/x?host=%2Ftmp%2Fsock"),
        ("host=h port=6 user=a password='p w' dbname=d", "postgresql://a:p%20w@/d?host=h&port=6"),
    ],
)
def test_asyncpg_dsn_conversion(given: str, expected: str) -> None:
    from goalrt.db.connect import asyncpg_dsn

    assert asyncpg_dsn(given) == expected
