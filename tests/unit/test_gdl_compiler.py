"""The GDL compiler: valid workspaces compile to the planner's objects; each invalid one gives its exact message."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goalrt.errors import GdlError, GdlSyntaxError
from goalrt.gdl import check, compile_sources, load_workspace, source_for
from goalrt.gdl.graph import mermaid
from goalrt.gdl.satisfiability import never_holds
from goalrt.gdl.scaffold import FILES
from goalrt.goals.retry import Retry
from goalrt.planner import Budget, GoalParam, Problem, cond, plan

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gdl"
SHOP = FIXTURES / "valid" / "shop"

INVALID = {
    "action_param_not_an_object": "apps/a/actions.gdl:1:15: action add parameter n: 'number' is not a declared type; "
    "an action's parameters range over the objects of a declared type",
    "app_not_listed": "goalrt.toml:3:1: apps/b/ is not listed in apps",
    "bad_backoff": "apps/a/actions.gdl:3:19: unexpected name 'linear'; expected 'exponential' or 'fixed'",
    "condition_needs_comparison": "apps/a/policies.gdl:2:27: unexpected '='; "
    "expected 'in' or a comparison (== != < <= > >=)",
    "cross_app_without_contract": "apps/shop/goals.gdl:3:11: action invoice.send belongs to app billing; "
    "app shop may use it only through a contract of billing",
    "duplicate_action": "apps/a/more.gdl:2:8: action ping is declared twice (first at apps/a/actions.gdl:1:1)",
    "goal_never_reached": "apps/a/goals.gdl:2:3: goal g can never be reached: its condition can never hold",
    "goal_without_condition": "apps/a/goals.gdl:1:6: goal g: needs an 'achieve' or a 'maintain' condition, "
    "or its 'steps'",
    "invalid_manifest": "goalrt.toml:2:11: invalid TOML: Invalid value",
    "missing_colon": "apps/a/types.gdl:2:6: unexpected name 'string'; expected ':'",
    "pure_with_handler": "apps/a/actions.gdl:5:3: action go: a pure action runs no handler; "
    "give pure or handler, not both",
    "pure_without_effects": "apps/a/actions.gdl:4:3: action go: a pure action is its effects and emits alone, "
    "and it has none",
    "policy_constant_false": "apps/a/policies.gdl:1:26: policy nothing can never hold: "
    "no state satisfies its conditions",
    "policy_never_holds": "apps/a/policies.gdl:2:11: policy amounts can never hold: no state satisfies its conditions",
    "reserved_event_type": "apps/a/events.gdl:1:7: event goal.paid: goal.* are goalrt's own event types "
    "(reserved: gdl.*, goal.*, schedule.*, state.*, step.*)",
    "stray_character": "apps/a/types.gdl:2:1: unexpected character '$'; "
    "expected 'action', 'builtin', 'contract', 'event', 'goal', 'policy', 'test' or 'type'",
    "test_outside_tests": "apps/a/t.gdl:1:1: test t: tests belong in the tests/ folder",
    "unbound_variable": "apps/a/actions.gdl:3:18: unbound variable {order} in orders.{order}.status (parameters: o)",
    "unknown_event": "apps/a/goals.gdl:3:12: unknown event 'order.made'",
    "unknown_event_field": "apps/a/goals.gdl:4:37: goal g: trigger on order.created: "
    "event order.created has no field 'id' (fields: order_id)",
    "unknown_goal_parameter": "tests/t.gdl:2:25: test t: unknown parameter 'order' (expected: o)",
    "unknown_type": "apps/a/actions.gdl:1:15: unknown type 'Ordr' "
    "(use any, boolean, integer, number, string or a declared type)",
    "unterminated_goal": "apps/a/goals.gdl:3:1: unexpected end of file; expected 'achieve', 'actions', 'and', "
    "'deadline', 'every', 'maintain', 'max_replans', 'on', 'or', 'priority', 'steps' or '}'",
    "wildcard_outside_policy": "apps/a/goals.gdl:1:18: orders.*.status: '*' is allowed only in policies",
}


def test_every_invalid_fixture_is_listed() -> None:
    found = {p.name for p in (FIXTURES / "invalid").iterdir()}
    assert found - {"multiple_problems", "syntax_errors_in_two_files"} == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_fixture_gives_its_exact_message(name: str) -> None:
    with pytest.raises(GdlError) as info:
        check(FIXTURES / "invalid" / name)
    assert len(info.value.problems) == 1
    head, line, caret = str(info.value).split("\n")
    assert head == INVALID[name]
    column = int(head.split(":")[2])
    assert caret == "    " + " " * (column - 1) + "^"
    assert line.startswith("    ")


def test_semantic_problems_are_all_reported_sorted_by_file_and_line() -> None:
    with pytest.raises(GdlError) as info:
        check(FIXTURES / "invalid" / "multiple_problems")
    assert not isinstance(info.value, GdlSyntaxError)
    lines = str(info.value).split("\n")
    assert lines[0] == "3 problems in the workspace"
    heads = [line for line in lines[1:] if not line.startswith("    ")]
    assert heads == [
        "apps/a/actions.gdl:3:18: unbound variable {x} in orders.{x}.status (parameters: o)",
        "apps/a/actions.gdl:5:3: action pay: cost is given twice",
        "apps/a/goals.gdl:1:11: unknown type 'Ordr' (use any, boolean, integer, number, string or a declared type)",
    ]


def test_syntax_errors_are_reported_for_every_file() -> None:
    with pytest.raises(GdlSyntaxError) as info:
        check(FIXTURES / "invalid" / "syntax_errors_in_two_files")
    heads = [line for line in str(info.value).split("\n")[1:] if not line.startswith("    ")]
    assert heads == [
        "apps/a/one.gdl:1:6: unexpected '{'; expected a name",
        "apps/b/two.gdl:1:14: unexpected '}'; expected a name",
    ]
    assert (info.value.filename, info.value.lineno) == ("apps/a/one.gdl", 1)


def test_valid_workspace_compiles_to_planner_objects() -> None:
    compiled = check(SHOP)
    assert compiled.name == "shop" and compiled.version == "1.2.0" and compiled.apps == ("payments", "shop")
    assert compiled.summary() == "2 types, 2 events, 4 actions, 2 goals, 1 contract, 1 policy, 2 tests in 8 files"
    # keys_under: declared with `under`, or derived from the paths where a parameter of the type is a segment.
    assert compiled.types["Truck"].object_type.keys_under == ("trucks",)
    assert compiled.types["Order"].object_type.keys_under == ("orders",)
    charge = compiled.actions["payment.charge"]
    assert charge.app == "payments" and charge.handler == "payments.card"
    assert charge.schema.params == (("o", "Order"),) and charge.schema.cost == 2
    assert str(charge.schema.pre) == "orders.{o}.status == 'created' and orders.{o}.amount > 0"
    assert [str(e) for e in charge.schema.effects] == ["orders.{o}.status = 'paid'", "payments.count += 1"]
    assert charge.retry == Retry(max_attempts=3, backoff=1.0, factor=2.0)
    assert (charge.timeout, charge.concurrency, charge.rate) == (30.0, 5, (10, 1.0))
    invoice = compiled.actions["payment.invoice"]
    assert invoice.retry.factor == 1.0 and invoice.retry.backoff == 0.5 and invoice.handler == "payment.invoice"
    ship = compiled.actions["shipping.ship"]
    # `pure`: no handler runs, the effects are the action; any other action needs its handler.
    assert compiled.actions["truck.call"].pure and compiled.actions["truck.call"].to_json()["pure"] is True
    assert not ship.pure and ship.to_json()["pure"] is False
    assert [str(e) for e in ship.schema.effects] == [
        "orders.{o}.status = 'shipped'",
        "orders.{o}.hold = {t}",
        "delete orders.{o}.note",
    ]
    checkout = compiled.goals["checkout"]
    assert checkout.priority == 5 and checkout.deadline == 3600.0 and checkout.achieve.max_replans == 2
    assert checkout.achieve.param_types == {"o": "Order"}
    # payments' actions are visible to shop through the PaymentService contract.
    assert checkout.actions == ("payment.charge", "payment.invoice", "shipping.ship", "truck.call")
    assert checkout.triggers[0].to_json() == {"event": "order.created", "params": {"o": {"field": "order_id"}}}
    keep = compiled.goals["keep_trucks_home"]
    assert keep.achieve.maintain and keep.actions == ("truck.call",)
    policy = compiled.policies["order_validation"]
    assert policy.wildcards == (("_1", "orders"),)
    assert str(policy.condition).startswith("orders.{_1}.amount > 0 and ")
    test = compiled.tests["successful_checkout"]
    assert test.given == (("orders.o1.status", "created"), ("orders.o1.amount", 200), ("trucks.t1.at", "depot"))
    assert test.simulate == ("shipping.ship", "truck.call")
    assert test.when == {"goal": "checkout", "params": {"o": "o1"}}
    assert [e.kind for e in test.expects] == ["event", "goal", "state"]


def test_compiled_goal_plans_with_the_compiled_actions() -> None:
    compiled = check(SHOP)
    goal = compiled.goals["checkout"]
    problem = Problem(
        types=goal.achieve.types,
        state={"orders.o1.status": "created", "orders.o1.amount": 10, "trucks.t1.at": "depot"},
        actions=[compiled.actions[n].schema for n in goal.actions],
        goal=goal.achieve.condition,
        goal_params=[GoalParam("o", "o1", "Order")],
    )
    result = plan(problem, Budget(max_expansions=1000))
    assert [s.name for s in result.steps] == ["payment.charge(o1)", "truck.call(t1)", "shipping.ship(o1, t1)"]


def test_json_is_canonical_and_hashed() -> None:
    compiled = check(SHOP)
    data = compiled.to_json()
    assert data["format"] == 2 and data["version"] == "1.2.0"
    assert data["content_hash"] == compiled.content_hash and len(compiled.content_hash) == 64
    assert sorted(data["apps"]) == ["payments", "shared", "shop"]
    json.dumps(data, allow_nan=False)  # plain JSON
    # Same definitions written differently: same hash. A changed definition: another hash.
    sources = load_workspace(SHOP).sources
    spaced = [s.__class__(s.path, s.app, "# reformatted\n" + s.text.replace("  ", "    ")) for s in sources]
    again = compile_sources(spaced, name="shop", version="1.2.0", apps=("payments", "shop"))
    assert again.content_hash == compiled.content_hash
    changed = [
        s.__class__(s.path, s.app, s.text.replace("cost 2", "cost 3")) if "payments" in s.path else s for s in sources
    ]
    other = compile_sources(changed, name="shop", version="1.2.0", apps=("payments", "shop"))
    assert other.content_hash != compiled.content_hash


def test_contract_exports_only_its_own_apps_declarations() -> None:
    sources = [
        source_for("apps/a/x.gdl", "type T { }\n"),
        source_for("apps/b/y.gdl", "contract C {\n  type T\n  action nope\n}\n"),
    ]
    with pytest.raises(GdlError) as info:
        compile_sources(sources)
    heads = [line for line in str(info.value).split("\n")[1:] if not line.startswith("    ")]
    assert heads == [
        "apps/b/y.gdl:2:8: contract C of app b exports type T of app a; a contract exports only its own app's "
        "declarations",
        "apps/b/y.gdl:3:10: contract C: unknown action 'nope'",
    ]


def test_an_event_of_another_app_needs_its_contract() -> None:
    base = [
        source_for("apps/a/x.gdl", "event paid { id: string }\n"),
        source_for("apps/b/y.gdl", "goal g(i: string) {\n  achieve x.{i} == 1\n  on event paid as e { i = e.id }\n}\n"),
    ]
    with pytest.raises(GdlError, match=r"apps/b/y.gdl:3:12: event paid belongs to app a"):
        compile_sources(base)
    compiled = compile_sources([*base, source_for("apps/a/c.gdl", "contract A { event paid }")])
    assert compiled.goals["g"].triggers[0].event == "paid"


def test_graph_connects_goals_actions_events_and_paths() -> None:
    text = mermaid(check(SHOP))
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    ids = {line.split("(")[0].split("[")[0].split("{")[0].strip(): line for line in lines[1:] if "-->" not in line}
    node = {v.split('"')[1]: k for k, v in ids.items() if '"' in v}
    assert f"  {node['event order.created']} -->|starts| {node['goal checkout']}" in lines
    assert f"  {node['goal checkout']} -.->|wants| {node['orders.{Order}.status']}" in lines
    assert f"  {node['action payment.charge']} -->|sets| {node['orders.{Order}.status']}" in lines
    assert f"  {node['action payment.charge']} -->|adds to| {node['payments.count']}" in lines
    assert f"  {node['action shipping.ship']} -->|deletes| {node['orders.{Order}.note']}" in lines
    assert f"  {node['trucks.{Truck}.at']} -.->|needs| {node['action truck.call']}" in lines
    assert mermaid(check(SHOP)) == text


def test_the_scaffold_compiles(tmp_path: Path) -> None:
    for rel, text in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{name}", "x"))
    compiled = check(tmp_path)
    assert compiled.summary() == "1 type, 1 event, 2 actions, 1 goal, 1 contract, 1 policy, 1 test in 8 files"


@pytest.mark.parametrize(
    ("text", "never"),
    [
        ("x > 5 and x < 3", True),
        ("x > 5 and x < 6", False),
        ("x == 1 and x == 2", True),
        ("x == 1 or x == 2", False),
        ("false", True),
        ("x in [1, 2] and x > 3", True),
        ("not exists(x) and x == 1", True),
        ("x > 1 and x < 'a'", True),
        ("x > 'b' and x < 'c'", False),
        ("x >= 3 and x <= 3 and x != 3", True),
        ("not (x == 1 or x != 1)", True),
        ("x == y", False),
        ("not (x < 3) and x < 3", True),
        ("not (x < 3) and not (x >= 3)", False),  # x absent, or not a number
    ],
)
def test_never_holds(text: str, never: bool) -> None:
    assert never_holds(cond(text)) is never


# -- fuzzing: the parser and the compiler raise GdlError and nothing else ---------------------

VALID_SOURCES = load_workspace(SHOP).sources
TOKENS = [
    "type", "event", "action", "goal", "contract", "policy", "test", "require", "effect", "delete", "cost", "retry",
    "backoff", "exponential", "fixed", "timeout", "concurrency", "rate", "per", "handler", "achieve", "maintain",
    "priority", "deadline", "max_replans", "actions", "on", "as", "given", "when", "expect", "state", "simulate",
    "complete", "under", "and", "or", "not", "in", "exists", "true", "false", "null", "{", "}", "(", ")", "[", "]",
    ",", ":", "=", "+=", "==", "!=", "<", "<=", ">", ">=", "*", "#c\n", "\n", "Order", "o", "orders.{o}.status",
    "orders.*.amount", "{o}", "e.order_id", "payment.charge", "order.created", "1", "-2.5", "1e999", "30s", "1h30m",
    '"x"', "'y'", '"', "string", "number", "checkout", "x.{zz}", "@a", "é",
]  # fmt: skip


def _compile(texts: list[tuple[str, str]]) -> None:
    # Anything but a GdlError fails the test.
    with contextlib.suppress(GdlError):
        compile_sources([source_for(path, text) for path, text in texts])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_fuzz_generated_token_streams(tokens: list[str]) -> None:
    _compile([("apps/a/x.gdl", " ".join(tokens)), ("tests/t.gdl", "test t { expect state " + " ".join(tokens))])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=len(VALID_SOURCES) - 1),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=8), st.text(max_size=6)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_mutated_valid_sources(which: int, edits: list[tuple[int, int, str]]) -> None:
    texts = [(s.path, s.text) for s in VALID_SOURCES]
    path, text = texts[which]
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut :]
    texts[which] = (path, text)
    _compile(texts)
