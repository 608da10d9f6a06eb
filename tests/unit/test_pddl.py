"""PDDL import: IPC tasks (tests/data/pddl) read, translated and planned optimally; parse errors as FILE:LINE:COL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from goalrt.errors import PlanningError
from goalrt.planner import Budget, Plan, apply, holds, plan
from goalrt.planner.pddl import load_pddl, to_problem

DATA = Path(__file__).resolve().parents[1] / "data" / "pddl"

# (domain, problem, optimal length): known optima of these standard tasks.
TASKS = [
    ("gripper-domain", "gripper-prob01", 11),
    ("blocks-domain", "blocks-sussman", 6),
    ("blocks-domain", "blocks-probblocks-4-0", 6),
    ("logistics-domain", "logistics-small", 11),
    ("miconic-domain", "miconic-s2-0", 7),
]


def solve(domain: str, problem: str) -> Plan:
    result = plan(to_problem(load_pddl(DATA / f"{domain}.pddl", DATA / f"{problem}.pddl")), Budget(200_000))
    assert isinstance(result, Plan), result.explain()
    return result


@pytest.mark.parametrize(("domain", "problem", "optimal"), TASKS)
def test_ipc_tasks_plan_optimally_and_the_plan_reaches_the_goal(domain: str, problem: str, optimal: int) -> None:
    task = to_problem(load_pddl(DATA / f"{domain}.pddl", DATA / f"{problem}.pddl"))
    result = solve(domain, problem)
    assert result.length == optimal and result.cost == optimal
    state = dict(task.state)
    for op in result.steps:
        assert op.applicable(state)
        state = apply(op, state)
    assert holds(task.goal, state)


def test_names_map_to_lowercase_paths_and_types_keep_their_parents() -> None:
    task = load_pddl(DATA / "logistics-domain.pddl", DATA / "logistics-small.pddl")
    problem = to_problem(task)
    assert problem.state["at.tru1.pos1"] is True and problem.state["_objects.truck.tru1"] is True
    parents = {t.name: t.parent for t in problem.types}
    assert parents["truck"] == "vehicle" and parents["vehicle"] == "physobj" and parents["object"] is None
    # a parameter of type place takes airports (a subtype) and locations
    assert problem.objects_of("place") == ("apt1", "apt2", "pos1", "pos2")
    sussman = to_problem(load_pddl(DATA / "blocks-domain.pddl", DATA / "blocks-sussman.pddl"))
    assert "on.c.a" in sussman.state and "handempty" in sussman.state  # written in capitals in the file
    assert str(sussman.goal) == "on.a.b == true and on.b.c == true"


def test_deletes_are_translated() -> None:
    result = solve("gripper-domain", "gripper-prob01")
    pick = result.steps[0]
    assert pick.name == "pick(ball1, rooma, left)"
    assert [str(e) for e in pick.effects] == ["delete at.ball1.rooma", "carry.ball1.left = true", "delete free.left"]


def test_negative_preconditions_and_equality(tmp_path: Path) -> None:
    (tmp_path / "d.pddl").write_text("""
(define (domain lights) (:requirements :strips :negative-preconditions :equality)
  (:constants a b)
  (:predicates (on ?x) (done))
  (:action switch :parameters (?x ?y)
    :precondition (and (not (on ?x)) (not (= ?x ?y)) (on ?y))
    :effect (and (on ?x) (not (on ?y))))
  (:action finish :parameters () :precondition (and (on b) (not (on a))) :effect (done)))
""")
    (tmp_path / "p.pddl").write_text("""
(define (problem p) (:domain lights) (:init (on a)) (:goal (and (done) (not (on a)))))
""")
    result = plan(to_problem(load_pddl(tmp_path / "d.pddl", tmp_path / "p.pddl")), Budget(1000))
    assert isinstance(result, Plan)
    assert [op.name for op in result.steps] == ["switch(b, a)", "finish()"]


def test_either_types_in_predicate_declarations_are_read(tmp_path: Path) -> None:
    # zenotravel declares (at ?x - (either person aircraft) ?c - city); argument types of predicates are
    # not checked, so the either only has to name declared types
    (tmp_path / "d.pddl").write_text("""
