"""The GDL syntax of built-in calls (goalrt.gdl.ast): an action's ``with { ... }`` block and ``builtin`` contracts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from goalrt.gdl.ast_base import Literal, Name, Pos


@dataclass(frozen=True, slots=True)
class WithMap:
    args: tuple[WithArg, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class WithList:
    items: tuple[WithValue, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class StateRef:  # state(PATH): the state's value at the path, read when the step runs
    path: Name
    pos: Pos


WithValue: TypeAlias = Literal | WithMap | WithList | StateRef


@dataclass(frozen=True, slots=True)
class WithArg:
    key: Name
    value: WithValue
    pos: Pos


@dataclass(frozen=True, slots=True)
class WithArgs:  # with { ... }: the arguments an action passes to its built-in handler
    args: tuple[WithArg, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class BuiltinArg:
    name: Name
    type: Name
    default: WithValue | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class BuiltinDecl:  # builtin NAME { arg ... }: the contract of a built-in action (shipped with goalrt or a plugin)
    name: Name
    args: tuple[BuiltinArg, ...]
    pos: Pos


__all__ = ["BuiltinArg", "BuiltinDecl", "StateRef", "WithArg", "WithArgs", "WithList", "WithMap", "WithValue"]
