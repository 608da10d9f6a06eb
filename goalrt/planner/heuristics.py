"""Admissible heuristics: h_max, LM-cut landmarks, atomic projections with uniform cost partitioning.

Each never overestimates the cheapest cost from a state to the goal, so A*
with any of them (or their maximum) returns minimum-cost plans. The
arguments are in docs/planner.md; the short versions are next to each
function.

``HEURISTICS`` maps a name to a factory ``(Task, RelaxedGraph) -> Estimator``;
a value of ``math.inf`` means the goal cannot be reached from that state.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, TypeAlias

from goalrt.planner.landmarks import Landmarks, lm_cut
from goalrt.planner.lmcut import CutGraph, LmCut
from goalrt.planner.relaxation import INF, RelaxedGraph
from goalrt.planner.task import Formula, State, Task, formula_literals, formula_value
from goalrt.planner.values import Encoded, render_encoded

_Heuristic: TypeAlias = Callable[[State], float]


@dataclass(frozen=True, slots=True)
class Estimator:
    """A heuristic for A*, optionally with cheap lower bounds that let A* defer it, or a heuristic to switch to.

    With a ``bound``, A* defers ``h``: a node goes on the open list keyed by
    the max of bound(node), h(parent) - step cost and child_bound (if given),
    and gets its real ``h`` only when it reaches the top (then goes back if its
    f grew). Each term is a lower bound on the node's real distance to the
    goal: h(parent) - c because the real distance of the parent is at most c
    plus the child's, so an admissible ``h`` suffices (consistency is not
    needed); a key's h is kept as a lower bound when the node is expanded
    (pathmax). With ``then``, A* switches to that estimator once it has
    expanded ``switch_after`` nodes: the keys already on the open list stay
    lower bounds, so the switch keeps plans optimal, and counting expansions
    keeps it deterministic.
    """

    h: _Heuristic
    bound: _Heuristic | None = None
    # Path-dependent landmarks: A* adds the cost of those a node's paths have not hit yet (max with h).
    landmarks: Landmarks | None = None
    # For a state about to be expanded: operator -> a lower bound on the real distance of its successor.
    child_bound: Callable[[State], Callable[[int], float]] | None = None
    then: Estimator | None = None
    switch_after: int = 0


def _h_max(task: Task, graph: RelaxedGraph) -> Estimator:
    """Return h_max (Bonet & Geffner), lifted from facts to literals.

    Admissible: making a literal true requires a first action that turns it
    from false to true; that action is one ``RelaxedGraph`` lists as able to
    (a set to a satisfying value, a delete if absence satisfies it, an
    increment in the right direction), so by induction on plan length the
    relaxed cost of every literal, and the max over a conjunction, is at most
    the cost of any plan making it true.
    """
    return Estimator(graph.hmax, _zero)


def _round_down(value: Fraction) -> float:
    result = float(value)
    if Fraction(result) > value:
        result = math.nextafter(result, -INF)
    return result


def _projection_tables(task: Task) -> tuple[tuple[int, dict[Encoded, float]], ...]:
    """Return, per goal path with a finite domain, the exact goal distance of each of its values in the projection.

    The projection of the task onto one path keeps only the operators that set
    or delete it, with the preconditions on that path alone. An operator that
    changes k of these paths costs c/k in each projection (uniform cost
    partitioning), so the sum over paths never exceeds a real plan's cost.
    Paths some operator increments have an unbounded domain and are left out.
    """
    literals = task.literals
    goal_by_path: dict[int, list[Formula]] = {}
    for part in task.goal:
        ids = formula_literals(part)
        paths = {p for i in ids for p in literals[i].paths}
        if len(paths) == 1 and all(literals[i].value_test is not None for i in ids):
            goal_by_path.setdefault(paths.pop(), []).append(part)
    incremented = {path for incs in task.incs for path, _ in incs}
    patterns = sorted(p for p in goal_by_path if p not in incremented)
    pattern_set = set(patterns)
    shares = [sum(1 for path, _ in task.sets[op] if path in pattern_set) for op in range(len(task.ops))]
    tables: list[tuple[int, dict[Encoded, float]]] = []
    for path in patterns:
        tables.append((path, _distances(task, path, goal_by_path[path], shares)))
    return tuple(tables)


def _single_path_test(task: Task, formula: Formula, path: int) -> Callable[[Encoded], bool] | None:
    """Return the test of a formula that reads ``path`` alone, on that path's value; None if it reads others."""
    ids = formula_literals(formula)
    tests: dict[int, Callable[[Encoded], bool]] = {}
    for i in ids:
        value_test = task.literals[i].value_test
        if value_test is None or task.literals[i].paths != (path,):
            return None
        tests[i] = value_test
    if not tests:
        return None

    def test(value: Encoded) -> bool:
        return formula_value(formula, lambda i: tests[i](value))

    return test


