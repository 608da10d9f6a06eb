"""The delete-free relaxation of a task, over literals: what can become true, and at what least cost.

In the relaxation an action keeps what it makes true forever and only adds
truths. Every real plan is also a relaxed plan (the first action that makes a
literal true is one the relaxation lists as able to), so anything the
relaxation cannot reach is unreachable, and relaxed costs are lower bounds.
h_max, LM-cut and the explanations are all computed on this graph.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from goalrt.planner.conditions import Compare, Const, Not
from goalrt.planner.task import Formula, Literal, State, Task, formula_literals, formula_value
from goalrt.planner.values import MISSING, ORDERINGS, Encoded, is_number

INF: Final = math.inf


def increment_achieves(literal: Literal, by: float) -> bool:
    """Return whether adding ``by`` can turn ``literal`` from false to true (conservatively: when unsure, yes)."""
    if by == 0 or literal.value_test is None:
        return by != 0
    negated = isinstance(literal.condition, Not)
    atom = literal.condition.arg if isinstance(literal.condition, Not) else literal.condition
    if not isinstance(atom, Compare) or not isinstance(atom.right, Const):
        return True
    if atom.op == "==" and not is_number(atom.right.value):
        # An increment leaves a number, which never equals a non-number.
        return False
    if atom.op in ORDERINGS and is_number(atom.right.value):
        # From a number the value must cross the threshold in by's direction;
        # from an absent path it becomes `by` itself.
        upward = (atom.op in (">", ">=")) != negated
        return (by > 0) == upward or (not literal.value_test(MISSING) and literal.value_test(by))
    return True


@dataclass(frozen=True, eq=False)
class RelaxedGraph:
    """The delete-free relaxation of a task: which operators can make which literals true.

    Nodes are the literals and the *complex* conjuncts (an ``or`` inside a
    precondition or the goal), numbered after the literals.
    """

    task: Task
    adds: tuple[tuple[int, ...], ...]  # per operator: literals it can make true
    users: tuple[tuple[int, ...], ...]  # per node: operators with that node as a conjunct
    pre_nodes: tuple[tuple[int, ...], ...]  # per operator: its distinct conjunct nodes
    need: tuple[int, ...]  # per operator: number of distinct conjunct nodes
    free: tuple[int, ...]  # operators with no precondition left
    complex: tuple[Formula, ...]  # complex node formulas
    watch: tuple[tuple[int, ...], ...]  # per literal: complex nodes mentioning it
    goal_nodes: tuple[int, ...]
    goal_flag: bytes  # per node: 1 if it is a goal conjunct
    by_path: tuple[tuple[tuple[int, Callable[[Encoded], bool]], ...], ...]  # per path: its one-path literals
    pairs: tuple[int, ...]  # literals reading two paths
    # Per path: value -> the one-path literals true for it. A cache: a literal's truth depends on that value alone.
    truths: tuple[dict[Encoded, tuple[int, ...]], ...]

    @classmethod
    def build(cls, task: Task) -> RelaxedGraph:
        """Return the relaxation of ``task``."""
        literals = task.literals
        count = len(literals)
        readers: dict[int, list[int]] = {}
        for lit_id, lit in enumerate(literals):
            for path in lit.paths:
                readers.setdefault(path, []).append(lit_id)
        adds: list[tuple[int, ...]] = []
        for op in range(len(task.ops)):
            made: set[int] = set()
            for path, value in task.sets[op]:
                for lit_id in readers.get(path, ()):
                    test = literals[lit_id].value_test
                    if test is None or test(value):
                        made.add(lit_id)
            for path, by in task.incs[op]:
                made.update(lit_id for lit_id in readers.get(path, ()) if increment_achieves(literals[lit_id], by))
            adds.append(tuple(sorted(made)))

        complex_ids: dict[Formula, int] = {}

        def node(part: Formula) -> int:
            if isinstance(part, int) and not isinstance(part, bool):
                return part
            if part not in complex_ids:
                complex_ids[part] = count + len(complex_ids)
            return complex_ids[part]

        op_nodes = [sorted({node(p) for p in parts}) for parts in task.pre]
        goal_nodes = sorted({node(p) for p in task.goal})
        total = count + len(complex_ids)
        users: list[list[int]] = [[] for _ in range(total)]
        for op, nodes in enumerate(op_nodes):
            for n in nodes:
                users[n].append(op)
        complex_formulas = sorted(complex_ids, key=complex_ids.__getitem__)
        watch: list[list[int]] = [[] for _ in range(count)]
        for c, formula in enumerate(complex_formulas):
            for lit_id in sorted(set(formula_literals(formula))):
                watch[lit_id].append(c)
        flags = bytearray(total)
        for n in goal_nodes:
            flags[n] = 1
        by_path: list[list[tuple[int, Callable[[Encoded], bool]]]] = [[] for _ in task.paths]
        pairs: list[int] = []
        for lit_id, lit in enumerate(literals):
            if lit.value_test is None:
                pairs.append(lit_id)
            else:
                by_path[lit.paths[0]].append((lit_id, lit.value_test))
        return cls(
            task=task,
            adds=tuple(adds),
            users=tuple(tuple(u) for u in users),
            pre_nodes=tuple(tuple(nodes) for nodes in op_nodes),
            need=tuple(len(nodes) for nodes in op_nodes),
            free=tuple(op for op, nodes in enumerate(op_nodes) if not nodes),
            complex=tuple(complex_formulas),
            watch=tuple(tuple(w) for w in watch),
            goal_nodes=tuple(goal_nodes),
            goal_flag=bytes(flags),
            by_path=tuple(tuple(b) for b in by_path),
            pairs=tuple(pairs),
            truths=tuple({} for _ in task.paths),
        )

    def true_literals(self, state: State) -> list[int]:
        """Return the ids of the literals that hold in ``state``, in increasing order."""
        found: list[int] = []
        for path, value in enumerate(state):
            truths = self.truths[path]
            known = truths.get(value)
            if known is None:
                known = truths[value] = tuple(lit for lit, test in self.by_path[path] if test(value))
            found.extend(known)
        literals = self.task.literals
        found.extend(lit for lit in self.pairs if literals[lit].test(state))
        found.sort()
        return found

    def explore(self, state: State, stop_at_goal: bool = True) -> tuple[float, list[float], list[float]]:
        """Return (h_max of the goal, cost of each node, cost at which each operator fires) from ``state``.

        A generalized Dijkstra: a node's cost is 0 if it holds in ``state``, else
        the cheapest (operator cost + cost of the operator's precondition) over
        the operators that can make it true, where a conjunction costs the max of
        its parts and a disjunction the min. Nodes are settled in order of cost,
        so an operator fires, at the cost of the node that completes its
        precondition, the moment its last conjunct is settled. With
        ``stop_at_goal`` the costs are complete only up to the goal's.
        """
        count = len(self.watch)
        costs = self.task.costs
        adds, users, watch, goal_flag = self.adds, self.users, self.watch, self.goal_flag
        heappush, heappop = heapq.heappush, heapq.heappop
        dist = [INF] * len(users)
        fired = [INF] * len(costs)
        done = bytearray(len(users))
        remaining = list(self.need)
        goal_left = len(self.goal_nodes)
        if goal_left == 0:
            return 0.0, dist, fired
        heap: list[tuple[float, int]] = []
        for lit in self.true_literals(state):
            dist[lit] = 0.0
            heap.append((0.0, lit))
        for op in self.free:
            fired[op] = cost = costs[op]
            for target in adds[op]:
                if cost < dist[target]:
                    dist[target] = cost
                    heappush(heap, (cost, target))
        pending: list[int] = []
        while heap or pending:
            if pending:
                node = pending.pop()
            else:
                level, node = heappop(heap)
                if done[node]:
                    continue
            done[node] = 1
            if goal_flag[node]:
                goal_left -= 1
                if not goal_left and stop_at_goal:
                    return level, dist, fired
            for op in users[node]:
                left = remaining[op] - 1
                remaining[op] = left
                if not left:
                    fired[op] = cost = level + costs[op]
                    for target in adds[op]:
                        if cost < dist[target]:
                            dist[target] = cost
                            heappush(heap, (cost, target))
            if node < count and watch[node]:
                # A complex conjunct is settled with the literal that makes it true (dist marks it queued).
                for c in watch[node]:
                    complex_node = count + c
                    if dist[complex_node] == INF and formula_value(self.complex[c], lambda lit: done[lit] == 1):
                        dist[complex_node] = level
                        pending.append(complex_node)
        goal_cost = max((dist[n] for n in self.goal_nodes), default=0.0)
        return goal_cost, dist, fired

    def hmax(self, state: State) -> float:
        """Return h_max: the max over goal conjuncts of their relaxed cost (inf if unreachable)."""
        return self.explore(state)[0]
