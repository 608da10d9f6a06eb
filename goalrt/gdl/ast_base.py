"""The leaves of the GDL syntax tree (goalrt.gdl.ast): positions, names, literals, durations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

Scalar: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True, slots=True, order=True)
class Pos:
    """A place in a source file; line and column start at 1."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Name:
    """A name, dotted name or path template as written: ``payment.charge``, ``orders.{o}.status``, ``{o}``."""

    text: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Literal:
    """A JSON scalar written in the source: a string, a number, true, false or null."""

    value: Scalar
    pos: Pos


Term: TypeAlias = Name | Literal


@dataclass(frozen=True, slots=True)
class Duration:
    """A duration as written (``1h30m``) and its length in seconds."""

    text: str
    seconds: float
    pos: Pos


__all__ = ["Duration", "Literal", "Name", "Pos", "Scalar", "Term"]