def _distances(task: Task, path: int, goal: list[Formula], shares: list[int]) -> dict[Encoded, float]:
    """Return the goal distance of each value of ``path`` in the projection onto it."""
    found = {task.init[path]}
    edges: list[tuple[list[Callable[[Encoded], bool]], Encoded, Fraction]] = []
    for op in range(len(task.ops)):
        for changed, result in task.sets[op]:
            if changed == path:
                found.add(result)
                tests = [t for t in (_single_path_test(task, p, path) for p in task.pre[op]) if t is not None]
                edges.append((tests, result, Fraction(task.costs[op]) / shares[op]))
    domain = sorted(found, key=render_encoded)
    position = {value: i for i, value in enumerate(domain)}
    incoming: list[list[tuple[int, Fraction]]] = [[] for _ in domain]
    for source, value in enumerate(domain):
        for tests, result, cost in edges:
            if all(t(value) for t in tests):
                incoming[position[result]].append((source, cost))
    goal_tests = [t for t in (_single_path_test(task, g, path) for g in goal) if t is not None]
    # Dijkstra backwards from the goal values, in exact rational arithmetic.
    best: dict[int, Fraction] = {}
    heap = [(Fraction(0), i) for i, value in enumerate(domain) if all(t(value) for t in goal_tests)]
    heapq.heapify(heap)
    while heap:
        cost, index = heapq.heappop(heap)
        if index in best:
            continue
        best[index] = cost
        for source, step in incoming[index]:
            if source not in best:
                heapq.heappush(heap, (cost + step, source))
    return {value: _round_down(best[i]) if i in best else INF for i, value in enumerate(domain)}


def _sum_of(tables: tuple[tuple[int, dict[Encoded, float]], ...]) -> _Heuristic:
    def h(state: State) -> float:
        total = 0.0
        for path, table in tables:
            total += table.get(state[path], 0.0)
        return total

    return h


def _projection(task: Task, graph: RelaxedGraph) -> Estimator:
    """Return the sum of the atomic projection distances (0 when the goal has no finite-domain path).

    Admissible: each projection maps a plan to a path in the projection whose
    cost is at most the plan's cost under the partitioned costs, and the
    partitioned costs sum to at most the real ones. Cheap: a few table lookups.
    """
    return Estimator(_sum_of(_projection_tables(task)))


def _zero(state: State) -> float:
    return 0.0


def _blind(task: Task, graph: RelaxedGraph) -> Estimator:
    """Return the heuristic that is 0 everywhere (uniform-cost search)."""
    return Estimator(_zero)


def _maximum(task: Task, graph: RelaxedGraph) -> Estimator:
    """Return max(h_max, projection): the max of admissible (consistent) heuristics is admissible (consistent)."""
    proj = _sum_of(_projection_tables(task))
    return Estimator(lambda state: max(proj(state), graph.hmax(state)), proj)


def _landmarks(task: Task, graph: RelaxedGraph, cuts: CutGraph | None = None) -> Estimator:
    """Return max(LM-cut landmarks of the initial state, projection): both cost a few operations per node.

    Admissible: see ``goalrt.planner.landmarks`` (a landmark some path to a
    state has not hit is a landmark of that state, and the landmark costs are a
    cost partitioning) and ``projection``; the max of admissible is admissible.
    """
    cuts = cuts or CutGraph.build(graph)
    return Estimator(_sum_of(_projection_tables(task)), landmarks=lm_cut(cuts, task.init))


def _lmcut(task: Task, graph: RelaxedGraph, cuts: CutGraph | None = None, proj: _Heuristic | None = None) -> Estimator:
    """Return LM-cut recomputed in every state, deferred (see ``Estimator``) behind projections and parent landmarks.

    Admissible: see ``goalrt.planner.lmcut``. Not consistent in general, which
    the search allows for (it reopens states, and a deferred key needs only
    admissibility).
    """
    heuristic = LmCut(cuts or CutGraph.build(graph))
    proj = proj or _sum_of(_projection_tables(task))
    return Estimator(heuristic.value, proj, child_bound=heuristic.child_bound)


# Expansions after which ``auto`` asks whether LM-cut in every state would pay.
AUTO_SWITCH: Final = 1_000


def _auto(task: Task, graph: RelaxedGraph) -> Estimator:
    """Return the default heuristic: ``landmarks``, and after ``AUTO_SWITCH`` expansions maybe ``lmcut``.

    A search the initial landmarks finish in under a thousand expansions
    (GOAP-sized tasks) costs a few microseconds per node. If it goes on, A*
    evaluates LM-cut on the 16 best nodes of the open list; if LM-cut's sum
    is more than 10% above theirs there, A* starts over with ``lmcut`` (a millisecond
    or so per evaluation, but far fewer nodes); if not (gripper, where the
    two are nearly equal), it goes on as it was. Both are admissible, so either way
    the plan is optimal, and the rule counts expansions and compares values,
    so it is deterministic.
    """
    cuts = CutGraph.build(graph)
    first = _landmarks(task, graph, cuts)
    then = _lmcut(task, graph, cuts, first.h)
    return Estimator(first.h, landmarks=first.landmarks, then=then, switch_after=AUTO_SWITCH)


HEURISTICS: Final[dict[str, Callable[[Task, RelaxedGraph], Estimator]]] = {
    "auto": _auto,
    "blind": _blind,
    "hmax": _h_max,
    "landmarks": _landmarks,
    "lmcut": _lmcut,
    "max": _maximum,
    "projection": _projection,
}
