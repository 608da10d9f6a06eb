"""Every SQL entry point refuses JSON nested deeper than 100 levels, naming the field and the limit (issue 15 item 6).

The limit and its counting are ``goalrt.db.jsontext``'s (``[[1]]`` is 2
levels): a value of exactly 100 levels is stored; 101 (or 3000) is refused
with SQLSTATE GR010 and the one line ``<field> is nested 101 levels deep; the
limit is 100``, and nothing of the call is written. Each call runs as
``goalrt_writer``, as a client would. ``InvalidJsonError`` is what the Python
clients raise for it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from goalrt import AsyncGoals, Registry, Step
from goalrt.db.jsontext import MAX_JSON_DEPTH, depth
from goalrt.errors import InvalidJsonError, translated

from .test_coordination import W, claim, register, submit
from .test_worker import until_finished, with_worker

HOLE = "__value__"


def nested(levels: int) -> str:
    """Return JSON text nesting arrays and objects in turn, ``levels`` deep (``[{"k":[1]}]`` is 3)."""
    opening = ["[" if level % 2 == 0 else '{"k":' for level in range(levels)]
    closing = ["]" if level % 2 == 0 else "}" for level in reversed(range(levels))]
    return "".join(opening) + "1" + "".join(closing)


def nested_object(levels: int) -> str:
    """Return a JSON object ``levels`` deep (for fields that must be objects)."""
    return '{"o":' + nested(levels - 1) + "}"


def with_value(template: Any, text: str) -> str:
    """Return ``template`` as JSON text with the string HOLE replaced by the JSON ``text``."""
    return json.dumps(template).replace(json.dumps(HOLE), text)


@dataclass(frozen=True)
class Case:
    """One entry point: ``call(conn, ids, text)`` sends ``text`` where the entry point takes the value."""

    name: str
    call: Callable[[psycopg.Connection, dict[str, int], str], None]
    field: Callable[[dict[str, int]], str]
    setup: Callable[[psycopg.Connection], dict[str, int]] = lambda conn: {}
    object_only: bool = False


def _claimed(conn: psycopg.Connection) -> dict[str, int]:
    register(conn, "g")
    gid = submit(conn, "g")
    (row,) = claim(conn)
    return {"goal": gid, "epoch": int(row["epoch"])}


def _running(conn: psycopg.Connection) -> dict[str, int]:
    ids = _claimed(conn)
    item = {"goal_id": ids["goal"], "epoch": ids["epoch"], "steps": [{"action": "work", "args": {}}]}
    conn.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s::jsonb, 30)", (W, json.dumps([item])))
    return ids


def _asking(conn: psycopg.Connection) -> dict[str, int]:
    ids = _claimed(conn)
    ask = {"action": "ask", "kind": "ask", "args": {"prompt": "?"}}
    item = {"goal_id": ids["goal"], "epoch": ids["epoch"], "steps": [ask]}
    conn.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s::jsonb, 30)", (W, json.dumps([item])))
    return ids


def _plan(conn: psycopg.Connection, ids: dict[str, int], item: dict[str, Any], text: str) -> None:
    item = {"goal_id": ids["goal"], "epoch": ids["epoch"], **item}
    conn.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s::jsonb, 30)", (W, with_value([item], text)))


def _complete(conn: psycopg.Connection, ids: dict[str, int], item: dict[str, Any], text: str) -> None:
    item = {"goal_id": ids["goal"], "epoch": ids["epoch"], "seq": 1, "outcome": "complete", **item}
    conn.execute("SELECT * FROM goalrt.complete_steps_v1(%s, %s::jsonb, 30)", (W, with_value([item], text)))


def _register_job(conn: psycopg.Connection) -> dict[str, int]:
    register(conn, "job")
    return {}


ONE = {"stream": "s", "type": "t"}
CASES = [
    Case(
        "append_event data",
        lambda c, ids, v: c.execute("SELECT goalrt.append_event('s', 't', %s::jsonb)", (v,)),
        lambda ids: "data",
    ),
    Case(
        "append_event metadata",
        lambda c, ids, v: c.execute("SELECT goalrt.append_event('s', 't', '{}', %s::jsonb)", (v,)),
        lambda ids: "metadata",
        object_only=True,
    ),
    Case(
        "append_events data",
        lambda c, ids, v: c.execute(
            "SELECT goalrt.append_events(%s::jsonb)", (with_value([ONE, {**ONE, "data": HOLE}], v),)
        ),
        lambda ids: "events[1].data",
    ),
    Case(
        "append_events metadata",
        lambda c, ids, v: c.execute(
            "SELECT goalrt.append_events(%s::jsonb)", (with_value([ONE, {**ONE, "metadata": HOLE}], v),)
        ),
        lambda ids: "events[1].metadata",
        object_only=True,
    ),
    Case(
        "change_state value",
        lambda c, ids, v: c.execute(
            "SELECT * FROM goalrt.change_state(%s::jsonb)",
            (with_value([{"op": "set", "path": "a", "value": 1}, {"op": "set", "path": "b", "value": HOLE}], v),),
        ),
        lambda ids: "changes[1].value",
    ),
    Case(
        "change_state metadata",
        lambda c, ids, v: c.execute(
            """SELECT * FROM goalrt.change_state('[{"op": "set", "path": "a", "value": 1}]', 'state', %s::jsonb)""",
            (v,),
        ),
        lambda ids: "metadata",
        object_only=True,
    ),
    Case(
        "register_goal_type params_schema",
        lambda c, ids, v: c.execute("SELECT goalrt.register_goal_type('deep', %s::jsonb)", (v,)),
        lambda ids: "params_schema",
        object_only=True,
    ),
    Case(
        "submit_goal params",
        lambda c, ids, v: c.execute("SELECT * FROM goalrt.submit_goal('job', %s::jsonb)", (v,)),
        lambda ids: "params",
        setup=_register_job,
        object_only=True,
    ),
    Case(
        "submit_goals params",
        lambda c, ids, v: c.execute(
            "SELECT * FROM goalrt.submit_goals(%s::jsonb)",
            (with_value([{"name": "job"}, {"name": "job", "params": HOLE}], v),),
        ),
        lambda ids: "goals[1]: params",
        setup=_register_job,
        object_only=True,
    ),
    Case(
        "resume_goal data",
        lambda c, ids, v: c.execute("SELECT * FROM goalrt.resume_goal(%s, %s::jsonb)", (ids["goal"], v)),
        lambda ids: "data",
        setup=_asking,
        object_only=True,
    ),
    Case(
        "plan_goals_v1 args",
        lambda c, ids, v: _plan(c, ids, {"steps": [{"action": "work", "args": HOLE}]}, v),
        lambda ids: f"plan for goal {ids['goal']}: steps[0].args",
        setup=_claimed,
    ),
    Case(
        "plan_goals_v1 detail",
        lambda c, ids, v: _plan(c, ids, {"steps": [{"action": "work", "args": {}}], "detail": HOLE}, v),
        lambda ids: f"plan for goal {ids['goal']}: detail",
        setup=_claimed,
        object_only=True,
    ),
    Case(
        "complete_steps_v1 result",
        lambda c, ids, v: _complete(c, ids, {"result": HOLE}, v),
        lambda ids: f"goal {ids['goal']} step 1: result",
        setup=_running,
    ),
    Case(
        "complete_steps_v1 events",
        lambda c, ids, v: _complete(c, ids, {"events": [{"type": "a"}, {"type": "b", "data": HOLE}]}, v),
        lambda ids: f"goal {ids['goal']} step 1: events[1].data",
        setup=_running,
    ),
    Case(
        "complete_steps_v1 changes",
        lambda c, ids, v: _complete(c, ids, {"changes": [{"op": "set", "path": "p", "value": HOLE}]}, v),
        lambda ids: "changes[0].value",
        setup=_running,
    ),
    Case(
        "complete_steps_v1 replan args",
        lambda c, ids, v: _complete(
            c, ids, {"outcome": "replan", "error": "no", "steps": [{"action": "other", "args": HOLE}]}, v
        ),
        lambda ids: f"replan for goal {ids['goal']}: steps[0].args",
        setup=_running,
    ),
    Case(
        "complete_steps_v1 replan detail",
        lambda c, ids, v: _complete(
            c, ids, {"outcome": "replan", "error": "no", "steps": [{"action": "o", "args": {}}], "detail": HOLE}, v
        ),
        lambda ids: f"plan for goal {ids['goal']}: detail",
        setup=_running,
        object_only=True,
    ),
]


def _written(conn: psycopg.Connection) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM goalrt.event_data), (SELECT count(*) FROM goalrt.state_data),"
        " (SELECT count(*) FROM goalrt.goals), (SELECT count(*) FROM goalrt.goal_steps),"
        " (SELECT count(*) FROM goalrt.goal_types)"
    ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_entry_point_refuses_101_levels_and_takes_100(db_url: str, case: Case) -> None:
    make = nested_object if case.object_only else nested
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = case.setup(conn)
        conn.execute("SET ROLE goalrt_writer")
        before = _written(conn)
        for levels in (MAX_JSON_DEPTH + 1, 3000):
            text = make(levels)
            assert depth(text) == levels
            with pytest.raises(psycopg.Error) as info:
                case.call(conn, ids, text)
            assert info.value.sqlstate == "GR010", str(info.value)
            expected = f"{case.field(ids)} is nested {levels} levels deep; the limit is {MAX_JSON_DEPTH}"
            assert info.value.diag.message_primary == expected
            assert _written(conn) == before  # nothing of the call is written
        case.call(conn, ids, make(MAX_JSON_DEPTH))  # the limit itself is stored
        assert _written(conn) != before


def test_the_refusal_is_one_line_and_invalid_json_in_python(conn: psycopg.Connection) -> None:
    with pytest.raises(InvalidJsonError) as info, translated():
        conn.execute("SELECT goalrt.append_event('s', 't', %s::jsonb)", (nested(MAX_JSON_DEPTH + 1),))
    assert str(info.value) == f"data is nested 101 levels deep; the limit is {MAX_JSON_DEPTH}"


def test_the_sql_counts_as_jsontext_does(conn: psycopg.Connection) -> None:
    shapes = [
        "1",
        '"[[[{{{"',
        "[]",
        "{}",
        '[{"a": [], "b": {}}]',
        "[" * 100 + "]" * 100,
        "[" * 101 + "]" * 101,
        '{"":' * 100 + "{}" + "}" * 100,
        '{"":' * 99 + "[]" + "}" * 99,
        "[1, " + "[" * 99 + '"]]]"' + "]" * 99 + "]",
        "[1, " + "[" * 100 + "{}" + "]" * 100 + "]",
    ]
    for text in shapes:
        row = conn.execute("SELECT goalrt.json_too_deep(%s::jsonb)", (text,)).fetchone()
        assert row == (depth(text) > MAX_JSON_DEPTH,), text[:40]


def test_a_reader_may_check_a_step_and_gets_the_depth_error(conn: psycopg.Connection) -> None:
    conn.execute("SET ROLE goalrt_reader")
    step = '{"action": "a", "args": ' + nested(MAX_JSON_DEPTH + 1) + "}"
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT goalrt.step_problem(%s::jsonb, 'steps[0]')", (step,))
    assert info.value.sqlstate == "GR010"
    assert info.value.diag.message_primary == "steps[0].args is nested 101 levels deep; the limit is 100"


def test_a_planner_making_too_deep_args_fails_its_goal_alone(db_url: str) -> None:
    """The worker sends a plan whose args are 101 levels deep: that goal fails with the SQL's words, others run."""
    registry = Registry()
    deep = {"d": json.loads(nested(MAX_JSON_DEPTH))}  # args 101 levels deep

    @registry.goal("job")
    def job(p: dict[str, Any]) -> list[Step]:
        return [Step("work", deep if p.get("deep") else {})]

    @registry.action("work")
    def work(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"ok": True}

    async def body(goals: AsyncGoals, worker: Any) -> None:
        bad = (await goals.submit("job", {"deep": True})).id
        good = [(await goals.submit("job", {"i": i})).id for i in range(4)]
        infos = await until_finished(goals, bad, *good)
        assert infos[0].status == "failed"
        assert infos[0].last_error is not None
        assert "steps[0].args is nested 101 levels deep; the limit is 100" in infos[0].last_error
        assert [i.status for i in infos[1:]] == ["complete"] * 4

    asyncio.run(with_worker(db_url, registry, body))


def test_a_trigger_whose_params_would_be_too_deep_is_recorded_not_refused(conn: psycopg.Connection) -> None:
    """A GDL trigger forwarding a change set 98 levels deep makes params of 101: the change still applies."""
    register(conn, "job")
    runtime = {"triggers": [{"event_type": "state.changed", "goal_name": "job", "params": {"c": {"field": "changes"}}}]}
    conn.execute("SELECT * FROM goalrt.load_gdl('ws', %s, '{}', %s::jsonb)", ("a" * 64, json.dumps(runtime)))
    change = with_value([{"op": "set", "path": "p", "value": HOLE}], nested(MAX_JSON_DEPTH - 2))
    conn.execute("SELECT * FROM goalrt.change_state(%s::jsonb)", (change,))
    row = conn.execute("SELECT data ->> 'error' FROM goalrt.event_data WHERE type = 'gdl.trigger_refused'").fetchone()
    assert row == ("params is nested 101 levels deep; the limit is 100",)
    assert conn.execute("SELECT count(*) FROM goalrt.goals").fetchone() == (0,)
