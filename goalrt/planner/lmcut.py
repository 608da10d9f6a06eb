"""LM-cut (Helmert & Domshlak 2009), computed for any state over integer-indexed arrays.

LM-cut repeatedly finds a *cut*: a set of operators one of which every
relaxed plan, hence every real plan, must use (a disjunctive action
landmark). It charges the cut its cheapest operator's remaining cost m and
takes m off every operator in the cut, so the landmark costs form a cost
partitioning: an operator in several landmarks costs at least the sum of
their m. Any plan hits every landmark, so it costs at least the sum of the m:
the LM-cut value, which is at least h_max.

One round, as in Fast Downward's implementation:

1. h_max of every node, with each operator's *supporter*: a precondition
   of greatest h_max (the first round explores from scratch; later rounds
   only propagate the decreases the last cut's cheaper operators cause).
2. The *goal zone*: the goal, and, backwards, the supporters of zero-cost
   operators that achieve a node of the zone.
3. The cut: going forwards from the state along supporter -> effect edges
   without entering the zone, the operators that would enter it. Every
   relaxed plan crosses from outside the zone into it, and only an operator
   of the cut can do that, so the cut is a landmark; no zone node holds in
   the state, and all zone nodes cost at least h_max(goal) > 0, so every
   operator of the cut has a positive cost.

The graph is the one ``RelaxedGraph`` builds over literals. A complex
conjunct (an ``or``) becomes a node with one zero-cost operator per
disjunct of its DNF (none cost anything, so they are never in a cut); a
conjunct with more than ``_MAX_TERMS`` disjuncts gets one operator without a
precondition: treating it as free is a further relaxation, so still
admissible. Costs run in exact integers (each cost times the common
denominator of all costs), so no rounding can make a sum exceed a real cost.

Everything a state does not change is built once (``CutGraph.build``); a
call allocates a few flat lists and keeps heap entries as single integers
(``cost * size + node``), which orders them by (cost, node) as tuples would,
and deterministically.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
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


def round_down(total: int, denominator: int) -> float:
    """Return ``total / denominator`` as the largest float not above it."""
    if denominator == 1 and total < 1 << 53:
        return float(total)
    exact = Fraction(total, denominator)
    value = float(exact)
    if Fraction(value) > exact:
        value = math.nextafter(value, -math.inf)
    return value


@dataclass(frozen=True, eq=False)
class CutGraph:
    """The relaxation as arrays for LM-cut: operators (the task's first) over nodes, integer costs.

    Nodes are the literals and complex conjuncts of ``graph``, then the goal
    node, then a node true in every state (the precondition of operators
    that have none). Operators are the task's, then the complex conjuncts'
    zero-cost ones, then the zero-cost goal operator.
    """

    graph: RelaxedGraph
    count: int  # the task's operators: indices below this
    goal: int
    always: int
    pre: tuple[tuple[int, ...], ...]
    adds: tuple[tuple[int, ...], ...]
    need: tuple[int, ...]  # per operator: len(pre)
    precondition_of: tuple[tuple[int, ...], ...]
    achievers: tuple[tuple[int, ...], ...]
    costs: tuple[int, ...]  # per operator, in units of 1/denominator
    denominator: int
    single_mask: tuple[int, ...]  # per node: the effects of the operators whose only precondition it is, as a bit mask
    single_targets: tuple[tuple[int, ...], ...]  # per node: the same effects, in increasing order
    multi_of: tuple[tuple[int, ...], ...]  # per node: the operators of several preconditions it is one of

    @classmethod
    def build(cls, graph: RelaxedGraph) -> CutGraph:
        """Return the arrays of ``graph``."""
        nodes = len(graph.users)
        goal, always = nodes, nodes + 1
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
        fractions = [Fraction(c) for c in graph.task.costs]
        denominator = math.lcm(1, *(f.denominator for f in fractions))
        costs = [int(f * denominator) for f in fractions] + [0] * (len(pre) - count)
        precondition_of: list[list[int]] = [[] for _ in range(nodes + 2)]
        achievers: list[list[int]] = [[] for _ in range(nodes + 2)]
        single: list[set[int]] = [set() for _ in range(nodes + 2)]
        multi_of: list[list[int]] = [[] for _ in range(nodes + 2)]
        for op, needed in enumerate(pre):
            for n in needed:
                precondition_of[n].append(op)
                if len(needed) == 1:
                    single[n].update(adds[op])
                else:
                    multi_of[n].append(op)
            for n in adds[op]:
                achievers[n].append(op)
        return cls(
            graph=graph,
            count=count,
            goal=goal,
            always=always,
            pre=tuple(pre),
            adds=tuple(adds),
            need=tuple(len(p) for p in pre),
            precondition_of=tuple(tuple(p) for p in precondition_of),
            achievers=tuple(tuple(a) for a in achievers),
            costs=tuple(costs),
            denominator=denominator,
            single_mask=tuple(sum(1 << t for t in targets) for targets in single),
            single_targets=tuple(tuple(sorted(targets)) for targets in single),
            multi_of=tuple(tuple(m) for m in multi_of),
        )

    def value(self, state: State) -> float:
        """Return the LM-cut value of ``state`` (``math.inf`` if the relaxation cannot reach the goal)."""
        total = self.cut(state, None)
        return math.inf if total is None else round_down(total, self.denominator)

    def cut(self, state: State, found: list[tuple[int, tuple[int, ...]]] | None) -> int | None:
        """Return the LM-cut value of ``state`` in units of 1/denominator (None: relaxed dead end).

        With ``found``, append each landmark there as (its cost, its operators in increasing order).
        """
        pre, adds, precondition_of, achievers = self.pre, self.adds, self.precondition_of, self.achievers
        single_mask, single_targets, multi_of = self.single_mask, self.single_targets, self.multi_of
        goal = self.goal
        size = goal + 2
        heappush, heappop = heapq.heappush, heapq.heappop
        start = self.graph.true_literals(state)
        start.append(self.always)
        cost = list(self.costs)
        # h_max from scratch: a node's entry leaves the heap once at its final cost (later ones are stale).
        unreached = 1 << 62
        dist = [unreached] * size
        supporter = [-1] * len(pre)
        support_cost = [0] * len(pre)
        remaining = list(self.need)
        for n in start:
            dist[n] = 0
        heap = sorted(start)  # keys cost * size + node; with cost 0, the node ids (a sorted list is a heap)
        while heap:
            level, n = divmod(heappop(heap), size)
            if level > dist[n]:
                continue
            for op in precondition_of[n]:
                left = remaining[op] - 1
                remaining[op] = left
                if not left:
                    supporter[op] = n
                    support_cost[op] = level
                    reach = level + cost[op]
                    for t in adds[op]:
                        if reach < dist[t]:
                            dist[t] = reach
                            heappush(heap, reach * size + t)
        if dist[goal] == unreached:
            return None
        total = 0
        zone = [0] * size  # the round in which a node was last in the goal zone
        seen = [0] * size  # the round in which the cut search last reached a node
        rounds = 0
        while dist[goal]:
            rounds += 1
            stack = [goal]
            zone_mask = 0
            while stack:
                n = stack.pop()
                if zone[n] != rounds:
                    zone[n] = rounds
                    zone_mask |= 1 << n
                    for op in achievers[n]:
                        if not cost[op] and supporter[op] >= 0:
                            stack.append(supporter[op])
            landmark: list[int] = []
            stack = list(start)
            for n in stack:
                seen[n] = rounds
            while stack:
                n = stack.pop()
                if not single_mask[n] & zone_mask:
                    # No operator whose only precondition is n enters the zone: reach all their effects at once.
                    for t in single_targets[n]:
                        if seen[t] != rounds:
                            seen[t] = rounds
                            stack.append(t)
                    ops = multi_of[n]
                else:
                    ops = precondition_of[n]
                for op in ops:
                    if supporter[op] != n:
                        continue
                    effects = adds[op]
                    for t in effects:
                        if zone[t] == rounds:
                            landmark.append(op)
                            break
                    else:
                        for t in effects:
                            if seen[t] != rounds:
                                seen[t] = rounds
                                stack.append(t)
            m = min(cost[op] for op in landmark)
            total += m
            for op in landmark:
                cost[op] -= m
            if found is not None:
                landmark.sort()
                found.append((m, tuple(landmark)))
            # h_max again: only the cut's operators got cheaper; propagate the decreases they cause.
            for op in landmark:
                reach = support_cost[op] + cost[op]
                for t in adds[op]:
                    if reach < dist[t]:
                        dist[t] = reach
                        heappush(heap, reach * size + t)
            while heap:
                level, n = divmod(heappop(heap), size)
                if level > dist[n]:
                    continue
                for op in precondition_of[n]:
                    if supporter[op] != n or support_cost[op] <= level:
                        continue
                    # Its costliest precondition got cheaper: find the costliest now.
                    best, best_cost = n, level
                    for p in pre[op]:
                        if dist[p] > best_cost:
                            best, best_cost = p, dist[p]
                    supporter[op] = best
                    support_cost[op] = best_cost
                    reach = best_cost + cost[op]
                    for t in adds[op]:
                        if reach < dist[t]:
                            dist[t] = reach
                            heappush(heap, reach * size + t)
        return total


class LmCut:
    """LM-cut as a heuristic for A*: ``value`` per state, and ``child_bound`` from the last state's landmarks.

    ``child_bound`` rests on the argument of path-dependent landmarks: if L
    is a landmark of s and operator o is not in L, every plan from s's
    successor by o, with o in front, is a plan from s, so it uses an
    operator of L after o: L is a landmark of the successor. The landmarks
    of s without o keep their partitioned costs, so their sum is an
    admissible estimate for the successor, known without running LM-cut on
    it. A* uses it to defer the successor's own evaluation.
    """

    __slots__ = ("_found", "_state", "_total", "cuts")

    def __init__(self, cuts: CutGraph) -> None:
        self.cuts = cuts
        self._state: State | None = None
        self._total: int | None = None
        self._found: list[tuple[int, tuple[int, ...]]] = []

    def value(self, state: State) -> float:
        """Return the LM-cut value of ``state`` (``math.inf``: relaxed dead end), keeping its landmarks."""
        found: list[tuple[int, tuple[int, ...]]] = []
        total = self.cuts.cut(state, found)
        self._state, self._total, self._found = state, total, found
        return math.inf if total is None else round_down(total, self.cuts.denominator)

    def child_bound(self, state: State) -> Callable[[int], float]:
        """Return, for ``state``, a function from an operator to an admissible estimate for the state it leads to."""
        if self._state != state:
            self.value(state)
        total = self._total
        if total is None:
            return _infinite
        used: dict[int, int] = {}
        for m, ops in self._found:
            for op in ops:
                used[op] = used.get(op, 0) + m
        denominator = self.cuts.denominator

        def bound(op: int) -> float:
            return round_down(total - used.get(op, 0), denominator)

        return bound


def _infinite(op: int) -> float:
    return math.inf
