"""The worker's protocol types match the SQL functions it calls, read from a migrated database's catalog.

Each outcome enum must hold exactly the literals its function can answer
(nothing the SQL answers is missing, no member the SQL never answers), and
each field the worker sends or reads must be one the function reads or
returns. The function bodies come from ``pg_proc`` (what runs), not from
files under ``sql/``.
"""

from __future__ import annotations

import dataclasses
import json
import re

import psycopg
import pytest

from goalrt.db.resources import queries
from goalrt.worker.protocol import (
    INVALID_CHANGE_SQLSTATE,
    Advance,
    ClaimedGoal,
    CompletionAnswer,
    CompletionOutcome,
    FailItem,
    NextStep,
    PlanAnswer,
    PlanItem,
    PlanOutcome,
    PlanReason,
    StepItem,
    StepOutcome,
)

# `outcome := <expression>;` in plpgsql (the expression may span lines).
ASSIGN = re.compile(r"\boutcome\s*:=\s*(.*?);", re.S)
LITERAL = re.compile(r"'([a-z_]+)'")


def source(conn: psycopg.Connection, function: str) -> str:
    row = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = 'goalrt'::regnamespace", (function,)
    ).fetchone()
    assert row is not None, f"goalrt.{function} is not in the database"
    return str(row[0])


def returned_columns(conn: psycopg.Connection, function: str) -> set[str]:
    """Return the names of the columns a set-returning function returns."""
    row = conn.execute(
        "SELECT proargnames, proargmodes FROM pg_proc WHERE proname = %s AND pronamespace = 'goalrt'::regnamespace",
        (function,),
    ).fetchone()
    assert row is not None
    return {name for name, mode in zip(row[0], row[1], strict=True) if mode == "t"}


def advance_returns(conn: psycopg.Connection) -> set[str]:
    """Return what ``advance_goal`` can return."""
    return set(re.findall(r"\bRETURN\s+'([a-z_]+)'", source(conn, "advance_goal")))


def answered(conn: psycopg.Connection, function: str) -> set[str]:
    """Return every outcome literal ``function`` assigns, with advance_goal's where it assigns its result."""
    out: set[str] = set()
    for expression in ASSIGN.findall(source(conn, function)):
        if "goalrt.advance_goal(" in expression:
            out |= advance_returns(conn)
        else:
            out |= set(LITERAL.findall(expression))
    return out


def read_keys(text: str) -> set[str]:
    """Return the keys a function reads from its JSON item ``x`` (``x ->> 'k'``, ``x -> 'k'``)."""
    return set(re.findall(r"\bx\s*->>?\s*'([a-z_]+)'", text))


def values(enum: type[StepOutcome | Advance | PlanOutcome | CompletionOutcome]) -> set[str]:
    return {member.value for member in enum}


def test_advance_outcomes_are_what_advance_goal_returns(conn: psycopg.Connection) -> None:
    assert values(Advance) == advance_returns(conn)


def test_completion_outcomes_are_what_complete_steps_answers(conn: psycopg.Connection) -> None:
    got = answered(conn, "complete_steps_v1")
    assert got, "no outcome found in complete_steps_v1: has its text changed shape?"
    assert got - values(CompletionOutcome) == set(), "answered by the SQL, missing from CompletionOutcome"
    assert values(CompletionOutcome) - got == set(), "in CompletionOutcome, never answered by the SQL"


def test_plan_outcomes_are_what_plan_goals_answers(conn: psycopg.Connection) -> None:
    text = source(conn, "plan_goals_v1")
    # advance_goal's 'continue' never leaves plan_goals_v1: it answers 'planned' instead.
    assert re.search(r"IF outcome = 'continue' THEN.*?outcome := 'planned';", text, re.S)
    got = answered(conn, "plan_goals_v1") - {"continue"}
    assert got - values(PlanOutcome) == set(), "answered by the SQL, missing from PlanOutcome"
    assert values(PlanOutcome) - got == set(), "in PlanOutcome, never answered by the SQL"


def test_step_outcomes_are_the_ones_complete_steps_accepts(conn: psycopg.Connection) -> None:
    text = source(conn, "complete_steps_v1")
    accepted = re.search(r"x ->> 'outcome' NOT IN \(([^)]*)\)", text)
    assert accepted is not None
    assert set(LITERAL.findall(accepted.group(1))) == values(StepOutcome)
    # Each is acted on by name (fail is the ELSE branch: whatever is accepted and not named).
    named = set(re.findall(r"x ->> 'outcome' = '([a-z_]+)'", text))
    assert named == values(StepOutcome) - {StepOutcome.FAIL.value}


