"""STRIPS semantics (delete-then-add on one path), names with '-', subtypes, ground action counts and the CPU
budget, on tasks written the way PDDL domains are: one boolean path per fact, deleted and set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from goalrt.errors import GdlError
from goalrt.gdl import compile_sources, source_for
from goalrt.planner import (
    TRUE,
    ActionSchema,
    And,
    Budget,
    Delete,
    GoalParam,
    GroundOp,
    Increment,
    NoPlan,
    ObjectType,
    Plan,
    PlanningError,
    Problem,
    Set,
    Var,
    apply,
    cond,
    plan,
    simulate,
)
from goalrt.worker.planner_bridge import effect_changes


def _plan(problem: Problem, **kwargs: object) -> Plan:
    found = plan(problem, **kwargs)  # type: ignore[arg-type]
    assert isinstance(found, Plan), found.explain()
    return found


def _op(problem: Problem, name: str) -> GroundOp:
    from goalrt.planner.grounding import ground_actions

    return next(op for op in ground_actions(problem).ops if op.name == name)


# A robot moves between rooms; move(from, to) deletes at-robby.{from} and sets at-robby.{to}, with no {from} != {to}.
def rooms(goal: str) -> Problem:
    return Problem(
        types=[ObjectType("room")],
        objects={"room": ["a", "b"]},
        state={"at-robby.a": True},
        actions=[
            ActionSchema(
                "move",
                {"from": "room", "to": "room"},
                cond("at-robby.{from} == true"),
                [Delete("at-robby.{from}"), Set("at-robby.{to}", True), Set("visited.{to}", True)],
            )
        ],
        goal=cond(goal),
    )


def test_delete_then_add_on_one_path_keeps_the_add_with_coinciding_parameters() -> None:
    problem = rooms("at-robby.a == true and visited.a == true")
    op = _op(problem, "move(a, a)")
    assert [str(e) for e in op.effects] == ["at-robby.a = true", "visited.a = true"]
    assert apply(op, {"at-robby.a": True}) == {"at-robby.a": True, "visited.a": True}
    # Only move(a, a) reaches the goal in one step: the search (and its heuristic) must see the add win.
    found = _plan(problem)
    assert [s.name for s in found.steps] == ["move(a, a)"] and found.cost == 1
    assert simulate(problem.state, found) == {"at-robby.a": True, "visited.a": True}
    # The same for an operator built by hand with the set before the delete: deletes apply first.
    hand = GroundOp("m", "m", (), (), (Set("p", 1), Delete("p")), 1)
    assert apply(hand, {}) == {"p": 1}
    # And for the worker, which writes a step's declared effects as state changes with its completion.
    schema = ActionSchema("move", {"from": "room", "to": "room"}, TRUE, [Set("at.{to}", True), Delete("at.{from}")])
    assert [c.as_json() for c in effect_changes(schema, {"from": "a", "to": "a"})] == [
        {"op": "set", "path": "at.a", "value": True}
    ]


def test_effects_on_one_path_conflict_when_built_or_when_grounded() -> None:
    with pytest.raises(PlanningError, match=r"^action a: two effects set x, to 1 and to 2$"):
        ActionSchema("a", effects=[Set("x", 1), Set("x", 2)])
    with pytest.raises(PlanningError, match=r"^action a: an increment and another change of x"):
        ActionSchema("a", effects=[Increment("x", 1), Delete("x")])
    # Agreeing effects on one path are one; increments add up.
    same = ActionSchema("a", effects=[Set("x", 1), Delete("x"), Set("x", 1), Increment("n", 1), Increment("n", 2)])
    assert apply(GroundOp("a()", "a", (), (), same.effects, 1), {"n": 1}) == {"x": 1, "n": 4}
    # A set of a parameter's value may agree with another set for some arguments: decided per ground action.
    schema = ActionSchema("put", {"v": "T"}, TRUE, [Set("x", Var("v")), Set("x", "a")])
    problem = Problem(types=[ObjectType("T")], objects={"T": ["a", "b"]}, actions=[schema], goal=cond("x == 'a'"))
    with pytest.raises(PlanningError, match=r"^action put: ground action put\(b\): two effects set x, to 'b' and to"):
        plan(problem)
    guarded = ActionSchema("put", {"v": "T"}, cond("{v} == 'a'"), [Set("x", Var("v")), Set("x", "a")])
    problem = Problem(types=[ObjectType("T")], objects={"T": ["a", "b"]}, actions=[guarded], goal=cond("x == 'a'"))
    assert [s.name for s in _plan(problem).steps] == ["put(a)"]


def strips_gripper(balls: int) -> Problem:
    """Gripper as PDDL writes it: move(from, to) without from != to, facts as boolean paths."""
    names = [f"ball{i}" for i in range(1, balls + 1)]
    state: dict[str, bool] = {"at-robby.rooma": True, "free.left": True, "free.right": True}
    state.update({f"at.{b}.rooma": True for b in names})
    return Problem(
        types=[ObjectType("object"), *(ObjectType(t, parent="object") for t in ("room", "ball", "gripper"))],
        objects={"room": ["rooma", "roomb"], "ball": names, "gripper": ["left", "right"]},
        state=state,
        actions=[
            ActionSchema(
                "move",
                {"from": "room", "to": "room"},
                cond("at-robby.{from} == true"),
                [Delete("at-robby.{from}"), Set("at-robby.{to}", True)],
            ),
            ActionSchema(
                "pick",
                {"obj": "ball", "room": "room", "gripper": "gripper"},
                cond("at.{obj}.{room} == true and at-robby.{room} == true and free.{gripper} == true"),
                [Set("carry.{obj}.{gripper}", True), Delete("at.{obj}.{room}"), Delete("free.{gripper}")],
            ),
            ActionSchema(
                "drop",
                {"obj": "ball", "room": "room", "gripper": "gripper"},
                cond("carry.{obj}.{gripper} == true and at-robby.{room} == true"),
                [Set("at.{obj}.{room}", True), Set("free.{gripper}", True), Delete("carry.{obj}.{gripper}")],
            ),
        ],
        goal=And(*(cond(f"at.{b}.roomb == true") for b in names)),
    )


def strips_blocks(initial: dict[str, str], goal: dict[str, str]) -> Problem:
    """Blocksworld's four PDDL operators, stack(x, y) and unstack(x, y) without x != y."""
    blocks = sorted(initial)
    state: dict[str, bool] = {"handempty.arm": True}
    for block, below in initial.items():
        state["ontable." + block if below == "table" else f"on.{block}.{below}"] = True
    state.update({f"clear.{b}": True for b in blocks if b not in initial.values()})
    return Problem(
        types=[ObjectType("block")],
        objects={"block": blocks},
        state=state,
        actions=[
            ActionSchema(
                "pick-up",
                {"x": "block"},
                cond("clear.{x} == true and ontable.{x} == true and handempty.arm == true"),
                [Delete("ontable.{x}"), Delete("clear.{x}"), Delete("handempty.arm"), Set("holding.{x}", True)],
            ),
            ActionSchema(
                "put-down",
                {"x": "block"},
                cond("holding.{x} == true"),
                [Delete("holding.{x}"), Set("clear.{x}", True), Set("handempty.arm", True), Set("ontable.{x}", True)],
            ),
            ActionSchema(
                "stack",
                {"x": "block", "y": "block"},
                cond("holding.{x} == true and clear.{y} == true"),
                [
                    Delete("holding.{x}"),
                    Delete("clear.{y}"),
                    Set("clear.{x}", True),
                    Set("handempty.arm", True),
                    Set("on.{x}.{y}", True),
                ],
            ),
            ActionSchema(
                "unstack",
                {"x": "block", "y": "block"},
                cond("on.{x}.{y} == true and clear.{x} == true and handempty.arm == true"),
                [
                    Set("holding.{x}", True),
                    Set("clear.{y}", True),
                    Delete("clear.{x}"),
                    Delete("handempty.arm"),
                    Delete("on.{x}.{y}"),
                ],
            ),
        ],
        goal=And(*(cond(f"on.{b}.{below} == true") for b, below in goal.items())),
    )


