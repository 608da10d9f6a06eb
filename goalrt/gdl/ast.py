"""The GDL syntax tree: frozen dataclasses, each carrying where it was written (file, line, column).

The parser builds these from lark's tree; the compiler checks them and turns
them into the planner's objects. Names and paths are kept as written
(``Name``) so that every later message can point at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    # Steps, emits and a test's then-clauses (goalrt/gdl/ast_steps.py), which import this module's nodes.
    from goalrt.gdl.ast_steps import Emit, StepsClause, ThenClause

from goalrt.gdl.ast_base import Duration, Literal, Name, Pos, Scalar, Term
from goalrt.gdl.ast_calls import BuiltinArg, BuiltinDecl, StateRef, WithArg, WithArgs, WithList, WithMap, WithValue

# -- conditions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Term
    right: Term
    pos: Pos


@dataclass(frozen=True, slots=True)
class Member:
    left: Term
    options: tuple[Term, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExistsCond:
    path: Name
    pos: Pos


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Cond, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Cond, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Negation:
    arg: Cond
    pos: Pos


@dataclass(frozen=True, slots=True)
class Constant:
    value: bool
    pos: Pos


Cond: TypeAlias = Compare | Member | ExistsCond | AllOf | AnyOf | Negation | Constant


# -- types and events ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """``name: type`` in a type, an event, or a parameter list."""

    name: Name
    type: Name
    pos: Pos


@dataclass(frozen=True, slots=True)
class TypeDecl:
    name: Name
    under: Name | None
    fields: tuple[Field, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class EventDecl:
    name: Name
    fields: tuple[Field, ...]
    pos: Pos


# -- actions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetEffect:
    path: Name
    value: Term
    pos: Pos


@dataclass(frozen=True, slots=True)
class IncEffect:
    path: Name
    by: Literal
    pos: Pos


@dataclass(frozen=True, slots=True)
class DeleteEffect:
    path: Name
    pos: Pos


_EffectNode: TypeAlias = SetEffect | IncEffect | DeleteEffect


@dataclass(frozen=True, slots=True)
class Require:
    condition: Cond
    pos: Pos


@dataclass(frozen=True, slots=True)
class Cost:
    value: Literal
    pos: Pos


@dataclass(frozen=True, slots=True)
class RetryClause:
    attempts: Literal
    backoff: str | None
    delay: Duration | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Timeout:
    duration: Duration
    pos: Pos


@dataclass(frozen=True, slots=True)
class Concurrency:
    value: Literal
    pos: Pos


@dataclass(frozen=True, slots=True)
class Rate:
    count: Literal
    per: Duration
    pos: Pos


@dataclass(frozen=True, slots=True)
class Handler:
    name: Name
    pos: Pos


@dataclass(frozen=True, slots=True)
class Pure:
    """``pure``: the action runs no handler; its effects are the whole action."""

    pos: Pos


_ActionClause: TypeAlias = (
    "Require | SetEffect | IncEffect | DeleteEffect | Cost | RetryClause | Timeout | Concurrency | Rate | Handler"
    " | Pure | WithArgs | Emit"
)


@dataclass(frozen=True, slots=True)
class ActionDecl:
    name: Name
    params: tuple[Field, ...]
    clauses: tuple[_ActionClause, ...]
    pos: Pos


# -- goals -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AchieveClause:
    condition: Cond
    maintain: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class Priority:
    value: Literal
    pos: Pos


@dataclass(frozen=True, slots=True)
class Deadline:
    duration: Duration
    pos: Pos


@dataclass(frozen=True, slots=True)
class MaxReplans:
    value: Literal
    pos: Pos


@dataclass(frozen=True, slots=True)
class Uses:
    """``actions a, b``: the only actions the goal may plan with."""

    actions: tuple[Name, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Binding:
    """``name = value`` in a trigger, a ``when goal`` or a ``when event``."""

    name: Name
    value: Term
    pos: Pos


@dataclass(frozen=True, slots=True)
class Trigger:
    """``on event TYPE as e { param = e.field ... }``."""

    event: Name
    alias: Name
    bindings: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ScheduleOption:
    """``timezone "Europe/Paris"``, ``catch_up all`` or ``as NAME`` after a schedule."""

    kind: str  # "timezone", "catch_up" or "name"
    value: Name | Literal
    pos: Pos


@dataclass(frozen=True, slots=True)
class ScheduleClause:
    """``on schedule "CRON" ...`` or ``every DURATION ...``: submit the goal at each tick, with constant params."""

    cron: Literal | None
    every: Duration | None
    options: tuple[ScheduleOption, ...]
    bindings: tuple[Binding, ...]
    pos: Pos


_GoalClause: TypeAlias = (
    "AchieveClause | Priority | Deadline | MaxReplans | Uses | Trigger | ScheduleClause | StepsClause"
)


@dataclass(frozen=True, slots=True)
class GoalDecl:
    name: Name
    params: tuple[Field, ...]
    clauses: tuple[_GoalClause, ...]
    pos: Pos


# -- contracts, policies, tests --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    kind: str  # "type", "event" or "action"
    name: Name
    pos: Pos


@dataclass(frozen=True, slots=True)
class ContractDecl:
    name: Name
    exports: tuple[Export, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class PolicyDecl:
    name: Name
    conditions: tuple[Cond, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Given:
    path: Name
    value: Term
    pos: Pos


@dataclass(frozen=True, slots=True)
class Simulate:
    actions: tuple[Name, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class WhenGoal:
    goal: Name
    args: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class WhenEvent:
    event: Name
    data: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExpectEvent:
    event: Name
    pos: Pos


@dataclass(frozen=True, slots=True)
class WhenChange:
    """``when change { PATH = CONST ... }``: one change set, applied after the givens."""

    changes: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExpectGoal:
    """``expect goal [GOAL] STATUS``: the compiler checks that STATUS is a goal status."""

    goal: Name | None
    status: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExpectRefused:
    """``expect refused [by POLICY]``: what the test did just before was refused."""

    policy: Name | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExpectState:
    condition: Cond
    pos: Pos


_TestClause: TypeAlias = (
    "Given | Simulate | WhenGoal | WhenEvent | WhenChange | ExpectEvent | ExpectGoal | ExpectRefused | ExpectState"
    " | ThenClause"
)


@dataclass(frozen=True, slots=True)
class TestDecl:
    name: Name
    clauses: tuple[_TestClause, ...]
    pos: Pos


Decl: TypeAlias = TypeDecl | EventDecl | ActionDecl | GoalDecl | ContractDecl | PolicyDecl | TestDecl | BuiltinDecl


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One parsed .gdl file; ``app`` is its app, ``shared`` or ``tests`` (from where it sits in the workspace)."""

    path: str
    app: str
    decls: tuple[Decl, ...]