def test_a_change_refused_as_invalid_carries_its_sqlstate(conn: psycopg.Connection) -> None:
    text = source(conn, "complete_steps_v1")
    assert f"SQLSTATE '{INVALID_CHANGE_SQLSTATE}'" in text
    assert "error := SQLERRM || ' (' || SQLSTATE || ')';" in text


def test_the_replan_reason_the_sql_defaults_to_is_a_plan_reason(conn: psycopg.Connection) -> None:
    text = source(conn, "complete_steps_v1")
    assert f"coalesce(x ->> 'reason', '{PlanReason.STEP_FAILED.value}')" in text


@pytest.mark.parametrize(
    ("function", "item"),
    [
        (
            "complete_steps_v1",
            StepItem(
                1, 1, 1, StepOutcome.REPLAN, 0, [], [], "e", 1.0, [], PlanReason.STEP_FAILED, {}, True, "tb"
            ).as_json(),
        ),
        ("plan_goals_v1", PlanItem(1, 1, [], PlanReason.INITIAL, {}, replan=True).as_json()),
        ("fail_goals_v1", FailItem(1, 1, "e").as_json()),
    ],
)
def test_every_field_sent_is_one_the_function_reads(conn: psycopg.Connection, function: str, item: dict) -> None:
    unread = set(item) - read_keys(source(conn, function))
    assert not unread, f"{function} never reads {sorted(unread)}"


def test_every_field_sent_in_a_step_item_is_covered_above() -> None:
    # The parametrized item above fills every field, so a field added later is checked too.
    item = StepItem(1, 1, 1, StepOutcome.REPLAN, 0, [], [], "e", 1.0, [], PlanReason.STEP_FAILED, {}, True, "tb")
    names = {"continue" if f.name == "keep" else f.name for f in dataclasses.fields(StepItem)}
    assert set(item.as_json()) == names - {"result"}
    assert "result" in StepItem(1, 1, 1, StepOutcome.COMPLETE).as_json()


@pytest.mark.parametrize(
    ("function", "columns"),
    [
        (
            "claim_goals_v3",
            # plan_gdl_version: the goals_claim query adds it (see the test below).
            {f.name for f in dataclasses.fields(ClaimedGoal)} - {"step", "plan_gdl_version"}
            | {"step_seq", "action", "args", "attempt"},
        ),
        ("plan_goals_v1", {"goal_id", "outcome", "step_seq", "action", "args", "attempt"}),
        ("complete_steps_v1", {"goal_id", "outcome", "step_seq", "action", "args", "attempt", "error"}),
    ],
)
def test_every_column_read_is_one_the_function_returns(
    conn: psycopg.Connection, function: str, columns: set[str]
) -> None:
    assert columns <= returned_columns(conn, function)


def test_the_claim_query_adds_the_gdl_version_of_each_plan() -> None:
    assert "AS plan_gdl_version" in queries("goals")["goals_claim"]


def test_the_claim_query_reads_the_trace_context_the_claim_returns() -> None:
    text = queries("goals")["goals_claim"]
    assert "c.trace_context" in text and "claim_goals_v3(" in text


def test_claim_v3_returns_the_trace_context_in_claim_order(conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.register_goal_type('tc', '{}')")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ids = [
        conn.execute("SELECT id FROM goalrt.submit_goal('tc', '{}', %s::jsonb)", (json.dumps(options),)).fetchone()[0]  # type: ignore[index]
        for options in ({"priority": 1}, {"traceparent": parent, "priority": 5}, {"priority": 3})
    ]
    rows = conn.execute("SELECT goal_id, trace_context FROM goalrt.claim_goals_v3('w', 10, 30)").fetchall()
    assert rows == [(ids[1], parent), (ids[2], None), (ids[0], None)]


def test_answers_are_read_from_rows_of_those_columns() -> None:
    step = {"step_seq": 2, "action": "a", "args": {}, "attempt": 1}
    assert PlanAnswer.of({"goal_id": 1, "outcome": "planned", **step}) == PlanAnswer(
        1, PlanOutcome.PLANNED, NextStep(2, "a", {}, 1)
    )
    waiting = {"goal_id": 1, "outcome": "waiting", "step_seq": 3, "action": None, "args": None, "attempt": None}
    assert CompletionAnswer.of({**waiting, "error": None}) == CompletionAnswer(1, CompletionOutcome.WAITING, None)
    claimed = {"goal_id": 1, "name": "g", "params": {}, "epoch": 4, "plan_no": 0, **dict.fromkeys(step)}
    assert ClaimedGoal.of({**claimed, "trace_context": None}).step is None
    assert ClaimedGoal.of({**claimed, "trace_context": "t"}).trace_context == "t"