def test_pddl_style_gripper_and_blocks_plan_optimally() -> None:
    # Gripper: 2 balls per round trip, 6 steps a pair less the last move back.
    found = _plan(strips_gripper(4))
    assert found.length == found.cost == 11
    final = simulate(strips_gripper(4).state, found)
    assert all(final.get(f"at.ball{i}.roomb") is True for i in range(1, 5))
    # stack(a, a) deletes and sets clear.a; the Sussman anomaly takes 6 steps.
    blocks = strips_blocks({"a": "table", "b": "table", "c": "a"}, {"a": "b", "b": "c"})
    assert [str(e) for e in _op(blocks, "stack(a, a)").effects] == [
        "clear.a = true",
        "handempty.arm = true",
        "delete holding.a",
        "on.a.a = true",
    ]
    found = _plan(blocks)
    assert [s.name for s in found.steps] == [
        "unstack(c, a)",
        "put-down(c)",
        "pick-up(b)",
        "stack(b, c)",
        "pick-up(a)",
        "stack(a, b)",
    ]


def test_a_parameter_of_a_parent_type_takes_objects_of_its_subtypes_not_the_reverse() -> None:
    problem = Problem(
        types=[
            ObjectType("vehicle"),
            ObjectType("truck", parent="vehicle"),
            ObjectType("airplane", "planes", parent="vehicle"),
            ObjectType("van", parent="truck"),
        ],
        objects={"vehicle": ["v1"], "truck": ["t1"], "van": ["w1"]},
        state={"planes.p1.at": "apt"},
        actions=[
            ActionSchema("fuel", {"v": "vehicle"}, TRUE, [Set("fuel.{v}", True)]),
            ActionSchema("drive-truck", {"t": "truck"}, TRUE, [Set("driven.{t}", True)]),
        ],
        goal=cond("fuel.p1 == true and fuel.w1 == true and driven.w1 == true"),
    )
    assert problem.objects_of("vehicle") == ("p1", "t1", "v1", "w1")
    assert problem.objects_of("truck") == ("t1", "w1")
    assert problem.objects_of("airplane") == ("p1",)
    assert len(_plan(problem).steps) == 3
    # drive-truck takes no vehicle that is not a truck.
    for goal in ("driven.v1 == true", "driven.p1 == true"):
        outcome = plan(
            Problem(
                types=problem.types,
                objects=problem.objects,
                state=problem.state,
                actions=problem.actions,
                goal=cond(goal),
            )
        )
        assert isinstance(outcome, NoPlan) and outcome.reason == "goal_unreachable"
    assert Problem.from_json(json.loads(json.dumps(problem.to_json()))) == problem
    assert problem.to_json()["types"][1] == {"name": "truck", "keys_under": [], "parent": "vehicle"}
    assert problem.to_json()["types"][0] == {"name": "vehicle", "keys_under": []}


