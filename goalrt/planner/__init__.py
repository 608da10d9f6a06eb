"""A pure-Python optimal planner over goalrt's state: typed objects, paths, action schemas, A*.

    from goalrt.planner import ActionSchema, Budget, ObjectType, Problem, Set, cond, plan

See docs/planner.md for the model, the heuristics and their admissibility,
tie-breaking and what a budget guarantees.
"""

from __future__ import annotations

from goalrt.errors import PlanningError
from goalrt.planner.actions import ActionSchema, Delete, Effect, Increment, Set
from goalrt.planner.conditions import (
    FALSE,
    TRUE,
    And,
    Compare,
    Condition,
    Const,
    Eq,
    Exists,
    Ge,
    Gt,
    In,
    Le,
    Lt,
    Ne,
    Not,
    Or,
    Path,
    Term,
    Var,
    condition_from_json,
    condition_to_json,
)
from goalrt.planner.heuristics import HEURISTICS
from goalrt.planner.operators import GroundOp, apply, simulate
from goalrt.planner.problem import GoalParam, ObjectType, Problem
from goalrt.planner.results import REASONS, Blocked, NoPlan, Plan
from goalrt.planner.search import Budget, plan
from goalrt.planner.semantics import holds
from goalrt.planner.syntax import cond

__all__ = [
    "FALSE",
    "HEURISTICS",
    "REASONS",
    "TRUE",
    "ActionSchema",
    "And",
    "Blocked",
    "Budget",
    "Compare",
    "Condition",
    "Const",
    "Delete",
    "Effect",
    "Eq",
    "Exists",
    "Ge",
    "GoalParam",
    "GroundOp",
    "Gt",
    "In",
    "Increment",
    "Le",
    "Lt",
    "Ne",
    "NoPlan",
    "Not",
    "ObjectType",
    "Or",
    "Path",
    "Plan",
    "PlanningError",
    "Problem",
    "Set",
    "Term",
    "Var",
    "apply",
    "cond",
    "condition_from_json",
    "condition_to_json",
    "holds",
    "plan",
    "simulate",
]
