"""A GDL test's expect refused, when change and expect goal NAME: what they compile to, and each error's place."""

from __future__ import annotations

import pytest

from goalrt.errors import GdlError, GdlSyntaxError
from goalrt.gdl import compile_sources, source_for
from goalrt.gdl.compiled import CompiledWorkspace
from goalrt.gdl.event_data import data_problems, value_problem

BASE = """type Order under orders { amount: number }
event created { order: string  amount: number }
event other { n: integer }
policy positive { require orders.*.amount > 0 }
policy capped { require stock.total <= 100 }
action ship(o: Order) { require orders.{o}.amount > 0  effect orders.{o}.shipped = true }
goal deliver(o: Order) { achieve orders.{o}.shipped == true  on event created as e { o = e.order }  }
goal pack(o: Order) { steps { ask "ok?" answer { ok: boolean }  all children { goal deliver(o = {o}) } } }
goal count(n: integer) { achieve stock.total == 1 }
"""


def compiled(tests: str) -> CompiledWorkspace:
    sources = [source_for("apps/a/base.gdl", BASE), source_for("tests/t.gdl", tests)]
    return compile_sources(sources, name="ws", apps=["a"])


def problems(tests: str) -> list[str]:
    with pytest.raises(GdlError) as info:
        compiled(tests)
    return [line for line in str(info.value).split("\n") if line.startswith(("apps/", "tests/"))]


def test_expect_refused_and_when_change_compile_to_json() -> None:
    ws = compiled(
        "test t { given orders.o1.amount = 5  when change { orders.o1.amount = -1  stock.total = 3 }\n"
        "  expect refused by positive  expect state orders.o1.amount == 5 }\n"
        'test u { given orders.o1.status = "x"  expect refused }\n'
        'test v { when goal count(n = "many")  expect refused }\n'
        'test x { when goal deliver(o = "o1")  expect refused by positive }\n'  # a step the policy refuses
        'test w { when goal pack(o = "o1")  then answer { ok = 1 }  expect refused  expect goal deliver waiting }\n'
    )
    body = {t["name"]: t for t in ws.to_json()["tests"]}
    assert body["t"]["when"] == {"change": {"orders.o1.amount": -1, "stock.total": 3}}
    assert body["t"]["expect"][0] == {"refused": {"by": "positive"}}
    assert body["u"]["when"] is None and body["u"]["expect"] == [{"refused": {"by": None}}]
    assert body["v"]["expect"] == [{"refused": {"by": None}}]
    assert body["x"]["expect"] == [{"refused": {"by": "positive"}}]
    assert body["w"]["expect"] == [
        {"refused": {"by": None}, "after": 1},
        {"goal": "waiting", "name": "deliver", "after": 1},
    ]