__all__ = [
    "AchieveClause",
    "ActionDecl",
    "AllOf",
    "AnyOf",
    "Binding",
    "BuiltinArg",
    "BuiltinDecl",
    "Compare",
    "Concurrency",
    "Cond",
    "Constant",
    "ContractDecl",
    "Cost",
    "Deadline",
    "Decl",
    "DeleteEffect",
    "Duration",
    "EventDecl",
    "ExistsCond",
    "ExpectEvent",
    "ExpectGoal",
    "ExpectRefused",
    "ExpectState",
    "Export",
    "Field",
    "Given",
    "GoalDecl",
    "Handler",
    "IncEffect",
    "Literal",
    "MaxReplans",
    "Member",
    "Name",
    "Negation",
    "PolicyDecl",
    "Pos",
    "Priority",
    "Rate",
    "Require",
    "RetryClause",
    "Scalar",
    "ScheduleClause",
    "ScheduleOption",
    "SetEffect",
    "Simulate",
    "Source",
    "SourceFile",
    "StateRef",
    "Term",
    "TestDecl",
    "Timeout",
    "Trigger",
    "TypeDecl",
    "Uses",
    "WhenChange",
    "WhenEvent",
    "WhenGoal",
    "WithArg",
    "WithArgs",
    "WithList",
    "WithMap",
    "WithValue",
]


@dataclass(frozen=True, slots=True)
class Source:
    """The text of one .gdl file, its path relative to the workspace, and the app it belongs to."""

    path: str
    app: str
    text: str
