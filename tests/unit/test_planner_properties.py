"""Property tests: the planner against an exhaustive uniform-cost search written here, on random small domains.

Hypothesis draws domains in a small tuple language of its own: a type ``T``
whose objects are ``a`` and whatever follows ``v.`` in the state, paths
``x``, ``y``, ``v.<obj>``, ``w.<obj>``, actions with zero or one parameter,
conditions (comparisons with a value or another path, membership, existence,
and/or/not, parameter tests)
and effects (set, delete, increment), costs including 0 and 0.5. This file
grounds and runs them with its own JSON semantics (true is not 1, an absent
path equals nothing, ordering only between two numbers or two strings, an
increment counts from 0 and refuses a non-number), and a plain Dijkstra over
whole states finds the optimal cost. The same domain is then built through
the public API and planned. The planner must agree on the cost, its plans
must be valid under this file's semantics, and it must say NoPlan exactly
when the exhaustive search finds nothing.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goalrt.planner import (
    ActionSchema,
    And,
    Budget,
    Compare,
    Condition,
    Const,
    Delete,
    Exists,
    In,
    Increment,
    NoPlan,
    Not,
    ObjectType,
    Or,
    Path,
    Plan,
    Problem,
    Set,
    Var,
    plan,
    simulate,
)

ABSENT: Any = object()
VAR = "<param>"
POOL: list[Any] = [0, 1, 2, "p", "q", True, False, None]
NUMBERS = [0, 1, 2, 3]
COSTS = [0, 0.5, 1, 1, 2, 3]
PARAM_PATHS = ["x", "y", "v.{t}", "w.{t}"]
PLAIN_PATHS = ["x", "y", "v.a", "v.b", "w.a", "w.b"]


# The model's semantics ------------------------------------------------------


def tag(value: Any) -> tuple[Any, ...]:
    """Return a key under which two values are equal exactly when they are equal JSON values."""
    if value is ABSENT:
        return ("absent",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if value is None:
        return ("null",)
    return ("string", value)


def jcompare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        equal = left is not ABSENT and right is not ABSENT and tag(left) == tag(right)
        return equal if op == "==" else not equal
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    strings = all(isinstance(v, str) for v in (left, right))
    if not (numbers or strings):
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def fill(template: str, obj: str | None) -> str:
    return template.replace("{t}", obj) if obj is not None else template


def holds(cond: tuple[Any, ...], state: dict[str, Any], obj: str | None) -> bool:
    kind = cond[0]
    if kind == "cmp":
        _, path, op, value = cond
        return jcompare(op, state.get(fill(path, obj), ABSENT), obj if value == VAR else value)
    if kind == "paths":
        _, path, op, other = cond
        return jcompare(op, state.get(fill(path, obj), ABSENT), state.get(fill(other, obj), ABSENT))
    if kind == "in":
        left = state.get(fill(cond[1], obj), ABSENT)
        return any(jcompare("==", left, v) for v in cond[2])
    if kind == "exists":
        return fill(cond[1], obj) in state
    if kind == "param":
        return jcompare(cond[1], obj, cond[2])
    if kind == "not":
        return not holds(cond[1], state, obj)
    if kind == "and":
        return all(holds(c, state, obj) for c in cond[1:])
    assert kind == "or"
    return any(holds(c, state, obj) for c in cond[1:])


def run(effects: list[tuple[Any, ...]], state: dict[str, Any], obj: str | None) -> dict[str, Any] | None:
    out = dict(state)
    for effect in effects:
        path = fill(effect[1], obj)
        if effect[0] == "set":
            out[path] = obj if effect[2] == VAR else effect[2]
        elif effect[0] == "del":
            out.pop(path, None)
        else:
            current = out.get(path, 0)
            if isinstance(current, bool) or not isinstance(current, int | float):
                return None
            out[path] = current + effect[2]
    return out


def objects(state: dict[str, Any]) -> list[str]:
    return sorted({"a"} | {p.split(".", 1)[1] for p in state if p.startswith("v.")})


def ground(domain: dict[str, Any]) -> list[tuple[str, str | None, tuple[Any, ...], list[tuple[Any, ...]], float]]:
    out = []
    for name, param, pre, effects, cost in domain["actions"]:
        for obj in objects(domain["state"]) if param else [None]:
            out.append((name, obj, pre, effects, cost))
    return out


def key(state: dict[str, Any]) -> frozenset[tuple[str, tuple[Any, ...]]]:
    return frozenset((p, tag(v)) for p, v in state.items())


def uniform_cost(domain: dict[str, Any], limit: int = 20_000) -> float | str | None:
    """Return the optimal plan cost, None if no plan exists, or "unknown" past ``limit`` states."""
    actions = ground(domain)
    start = dict(domain["state"])
    best = {key(start): 0.0}
    heap: list[tuple[float, int, dict[str, Any]]] = [(0.0, 0, start)]
    counter = itertools.count(1)
    settled: set[frozenset[tuple[str, tuple[Any, ...]]]] = set()
    while heap:
        g, _, state = heapq.heappop(heap)
        k = key(state)
        if k in settled:
            continue
        settled.add(k)
        if holds(domain["goal"], state, None):
            return g
        if len(settled) > limit:
            return "unknown"
        for _, obj, pre, effects, cost in actions:
            if not holds(pre, state, obj):
                continue
            child = run(effects, state, obj)
            if child is None:
                continue
            ck = key(child)
            if g + cost < best.get(ck, float("inf")):
                best[ck] = g + cost
                heapq.heappush(heap, (g + cost, next(counter), child))
    return None


def replay(domain: dict[str, Any], result: Plan) -> None:
    """Check the plan step by step under this file's semantics and that it reaches the goal at its cost."""
    by_name = {name: (param, pre, effects, cost) for name, param, pre, effects, cost in domain["actions"]}
    state = dict(domain["state"])
    total = 0.0
    for op in result.steps:
        param, pre, effects, cost = by_name[op.action]
        obj = op.bindings.get("t") if param else None
        assert obj is None or isinstance(obj, str)
        assert holds(pre, state, obj), f"{op.name}: precondition does not hold"
        after = run(effects, state, obj)
        assert after is not None, f"{op.name}: increments a non-number"
        state = after
        total += cost
    assert holds(domain["goal"], state, None)
    assert total == result.cost