def test_expect_goal_names_the_goal_an_event_submits() -> None:
    ws = compiled(
        'test t { when event created { order = "o1"  amount = 5 }  expect goal deliver complete\n'
        "  expect goal complete }\n"
        'test u { when goal pack(o = "o1")  expect goal deliver complete }\n'  # a child goal
        'test v { when goal count(n = 1)  then event created { order = "o1"  amount = 5 }\n'
        "  expect goal deliver complete }\n"
    )
    body = {t["name"]: t for t in ws.to_json()["tests"]}
    assert body["t"]["expect"] == [{"goal": "complete", "name": "deliver"}, {"goal": "complete"}]
    assert body["u"]["expect"] == [{"goal": "complete", "name": "deliver"}]


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        (
            "test t { when change { stock.other = 1 }  expect refused }",
            ["tests/t.gdl:1:43: test t: nothing can refuse 'when change': no policy reads stock.other"],
        ),
        (
            "test t { when change { orders.o1.amount = -1 }  expect refused by capped }",
            ["tests/t.gdl:1:67: test t: policy capped reads none of orders.o1.amount: it cannot refuse 'when change'"],
        ),
        (
            "test t { when change { orders.o1.amount = -1 }  expect refused by nope }",
            ["tests/t.gdl:1:67: unknown policy 'nope' (declared policys: capped, positive)"],
        ),
        (
            "test t { given stock.other = 1  expect refused }",
            ["tests/t.gdl:1:33: test t: nothing can refuse the givens: no policy reads stock.other"],
        ),
        (
            "test t { expect refused }",
            ["tests/t.gdl:1:10: test t: nothing to refuse: the test has no given, when or then before this expect"],
        ),
        (
            'test t { when goal deliver(o = "o1")  expect refused }',
            [
                "tests/t.gdl:1:39: test t: nothing can refuse 'when goal deliver': its params match goal "
                "deliver's parameter types"
            ],
        ),
        (
            'test t { when event created { order = "o1"  amount = 1 }  expect refused }',
            [
                "tests/t.gdl:1:59: test t: nothing can refuse 'when event created': an event is appended as "
                "declared (its data is checked here)"
            ],
        ),
        (
            'test t { when goal pack(o = "o1")  then advance 1h  expect refused }',
            [
                "tests/t.gdl:1:53: test t: nothing can refuse 'then advance': only an answer or a change of state "
                "is refused"
            ],
        ),
        (
            'test t { when goal pack(o = "o1")  then answer { ok = 1 }  expect refused by positive }',
            ["tests/t.gdl:1:78: test t: 'then answer' is refused by the ask's answer schema, never by a policy"],
        ),
        (
            "test t { when change { orders.o1.amount = -1 }  expect refused  expect refused by positive }",
            ["tests/t.gdl:1:65: test t: 'when change' is expected refused twice"],
        ),
        (
            "test t { when change { }  expect state stock.total == 1 }",
            ["tests/t.gdl:1:10: test t: when change needs at least one PATH = VALUE"],
        ),
        (
            "test t { when change { a.b = 1  a.b = 2 }  expect state a.b == 1 }",
            ["tests/t.gdl:1:33: test t: when change: a.b is set twice"],
        ),
        (
            'test t { when event created { order = "o1"  amount = 5 }  expect goal count complete }',
            [
                "tests/t.gdl:1:71: test t: expect goal count: nothing in this test submits it (the when is event "
                "created; the test's events submit deliver, with their child goals)"
            ],
        ),
        (
            "test t { when goal count(n = 1)  expect goal deliver done }",
            [
                "tests/t.gdl:1:34: test t: expect goal: 'done' is not a goal status (expected: complete, failed, "
                "cancelled, waiting, active, pending)",
                "tests/t.gdl:1:46: test t: expect goal deliver: nothing in this test submits it (the when is goal "
                "count, with their child goals)",
            ],
        ),
        (
            "test t { given a.b = 1  expect goal complete }",
            ["tests/t.gdl:1:25: test t: 'expect goal' needs a 'when goal' or a 'when event'"],
        ),
        (
            "test t { when goal count(n = 1)  expect goal nope complete }",
            ["tests/t.gdl:1:46: unknown goal 'nope' (declared goals: count, deliver, pack)"],
        ),
        (
            "test t { when event created { order = 1 }  expect state a.b == 1 }",
            [
                "tests/t.gdl:1:10: test t: event created: field amount is missing",
                "tests/t.gdl:1:10: test t: event created: field order is a number, not a string",
            ],
        ),
        (
            "test t { when goal count(n = 1)  then event other { n = 1.5 }  expect state a.b == 1 }",
            ["tests/t.gdl:1:34: test t: event other: field n is a number, not an integer"],
        ),
    ],
)
def test_each_error_of_refusals_and_named_goals_names_its_place(tests: str, expected: list[str]) -> None:
    assert problems(tests) == expected


def test_expect_refused_by_needs_a_policy_name() -> None:
    with pytest.raises(GdlSyntaxError, match=r"tests/t.gdl:1:"):
        compiled("test t { when change { a.b = 1 }  expect refused by }")


def test_values_are_checked_as_the_params_schemas_check_them() -> None:
    assert value_problem(True, "number") == "is a boolean, not a number"
    assert value_problem(1, "number") is None and value_problem(1.5, "integer") == "is a number, not an integer"
    assert value_problem(1.0, "integer") is None  # as the database's params check
    assert value_problem(None, "any") is None
    assert value_problem(None, "Order") == "is null, not a string (a Order's key)"
    assert data_problems({"a": "string"}, {"b": 1}) == ["field a is missing", "field b is not declared"]