@pytest.mark.parametrize(
    ("types", "message"),
    [
        ([ObjectType("truck", parent="vehicle")], r"^type truck: unknown parent type 'vehicle'$"),
        ([ObjectType("a", parent="a")], r"^type a: its parent types form a cycle: a -> a$"),
        (
            [ObjectType("x", parent="a"), ObjectType("a", parent="b"), ObjectType("b", parent="a")],
            r"^type a: its parent types form a cycle: a -> b -> a$",
        ),
    ],
)
def test_unknown_parents_and_cycles_are_refused_when_the_problem_is_built(
    types: list[ObjectType], message: str
) -> None:
    with pytest.raises(PlanningError, match=message):
        Problem(types=types)


def test_names_with_dashes() -> None:
    problem = Problem(
        types=[ObjectType("city-location")],
        objects={"city-location": ["apt-1", "pos-2"]},
        state={"at.truck-1": "apt-1"},
        actions=[
            ActionSchema(
                "logistics.drive-truck",
                {"loc-from": "city-location", "loc-to": "city-location"},
                cond("at.truck-1 == {loc-from} and {loc-from} != {loc-to}"),
                [Set("at.truck-1", Var("loc-to")), Set("visited.{loc-to}", True)],
            )
        ],
        goal=cond("visited.{the-goal} == true"),
        goal_params=[GoalParam("the-goal", "pos-2", "city-location")],
    )
    found = _plan(problem)
    assert [s.name for s in found.steps] == ["logistics.drive-truck(apt-1, pos-2)"]
    assert found.steps[0].args == (("loc-from", "apt-1"), ("loc-to", "pos-2"))
    assert str(cond("visited.{loc-to} == {loc-to}")) == "visited.{loc-to} == {loc-to}"
    assert Problem.from_json(problem.to_json()) == problem
    for bad in (lambda: ActionSchema("-drive"), lambda: ObjectType("-t"), lambda: Var("-p")):
        with pytest.raises(PlanningError, match="invalid"):
            bad()


