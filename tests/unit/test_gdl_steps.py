"""GDL steps goals, emit on actions and a test's then-clauses: what they compile to, and each error's place."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from goalrt.errors import GdlError
from goalrt.gdl import compile_sources, source_for
from goalrt.gdl.compiled import CompiledWorkspace
from goalrt.gdl.graph import mermaid
from goalrt.gdl.runtime import runtime_json
from goalrt.goals.registry import Registry
from goalrt.worker.definitions import registry_for

BASE = """type Order under orders { amount: number }
event paid { order: string  amount: number }
action refund(o: Order) { effect orders.{o}.refund = true }
goal ship(o: Order) { achieve orders.{o}.shipped == true }
"""


def compiled(goals: str, tests: str | None = None) -> CompiledWorkspace:
    sources = [source_for("apps/a/base.gdl", BASE), source_for("apps/a/goals.gdl", goals)]
    if tests is not None:
        sources.append(source_for("tests/t.gdl", tests))
    return compile_sources(sources, name="ws", apps=["a"])


def problems(goals: str, tests: str | None = None) -> list[str]:
    with pytest.raises(GdlError) as info:
        compiled(goals, tests)
    return [line for line in str(info.value).split("\n") if line.startswith(("apps/", "tests/"))]


@pytest.mark.parametrize(
    ("goals", "expected"),
    [
        (
            "goal g(o: Order) { steps { action nope(o = {o}) } }",
            ["apps/a/goals.gdl:1:35: unknown action 'nope' (declared actions: refund)"],
        ),
        (
            "goal g(o: Order) { steps { action refund(o = {o}, x = 1) } }",
            ["apps/a/goals.gdl:1:51: goal g: action refund: x is not a parameter of action refund (parameters: o)"],
        ),
        (
            "goal g(o: Order) { steps { action refund() } }",
            ["apps/a/goals.gdl:1:28: goal g: action refund: o is not given"],
        ),
        (
            "goal g(o: Order) { steps { action refund(o = {o}, o = {o}) } }",
            ["apps/a/goals.gdl:1:51: goal g: action refund: o is given twice"],
        ),
        (
            "goal g(o: Order) { steps { action refund(o = orders.x) } }",
            [
                "apps/a/goals.gdl:1:46: goal g: action refund: o must be a parameter ({name}) or a constant, not the "
                "path orders.x"
            ],
        ),
        (
            "goal g(o: Order) { steps { action refund(o = 5) } }",
            ["apps/a/goals.gdl:1:46: goal g: action refund: o is Order, got 5"],
        ),
        (
            "goal g(o: Order) { steps { action refund(o = {p}) } }",
            ["apps/a/goals.gdl:1:46: goal g: action refund: unbound variable {p} (parameters: o)"],
        ),
        (
            "goal g(n: number) { steps { action refund(o = {n}) } }",
            ["apps/a/goals.gdl:1:47: goal g: action refund: o is Order, but {n} is number"],
        ),
        (
            "goal g(o: Order) { steps { wait event nope } }",
            ["apps/a/goals.gdl:1:39: unknown event 'nope' (declared events: paid)"],
        ),
        (
            "goal g(o: Order) { steps { wait event paid where { order = {o}  who = 1 } } }",
            [
                "apps/a/goals.gdl:1:65: goal g: wait event paid: who is not a field of event paid (fields: amount, "
                "order)"
            ],
        ),
        (
            'goal g(o: Order) { steps { wait event paid where { amount = "x" } } }',
            ['apps/a/goals.gdl:1:61: goal g: wait event paid: amount is number, got "x"'],
        ),
        (
            "goal g(o: Order) { steps { sleep 1m where { order = {o} } } }",
            ["apps/a/goals.gdl:1:37: goal g: a sleep step takes no where"],
        ),
        (
            "goal g(o: Order) { steps { action refund(o = {o}) timeout 1m } }",
            ["apps/a/goals.gdl:1:51: goal g: an action step takes no timeout"],
        ),
        (
            "goal g(o: Order) { steps { wait event paid timeout 1m timeout 2m } }",
            ["apps/a/goals.gdl:1:55: goal g: timeout is given twice"],
        ),
        (
            "goal g(o: Order) { steps { wait event paid on timeout { action refund(o = {o}) } } }",
            ["apps/a/goals.gdl:1:44: goal g: on timeout needs a timeout"],
        ),
        ("goal g(o: Order) { steps { sleep 0s } }", ["apps/a/goals.gdl:1:34: goal g: sleep must be longer than 0s"]),
        (
            "goal g(o: Order) { steps { wait event paid timeout 0s } }",
            ["apps/a/goals.gdl:1:52: goal g: timeout must be longer than 0s"],
        ),
        (
            'goal g(o: Order) { steps { ask "Refund {order}?" } }',
            ["apps/a/goals.gdl:1:32: goal g: the prompt names {order}, not a parameter (parameters: o)"],
        ),
        (
            'goal g(o: Order) { steps { ask "Ok?" answer { ok: bool } } }',
            [
                "apps/a/goals.gdl:1:51: goal g: unknown type 'bool' (use any, boolean, integer, number, string or a "
                "declared type)"
            ],
        ),
        (
            'goal g(o: Order) { steps { ask "Ok?" answer { ok: boolean  ok: string } } }',
            ["apps/a/goals.gdl:1:60: goal g: answer field ok is declared twice"],
        ),
        (
            'goal g(o: Order) { steps { ask "Ok?" as a  sleep 1s as a } }',
            ["apps/a/goals.gdl:1:56: goal g: label a is given twice (first at apps/a/goals.gdl:1:41)"],
        ),
        (
            "goal g(o: Order) { steps { all children { goal nope(o = {o}) } } }",
            ["apps/a/goals.gdl:1:48: unknown goal 'nope' (declared goals: g, ship)"],
        ),
        (
            "goal g(o: Order) { steps { all children { goal ship() } } }",
            ["apps/a/goals.gdl:1:43: goal g: child goal ship: o is not given"],
        ),
        (
            "goal g(o: Order) { steps { any children { } } }",
            ["apps/a/goals.gdl:1:28: goal g: any children needs at least one goal"],
        ),
        ("goal g(o: Order) { steps { } }", ["apps/a/goals.gdl:1:20: goal g: steps needs at least one step"]),
        (
            "goal g(o: Order) { achieve orders.{o}.x == 1  steps { sleep 1s } }",
            ["apps/a/goals.gdl:1:20: goal g: a goal with steps is not planned; 'achieve' does not apply to it"],
        ),
        (
            "goal g(o: Order) { steps { sleep 1s }  max_replans 2  actions refund }",
            [
                "apps/a/goals.gdl:1:40: goal g: a goal with steps is not planned; 'max_replans' does not apply to it",
                "apps/a/goals.gdl:1:55: goal g: a goal with steps is not planned; 'actions' does not apply to it",
            ],
        ),
        (
            "goal g(o: Order) { steps { sleep 1s }  steps { sleep 2s } }",
            ["apps/a/goals.gdl:1:40: goal g: steps is given twice"],
        ),
        (
            "goal g(o: Order) { steps { sleep 1s } deadline 0s }",
            ["apps/a/goals.gdl:1:48: goal g: deadline must be longer than 0s"],
        ),
        (
            "goal g(o: Order) { steps { sleep 10 } }",
            ["apps/a/goals.gdl:1:34: unexpected number 10; expected a duration (e.g. 30s, 1h30m)"],
        ),
        (
            "goal g(o: Order) { steps { wait event paid since later } }",
            ["apps/a/goals.gdl:1:50: unexpected name 'later'; expected 'submit' or 'wait'"],
        ),
        (
            "goal g(o: Order) { steps { some children { } } }",
            [
                "apps/a/goals.gdl:1:28: unexpected name 'some'; expected 'action', 'all' or 'any', 'ask', 'sleep', "
                "'wait' or '}'"
            ],
        ),
        (
            "goal g(o: Order) { steps { all children { goal ship(o = {o}) } on failure ignore } }",
            ["apps/a/goals.gdl:1:75: unexpected name 'ignore'; expected 'fail' or 'continue'"],
        ),
        (
            "action tell(o: Order) { emit nope }",
            ["apps/a/goals.gdl:1:30: unknown event 'nope' (declared events: paid)"],
        ),
        (
            "action tell(o: Order) { emit paid { order = {o}  who = 1 } }",
            ["apps/a/goals.gdl:1:50: action tell: emit paid: event paid has no field 'who' (fields: amount, order)"],
        ),
        (
            'action tell(o: Order) { emit paid { amount = "lots" } }',
            ['apps/a/goals.gdl:1:46: action tell: emit paid: amount is number, got "lots"'],
        ),
        (
            "action tell(o: Order) { emit paid { amount = orders.{x}.amount } }",
            ["apps/a/goals.gdl:1:53: unbound variable {x} in orders.{x}.amount (parameters: o)"],
        ),
        (
            "action tell(o: Order) { emit paid { order = {o}  order = {o} } pure }",
            ["apps/a/goals.gdl:1:50: action tell: emit paid: order is given twice"],
        ),
        (
            "action tell(o: Order) { pure }",
            ["apps/a/goals.gdl:1:25: action tell: a pure action is its effects and emits alone, and it has none"],
        ),
    ],
)
def test_each_error_of_steps_and_emit_names_its_place(goals: str, expected: list[str]) -> None:
    assert problems(goals) == expected


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        (
            'test t { then advance 1h  when goal ship(o = "o1")  expect goal complete }',
            ["tests/t.gdl:1:10: test t: a 'then' comes after the test's 'when'"],
        ),
        (
            'test t { when goal ship(o = "o1")  then event paid { who = 1 }  expect goal complete }',
            ["tests/t.gdl:1:54: test t: then event paid: unknown field 'who' (expected: amount, order)"],
        ),
        (
            'test t { when goal ship(o = "o1")  then advance 0s  expect goal complete }',
            ["tests/t.gdl:1:49: test t: then advance must be longer than 0s"],
        ),
        (
            'test t { when goal ship(o = "o1")  then answer nope { ok = true }  expect goal complete }',
            ["tests/t.gdl:1:48: unknown goal 'nope' (declared goals: ship)"],
        ),
        (
            'test t { when goal ship(o = "o1")  then answer { ok = yes }  expect goal complete }',
            ["tests/t.gdl:1:55: test t: then answer: a value must be a constant, not yes"],
        ),
        (
            'test t { when goal ship(o = "o1")  then event nope { }  expect goal complete }',
            ["tests/t.gdl:1:47: unknown event 'nope' (declared events: paid)"],
        ),
    ],
)
def test_each_error_of_a_tests_then_clauses_names_its_place(tests: str, expected: list[str]) -> None:
    assert problems("", tests) == expected


STEPS = """goal g(o: Order, n: number) {
  steps {
    ask "Refund {o} of {n}?" answer { approved: boolean  by?: string  note: any } timeout 1d
      on timeout { action refund(o = {o}) } as approval
    wait event paid where { order = {o}  amount = 5 } since wait timeout 1h
    sleep 10m
    any children { goal ship(o = {o})  goal ship(o = "spare") } on failure continue timeout 2h
    action refund(o = {o}) as refunded
  }
  priority 3  deadline 2d
  on event paid as e { o = e.order  n = e.amount }
}
"""


def test_steps_compile_to_templates_the_worker_fills_in_with_the_params() -> None:
    ws = compiled(STEPS)
    goal = ws.goals["g"]
    assert goal.achieve is None and goal.actions == () and goal.priority == 3 and goal.deadline == 172800
    assert [s["kind"] for s in goal.steps or ()] == ["ask", "event", "sleep", "children", "action"]
    body = next(g for g in ws.to_json()["apps"]["a"]["goals"] if g["name"] == "g")
    assert set(body) == {"name", "params", "steps", "priority", "deadline", "triggers"}
    assert body["steps"][1] == {
        "kind": "event",
        "event": "paid",
        "where": {"order": {"param": "o"}, "amount": {"value": 5}},
        "since": "wait",
        "timeout": 3600.0,
    }
    assert body["steps"][0]["schema"] == {
        "type": "object",
        "properties": {"approved": {"type": "boolean"}, "by": {"type": ["string", "null"]}, "note": {}},
        "required": ["approved", "note"],
        "additionalProperties": False,
    }
    assert next(t for t in runtime_json(ws)["goal_types"] if t["name"] == "g")["defaults"] == {
        "priority": 3,
        "deadline": 172800.0,
    }
    # What a worker runs: the steps of goalrt.waits, filled in when it first takes the goal.
    goal_type = registry_for(ws.to_json(), Registry()).goal_types["g"]
    assert goal_type.achieve is None
    steps = [s.as_json() for s in goal_type.plan({"o": "o1", "n": 120})]
    assert steps[0]["args"]["prompt"] == "Refund o1 of 120?"
    assert steps[0]["args"]["on_timeout"] == [{"action": "refund", "args": {"o": "o1"}}]
    assert steps[0]["label"] == "approval" and steps[0]["kind"] == "ask"
    assert steps[1] == {
        "action": "wait paid",
        "args": {"event": "paid", "where": {"order": "o1", "amount": 5}, "since": "wait", "timeout": 3600.0},
        "kind": "event",
    }
    assert steps[2] == {"action": "sleep", "args": {"seconds": 600.0}, "kind": "sleep"}
    assert steps[3]["args"] == {
        "goals": [
            {"name": "ship", "params": {"o": "o1"}, "options": {}},
            {"name": "ship", "params": {"o": "spare"}, "options": {}},
        ],
        "mode": "any",
        "on_failure": "continue",
        "timeout": 7200.0,
    }
    assert steps[4] == {"action": "refund", "args": {"o": "o1"}, "label": "refunded"}


def test_emit_is_stored_with_the_action_and_a_pure_one_appends_its_events() -> None:
    ws = compiled("action tell(o: Order) { emit paid { order = {o}  amount = orders.{o}.amount }  emit paid pure }")
    assert ws.to_json()["apps"]["a"]["actions"][1]["emit"] == [
        {"event": "paid", "data": {"order": {"param": "o"}, "amount": {"path": "orders.{o}.amount"}}},
        {"event": "paid", "data": {}},
    ]
    # An action without emit keeps the JSON (and so the content hash) it had before emit existed.
    assert "emit" not in ws.to_json()["apps"]["a"]["actions"][0]

    class Reads:
        async def value(self, path: str) -> Any:
            return {"orders.o1.amount": 7}[path]

    class Ctx:
        state = Reads()

    fn = registry_for(ws.to_json(), Registry()).actions["tell"].fn
    assert fn is not None
    result = asyncio.run(fn({"o": "o1"}, Ctx()))
    assert list(result.events) == [{"type": "paid", "data": {"order": "o1", "amount": 7}}, {"type": "paid", "data": {}}]


def test_then_clauses_keep_their_order_and_each_expect_its_place() -> None:
    ws = compiled(
        "goal g(o: Order) { steps { sleep 1m } }",
        'test t { expect goal waiting  when goal g(o = "o1")  then answer g { ok = true }\n'
        '  then event paid { order = "o1"  amount = 1 }  expect goal waiting  then advance 1m  expect goal complete }',
    )
    body = ws.to_json()["tests"][0]
    assert body["then"] == [
        {"answer": {"ok": True}, "goal": "g"},
        {"event": "paid", "data": {"order": "o1", "amount": 1}},
        {"advance": 60.0},
    ]
    assert body["expect"] == [{"goal": "waiting"}, {"goal": "waiting", "after": 2}, {"goal": "complete", "after": 3}]


def test_a_test_without_then_keeps_its_json() -> None:
    ws = compiled("", 'test t { when goal ship(o = "o1")  expect goal complete }')
    assert ws.to_json()["tests"] == [
        {"name": "t", "given": {}, "simulate": [], "when": {"goal": "ship", "params": {"o": "o1"}},
         "expect": [{"goal": "complete"}]}
    ]  # fmt: skip


def test_child_goals_that_start_each_other_without_end_are_refused() -> None:
    assert problems("goal g(o: Order) { steps { all children { goal g(o = {o}) } } }") == [
        "apps/a/goals.gdl:1:48: goal g: starts itself as a child goal, and so on without end"
    ]
    assert problems(
        "goal g(o: Order) { steps { all children { goal h(o = {o}) } } }\n"
        "goal h(o: Order) { steps { any children { goal g(o = {o}) } } }"
    ) == [
        "apps/a/goals.gdl:1:48: goal g: child goal h starts g again (g -> h -> g), and so on without end",
        "apps/a/goals.gdl:2:48: goal h: child goal g starts h again (h -> g -> h), and so on without end",
    ]
    # Started only when a wait times out: not a cycle that always runs.
    compiled(
        "goal g(o: Order) { steps { wait event paid timeout 1h on timeout { all children { goal h(o = {o}) } } } }\n"
        "goal h(o: Order) { steps { all children { goal g(o = {o}) } } }"
    )


def test_the_graph_shows_what_a_steps_goal_runs_waits_for_and_starts() -> None:
    text = mermaid(compiled(STEPS))
    assert '(["goal g"])' in text and "-->|runs|" in text and "-.->|resumes|" in text
    goal = text.split('(["goal g"])')[0].split()[-1]
    ship = text.split('(["goal ship"])')[0].split()[-1]
    assert f"{goal} -->|starts| {ship}" in text


def test_a_child_goal_may_be_another_apps_but_an_action_only_through_a_contract() -> None:
    sources = [
        source_for("shared/base.gdl", BASE),
        source_for("apps/b/goals.gdl", "goal other(o: Order) { steps { sleep 1s } }"),
        source_for("apps/b/actions.gdl", "action secret(o: Order) { effect orders.{o}.secret = true }"),
        source_for(
            "apps/a/goals.gdl",
            "goal g(o: Order) { steps { all children { goal other(o = {o}) }  action secret(o = {o}) } }",
        ),
    ]
    with pytest.raises(GdlError) as info:
        compile_sources(sources, name="ws", apps=["a", "b"])
    assert str(info.value).split("\n")[0] == (
        "apps/a/goals.gdl:1:73: action secret belongs to app b; app a may use it only through a contract of b"
    )
