"""The search task: ground operators compiled against a compact state vector.

A state is a tuple of encoded values (see ``values``), one per *relevant*
path: a path some operator changes, or some remaining precondition or the
goal reads. Other paths never change, so the search leaves them out.
Preconditions on paths no operator changes (static paths) are decided once,
here, on the initial state: an operator whose static precondition is false is
set aside in ``Task.pruned`` (an explanation can still name it).

Conditions compile to *formulas* over *literals*: a literal is an atomic
comparison, membership or existence test (possibly negated) on concrete
paths; a formula is a literal id, a constant, or ``("and" | "or", parts)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from goalrt.planner.actions import Delete, Set
from goalrt.planner.conditions import And, Compare, Condition, Const, Exists, In, Not, Or, Path, bind, conjuncts
from goalrt.planner.grounding import Grounding, ground_actions, normalize
from goalrt.planner.operators import GroundOp
from goalrt.planner.problem import Problem
from goalrt.planner.semantics import evaluate
from goalrt.planner.values import MISSING, ORDERINGS, Encoded, Scalar, compare, encode

_HOLES = re.compile(r"\{[A-Za-z_][A-Za-z0-9_-]*\}")
State: TypeAlias = tuple[Encoded, ...]
Formula: TypeAlias = "int | bool | tuple[str, tuple[Formula, ...]]"
_Test: TypeAlias = Callable[[State], bool]
_ValueTest: TypeAlias = Callable[[Encoded], bool]
# A successor-generator node: (path index or -1, ops always applicable here, children by value, don't-care child).
_Node: TypeAlias = "tuple[int, tuple[int, ...], dict[Encoded, _Node], _Node | None]"


@dataclass(frozen=True, slots=True)
class Literal:
    """An atomic test on concrete paths (possibly negated) and its compiled checks."""

    condition: Condition
    paths: tuple[int, ...]
    test: _Test
    # The test on the value of its one path; None when it reads two paths.
    value_test: _ValueTest | None


@dataclass(frozen=True, eq=False)
class Task:
    """A grounded problem ready for search; build it with ``compile_task``."""

    paths: tuple[str, ...]
    init: State
    ops: tuple[GroundOp, ...]
    # Per operator: the top-level conjuncts of its precondition, static parts decided.
    pre: tuple[tuple[Formula, ...], ...]
    sets: tuple[tuple[tuple[int, Encoded], ...], ...]
    incs: tuple[tuple[tuple[int, int | float], ...], ...]
    costs: tuple[float, ...]
    literals: tuple[Literal, ...]
    goal: tuple[Formula, ...]
    goal_condition: Condition
    # Operators set aside: a precondition on paths nothing changes is false (those conjuncts given).
    pruned: tuple[tuple[GroundOp, tuple[Condition, ...]], ...]
    excluded: tuple[GroundOp, ...]
    empty: tuple[tuple[str, str], ...]
    checks: tuple[_Test | None, ...]
    tree: _Node
    goal_test: _Test

    def applicable(self, state: State) -> list[int]:
        """Return the indices of the operators applicable in ``state``, in name order."""
        found: list[int] = []
        stack = [self.tree]
        while stack:
            var, here, children, rest = stack.pop()
            found.extend(here)
            if var >= 0:
                child = children.get(state[var])
                if child is not None:
                    stack.append(child)
                if rest is not None:
                    stack.append(rest)
        checks = self.checks
        out = [o for o in found if (check := checks[o]) is None or check(state)]
        out.sort()
        return out

    def successor(self, state: State, op: int) -> State | None:
        """Return the state after operator ``op`` (None if it increments a non-number)."""
        values = list(state)
        for index, value in self.sets[op]:
            values[index] = value
        for index, by in self.incs[op]:
            current = values[index]
            if current is MISSING:
                values[index] = by
            elif isinstance(current, int | float):
                values[index] = current + by
            else:
                return None
        return tuple(values)


def compile_task(
    problem: Problem,
    exclude: frozenset[str] = frozenset(),
    penalties: Mapping[str, float] | None = None,
    *,
    cut_static: bool = True,
) -> Task:
    """Ground ``problem`` and compile it for search.

    With ``cut_static`` grounding skips the operators whose precondition is
    false on paths no action schema can change (``_static_false``), which
    ``_compile`` would set aside anyway, without building them; ``pruned``
    then lacks them, so an explanation compiles again without it.
    """
    dead = _static_false(problem) if cut_static else None
    grounding = ground_actions(problem, exclude, penalties, dead)
    goal = normalize(bind(problem.goal, problem.bindings))
    return _compile(problem.state, grounding, goal)


def _static_false(problem: Problem) -> Callable[[Condition], bool]:
    """Say of a bound conjunct that it is false in the state and reads only paths no effect template can make.

    A template's hole matches any text, so the paths an action may change are
    over-approximated and a conjunct judged static is static in every grounding.
    """
    templates = sorted({e.path.template for a in problem.actions for e in a.effects})
    fixed = {t for t in templates if "{" not in t}
    patterns = [re.compile(".+".join(re.escape(x) for x in _HOLES.split(t))) for t in templates if "{" in t]
    changes: dict[str, bool] = {}
    state = problem.state

    def may_change(path: str) -> bool:
        known = changes.get(path)
        if known is None:
            known = changes[path] = path in fixed or any(p.fullmatch(path) for p in patterns)
        return known

    def decided(condition: Condition) -> bool | None:
        if isinstance(condition, And | Or):
            values = [decided(a) for a in condition.args]
            final = isinstance(condition, Or)  # a true disjunct decides an or, a false conjunct an and
            if final in values:
                return final
            return None if None in values else not final
        reads: set[str] = set()
        collect_paths(condition, reads)
        return None if any(may_change(p) for p in reads) else evaluate(condition, state)

    return lambda condition: decided(condition) is False


def _compile(state: Mapping[str, Scalar], grounding: Grounding, goal: Condition) -> Task:
    changed = {e.path.template for op in grounding.ops for e in op.effects}
    kept: list[GroundOp] = []
    kept_pre: list[list[object]] = []
    pruned: list[tuple[GroundOp, tuple[Condition, ...]]] = []
    for op in grounding.ops:
        parts = [_fold(c, changed, state) for c in op.pre]
        failing = tuple(c for c, part in zip(op.pre, parts, strict=True) if part is False)
        if failing:
            pruned.append((op, failing))
            continue
        kept.append(op)
        kept_pre.append([p for p in parts if p is not True])
    # The goal keeps its static literals: an explanation names a false one as unreachable.
    goal_parts: list[object] = [_fold(c, None, state) for c in conjuncts(goal)]

    relevant: set[str] = {e.path.template for op in kept for e in op.effects}
    for part in [*(p for parts in kept_pre for p in parts), *goal_parts]:
        collect_paths(part, relevant)
    paths = tuple(sorted(relevant))
    index = {p: i for i, p in enumerate(paths)}

    registry: dict[Condition, int] = {}
    literals: list[Literal] = []

    def formula(part: object) -> Formula:
        if isinstance(part, bool):
            return part
        if isinstance(part, tuple):
            return (part[0], tuple(formula(p) for p in part[1]))
        assert isinstance(part, Compare | In | Exists | Not)
        if part not in registry:
            registry[part] = len(literals)
            literals.append(_literal(part, index))
        return registry[part]

    pre = tuple(tuple(formula(p) for p in op_parts) for op_parts in kept_pre)
    goal_formula = tuple(formula(p) for p in goal_parts if p is not True)
    tests = [lit.test for lit in literals]

    sets: list[tuple[tuple[int, Encoded], ...]] = []
    incs: list[tuple[tuple[int, int | float], ...]] = []
    for op in kept:
        sets.append(
            tuple(
                (index[e.path.template], MISSING if isinstance(e, Delete) else encode(_const(e)))
                for e in op.effects
                if isinstance(e, Set | Delete)
            )
        )
        incs.append(tuple((index[e.path.template], e.by) for e in op.effects if not isinstance(e, Set | Delete)))

    equalities: list[dict[int, Encoded]] = []
    checks: list[_Test | None] = []
    for conjunction in pre:
        eq: dict[int, Encoded] = {}
        rest: list[Formula] = []
        for part in conjunction:
            if isinstance(part, int) and not isinstance(part, bool):
                cond = literals[part].condition
                if isinstance(cond, Compare) and cond.op == "==" and isinstance(cond.right, Const):
                    var = literals[part].paths[0]
                    if var not in eq:
                        eq[var] = encode(cond.right.value)
                        continue
            rest.append(part)
        equalities.append(eq)
        checks.append(_formula_test(("and", tuple(rest)), tests) if rest else None)

    return Task(
        paths=paths,
        init=tuple(encode(state[p]) if p in state else MISSING for p in paths),
        ops=tuple(kept),
        pre=pre,
        sets=tuple(sets),
        incs=tuple(incs),
        costs=tuple(float(op.cost) for op in kept),
        literals=tuple(literals),
        goal=goal_formula,
        goal_condition=goal,
        pruned=tuple(pruned),
        excluded=grounding.excluded,
        empty=grounding.empty,
        checks=tuple(checks),
        tree=_tree(equalities),
        goal_test=_formula_test(("and", goal_formula), tests),
    )


def _const(effect: Set | Delete) -> Scalar:
    # Only called for a Set; grounding has replaced a parameter by its value.
    assert isinstance(effect, Set) and isinstance(effect.value, Const)
    return effect.value.value


def _fold(condition: Condition, changed: set[str] | None, state: Mapping[str, Scalar]) -> object:
    """Return a normalized condition as a pre-formula: literals as conditions, static ones decided.

    A literal is static when it reads no path in ``changed``; with ``changed``
    None nothing is decided.
    """
    if isinstance(condition, And | Or):
        kind = "and" if isinstance(condition, And) else "or"
        parts = [_fold(a, changed, state) for a in condition.args]
        if (kind == "and" and False in parts) or (kind == "or" and True in parts):
            return kind == "or"
        rest = [p for p in parts if not isinstance(p, bool)]
        if not rest:
            return kind == "and"
        return rest[0] if len(rest) == 1 else (kind, tuple(rest))
    reads: set[str] = set()
    collect_paths(condition, reads)
    if changed is not None and reads.isdisjoint(changed):
        return evaluate(condition, state)
    return condition


def collect_paths(part: object, into: set[str]) -> None:
    """Add the paths a condition (or a pre-formula of conditions) reads to ``into``."""
    if isinstance(part, tuple):
        for p in part[1]:
            collect_paths(p, into)
    elif isinstance(part, Not):
        collect_paths(part.arg, into)
    elif isinstance(part, Compare):
        for term in (part.left, part.right):
            if isinstance(term, Path):
                into.add(term.template)
    elif isinstance(part, In) and isinstance(part.left, Path):
        into.add(part.left.template)
    elif isinstance(part, Exists):
        into.add(part.path.template)


def _literal(condition: Condition, index: Mapping[str, int]) -> Literal:
    negated = isinstance(condition, Not)
    atom = condition.arg if isinstance(condition, Not) else condition
    value_test: _ValueTest
    if isinstance(atom, Compare) and isinstance(atom.right, Path):
        assert isinstance(atom.left, Path)
        i, j, op = index[atom.left.template], index[atom.right.template], atom.op
        paths: tuple[int, ...] = (i, j)

        def test(s: State) -> bool:
            return compare(op, s[i], s[j]) != negated

        return Literal(condition, paths, test, None)
    if isinstance(atom, Compare):
        assert isinstance(atom.left, Path) and isinstance(atom.right, Const)
        value_test = _compare_test(atom.op, encode(atom.right.value))
        path = atom.left.template
    elif isinstance(atom, In):
        assert isinstance(atom.left, Path)
        options = frozenset(encode(o.value) for o in atom.options if isinstance(o, Const))
        value_test = options.__contains__
        path = atom.left.template
    else:
        assert isinstance(atom, Exists)
        value_test = _exists
        path = atom.path.template
    if negated:
        inner = value_test

        def value_test(v: Encoded) -> bool:
            return not inner(v)

    i = index[path]
    check = value_test

    def state_test(s: State) -> bool:
        return check(s[i])

    return Literal(condition, (i,), state_test, value_test)


def _exists(value: Encoded) -> bool:
    return value is not MISSING


def _compare_test(op: str, constant: Encoded) -> _ValueTest:
    if op == "==":
        return lambda v: v == constant
    if op == "!=":
        return lambda v: v != constant
    order = ORDERINGS[op]
    if isinstance(constant, str):
        return lambda v: isinstance(v, str) and order(v, constant)
    if isinstance(constant, int | float):
        return lambda v: isinstance(v, int | float) and order(v, constant)
    return lambda v: False


def _formula_test(formula: Formula, tests: list[_Test]) -> _Test:
    """Return a function deciding ``formula`` on a state, given the literals' tests."""
    if isinstance(formula, bool):
        constant = formula
        return lambda s: constant
    if isinstance(formula, int):
        return tests[formula]
    kind, parts = formula
    subtests = tuple(_formula_test(p, tests) for p in parts)
    if len(subtests) == 1:
        return subtests[0]
    if kind == "and":
        return lambda s: all(t(s) for t in subtests)
    return lambda s: any(t(s) for t in subtests)