(define (domain z) (:requirements :typing)
  (:types person aircraft city - object)
  (:predicates (at ?x - (either person aircraft) ?c - city))
  (:action fly :parameters (?a - aircraft ?p - person ?from ?to - city)
    :precondition (and (at ?a ?from) (at ?p ?from))
    :effect (and (not (at ?a ?from)) (at ?a ?to) (not (at ?p ?from)) (at ?p ?to))))
""")
    (tmp_path / "p.pddl").write_text("""
(define (problem p) (:domain z) (:objects bob - person plane - aircraft c1 c2 - city)
  (:init (at bob c1) (at plane c1)) (:goal (at bob c2)))
""")
    result = plan(to_problem(load_pddl(tmp_path / "d.pddl", tmp_path / "p.pddl")), Budget(1000))
    assert isinstance(result, Plan)
    assert [op.name for op in result.steps] == ["fly(plane, bob, c1, c2)"]


def bad(tmp_path: Path, domain: str, problem: str | None = None) -> str:
    (tmp_path / "d.pddl").write_text(domain)
    (tmp_path / "p.pddl").write_text(problem or "(define (problem p) (:domain d) (:objects a) (:init) (:goal (and)))")
    with pytest.raises(PlanningError) as info:
        load_pddl(tmp_path / "d.pddl", tmp_path / "p.pddl")
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(tmp_path) + "/", "")


GOOD = (
    "(define (domain d)\n (:predicates (p ?x))\n"
    " (:action a :parameters (?x) :precondition (p ?x) :effect (not (p ?x))))"
)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("(define (domain d)\n  (:predicates (p ?x))", "d.pddl:1:1: this '(' is never closed; expected ')' before"),
        (GOOD + ")", "d.pddl:3:73: unexpected ')'; expected the end of the file"),
        (GOOD.replace(":precondition (p ?x)", ":precondition (q ?x)"), "d.pddl:3:45: unknown predicate 'q'"),
        (GOOD.replace("(?x) :precondition", "(?x - thing) :precondition"), "d.pddl:3:31: undeclared type 'thing'"),
        (GOOD.replace("(p ?x) :effect", "(p ?x ?x) :effect"), "d.pddl:3:44: predicate p takes 1 argument(s), given 2"),
        (GOOD.replace("(p ?x) :effect", "(p ?y) :effect"), "d.pddl:3:47: undeclared variable ?y"),
        (
            GOOD.replace("(define (domain d)", "(define (domain d) (:requirements :strips :conditional-effects)"),
            "d.pddl:1:43: unsupported requirement :conditional-effects; goalrt imports the STRIPS subset",
        ),
        (
            GOOD.replace(":effect (not (p ?x))", ":effect (when (p ?x) (not (p ?x)))"),
            "d.pddl:3:59: unsupported: conditional effects (when)",
        ),
        (
            GOOD.replace(":precondition (p ?x)", ":precondition (or (p ?x) (p ?x))"),
            "d.pddl:3:44: unsupported: disjunctive conditions (or)",
        ),
        (
            GOOD.replace(":effect (not (p ?x))", ":effect (forall (?y) (p ?y))"),
            "d.pddl:3:59: unsupported: universal quantifiers (forall)",
        ),
        (GOOD + "\n(:durative-action x)", "d.pddl:4:1: unexpected '('; expected the end of the file"),
        (
            GOOD.replace(" (:action", " (:durative-action"),
            "d.pddl:3:2: unsupported: durative actions (:durative-action)",
        ),
        (
            GOOD.replace("(p ?x))\n", "(p ?x - (either a b)))\n"),
            "d.pddl:2:31: undeclared type 'a'",
        ),
        (
            "(define (domain d) (:types a b)\n (:predicates (p ?x))\n"
            " (:action a :parameters (?x - (either a b)) :precondition (p ?x) :effect (not (p ?x))))",
            "d.pddl:3:31: unsupported: either types; goalrt imports the STRIPS subset",
        ),
        ("", "d.pddl:1:1: expected '(': the file holds no PDDL"),
    ],
)
def test_domain_errors_name_file_line_and_column(tmp_path: Path, domain: str, expected: str) -> None:
    assert bad(tmp_path, domain).startswith(expected)


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("(define (problem p) (:domain d) (:init (p b)) (:goal (p a)))", "p.pddl:1:43: unknown object 'b'"),
        ("(define (problem p) (:domain e) (:goal (and)))", "p.pddl:1:30: problem of domain 'e', but the domain file"),
        ("(define (problem p) (:domain d) (:objects a - t) (:goal (and)))", "p.pddl:1:47: undeclared type 't'"),
        ("(define (problem p) (:domain d) (:objects a) (:init (p a a)) (:goal (p a)))", "p.pddl:1:53: predicate p"),
        ("(define (problem p) (:domain d) (:objects a))", "p.pddl:1:1: the problem has no (:goal ...)"),
        ("(define (problem p) (:domain d) (:goal (or (p a))))", "p.pddl:1:40: unsupported: disjunctive"),
        ("(define (problem p) (:domain d) (:metric minimize (x)))", "p.pddl:1:33: unsupported: metrics"),
    ],
)
def test_problem_errors_name_file_line_and_column(tmp_path: Path, problem: str, expected: str) -> None:
    assert bad(tmp_path, GOOD, problem).startswith(expected)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PlanningError, match=r"nope\.pddl: cannot read: No such file"):
        load_pddl(tmp_path / "nope.pddl", tmp_path / "p.pddl")


DETERMINISM_SCRIPT = f"""
import json
from goalrt.planner import plan, Budget
from goalrt.planner.pddl import load_pddl, to_problem
for d, p, _ in {TASKS!r}:
    task = load_pddl("{DATA}/" + d + ".pddl", "{DATA}/" + p + ".pddl")
    print(json.dumps(plan(to_problem(task), Budget(200_000)).to_json(timing=False), sort_keys=True))