# Building the same domain through the public API -----------------------------


def term(value: Any) -> Var | Const:
    return Var("t") if value == VAR else Const(value)


def condition(cond: tuple[Any, ...]) -> Condition:
    kind = cond[0]
    if kind == "cmp":
        return Compare(cond[2], Path(cond[1]), term(cond[3]))
    if kind == "paths":
        return Compare(cond[2], Path(cond[1]), Path(cond[3]))
    if kind == "in":
        return In(Path(cond[1]), cond[2])
    if kind == "exists":
        return Exists(cond[1])
    if kind == "param":
        return Compare(cond[1], Var("t"), Const(cond[2]))
    if kind == "not":
        return Not(condition(cond[1]))
    parts = [condition(c) for c in cond[1:]]
    return And(*parts) if kind == "and" else Or(*parts)


def problem(domain: dict[str, Any]) -> Problem:
    actions = []
    for name, param, pre, effects, cost in domain["actions"]:
        built = []
        for effect in effects:
            if effect[0] == "set":
                built.append(Set(effect[1], term(effect[2])))
            elif effect[0] == "del":
                built.append(Delete(effect[1]))
            else:
                built.append(Increment(effect[1], effect[2]))
        actions.append(ActionSchema(name, {"t": "T"} if param else {}, condition(pre), built, cost))
    return Problem(
        types=[ObjectType("T", keys_under="v")],
        objects={"T": ["a"]},
        state=domain["state"],
        actions=actions,
        goal=condition(domain["goal"]),
    )


# Strategies -------------------------------------------------------------------


