"""Why there is no plan: relaxed reachability from the initial state, traced back from the goal.

In the relaxation every action keeps what it makes true forever, so a goal
condition the relaxation cannot reach is unreachable for real. For each such
condition we list the actions that would make it true and their preconditions
that are themselves unreachable, then follow those back to the roots: a
condition no action can make true, or an action with no ground instance.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from goalrt.planner.actions import Delete, Set
from goalrt.planner.conditions import FALSE, TRUE, And, Condition, Const, Or
from goalrt.planner.operators import GroundOp
from goalrt.planner.relaxation import RelaxedGraph, increment_achieves
from goalrt.planner.results import Blocked
from goalrt.planner.task import Formula, Task, collect_paths, formula_literals, formula_value
from goalrt.planner.values import MISSING, encode

# Explanations stay readable (and events small) on large domains.
_MAX_BLOCKED = 25
_MAX_CAUSES = 25


@dataclass(frozen=True, slots=True)
class _Diagnosis:
    """The parts of a NoPlan that relaxed reachability can tell."""

    unreachable: tuple[str, ...]
    blocked: tuple[Blocked, ...]
    causes: tuple[str, ...]
    excluded: tuple[str, ...]


def _formula_condition(task: Task, formula: Formula) -> Condition:
    """Return the condition a compiled formula stands for."""
    if isinstance(formula, bool):
        return TRUE if formula else FALSE
    if isinstance(formula, int):
        return task.literals[formula].condition
    kind, parts = formula
    args = [_formula_condition(task, p) for p in parts]
    return And(*args) if kind == "and" else Or(*args)


def _op_achieves(task: Task, op: GroundOp, literal: int) -> bool:
    """Return whether a ground op outside the task (pruned or excluded) could make the literal true."""
    lit = task.literals[literal]
    reads = {task.paths[i] for i in lit.paths}
    for effect in op.effects:
        if effect.path.template not in reads:
            continue
        if lit.value_test is None:
            return True
        if isinstance(effect, Set):
            assert isinstance(effect.value, Const)
            if lit.value_test(encode(effect.value.value)):
                return True
        elif isinstance(effect, Delete):
            if lit.value_test(MISSING):
                return True
        elif increment_achieves(lit, effect.by):
            return True
    return False


def diagnose(task: Task, graph: RelaxedGraph) -> _Diagnosis:
    """Return what relaxed reachability from the initial state says about the goal."""
    _, dist, _ = graph.explore(task.init, stop_at_goal=False)

    def reachable(lit: int) -> bool:
        return dist[lit] < math.inf

    def text(formula: Formula) -> str:
        return str(_formula_condition(task, formula))

    achievers: list[list[int]] = [[] for _ in task.literals]
    for op, made in enumerate(graph.adds):
        for lit in made:
            achievers[lit].append(op)

    unreachable: list[str] = []
    frontier: list[int] = []
    for part in task.goal:
        if not formula_value(part, reachable):
            unreachable.append(text(part))
            frontier.extend(lit for lit in formula_literals(part) if not reachable(lit) and lit not in frontier)

    blocked: list[Blocked] = []
    excluded: list[str] = []
    causes: list[str] = []
    # Breadth-first from the goal through the unreachable preconditions of the actions that would help.
    queue = deque(frontier)
    visited = set(frontier)
    while queue:
        lit = queue.popleft()
        for op in achievers[lit]:
            missing = [p for p in task.pre[op] if not formula_value(p, reachable)]
            blocked.append(Blocked(task.ops[op].name, text(lit), tuple(text(p) for p in missing)))
            for needed in (n for p in missing for n in formula_literals(p)):
                if not reachable(needed) and needed not in visited:
                    visited.add(needed)
                    queue.append(needed)
        pruned = [(g, failing) for g, failing in task.pruned if _op_achieves(task, g, lit)]
        for ground, failing in pruned:
            missing_static = []
            for c in failing:
                reads: set[str] = set()
                collect_paths(c, reads)
                changers = [g.name for g in task.excluded if any(e.path.template in reads for e in g.effects)]
                excluded.extend(name for name in changers if name not in excluded)
                how = f"only excluded actions change it: {', '.join(changers)}" if changers else "no action changes it"
                missing_static.append(f"{c} (false, and {how})")
            blocked.append(Blocked(ground.name, text(lit), tuple(missing_static)))
        barred = [g.name for g in task.excluded if _op_achieves(task, g, lit)]
        excluded.extend(name for name in barred if name not in excluded)
        if not achievers[lit]:
            if barred:
                causes.append(f"only excluded actions can make {text(lit)} true: {', '.join(barred)}")
            elif not pruned:
                causes.append(_nothing_makes(task, lit))
    causes.extend(f"action {name} has no ground instances: {why}" for name, why in task.empty)
    if len(causes) > _MAX_CAUSES:
        causes[_MAX_CAUSES:] = [f"{len(causes) - _MAX_CAUSES} more causes are not listed"]
    if len(blocked) > _MAX_BLOCKED:
        causes.append(f"{len(blocked) - _MAX_BLOCKED} more blocked actions are not listed")
        blocked = blocked[:_MAX_BLOCKED]
    return _Diagnosis(tuple(unreachable), tuple(blocked), tuple(causes), tuple(excluded))


def _nothing_makes(task: Task, lit: int) -> str:
    literal = task.literals[lit]
    paths = [task.paths[i] for i in literal.paths]
    changed = {e.path.template for op in (*task.ops, *(g for g, _ in task.pruned), *task.excluded) for e in op.effects}
    if not changed.intersection(paths):
        return f"nothing can make {literal.condition} true: no action changes {' or '.join(paths)}"
    return f"nothing can make {literal.condition} true: no action sets {' or '.join(paths)} to a value where it holds"