"""


def test_same_plans_under_every_hash_seed() -> None:
    outputs = []
    for seed in ("0", "11"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT], env=env, capture_output=True, check=True, timeout=120
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == len(TASKS)


def test_the_one_pass_reader_reads_as_the_grammar_does() -> None:
    # sexpr._fast pairs the parentheses of a well-formed file without lark; it must give the same lists,
    # lines and columns as the grammar, and leave every file it cannot read whole to the grammar
    from goalrt.planner.pddl import sexpr

    texts = [path.read_text() for path in sorted(DATA.glob("*.pddl"))]
    texts += ["; c\r\n(define (Domain X) ;(\n\t(:p ?a - T)\f( ) )\n", "(a)(b)", "a (b)", "(a))", "((a)", "(a\u00a0b)"]
    for text in texts:
        fast = sexpr._fast(text)
        try:
            expected = sexpr._parse_lark("f", text)
        except PlanningError:
            assert fast is None
        else:
            assert fast is None or fast == expected
    assert all(sexpr._fast(text) is not None for text in texts[:-5])


@pytest.mark.parametrize(("domain", "problem", "optimal"), TASKS)
def test_grounding_cut_only_leaves_out_actions_that_cannot_apply(domain: str, problem: str, optimal: int) -> None:
    # compile_task cuts bindings whose static preconditions are false while grounding; what it keeps must be
    # a subset of what the uncut grounding keeps (it only leaves out actions that cannot apply)
    from goalrt.planner.task import compile_task

    task = to_problem(load_pddl(DATA / f"{domain}.pddl", DATA / f"{problem}.pddl"))
    cut, full = compile_task(task), compile_task(task, cut_static=False)
    kept = {op.name for op in cut.ops}
    assert kept and kept <= {op.name for op in full.ops}
    assert {op.name for op, _ in cut.pruned} <= {op.name for op, _ in full.pruned}
    assert solve(domain, problem).length == optimal
