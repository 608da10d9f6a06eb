"""LM-cut per state: admissible on sampled states, optimal plans, the auto rule, the same plans under any hash seed."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import time

import pytest

from bench.planner.domains import fulfillment, gripper, random_blocksworld, soldier
from bench.planner.strips_domains import logistics, miconic
from goalrt.planner import Budget, Plan, Problem, cond, plan
from goalrt.planner.conditions import condition_to_json
from goalrt.planner.heuristics import HEURISTICS
from goalrt.planner.lmcut import CutGraph, LmCut
from goalrt.planner.relaxation import RelaxedGraph
from goalrt.planner.search import _astar
from goalrt.planner.task import State, Task, compile_task

SMALL = {
    "gripper 3": lambda: gripper(3),
    "blocks 4": lambda: random_blocksworld(4, 2),
    "miconic 3": lambda: miconic(3, 1),
    "logistics 2": lambda: logistics(2, 0),
    "fulfillment 1": lambda: fulfillment(1),
    "soldier": lambda: soldier("market", 4),
}


def _true_cost(task: Task, state: State) -> float:
    """Return the cheapest cost from ``state`` to the goal, by uniform-cost search."""
    blind = HEURISTICS["blind"](task, RelaxedGraph.build(task))
    outcome = _astar(
        dataclasses.replace(task, init=state),
        blind,
        Budget(max_expansions=200_000),
        time.perf_counter(),
        time.process_time(),
    )
    assert not outcome.exhausted
    return outcome.cost


def _sample(task: Task, rng: random.Random, count: int) -> list[State]:
    """Return states from random walks from the initial state."""
    states: list[State] = []
    state = task.init
    while len(states) < count:
        ops = task.applicable(state)
        child = task.successor(state, rng.choice(ops)) if ops and rng.random() < 0.85 else None
        state = child if child is not None else task.init
        states.append(state)
    return states


@pytest.mark.parametrize("name", sorted(SMALL))
def test_lmcut_never_exceeds_the_true_cost_on_sampled_states(name: str) -> None:
    task = compile_task(SMALL[name]())
    heuristic = LmCut(CutGraph.build(RelaxedGraph.build(task)))
    informative = 0
    for state in _sample(task, random.Random(7), 25):
        real = _true_cost(task, state)
        h = heuristic.value(state)
        assert h <= real, f"{name}: h = {h} > h* = {real}"
        informative += h > 0
        # The successor estimate from this state's landmarks is admissible too.
        bound = heuristic.child_bound(state)
        for op in task.applicable(state)[:6]:
            child = task.successor(state, op)
            if child is not None:
                assert bound(op) <= _true_cost(task, child)
    assert informative  # not trivially 0


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("heuristic", ["lmcut", "auto"])
def test_lmcut_plans_cost_what_uniform_cost_search_finds(name: str, heuristic: str) -> None:
    problem = SMALL[name]()
    found, reference = plan(problem, heuristic=heuristic), plan(problem, heuristic="blind")
    assert isinstance(found, Plan) and isinstance(reference, Plan)
    assert found.cost == reference.cost


def test_lmcut_expands_far_fewer_nodes_on_miconic() -> None:
    problem = miconic(6, 0)
    strong, weak = plan(problem, heuristic="lmcut"), plan(problem, heuristic="landmarks")
    assert isinstance(strong, Plan) and isinstance(weak, Plan)
    assert strong.cost == weak.cost
    assert strong.expanded * 10 < weak.expanded


def test_auto_starts_over_with_lmcut_only_where_it_sees_further() -> None:
    # miconic 7 passes 1,000 expansions and the probe finds LM-cut 14% higher: auto restarts with it.
    problem = miconic(7, 0)
    auto, lmcut = plan(problem), plan(problem, heuristic="lmcut")
    assert isinstance(auto, Plan) and isinstance(lmcut, Plan)
    assert auto.cost == lmcut.cost and auto.expanded == 1_000 + lmcut.expanded
    # gripper 7 passes 1,000 expansions too, but LM-cut is only 9% higher there: auto goes on.
    cheap, auto = plan(gripper(7), heuristic="landmarks"), plan(gripper(7))
    assert isinstance(cheap, Plan) and isinstance(auto, Plan)
    assert (auto.steps, auto.expanded) == (cheap.steps, cheap.expanded)


def test_lmcut_sees_a_dead_end() -> None:
    data = {**SMALL["gripper 3"]().to_json(), "goal": condition_to_json(cond("balls.b1.at == 'roomc'"))}
    problem = Problem.from_json(data)
    task = compile_task(problem)
    assert LmCut(CutGraph.build(RelaxedGraph.build(task))).value(task.init) == float("inf")


DETERMINISM_SCRIPT = """
import json
from goalrt.planner import plan
from bench.planner.strips_domains import logistics, miconic
from bench.planner.domains import random_blocksworld, soldier
for problem in (miconic(6, 0), logistics(3, 0), random_blocksworld(6, 4), soldier("forest", 0)):
    for heuristic in ("auto", "lmcut"):
        print(json.dumps(plan(problem, heuristic=heuristic).to_json(timing=False), sort_keys=True))
"""


def test_lmcut_plans_are_the_same_under_every_hash_seed() -> None:
    outputs = []
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT], env=env, capture_output=True, check=True, timeout=300
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == outputs[2]
    assert ["steps" in json.loads(line) for line in outputs[0].splitlines()] == [True] * 8