GDL_DASHES = """
type city-location { name: string }
action logistics.drive-truck(loc-from: city-location, loc-to: city-location) {
  require truck.at == {loc-from} and {loc-from} != {loc-to}
  effect  delete visited.{loc-from}
  effect  visited.{loc-to} = true
  effect  truck.at = {loc-to}
  pure
}
goal arrive(dest: city-location) { achieve visited.{dest} == true }
"""


def test_gdl_takes_the_same_names_for_actions_types_and_action_parameters() -> None:
    compiled = compile_sources([source_for("apps/a/x.gdl", GDL_DASHES)], apps=["a"])
    schema = compiled.actions["logistics.drive-truck"].schema
    assert schema.params == (("loc-from", "city-location"), ("loc-to", "city-location"))
    problem = Problem(
        types=compiled.goals["arrive"].achieve.types,
        objects={"city-location": ["apt-1", "pos-2"]},
        state={"truck.at": "apt-1"},
        actions=[schema],
        goal=compiled.goals["arrive"].achieve.condition,
        goal_params=[GoalParam("dest", "pos-2", "city-location")],
    )
    assert [s.name for s in _plan(problem).steps] == ["logistics.drive-truck(apt-1, pos-2)"]
    with pytest.raises(GdlError, match=r"invalid goal name 'arrive-now'"):
        compile_sources([source_for("apps/a/x.gdl", GDL_DASHES.replace("goal arrive", "goal arrive-now"))])


def test_ground_action_counts_are_reported() -> None:
    found = _plan(rooms("at-robby.b == true"))
    assert found.ground_actions == 4  # move over 2 x 2 rooms
    assert "4 ground actions" in found.explain().splitlines()[0]
    assert Plan.from_json(found.to_json()).ground_actions == 4
    excluded = plan(rooms("at-robby.b == true"), exclude={"move(a, b)"})
    assert isinstance(excluded, NoPlan) and excluded.ground_actions == 3
    assert "3 ground actions" in excluded.explain()
    assert NoPlan.from_json(excluded.to_json()).ground_actions == 3


def test_a_cpu_budget_stops_a_hard_search() -> None:
    outcome = plan(strips_gripper(12), Budget(max_expansions=None, cpu_seconds=0.2), heuristic="blind")
    assert isinstance(outcome, NoPlan) and outcome.reason == "budget_exhausted", outcome
    assert "(0.2 s CPU)" in outcome.message and outcome.expanded > 0
    for bad in (0, -1.0, float("inf"), True, "1"):
        with pytest.raises(PlanningError, match=r"^budget cpu_seconds must be a number of seconds > 0"):
            Budget(cpu_seconds=bad)  # type: ignore[arg-type]
    assert Budget(max_expansions=None, cpu_seconds=1).cpu_seconds == 1


DETERMINISM_SCRIPT = """
import json
from goalrt.planner import plan
from tests.unit.test_planner_strips import strips_blocks, strips_gripper
problems = [strips_gripper(3), strips_blocks({"a": "table", "b": "table", "c": "a"}, {"a": "b", "b": "c"})]
for problem in problems:
    print(json.dumps(plan(problem).to_json(timing=False), sort_keys=True))
"""


def test_same_strips_plans_under_every_hash_seed() -> None:
    outputs = []
    for seed in ("0", "7"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT], env=env, capture_output=True, check=True, timeout=120
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == 2
