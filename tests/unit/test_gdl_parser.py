"""The GDL grammar: what parses into which syntax tree, and how syntax errors read."""

from __future__ import annotations

import pytest

from goalrt.errors import GdlError, GdlSyntaxError, GoalrtError
from goalrt.gdl import ast
from goalrt.gdl.parser import parse_source

ISSUE_EXAMPLE = """\
type Order { id: string  amount: number  status: string }
event order.created { order_id: string  amount: number }
action payment.charge(o: Order) {
  require orders.{o}.status == "created"
  effect  orders.{o}.status = "paid"
  cost 2   retry 3 backoff exponential 1s   timeout 30s   concurrency 5
}
goal checkout(o: Order) {
  achieve orders.{o}.status == "shipped"
  priority 5   deadline 1h
  on event order.created as e { o = e.order_id }      # started by an event
}
contract PaymentService { event payment.completed  action payment.charge }
policy order_validation { require orders.*.amount > 0 }
test successful_checkout {
  given orders.o1.status = "created"  given orders.o1.amount = 200
  when goal checkout(o = "o1")
  expect event payment.completed
  expect state orders.o1.status == "shipped"
}
"""


def test_the_issue_example_parses_with_positions() -> None:
    source = parse_source(ISSUE_EXAMPLE, "apps/shop/all.gdl", "shop")
    kinds = [type(d).__name__ for d in source.decls]
    assert kinds == ["TypeDecl", "EventDecl", "ActionDecl", "GoalDecl", "ContractDecl", "PolicyDecl", "TestDecl"]
    action = source.decls[2]
    assert isinstance(action, ast.ActionDecl)
    assert action.pos == ast.Pos("apps/shop/all.gdl", 3, 1)
    assert action.name == ast.Name("payment.charge", ast.Pos("apps/shop/all.gdl", 3, 8))
    assert [p.name.text for p in action.params] == ["o"]
    retry = next(c for c in action.clauses if isinstance(c, ast.RetryClause))
    assert retry.attempts.value == 3 and retry.backoff == "exponential"
    assert retry.delay is not None and retry.delay.seconds == 1.0
    timeout = next(c for c in action.clauses if isinstance(c, ast.Timeout))
    assert timeout.duration.seconds == 30.0 and timeout.pos.line == 6
    goal = source.decls[3]
    assert isinstance(goal, ast.GoalDecl)
    trigger = next(c for c in goal.clauses if isinstance(c, ast.Trigger))
    assert trigger.event.text == "order.created" and trigger.alias.text == "e"
    assert trigger.bindings[0].value == ast.Name("e.order_id", ast.Pos("apps/shop/all.gdl", 11, 37))
    deadline = next(c for c in goal.clauses if isinstance(c, ast.Deadline))
    assert deadline.duration.seconds == 3600.0


def test_conditions_keep_precedence_not_and_or() -> None:
    (policy,) = parse_source("policy p { require not a == 1 and b < 2 or c in [1, 'x', null] }").decls
    assert isinstance(policy, ast.PolicyDecl)
    (cond,) = policy.conditions
    assert isinstance(cond, ast.AnyOf)
    left, right = cond.parts
    assert isinstance(left, ast.AllOf) and isinstance(left.parts[0], ast.Negation)
    assert isinstance(right, ast.Member)
    assert [o.value for o in right.options if isinstance(o, ast.Literal)] == [1, "x", None]


def test_effects_literals_and_comments() -> None:
    text = """
    # a comment
    action a(o: T) {   # another
      effect x.{o} = {o}
      effect n += -2.5
      effect delete y.{o}
      effect flag = true
      effect s = "a \\"quoted\\" word"
      effect t = 'single'
    }
    """
    (action,) = parse_source(text).decls
    assert isinstance(action, ast.ActionDecl)
    kinds = [type(c).__name__ for c in action.clauses]
    assert kinds == ["SetEffect", "IncEffect", "DeleteEffect", "SetEffect", "SetEffect", "SetEffect"]
    values = [c.value for c in action.clauses if isinstance(c, ast.SetEffect)]
    assert values[0] == ast.Name("{o}", values[0].pos)
    assert [v.value for v in values[1:] if isinstance(v, ast.Literal)] == [True, 'a "quoted" word', "single"]
    inc = action.clauses[1]
    assert isinstance(inc, ast.IncEffect) and inc.by.value == -2.5


def test_keywords_are_names_where_a_name_is_expected() -> None:
    (decl,) = parse_source("type event { type: string  goal: number }").decls
    assert isinstance(decl, ast.TypeDecl)
    assert decl.name.text == "event" and [f.name.text for f in decl.fields] == ["type", "goal"]


def test_an_empty_source_has_no_declarations() -> None:
    assert parse_source("  # nothing\n").decls == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type Order { id string }", "f.gdl:1:17: unexpected name 'string'; expected ':'"),
        (
            "action a { require x == }",
            "f.gdl:1:25: unexpected '}'; expected 'false', 'null', 'true', a name, a number or a string",
        ),
        (
            "policy p { require a = 1 }",
            "f.gdl:1:22: unexpected '='; expected 'in' or a comparison (== != < <= > >=)",
        ),
        ("action a(o: T { }", "f.gdl:1:15: unexpected '{'; expected ')' or ','"),
        (
            "action a { retry 3 backoff linear 1s }",
            "f.gdl:1:28: unexpected name 'linear'; expected 'exponential' or 'fixed'",
        ),
        ("action a { timeout 30 }", "f.gdl:1:20: unexpected number 30; expected a duration (e.g. 30s, 1h30m)"),
        ("test t { expect goal }", "f.gdl:1:22: unexpected '}'; expected a name"),
        (
            "goal g {\n  achieve a == 1\n",
            "f.gdl:3:1: unexpected end of file; expected 'achieve', 'actions', 'and', 'deadline', 'every', "
            "'maintain', 'max_replans', 'on', 'or', 'priority', 'steps' or '}'",
        ),
        (
            "type T { }\n  ~",
            "f.gdl:2:3: unexpected character '~'; expected 'action', 'builtin', 'contract', 'event', 'goal', 'policy', "
            "'test' or 'type'",
        ),
    ],
)
def test_syntax_errors_say_where_and_what_was_expected(text: str, expected: str) -> None:
    with pytest.raises(GdlSyntaxError) as info:
        parse_source(text, "f.gdl")
    message = str(info.value)
    first, line, caret = message.split("\n")
    assert first == expected
    line_no, column = (int(x) for x in expected.split(":")[1:3])
    assert line == "    " + text.split("\n")[line_no - 1]
    assert caret == "    " + " " * (column - 1) + "^"
    err = info.value
    assert isinstance(err, GdlError) and isinstance(err, SyntaxError) and isinstance(err, GoalrtError)
    assert (err.filename, err.lineno, err.offset) == ("f.gdl", line_no, column)


def test_deep_nesting_is_a_gdl_error_not_a_crash() -> None:
    text = "policy p { require " + "(" * 5000 + "a == 1" + ")" * 5000 + " }"
    with pytest.raises(GdlError, match="nested too deeply"):
        parse_source(text, "deep.gdl")