@st.composite
def conditions(draw: st.DrawFn, paths: list[str], values: list[Any], param: bool) -> tuple[Any, ...]:
    def atom() -> tuple[Any, ...]:
        kinds = ["cmp", "cmp", "paths", "in", "exists"] + (["param"] if param else [])
        kind = draw(st.sampled_from(kinds))
        path = draw(st.sampled_from(paths))
        if kind == "cmp":
            op = draw(st.sampled_from(["==", "!=", "<", ">="]))
            return ("cmp", path, op, draw(st.sampled_from(values + ([VAR] if param else []))))
        if kind == "paths":
            return ("paths", path, draw(st.sampled_from(["==", "!=", "<"])), draw(st.sampled_from(paths)))
        if kind == "in":
            return ("in", path, draw(st.lists(st.sampled_from(values), min_size=1, max_size=3)))
        if kind == "exists":
            return ("exists", path)
        return ("param", draw(st.sampled_from(["==", "!="])), draw(st.sampled_from(["a", "b"])))

    shape = draw(st.sampled_from(["atom", "atom", "and", "or", "not"]))
    if shape == "atom":
        return atom()
    if shape == "not":
        return ("not", atom())
    return (shape, atom(), atom())


@st.composite
def domains(draw: st.DrawFn, numeric: bool) -> dict[str, Any]:
    values = NUMBERS if numeric else POOL
    state = {
        p: draw(st.sampled_from(values)) for p in PLAIN_PATHS if draw(st.booleans()) or (p in ("v.a", "x") and numeric)
    }
    actions = []
    for i in range(draw(st.integers(1, 5))):
        param = draw(st.booleans())
        paths = PARAM_PATHS if param else PLAIN_PATHS
        pre = ("and", *draw(st.lists(conditions(paths, values, param), max_size=2)))
        targets = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=2, unique=True))
        effects: list[tuple[Any, ...]] = []
        for target in targets:
            kind = draw(st.sampled_from(["set", "set", "del", "inc"] if numeric else ["set", "set", "del"]))
            if kind == "set":
                effects.append(("set", target, draw(st.sampled_from(values + ([VAR] if param else [])))))
            elif kind == "del":
                effects.append(("del", target))
            else:
                effects.append(("inc", target, draw(st.sampled_from([1, -1, 2]))))
        # With increments the state space is infinite: positive costs keep every cost level finite.
        cost = draw(st.sampled_from([c for c in COSTS if c > 0] if numeric else COSTS))
        actions.append((f"act{i}", param, pre, effects, cost))
    goal = ("and", *draw(st.lists(conditions(PLAIN_PATHS, values, False), min_size=1, max_size=2)))
    return {"state": state, "actions": actions, "goal": goal}


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(domains(numeric=False))
def test_finite_domains_match_exhaustive_search(domain: dict[str, Any]) -> None:
    expected = uniform_cost(domain)
    assert expected != "unknown"  # finite: a few hundred states at most
    result = plan(problem(domain), Budget(max_expansions=100_000))
    if expected is None:
        assert isinstance(result, NoPlan), result
        assert result.reason in ("goal_unreachable", "no_actions")
    else:
        assert isinstance(result, Plan), result.explain()
        assert result.cost == expected
        replay(domain, result)
        final = simulate(domain["state"], result)
        assert holds(domain["goal"], final, None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(domains(numeric=True))
def test_numeric_domains_match_exhaustive_search(domain: dict[str, Any]) -> None:
    expected = uniform_cost(domain, limit=2_000)
    result = plan(problem(domain), Budget(max_expansions=50_000))
    if expected == "unknown":
        if isinstance(result, Plan):  # no optimum to compare with, but the plan must still be valid
            replay(domain, result)
        return
    if expected is None:
        assert isinstance(result, NoPlan), result
    else:
        assert isinstance(result, Plan), result.explain()
        assert result.cost == expected
        replay(domain, result)


@settings(max_examples=150, deadline=None)
@given(domains(numeric=False), st.sampled_from(["blind", "hmax", "max", "projection", "landmarks", "lmcut", "auto"]))
def test_every_heuristic_finds_the_same_optimal_cost(domain: dict[str, Any], heuristic: str) -> None:
    expected = uniform_cost(domain)
    result = plan(problem(domain), Budget(max_expansions=100_000), heuristic=heuristic)
    if expected is None:
        assert isinstance(result, NoPlan)
    else:
        assert isinstance(result, Plan)
        assert result.cost == expected
        replay(domain, result)
