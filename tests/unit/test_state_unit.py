"""State helpers that need no database: paths, points in time, change sets, schema rewriting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from goalrt.db.resources import in_schema, queries, schema_sql
from goalrt.errors import InvalidStateChangeError, OutOfRangeError
from goalrt.state.model import Change, changes_json, check_path, parse_at


@pytest.mark.parametrize("path", ["a", "orders.o1.status", "user.u-1.balance", "k:v@x.y_z"])
def test_valid_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize("path", ["", ".a", "a.", "a..b", "a b", "a/b", "a.*", "é", "x" * 513, 5, None])
def test_invalid_paths_name_the_path(path: object) -> None:
    with pytest.raises(InvalidStateChangeError, match="invalid path"):
        check_path(path)


def test_parse_at() -> None:
    assert parse_at(12) == 12
    assert parse_at("12") == 12
    assert parse_at("2026-11-21T10:00:00Z") == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert parse_at("2026-11-21T10:00:00") == datetime(2026, 11, 21, 10, tzinfo=UTC)
    for bad in ("yesterday", "", "1.5", True):
        with pytest.raises(OutOfRangeError):
            parse_at(bad)  # type: ignore[arg-type]
    with pytest.raises(OutOfRangeError, match=">= 0"):
        parse_at(-1)


def test_change_json() -> None:
    assert Change.set("a", None).as_json() == {"op": "set", "path": "a", "value": None}
    assert Change.inc("a", -2, expect_version=3).as_json() == {"op": "inc", "path": "a", "by": -2, "expect_version": 3}
    assert Change.delete("a").as_json() == {"op": "delete", "path": "a"}
    with pytest.raises(InvalidStateChangeError, match="invalid path"):
        Change.set("a..b", 1)
    with pytest.raises(InvalidStateChangeError, match="non-empty"):
        changes_json([])
    with pytest.raises(InvalidStateChangeError, match=r"changes\[1\]: not JSON"):
        changes_json([Change.set("a", 1), Change.set("b", object())])


def test_in_schema_rewrites_only_goalrt_names() -> None:
    sql = (
        "CREATE SCHEMA IF NOT EXISTS goalrt; SELECT goalrt.tick(); SET search_path = pg_catalog, goalrt AS "
        "pg_notify('goalrt_events', ''); GRANT USAGE ON SCHEMA goalrt TO goalrt_reader; 'goalrt.clock'::regclass"
    )
    out = in_schema(sql, "goalrt_fork_x")
    assert out == (
        "CREATE SCHEMA IF NOT EXISTS goalrt_fork_x; SELECT goalrt_fork_x.tick(); SET search_path = pg_catalog, "
        "goalrt_fork_x AS pg_notify('goalrt_fork_x_events', ''); GRANT USAGE ON SCHEMA goalrt_fork_x TO "
        "goalrt_reader; 'goalrt_fork_x.clock'::regclass"
    )
    assert in_schema(sql, "goalrt") == sql


def test_fork_schema_sql_mentions_no_main_schema_object() -> None:
    text = in_schema(schema_sql(), "goalrt_fork_x")
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    assert "goalrt." not in code
    assert " goalrt;" not in code and " goalrt " not in code
    for query in queries("state", "goalrt_fork_x").values():
        assert "goalrt." not in query
