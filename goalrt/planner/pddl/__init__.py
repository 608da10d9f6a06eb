"""PDDL import: read a STRIPS domain and problem and turn them into the planner's ``Problem``.

    from goalrt.planner.pddl import load_pddl
    task = load_pddl("domain.pddl", "p01.pddl")
    result = plan(task.problem(), Budget(max_expansions=1_000_000))

How names map (docs/planner.md, "PDDL"): names are lowercased; a fact
``(at ball1 rooma)`` is the path ``at.ball1.rooma`` holding ``true`` (absent
when false; a predicate without arguments is the path of its name); an object
``o`` of type ``t`` is the path ``_objects.t.o`` (``true``), drawn by the
type's ``keys_under``; a PDDL type is an ``ObjectType`` with its parent
(``object`` is the root); an action is an ``ActionSchema`` whose deletes are
``Delete`` and adds ``Set(path, True)``; the goal is a conjunction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from goalrt.errors import PlanningError
from goalrt.planner.actions import ActionSchema, Delete, Effect, Set
from goalrt.planner.conditions import And, Compare, Condition, Const, Exists, Not, Var
from goalrt.planner.pddl.reader import ROOT_TYPE, Literal, Task, read_domain, read_task
from goalrt.planner.pddl.sexpr import Source
from goalrt.planner.problem import ObjectType, Problem

OBJECTS: Final = "_objects"


def load_pddl(domain_file: str | Path, problem_file: str | Path) -> Task:
    """Read a domain file and a problem file; raise ``PlanningError`` (``FILE:LINE:COL: ...``) on bad input."""
    domain = read_domain(Source(str(domain_file), _read(domain_file)))
    return read_task(domain, Source(str(problem_file), _read(problem_file)))


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanningError(f"{path}: cannot read: {exc.strerror if isinstance(exc, OSError) else exc}") from None


def fact_path(pred: str, args: tuple[str, ...]) -> str:
    """The path of a fact or of an action's atom (``?x`` becomes the hole ``{x}``)."""
    return ".".join([pred, *(f"{{{a[1:]}}}" if a.startswith("?") else a for a in args)])


def _term(arg: str) -> Var | Const:
    return Var(arg[1:]) if arg.startswith("?") else Const(arg)


def literal_condition(literal: Literal) -> Condition:
    """An atom is ``path == true``, its negation ``not exists(path)``; ``=`` compares the two arguments."""
    if literal.pred == "=":
        test: Condition = Compare("==", _term(literal.args[0]), _term(literal.args[1]))
        return Not(test) if literal.negated else test
    path = fact_path(literal.pred, literal.args)
    return Not(Exists(path)) if literal.negated else Compare("==", path, True)


def conjunction(literals: tuple[Literal, ...] | list[Literal]) -> Condition:
    conditions = [literal_condition(lit) for lit in literals]
    return conditions[0] if len(conditions) == 1 else And(*conditions)


def schemas(task: Task) -> list[ActionSchema]:
    """The domain's actions as schemas: deletes then adds (the planner applies deletes first, the add wins)."""
    out = []
    for action in task.domain.actions:
        effects: list[Effect] = [Delete(fact_path(d.pred, d.args)) for d in action.deletes]
        effects += [Set(fact_path(a.pred, a.args), True) for a in action.adds]
        out.append(ActionSchema(action.name, dict(action.params), conjunction(action.pre), effects))
    return out


def object_types(task: Task) -> list[ObjectType]:
    """One ``ObjectType`` per PDDL type, with its parent; its objects are the keys under ``_objects.TYPE``."""
    return [ObjectType(t, f"{OBJECTS}.{t}", parent=p) for t, p in sorted(task.domain.types.items())]


def initial_state(task: Task, *, flatten: bool = False) -> dict[str, bool]:
    """The facts of ``:init`` and each object under its type (and, with ``flatten``, under each ancestor type)."""
    state: dict[str, bool] = {}
    for obj, kind in sorted(task.objects.items()):
        state[f"{OBJECTS}.{kind}.{obj}"] = True
        parent = task.domain.types.get(kind)
        while flatten and parent is not None:
            state[f"{OBJECTS}.{parent}.{obj}"] = True
            parent = task.domain.types.get(parent)
    for fact in task.init:
        state[fact_path(fact.pred, fact.args)] = True
    return state


def to_problem(task: Task) -> Problem:
    """The planner's problem: object types with parents, the initial state, the schemas and the goal."""
    return Problem(
        types=object_types(task), state=initial_state(task), actions=schemas(task), goal=conjunction(task.goal)
    )


__all__ = ["OBJECTS", "ROOT_TYPE", "Task", "load_pddl", "to_problem"]
