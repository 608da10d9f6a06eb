"""The planner through its public API: the model and its JSON, the condition syntax, bad input, semantics,
classic problems (gripper, blocksworld against a breadth-first search written here), budgets, exclusions,
explanations, and the same plan under every PYTHONHASHSEED."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest

from bench.planner.domains import blocksworld, fulfillment, gripper, random_blocksworld, random_towers, soldier
from goalrt.errors import GoalrtError, PlanningError
from goalrt.planner import (
    FALSE,
    HEURISTICS,
    TRUE,
    ActionSchema,
    And,
    Budget,
    Compare,
    Delete,
    Eq,
    Exists,
    Ge,
    GoalParam,
    GroundOp,
    Gt,
    In,
    Increment,
    Le,
    Lt,
    Ne,
    NoPlan,
    Not,
    ObjectType,
    Or,
    Path,
    Plan,
    Problem,
    Set,
    Var,
    apply,
    cond,
    condition_from_json,
    condition_to_json,
    holds,
    plan,
    simulate,
)
from goalrt.planner.relaxation import RelaxedGraph
from goalrt.planner.task import compile_task

# An order-processing domain small enough to read in a test.
ORDER = ObjectType("Order", keys_under="orders")


def shop(**changes: Any) -> Problem:
    state = {"orders.o1.status": "created", "orders.o1.total": 30, "truck.at": "depot"}
    actions = [
        ActionSchema(
            "payment.charge", {"o": "Order"}, cond("orders.{o}.status == 'created'"), [Set("orders.{o}.status", "paid")]
        ),
        ActionSchema(
            "payment.invoice",
            {"o": "Order"},
            cond("orders.{o}.status == 'created'"),
            [Set("orders.{o}.status", "paid")],
            cost=5,
        ),
        ActionSchema("truck.call", {}, cond("truck.at == 'depot'"), [Set("truck.at", "dock")], cost=2),
        ActionSchema(
            "shipping.ship",
            {"o": "Order"},
            cond("orders.{o}.status == 'paid' and truck.at == 'dock'"),
            [Set("orders.{o}.status", "shipped")],
        ),
    ]
    args: dict[str, Any] = {
        "types": [ORDER],
        "state": state,
        "actions": actions,
        "goal": cond("orders.{o}.status == 'shipped'"),
        "goal_params": [GoalParam("o", "o1", "Order")],
    }
    args.update(changes)
    return Problem(**args)


# The model and its JSON ----------------------------------------------------------------------------------


CONDITIONS = [
    "orders.{o}.status == 'paid'",
    "a.b != 3 and not (c < 1.5) or exists(d.e)",
    "x in ['p', 1, true, null] and {o} != 'o2'",
    "not exists(x) and (a == b or a >= -2)",
    "s == 'it\\'s' and t <= 1e+20",
    "true",
    "false",
    "user.u-1.balance > 0 and tenant:acme.x@y == false",
]


@pytest.mark.parametrize("text", CONDITIONS)
def test_condition_text_and_json_round_trip(text: str) -> None:
    parsed = cond(text)
    assert cond(str(parsed)) == parsed
    data = condition_to_json(parsed)
    assert condition_from_json(json.loads(json.dumps(data))) == parsed


def test_condition_syntax_builds_the_objects() -> None:
    assert cond("orders.{o}.status == 'paid'") == Eq("orders.{o}.status", "paid")
    assert cond("robot.at == {r}") == Compare("==", Path("robot.at"), Var("r"))
    assert cond("a == b") == Compare("==", Path("a"), Path("b"))
    assert cond("a < 1 and b >= 2 or not c > 3") == Or(And(Lt("a", 1), Ge("b", 2)), Not(Gt("c", 3)))
    assert cond("x in [1, 'one']") == In("x", [1, "one"])
    assert cond("not exists(x.y)") == Not(Exists("x.y"))
    assert cond("a <= 1 and a != 2") == And(Le("a", 1), Ne("a", 2))
    assert cond("true") == TRUE and cond("false") == FALSE
    assert cond("flag == true") == Eq("flag", True)
    assert Eq("flag", True) != Eq("flag", 1)  # JSON: true is not 1
    assert str(Eq("a", "it's")) == "a == 'it\\'s'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a ==", "unexpected end; expected 'false', 'null', 'true', a number, a path or a string"),
        ("a = 1", "unexpected character '=' at column 3; expected 'in' or a comparison (== != < <= > >=)"),
        ("a == 1 b", "unexpected 'b' at column 8; expected 'and', 'or' or the end"),
        ("(a == 1", "unexpected end; expected ')'"),
        ("a in 1", "unexpected '1' at column 6; expected '['"),
        ("exists(1)", "unexpected '1' at column 8; expected a path"),
        ("a ==\n  1 ~", "unexpected character '~' at line 2 column 5; expected 'and', 'or' or the end"),
        ("x in [a]", "'in' lists constants or parameters, not a path (a) at column 7"),
        ("orders.*.x == 1", "orders.*.x: '*' is allowed only in GDL policies at column 1"),
        ("a == 1e999", "number 1e999 is too large for a float at column 6"),
    ],
)
def test_condition_syntax_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(PlanningError, match=re.escape(message)) as info:
        cond(text)
    assert "\n" not in str(info.value)


def test_problem_json_round_trip() -> None:
    for problem in (shop(), gripper(2), random_blocksworld(4, 3), fulfillment(2), soldier()):
        data = json.loads(json.dumps(problem.to_json()))
        assert Problem.from_json(data) == problem
        assert Problem.from_json(data).to_json() == data


def test_plan_and_no_plan_json_round_trip() -> None:
    found = plan(shop())
    assert isinstance(found, Plan)
    assert Plan.from_json(json.loads(json.dumps(found.to_json()))) == found
    assert "seconds" not in found.to_json(timing=False)
    missing = plan(shop(goal=cond("orders.{o}.status == 'lost'")))
    assert isinstance(missing, NoPlan)
    assert NoPlan.from_json(json.loads(json.dumps(missing.to_json()))) == missing


def test_ground_operators_are_immutable_and_canonical() -> None:
    problem = blocksworld([["x1", "x2"]], [["x2", "x1"]])
    task = compile_task(problem)
    op = next(o for o in task.ops if o.name == "stack(x1, x2)")
    assert op.action == "stack" and op.bindings == {"b": "x1", "c": "x2"}
    # Preconditions sorted by their text, effects by path; the parameter test {b} != {c} is decided and gone.
    assert [str(c) for c in op.pre] == ["blocks.x1.on == 'hand'", "blocks.x2.clear == true"]
    assert [e.path.template for e in op.effects] == sorted(e.path.template for e in op.effects)
    assert all(o.name != "stack(x1, x1)" for o in task.ops)
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.cost = 0  # type: ignore[misc]
    assert GroundOp.from_json(json.loads(json.dumps(op.to_json()))) == op


def test_objects_come_from_declarations_goal_params_and_state_keys() -> None:
    problem = Problem(
        types=[ObjectType("Order", keys_under=["orders", "archive.orders"])],
        objects={"Order": ["o9"]},
        state={"orders.o1.status": "x", "orders.o2": 1, "archive.orders.o0.status": "y", "ordersx.o7": 1},
        goal_params=[GoalParam("o", "o5", "Order"), GoalParam("n", 3)],
        goal=cond("orders.{o}.total >= {n}"),
    )
    assert problem.objects_of("Order") == ("o0", "o1", "o2", "o5", "o9")
    assert problem.bindings == {"o": "o5", "n": 3}


# Bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: shop(types=[]), "action payment.charge parameter o: unknown type 'Order'"),
        (lambda: Problem(objects={"Ghost": ["g1"]}), "objects: unknown type 'Ghost'"),
        (
            lambda: ActionSchema("pay", {"o": "Order"}, cond("orders.{x}.status == 'created'")),
            r"action pay: unbound template variable \{x\}",
        ),
        (lambda: shop(goal=cond("orders.{order}.status == 'shipped'")), r"goal: unbound template variable \{order\}"),
        (lambda: Compare("=~", "a", 1), "unknown operator '=~'"),
        (lambda: condition_from_json({"op": "=~", "left": {"path": "a"}, "right": 1}), "unknown operator '=~'"),
        (lambda: Increment("stock.{s}", "one"), r"increment of stock.\{s\} by 'one': not a number"),
        (lambda: Increment("stock", True), "increment of stock by True: not a number"),
        (lambda: ActionSchema("pay", cost=-1), "action pay: cost must be a finite number >= 0"),
        (lambda: Path("orders..status"), "invalid path template 'orders..status'"),
        (lambda: Problem(state={"a b": 1}), "invalid path 'a b'"),
        (lambda: Problem(state={"a": [1]}), r"state a: \[1\] is not a JSON scalar"),
        (lambda: Problem(actions=[ActionSchema("a"), ActionSchema("a")]), "action a declared twice"),
        (lambda: ActionSchema("a", effects=[Set("x", 1), Set("x", 2)]), "action a: two effects set x, to 1 and to 2"),
        (lambda: Set("x", Path("y")), "the value must be a constant or a parameter"),
        (lambda: In("x", "abc"), "'in' needs a list of values"),
        (
            lambda: Budget(max_expansions=None, time_limit=None),
            "a budget needs max_expansions, time_limit or cpu_seconds",
        ),
        (lambda: Budget(max_expansions=-1), "max_expansions must be an integer >= 0"),
        (lambda: plan(shop(), heuristic="magic"), "unknown heuristic 'magic'"),
        (lambda: Problem.from_json({"goal": {"op": "and"}}), "condition 'and' needs exactly the keys"),
        (lambda: ObjectType("Order", keys_under="orders.*"), "invalid path 'orders.\\*'"),
    ],
)
def test_bad_input_raises_one_line_planning_error(build: Any, message: str) -> None:
    with pytest.raises(PlanningError, match=message) as info:
        build()
    assert "\n" not in str(info.value)
    assert isinstance(info.value, GoalrtError) and isinstance(info.value, ValueError)


def test_ground_action_with_two_effects_on_one_path_is_named() -> None:
    problem = Problem(
        types=[ObjectType("T")],
        objects={"T": ["a", "b"]},
        actions=[ActionSchema("copy", {"x": "T", "y": "T"}, TRUE, [Set("v.{x}", 1), Set("v.{y}", 2)])],
        goal=cond("v.a == 2"),
    )
    with pytest.raises(
        PlanningError, match=r"action copy: ground action copy\(a, a\): two effects set v.a, to 1 and to 2;"
    ):
        plan(problem)


# Semantics: holds, apply, simulate ------------------------------------------------------------------------


def test_holds_follows_json_semantics() -> None:
    state = {"flag": True, "n": 1, "f": 1.0, "s": "b", "nothing": None}
    assert holds(cond("flag == true"), state) and not holds(cond("flag == 1"), state)
    assert holds(cond("n == 1"), state) and not holds(cond("n == true"), state)
    assert holds(cond("n == f"), state)  # JSON numbers: 1 == 1.0
    assert not holds(cond("missing == null"), state) and holds(cond("missing != null"), state)
    assert holds(cond("nothing == null and exists(nothing) and not exists(missing)"), state)
    assert not holds(cond("missing < 3"), state) and holds(cond("not missing < 3"), state)
    assert not holds(cond("s < 3"), state) and holds(cond("s > 'a'"), state)  # no ordering across types
    assert holds(cond("flag in [1, true]"), state) and not holds(cond("n in [true, 'x']"), state)
    assert holds(cond("orders.{o}.total > {min}"), {"orders.o1.total": 5}, {"o": "o1", "min": 4})
    with pytest.raises(PlanningError, match=r"unbound template variable \{o\}"):
        holds(cond("orders.{o}.total > 0"), {})


def test_apply_and_simulate() -> None:
    found = plan(shop())
    assert isinstance(found, Plan)
    assert sorted(op.name for op in found.steps) == ["payment.charge(o1)", "shipping.ship(o1)", "truck.call()"]
    assert found.steps[-1].name == "shipping.ship(o1)"
    final = simulate(shop().state, found)
    assert final == {"orders.o1.status": "shipped", "orders.o1.total": 30, "truck.at": "dock"}
    charge = next(op for op in found.steps if op.action == "payment.charge")
    assert apply(charge, {"orders.o1.status": "created"}) == {"orders.o1.status": "paid"}
    with pytest.raises(PlanningError, match=r"step 1 shipping.ship\(o1\): precondition orders.o1.status == 'paid'"):
        simulate(shop().state, found.steps[-1:])
    counter = GroundOp("tick", "tick", (), (), (Increment("n", 2), Delete("gone")), 1)
    assert apply(counter, {"gone": 1}) == {"n": 2}
    assert apply(counter, {"n": 1.5}) == {"n": 3.5}
    with pytest.raises(PlanningError, match="cannot increment n: it holds 'x', not a number"):
        apply(counter, {"n": "x"})
    assert found.steps[2].applicable({"orders.o1.status": "paid", "truck.at": "dock"})
    assert not found.steps[2].applicable({"orders.o1.status": "paid"})


def test_goal_already_true_is_the_empty_plan() -> None:
    found = plan(shop(state={"orders.o1.status": "shipped"}))
    assert isinstance(found, Plan)
    assert found.steps == () and found.cost == 0 and found.length == 0
    assert "the goal already holds" in found.explain()


def test_increment_of_a_non_number_is_not_applicable() -> None:
    problem = Problem(
        state={"n": "many"},
        actions=[
            ActionSchema("inc", {}, TRUE, [Increment("n", 1)]),
            ActionSchema("reset", {}, TRUE, [Set("n", 0)], cost=3),
        ],
        goal=cond("n >= 2"),
    )
    found = plan(problem)
    assert isinstance(found, Plan)
    assert [op.name for op in found.steps] == ["reset()", "inc()", "inc()"]


# Classic problems -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_gripper_is_optimal(n: int) -> None:
    found = plan(gripper(n))
    assert isinstance(found, Plan)
    # 2n picks and drops, and 2*ceil(n/2) - 1 moves: 3n - 1 when n is even, 3n when odd.
    assert found.cost == found.length == 2 * n + 2 * math.ceil(n / 2) - 1
    final = simulate(gripper(n).state, found)
    assert all(final[f"balls.b{i}.at"] == "roomb" for i in range(1, n + 1))


Towers = Sequence[Sequence[str]]


def blocks_bfs(initial: Towers, goal: Towers) -> int:
    """Return the optimal blocksworld plan length by breadth-first search over (what each block is on, held)."""
    start = tuple(sorted((b, t[i - 1] if i else "table") for t in initial for i, b in enumerate(t)))
    wanted = {b: (t[i - 1] if i else "table") for t in goal for i, b in enumerate(t)}
    seen = {(start, None)}
    queue: deque[tuple[tuple[tuple[str, str], ...], str | None, int]] = deque([(start, None, 0)])
    while queue:
        on_items, held, depth = queue.popleft()
        on = dict(on_items)
        if held is None and all(on[b] == below for b, below in wanted.items()):
            return depth
        clear = [b for b in on if b != held and b not in on.values()]
        moves: list[tuple[dict[str, str], str | None]] = []
        if held is None:
            for b in clear:
                moves.append(({**on, b: "hand"}, b))
        else:
            moves.append(({**on, held: "table"}, None))
            moves.extend(({**on, held: c}, None) for c in clear if c != held)
        for after, now_held in moves:
            key = (tuple(sorted(after.items())), now_held)
            if key not in seen:
                seen.add(key)
                queue.append((key[0], now_held, depth + 1))
    raise AssertionError("blocksworld always has a plan")


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("seed", range(8))
def test_blocksworld_matches_breadth_first_search(n: int, seed: int) -> None:
    rng = random.Random(seed * 10 + n)
    blocks = [f"x{i}" for i in range(1, n + 1)]
    initial, goal = random_towers(blocks, rng), random_towers(blocks, rng)
    problem = blocksworld(initial, goal)
    found = plan(problem)
    assert isinstance(found, Plan)
    assert found.cost == found.length == blocks_bfs(initial, goal)
    final = simulate(problem.state, found)
    assert holds(problem.goal, final)


@pytest.mark.parametrize("heuristic", sorted(HEURISTICS))
def test_every_heuristic_is_admissible_at_the_start(heuristic: str) -> None:
    for problem in (gripper(3), random_blocksworld(4, 1), fulfillment(1), soldier(coins=4), shop()):
        task = compile_task(problem)
        graph = RelaxedGraph.build(task)
        estimator = HEURISTICS[heuristic](task, graph)
        h = estimator.h(task.init)
        if estimator.landmarks is not None:
            h = max(h, estimator.landmarks.value(estimator.landmarks.full))
        found = plan(problem, heuristic="blind")
        assert isinstance(found, Plan)
        assert h <= found.cost


def test_fulfillment_and_soldier_plans_are_valid() -> None:
    for problem in (fulfillment(2), soldier(coins=2)):
        found = plan(problem)
        assert isinstance(found, Plan)
        assert holds(problem.goal, simulate(problem.state, found), problem.bindings)
        assert found.cost == plan(problem, heuristic="hmax").cost  # type: ignore[union-attr]


# Budgets, exclusions, penalties ---------------------------------------------------------------------------


def test_budget_exhaustion_returns_a_lower_bound() -> None:
    result = plan(gripper(6), Budget(max_expansions=50))
    assert isinstance(result, NoPlan)
    assert result.reason == "budget_exhausted"
    assert result.bound is not None and 0 < result.bound <= 17
    assert result.expanded == 50
    assert "any plan costs at least" in result.explain()
    timed = plan(gripper(6), Budget(max_expansions=None, time_limit=1e-9))
    assert isinstance(timed, NoPlan) and timed.reason == "budget_exhausted"


def test_unbounded_state_space_ends_with_the_budget() -> None:
    # Increments make infinitely many states, and the relaxation cannot see that -1 is out of reach.
    problem = Problem(state={"n": 0}, actions=[ActionSchema("up", {}, TRUE, [Increment("n", 1)])], goal=cond("n == -1"))
    result = plan(problem, Budget(max_expansions=200))
    assert isinstance(result, NoPlan) and result.reason == "budget_exhausted"
    assert result.bound is not None and result.bound >= 1


def test_exclude_and_penalties_reroute() -> None:
    invoiced = plan(shop(), exclude={"payment.charge(o1)"})
    assert isinstance(invoiced, Plan) and invoiced.cost == 8
    assert "payment.invoice(o1)" in [op.name for op in invoiced.steps]
    rerouted = plan(shop(), penalties={"payment.charge(o1)": 10})
    assert isinstance(rerouted, Plan) and rerouted.cost == 8
    stuck = plan(shop(), exclude=frozenset({"payment.charge(o1)", "payment.invoice(o1)"}))
    assert isinstance(stuck, NoPlan) and stuck.reason == "goal_unreachable"
    assert stuck.excluded == ("payment.charge(o1)", "payment.invoice(o1)")
    assert (
        "only excluded actions can make orders.o1.status == 'paid' true: payment.charge(o1), payment.invoice(o1)"
        in stuck.causes
    )
    assert "excluded actions that would help: payment.charge(o1), payment.invoice(o1)" in stuck.explain()
    with pytest.raises(PlanningError, match="not one string"):
        plan(shop(), exclude="payment.charge(o1)")
    # Without its only changer truck.at is static, so shipping is set aside at grounding: still explained.
    no_truck = plan(shop(), exclude={"truck.call()"})
    assert isinstance(no_truck, NoPlan) and no_truck.excluded == ("truck.call()",)
    assert no_truck.blocked[0].missing == (
        "truck.at == 'dock' (false, and only excluded actions change it: truck.call())",
    )


# Explanations ---------------------------------------------------------------------------------------------


def test_unreachable_goal_names_the_condition() -> None:
    result = plan(shop(goal=cond("orders.{o}.status == 'lost' and truck.at == 'dock'")))
    assert isinstance(result, NoPlan) and result.reason == "goal_unreachable"
    assert result.unreachable == ("orders.o1.status == 'lost'",)
    assert any("no action sets orders.o1.status to a value where it holds" in c for c in result.causes)
    text = result.explain()
    assert "goal conditions no sequence of actions can make true:\n  - orders.o1.status == 'lost'" in text


def test_blocked_action_names_its_precondition() -> None:
    repair = ActionSchema("truck.repair", {}, cond("mechanic.here == true"), [Set("truck.at", "depot")])
    garage = {"state": {"orders.o1.status": "created", "truck.at": "garage"}, "actions": [*shop().actions, repair]}
    result = plan(shop(**garage))
    assert isinstance(result, NoPlan) and result.reason == "goal_unreachable"
    blocked = {b.op: b for b in result.blocked}
    assert blocked["shipping.ship(o1)"].missing == ("truck.at == 'dock'",)
    # truck.repair needs a path nothing changes: it is set aside at grounding, and still named.
    assert "nothing can make truck.at == 'depot' true" not in " ".join(result.causes)
    assert "shipping.ship(o1) would make orders.o1.status == 'shipped' true but needs truck.at == 'dock'" in (
        result.explain()
    )
    # Follow it down: the truck can reach the dock only from the depot, and the repair needs the mechanic.
    deeper = plan(shop(**garage, goal=cond("truck.at == 'depot'")))
    assert isinstance(deeper, NoPlan)
    assert [(b.op, b.missing) for b in deeper.blocked] == [
        ("truck.repair()", ("mechanic.here == true (false, and no action changes it)",))
    ]


def test_no_actions() -> None:
    result = plan(Problem(state={"a": 1}, goal=cond("a == 2")))
    assert isinstance(result, NoPlan) and result.reason == "no_actions"
    assert result.unreachable == ("a == 2",)
    assert "nothing can make a == 2 true: no action changes a" in result.causes
    orderless = shop(state={}, goal_params=[], goal=cond("orders.o1.status == 'shipped'"))
    empty = plan(Problem(types=[ORDER], actions=orderless.actions[:2], goal=orderless.goal))
    assert isinstance(empty, NoPlan) and empty.reason == "no_actions"
    assert "action payment.charge has no ground instances: type Order has no objects" in empty.causes


def test_goal_unreachable_found_by_exhausting_the_search() -> None:
    # Each goal condition is reachable on its own; together they are not.
    problem = Problem(
        state={"x": 0, "y": 0},
        actions=[
            ActionSchema("a", {}, cond("y == 0"), [Set("x", 1)]),
            ActionSchema("b", {}, cond("x == 0"), [Set("y", 1)]),
        ],
        goal=cond("x == 1 and y == 1"),
    )
    result = plan(problem)
    assert isinstance(result, NoPlan) and result.reason == "goal_unreachable"
    assert result.unreachable == () and "the search ran out of states" in result.message


def test_plan_explain_lists_steps_with_effects() -> None:
    found = plan(shop())
    assert isinstance(found, Plan)
    lines = found.explain().splitlines()
    assert lines[0].startswith("plan: 3 steps, cost 4 (minimum), goal orders.o1.status == 'shipped';")
    assert len(lines) == 4
    assert " ".join(lines[3].split()) == "3. shipping.ship(o1) cost 1, total 4: orders.o1.status = 'shipped'"


# Determinism ----------------------------------------------------------------------------------------------

DETERMINISM_SCRIPT = """
import json
from goalrt.planner import plan
from bench.planner.domains import fulfillment, gripper, random_blocksworld, soldier
for problem in (gripper(4), random_blocksworld(5, 1), random_blocksworld(6, 4), fulfillment(2), soldier(coins=2)):
    for heuristic in ("auto", "hmax", "blind"):
        print(json.dumps(plan(problem, heuristic=heuristic).to_json(timing=False), sort_keys=True))
"""


def test_same_plan_under_every_hash_seed() -> None:
    outputs = []
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT], env=env, capture_output=True, check=True, timeout=120
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0].count(b"\n") == 15