def formula_value(formula: Formula, truth: Callable[[int], bool]) -> bool:
    """Return ``formula``'s value given each literal's truth."""
    if isinstance(formula, bool):
        return formula
    if isinstance(formula, int):
        return truth(formula)
    kind, parts = formula
    if kind == "and":
        return all(formula_value(p, truth) for p in parts)
    return any(formula_value(p, truth) for p in parts)


def formula_literals(formula: Formula) -> list[int]:
    """Return the literal ids a formula mentions, in order."""
    if isinstance(formula, bool):
        return []
    if isinstance(formula, int):
        return [formula]
    return [lit for p in formula[1] for lit in formula_literals(p)]


def _tree(equalities: list[dict[int, Encoded]]) -> _Node:
    """Return a successor-generator decision tree over the operators' equality preconditions.

    Each node tests one path (the smallest index some remaining operator tests
    at or after the parent's); operators with nothing left to test sit in the
    node. Built without recursion: a chain of don't-care nodes can be as long
    as the number of paths.
    """
    raw: list[tuple[int, tuple[int, ...], dict[Encoded, int], int]] = [(-1, (), {}, -1)]
    work: list[tuple[int, list[int], int]] = [(0, list(range(len(equalities))), 0)]
    last = [max(eq, default=-1) for eq in equalities]
    while work:
        node, ops, start = work.pop()
        here = tuple(o for o in ops if last[o] < start)
        rest = [o for o in ops if last[o] >= start]
        if not rest:
            raw[node] = (-1, here, {}, -1)
            continue
        var = min(min(v for v in equalities[o] if v >= start) for o in rest)
        groups: dict[Encoded, list[int]] = {}
        dontcare: list[int] = []
        for o in rest:
            if var in equalities[o]:
                groups.setdefault(equalities[o][var], []).append(o)
            else:
                dontcare.append(o)
        children: dict[Encoded, int] = {}
        for value, members in groups.items():
            children[value] = len(raw)
            raw.append((-1, (), {}, -1))
            work.append((children[value], members, var + 1))
        other = -1
        if dontcare:
            other = len(raw)
            raw.append((-1, (), {}, -1))
            work.append((other, dontcare, var + 1))
        raw[node] = (var, here, children, other)
    # A child always has a larger id than its parent, so building from the end sees children first.
    built: list[_Node] = []
    for var, here, children, other in reversed(raw):
        size = len(raw)
        built.append(
            (
                var,
                here,
                {value: built[size - 1 - child] for value, child in children.items()},
                built[size - 1 - other] if other >= 0 else None,
            )
        )
    return built[-1]
