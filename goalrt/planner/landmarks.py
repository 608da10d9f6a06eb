"""Action landmarks of the initial state from LM-cut, and the path-dependent heuristic they give.

LM-cut (Helmert & Domshlak 2009) repeatedly finds a *cut*: a set of
operators one of which every relaxed plan, hence every real plan, must use
(a disjunctive action landmark). It charges the cut its cheapest operator's
remaining cost m and takes m off every operator in the cut, so in the end the
landmark costs form a cost partitioning: an operator in several landmarks
costs at least the sum of their m. Any plan hits every landmark, so it costs
at least the sum of the m: the LM-cut value, which is at least h_max.

Landmarks are computed once, for the initial state. A search node reached by
a path that has not used any operator of a landmark still needs one: every
plan through that path must hit it later. So a node's heuristic is the sum of
m over the landmarks some known path to it has not hit (the union over
paths: a landmark missed by any path to a state is a landmark of the state).
That keeps the per-node cost to a bit mask operation.

Costs run in exact integers (each cost times the common denominator), so
rounding can never make a sum exceed a real cost.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

from goalrt.planner.relaxation import RelaxedGraph
from goalrt.planner.task import Formula, State

# A complex condition with more disjuncts than this is treated as free (a relaxation, so still admissible).
_MAX_TERMS: Final = 32


def _dnf(formula: Formula) -> list[frozenset[int]] | None:
    """Return a formula as a list of conjunctions of literal ids (None when it has too many)."""
    if isinstance(formula, bool):
        return [frozenset()] if formula else []
    if isinstance(formula, int):
        return [frozenset((formula,))]
    kind, parts = formula
    if kind == "or":
        terms: list[frozenset[int]] = []
        for part in parts:
            sub = _dnf(part)
            if sub is None:
                return None
            terms.extend(sub)
    else:
        terms = [frozenset()]
        for part in parts:
            sub = _dnf(part)
            if sub is None:
                return None
            terms = [a | b for a in terms for b in sub]
            if len(terms) > _MAX_TERMS:
                return None
    return sorted(set(terms), key=sorted) if len(terms) <= _MAX_TERMS else None


@dataclass(frozen=True, eq=False)
class Landmarks:
    """Disjunctive action landmarks (sets of operator indices) with their partitioned costs."""

    costs: tuple[int, ...]  # per landmark, in units of 1/denominator
    denominator: int
    ops: tuple[tuple[int, ...], ...]  # per landmark: the operators that hit it
    keep: tuple[int, ...]  # per operator: mask of the landmarks it does not hit
    full: int  # mask of every landmark
    _values: dict[int, float] = field(default_factory=dict)

    def value(self, mask: int) -> float:
        """Return the sum of the costs of the landmarks in ``mask``, rounded down to a float."""
        cached = self._values.get(mask)
        if cached is None:
            total = sum(cost for i, cost in enumerate(self.costs) if mask >> i & 1)
            exact = Fraction(total, self.denominator)
            cached = float(exact)
            if Fraction(cached) > exact:
                cached = math.nextafter(cached, -math.inf)
            self._values[mask] = cached
        return cached


def lm_cut(graph: RelaxedGraph, state: State) -> Landmarks | None:
    """Return the LM-cut landmarks of ``state``, or None if the relaxation cannot reach the goal."""
    task = graph.task
    nodes = len(graph.users)
    goal, always = nodes, nodes + 1
    # Operators: the task's, then one free operator per disjunct of each complex node, then the goal's.
    pre: list[tuple[int, ...]] = [p or (always,) for p in graph.pre_nodes]
    adds: list[tuple[int, ...]] = list(graph.adds)
    count = len(pre)
    for c, formula in enumerate(graph.complex):
        terms = _dnf(formula)
        for term in [frozenset()] if terms is None else terms:
            pre.append(tuple(sorted(term)) or (always,))
            adds.append((len(graph.watch) + c,))
    pre.append(tuple(graph.goal_nodes) or (always,))
    adds.append((goal,))
    fractions = [Fraction(c) for c in task.costs]
    denominator = math.lcm(1, *(f.denominator for f in fractions))
    cost = [int(f * denominator) for f in fractions] + [0] * (len(pre) - count)
    precondition_of: list[list[int]] = [[] for _ in range(nodes + 2)]
    achievers: list[list[int]] = [[] for _ in range(nodes + 2)]
    for op, needed in enumerate(pre):
        for n in needed:
            precondition_of[n].append(op)
        for n in adds[op]:
            achievers[n].append(op)
    start = [*graph.true_literals(state), always]

    landmark_costs: list[int] = []
    landmark_ops: list[tuple[int, ...]] = []
    while True:
        dist, supporter = _hmax(start, pre, adds, cost, precondition_of, nodes + 2)
        if dist[goal] is None:
            return None
        if dist[goal] == 0:
            break
        # The goal plateau: nodes joined to the goal by zero-cost supporter edges.
        plateau: set[int] = set()
        stack = [goal]
        while stack:
            n = stack.pop()
            if n in plateau:
                continue
            plateau.add(n)
            for op in achievers[n]:
                if cost[op] == 0 and supporter[op] >= 0:
                    stack.append(supporter[op])
        # Nodes reached from the state without entering the plateau; operators crossing into it form the cut.
        reached = set(start)
        queue = list(start)
        cut: set[int] = set()
        while queue:
            n = queue.pop()
            for op in precondition_of[n]:
                if supporter[op] != n:
                    continue
                for target in adds[op]:
                    if target in plateau:
                        cut.add(op)
                    elif target not in reached:
                        reached.add(target)
                        queue.append(target)
        ordered = sorted(cut)
        m = min(cost[op] for op in ordered)
        # Only the task's operators have a cost, so only they are ever in a cut (m > 0).
        assert m > 0 and ordered[-1] < count
        for op in ordered:
            cost[op] -= m
        landmark_costs.append(m)
        landmark_ops.append(tuple(ordered))

    full = (1 << len(landmark_costs)) - 1
    hits = [0] * count
    for i, ops in enumerate(landmark_ops):
        for op in ops:
            hits[op] |= 1 << i
    return Landmarks(
        costs=tuple(landmark_costs),
        denominator=denominator,
        ops=tuple(landmark_ops),
        keep=tuple(full & ~h for h in hits),
        full=full,
    )


def _hmax(
    start: list[int],
    pre: list[tuple[int, ...]],
    adds: list[tuple[int, ...]],
    cost: list[int],
    precondition_of: list[list[int]],
    size: int,
) -> tuple[list[int | None], list[int]]:
    """Return h_max of every node (None: unreachable) and each operator's supporter (its costliest precondition).

    Nodes settle in order of (cost, id), so the precondition settled last is a
    costliest one, and the choice is the same in every run.
    """
    dist: list[int | None] = [None] * size
    supporter = [-1] * len(pre)
    remaining = [len(p) for p in pre]
    done = bytearray(size)
    heap = [(0, n) for n in sorted(start)]
    for n in start:
        dist[n] = 0
    while heap:
        level, n = heapq.heappop(heap)
        if done[n]:
            continue
        done[n] = 1
        for op in precondition_of[n]:
            remaining[op] -= 1
            if remaining[op] == 0:
                supporter[op] = n
                reach = level + cost[op]
                for target in adds[op]:
                    known = dist[target]
                    if known is None or reach < known:
                        dist[target] = reach
                        heapq.heappush(heap, (reach, target))
    return dist, supporter
