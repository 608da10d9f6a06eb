"""A* over states: ``plan(problem, budget) -> Plan | NoPlan``.

The open list is a heap keyed ``(f, h, n)``: least f = g + h first; among
equal f the least h (the deeper node, closer to the goal); then the order
nodes were generated in, which is fixed because successors are generated in
ground-operator name order. Nothing depends on hash order, so the same
problem gives the same plan under any PYTHONHASHSEED.

A node is goal-tested when it is taken off the open list, not when it is
generated, so the first goal taken off is a cheapest one: with an admissible
heuristic every node still on the list has f <= the optimal cost somewhere
along an optimal path. A state reached again more cheaply is reopened, which
keeps that true even if a heuristic is admissible but not consistent.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Final

from goalrt.errors import PlanningError
from goalrt.planner.explain import diagnose
from goalrt.planner.heuristics import HEURISTICS, Estimator
from goalrt.planner.problem import Problem
from goalrt.planner.relaxation import RelaxedGraph
from goalrt.planner.results import NoPlan, Plan
from goalrt.planner.task import State, Task, compile_task


@dataclass(frozen=True, slots=True)
class Budget:
    """How much search ``plan`` may do: node expansions, wall-clock and CPU seconds (None: no limit of that kind).

    ``max_expansions`` makes the outcome deterministic; a ``time_limit`` (wall
    clock) or ``cpu_seconds`` (``time.thread_time``, the CPU time of the thread that plans)
    cut depends on the machine. At least one limit must be set, so that
    ``plan`` always returns.
    """

    max_expansions: int | None = 100_000
    time_limit: float | None = None
    cpu_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_expansions is not None and (
            not isinstance(self.max_expansions, int) or isinstance(self.max_expansions, bool) or self.max_expansions < 0
        ):
            raise PlanningError(f"budget max_expansions must be an integer >= 0, got {self.max_expansions!r}")
        for name, seconds in (("time_limit", self.time_limit), ("cpu_seconds", self.cpu_seconds)):
            if seconds is not None and (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not seconds > 0
                or not math.isfinite(seconds)
            ):
                raise PlanningError(f"budget {name} must be a number of seconds > 0, got {seconds!r}")
        if self.max_expansions is None and self.time_limit is None and self.cpu_seconds is None:
            raise PlanningError("a budget needs max_expansions, time_limit or cpu_seconds (one at least)")


@dataclass(frozen=True, slots=True)
class _SearchOutcome:
    """What A* found: the operator indices of a cheapest plan, or why not."""

    ops: tuple[int, ...] | None
    cost: float
    exhausted: bool
    bound: float | None
    expanded: int
    generated: int


# How many of the open list's best nodes ``_pays`` evaluates, and by how much more the new heuristic must
# estimate there. Measured at 1,000 expansions: miconic 7-9 passengers 1.14-1.17, logistics 5 packages 1.13,
# soldier in the forest 2.1, where LM-cut pays; gripper 7-8 balls 1.09, where it costs 10x the time.
_PROBE: Final = 16
_GAIN: Final = 1.1


def _pays(then: Estimator, heap: list[tuple[float, float, int, float, State]]) -> bool:
    """Return whether ``then`` estimates 10% more than the current heuristic on the open list's best nodes.

    A deterministic probe (values, not times): where the second heuristic
    sees no further than the first on the nodes A* would expand next, its
    higher cost per node cannot pay.
    """
    top = heapq.nsmallest(_PROBE, heap)
    return sum(then.h(entry[4]) for entry in top) > _GAIN * sum(entry[1] for entry in top)


def _remaining(budget: Budget, expanded: int) -> Budget:
    """Return what is left of ``budget`` after ``expanded`` expansions (the time limits count from the start)."""
    if budget.max_expansions is None:
        return budget
    return Budget(max(budget.max_expansions - expanded, 0), budget.time_limit, budget.cpu_seconds)


def _astar(task: Task, estimator: Estimator, budget: Budget, started: float, cpu_started: float) -> _SearchOutcome:
    """Return a minimum-cost plan for ``task`` within ``budget`` (seconds counted from ``started``/``cpu_started``)."""
    heuristic, bound, landmarks = estimator.h, estimator.bound, estimator.landmarks
    child_bound = estimator.child_bound
    init = task.init
    h0 = h_init = heuristic(init)
    # Per state: the landmarks some known path to it has not hit (see goalrt.planner.landmarks).
    unhit: dict[State, int] = {}
    if landmarks is not None:
        unhit[init] = landmarks.full
        h0 = max(h0, landmarks.value(landmarks.full))
    if h0 == math.inf:
        return _SearchOutcome(None, math.inf, False, None, 0, 0)
    costs = task.costs
    applicable, successor, is_goal = task.applicable, task.successor, task.goal_test
    heappush, heappop = heapq.heappush, heapq.heappop
    limit = math.inf if budget.max_expansions is None else budget.max_expansions
    deadline = math.inf if budget.time_limit is None else started + budget.time_limit
    clock = time.perf_counter
    # thread_time costs ~0.5 us a call: read it only when a CPU budget is set.
    cpu_deadline = math.inf if budget.cpu_seconds is None else cpu_started + budget.cpu_seconds
    cpu = time.thread_time if budget.cpu_seconds is not None else float
    best_g: dict[State, float] = {init: 0.0}
    closed_g: dict[State, float] = {}
    # Exact values of the state heuristic; with a bound, a node on the open list may not have one yet.
    h_of: dict[State, float] = {init: h_init}
    parent: dict[State, tuple[State, int]] = {}
    # (f, h, generation counter, g, state): the counter is unique, so states are never compared.
    heap: list[tuple[float, float, int, float, State]] = [(h0, h0, 0, 0.0, init)]
    counter = expanded = generated = 0
    then, switch_after = estimator.then, estimator.switch_after
    while heap:
        if then is not None and expanded >= switch_after:
            if _pays(then, heap):
                rest = _astar(task, then, _remaining(budget, expanded), started, cpu_started)
                return replace(rest, expanded=expanded + rest.expanded, generated=generated + rest.generated)
            then = None
        f, key_h, _, g, state = heappop(heap)
        if best_g[state] < g or closed_g.get(state, math.inf) <= g:
            continue  # stale (reached more cheaply since) or already expanded at this cost
        if is_goal(state):
            ops: list[int] = []
            while state in parent:
                state, op = parent[state]
                ops.append(op)
            return _SearchOutcome(tuple(reversed(ops)), g, False, None, expanded, generated)
        h = h_of.get(state)
        if h is None:
            h = h_of[state] = heuristic(state)
        if landmarks is not None:
            h = max(h, landmarks.value(unhit[state]))
        if h == math.inf:
            continue  # a dead end: no plan passes through it
        if g + h > f:
            # Its key was a lower bound (deferred evaluation, or more landmarks found since): requeue.
            counter += 1
            heappush(heap, (g + h, h, counter, g, state))
            continue
        # The key's h is a lower bound on this state's real distance too (pathmax), possibly a better one.
        h = max(h, key_h)
        if expanded >= limit or clock() > deadline or cpu() > cpu_deadline:
            # Every node left has a key >= f, and one on an optimal path has key <= the optimal cost.
            return _SearchOutcome(None, math.inf, True, f, expanded, generated)
        expanded += 1
        closed_g[state] = g
        mask = unhit[state] if landmarks is not None else 0
        inherited = child_bound(state) if child_bound is not None else None
        for op in applicable(state):
            child = successor(state, op)
            if child is None:
                continue
            generated += 1
            step = costs[op]
            child_g = g + step
            if landmarks is not None:
                old = unhit.get(child, 0)
                unhit[child] = old | (mask & landmarks.keep[op])
            known = best_g.get(child)
            if known is not None and known <= child_g:
                continue
            child_h = h_of.get(child)
            if child_h is None:
                if bound is None:
                    child_h = h_of[child] = heuristic(child)
                else:
                    child_h = max(bound(child), h - step, 0.0)
                    if inherited is not None:
                        child_h = max(child_h, inherited(op))
            if landmarks is not None:
                child_h = max(child_h, landmarks.value(unhit[child]))
            if child_h == math.inf:
                continue  # a dead end: no plan passes through it
            best_g[child] = child_g
            parent[child] = (state, op)
            counter += 1
            heappush(heap, (child_g + child_h, child_h, counter, child_g, child))
    return _SearchOutcome(None, math.inf, False, None, expanded, generated)


def plan(
    problem: Problem,
    budget: Budget | None = None,
    *,
    exclude: Iterable[str] = frozenset(),
    penalties: Mapping[str, float] | None = None,
    heuristic: str = "auto",
) -> Plan | NoPlan:
    """Return a minimum-cost plan reaching ``problem.goal``, or a NoPlan saying why there is none.

    ``exclude`` names ground actions that must not be used (``payment.charge(o1)``);
    ``penalties`` adds cost to named ground actions; ``heuristic`` is a key of
    ``HEURISTICS`` (all admissible; they differ only in speed and, among plans
    of equal cost, which one is returned).
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    if heuristic not in HEURISTICS:
        raise PlanningError(f"unknown heuristic {heuristic!r}: use one of {', '.join(sorted(HEURISTICS))}")
    if isinstance(exclude, str):
        raise PlanningError("exclude takes a collection of ground action names, not one string")
    task = compile_task(problem, frozenset(exclude), penalties)
    full = partial(compile_task, problem, frozenset(exclude), penalties, cut_static=False)
    return _solve(task, budget or Budget(), heuristic, started, cpu_started, full)


