"""The syntax tree of a goal's ``steps``, an action's ``emit`` and a test's ``then`` clauses.

Kept apart from ``goalrt.gdl.ast`` (which holds the declarations) so that
each module stays small; the nodes carry their position as every node does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from goalrt.gdl.ast import Binding, Duration, Literal, Name, Pos


@dataclass(frozen=True, slots=True)
class AnswerField:
    """``name: type`` (or ``name?: type``, which may be left out or null) in an ask's answer."""

    name: Name
    type: Name
    optional: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class StepOption:
    """One option after a step: ``where {...}``, ``since``, ``answer {...}``, ``timeout``, ``on timeout {...}``,
    ``on failure``, ``as LABEL``."""

    kind: str  # "where", "since", "answer", "timeout", "on_timeout", "on_failure" or "label"
    value: tuple[Binding, ...] | tuple[AnswerField, ...] | tuple[StepNode, ...] | Duration | Name | str
    pos: Pos


@dataclass(frozen=True, slots=True)
class ActionStep:
    """``action NAME(p = VALUE, ...)``: run a declared action with these arguments."""

    action: Name
    args: tuple[Binding, ...]
    options: tuple[StepOption, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class WaitStep:
    """``wait event TYPE [where {...}] [since submit|wait]``."""

    event: Name
    options: tuple[StepOption, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class SleepStep:
    duration: Duration
    options: tuple[StepOption, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class AskStep:
    """``ask "PROMPT" [answer {...}]``: the prompt may name parameters as ``{p}``."""

    prompt: Literal
    options: tuple[StepOption, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ChildGoal:
    """``goal NAME(p = VALUE, ...)`` inside ``all children { }`` or ``any children { }``."""

    goal: Name
    args: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ChildrenStep:
    mode: str  # "all" or "any"
    goals: tuple[ChildGoal, ...]
    options: tuple[StepOption, ...]
    pos: Pos


StepNode: TypeAlias = ActionStep | WaitStep | SleepStep | AskStep | ChildrenStep


@dataclass(frozen=True, slots=True)
class StepsClause:
    """``steps { ... }``: the goal runs these steps in order instead of planning from a condition."""

    steps: tuple[StepNode, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Emit:
    """``emit TYPE { field = VALUE ... }`` on an action: an event the action appends."""

    event: Name
    data: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ThenAnswer:
    """``then answer [GOAL] { field = CONST ... }`` in a test: answer the goal waiting at an ask."""

    goal: Name | None
    data: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ThenEvent:
    """``then event TYPE { field = CONST ... }`` in a test: append an event."""

    event: Name
    data: tuple[Binding, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ThenAdvance:
    """``then advance DURATION`` in a test: the goals' timers come closer by the duration."""

    duration: Duration
    pos: Pos


ThenClause: TypeAlias = ThenAnswer | ThenEvent | ThenAdvance

__all__ = [
    "ActionStep",
    "AnswerField",
    "AskStep",
    "ChildGoal",
    "ChildrenStep",
    "Emit",
    "SleepStep",
    "StepNode",
    "StepOption",
    "StepsClause",
    "ThenAdvance",
    "ThenAnswer",
    "ThenClause",
    "ThenEvent",
    "WaitStep",
]