def _solve(
    task: Task, budget: Budget, heuristic: str, started: float, cpu_started: float, full: Callable[[], Task]
) -> Plan | NoPlan:
    """Return a minimum-cost plan for a compiled task, or a NoPlan saying why there is none.

    ``full`` compiles the task again with every operator grounding set aside,
    for an explanation to name them.
    """
    goal = str(task.goal_condition)
    if task.goal_test(task.init):
        return Plan((), 0.0, goal, 0, 0, time.perf_counter() - started, len(task.ops))
    graph = RelaxedGraph.build(task)
    if not task.ops or graph.hmax(task.init) == math.inf:
        task = full()
        graph = RelaxedGraph.build(task)
    if not task.ops or graph.hmax(task.init) == math.inf:
        diagnosis = diagnose(task, graph)
        if not task.ops:
            reason, message = "no_actions", "no ground action is available, and the goal does not hold"
        else:
            count = len(diagnosis.unreachable)
            reason, message = "goal_unreachable", f"{count} goal condition(s) can never be made true from this state"
        return NoPlan(
            reason,
            message,
            unreachable=diagnosis.unreachable,
            blocked=diagnosis.blocked,
            causes=diagnosis.causes,
            excluded=diagnosis.excluded,
            seconds=time.perf_counter() - started,
            ground_actions=len(task.ops),
        )
    outcome = _astar(task, HEURISTICS[heuristic](task, graph), budget, started, cpu_started)
    seconds = time.perf_counter() - started
    if outcome.ops is not None:
        steps = tuple(task.ops[i] for i in outcome.ops)
        return Plan(steps, outcome.cost, goal, outcome.expanded, outcome.generated, seconds, len(task.ops))
    if outcome.exhausted:
        assert outcome.bound is not None
        limits = [f"{budget.max_expansions} expansions" if budget.max_expansions is not None else ""]
        limits.append(f"{budget.time_limit} s" if budget.time_limit is not None else "")
        limits.append(f"{budget.cpu_seconds} s CPU" if budget.cpu_seconds is not None else "")
        message = (
            f"the budget ({' / '.join(x for x in limits if x)}) ran out before a plan was found; "
            f"any plan costs at least {outcome.bound:g}"
        )
        return NoPlan(
            "budget_exhausted",
            message,
            bound=outcome.bound,
            excluded=tuple(op.name for op in task.excluded),
            expanded=outcome.expanded,
            generated=outcome.generated,
            seconds=seconds,
            ground_actions=len(task.ops),
        )
    message = (
        f"no sequence of actions reaches the goal: the search ran out of states ({outcome.expanded} expanded), "
        "though the relaxation (which ignores what actions undo) reaches every goal condition"
    )
    return NoPlan(
        "goal_unreachable",
        message,
        excluded=tuple(op.name for op in task.excluded),
        expanded=outcome.expanded,
        generated=outcome.generated,
        seconds=seconds,
        ground_actions=len(task.ops),
    )
