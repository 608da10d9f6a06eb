"""Conditions: comparisons, membership and existence over state paths and parameters, joined by and/or/not.

Terms are a ``Path`` (a template such as ``orders.{o}.status`` whose ``{o}``
is replaced by the bound parameter), a ``Var`` (a parameter's value) or a
``Const`` (a JSON scalar). ``str(condition)`` is the text syntax that
``goalrt.planner.cond`` parses back; ``to_json()`` and ``condition_from_json``
round-trip exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from goalrt.errors import PlanningError
from goalrt.planner.values import COMPARISONS, NAME, Scalar, check_path, check_scalar, render

_HOLE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_TEMPLATE: Final = re.compile(
    r"(?:[A-Za-z0-9_:@-]|\{[A-Za-z_][A-Za-z0-9_-]*\})+(?:\.(?:[A-Za-z0-9_:@-]|\{[A-Za-z_][A-Za-z0-9_-]*\})+)*"
)

Bindings: TypeAlias = Mapping[str, Scalar]


@dataclass(frozen=True, slots=True)
class Path:
    """A state path, possibly with ``{param}`` holes filled in at grounding."""

    template: str

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or not _TEMPLATE.fullmatch(self.template):
            raise PlanningError(
                f"invalid path template {self.template!r}: use dot-separated segments of letters, digits, _ : @ - "
                "and {param} holes (e.g. orders.{o}.status)"
            )

    @property
    def variables(self) -> tuple[str, ...]:
        """Return the names of the holes, in order of appearance."""
        return tuple(_HOLE.findall(self.template))

    def bind(self, bindings: Bindings) -> Path:
        """Return the path with every hole replaced by its binding."""
        if "{" not in self.template:
            return self

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in bindings:
                raise PlanningError(f"unbound template variable {{{name}}} in {self.template}")
            value = bindings[name]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise PlanningError(f"{{{name}}} in {self.template} is bound to {value!r}: a path needs a name")
            return str(value)

        return Path(check_path(_HOLE.sub(fill, self.template), f"path {self.template}"))

    def __str__(self) -> str:
        return self.template


@dataclass(frozen=True, slots=True)
class Var:
    """The value bound to a parameter (an action parameter or a goal parameter)."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise PlanningError(f"invalid parameter name {self.name!r}: use letters, digits, _ and - (not first)")

    def __str__(self) -> str:
        return "{" + self.name + "}"


@dataclass(frozen=True, slots=True, eq=False)
class Const:
    """A JSON scalar; equal to another Const as JSON values are equal (``true`` is not ``1``)."""

    value: Scalar

    def __post_init__(self) -> None:
        check_scalar(self.value, "constant")

    def _key(self) -> tuple[bool, Scalar]:
        # Python says True == 1 (and hashes them alike); JSON does not.
        return (isinstance(self.value, bool), self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Const) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return render(self.value)


Term: TypeAlias = Path | Var | Const


def path_of(value: object) -> Path:
    """Return ``value`` as a Path: a Path, or a string taken as a template."""
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise PlanningError(f"expected a path, got {value!r}")


def _subject(value: object) -> Term:
    """Return the left side of a comparison: a string is a path, a Var or Const is kept."""
    if isinstance(value, Path | Var | Const):
        return value
    if isinstance(value, str):
        return Path(value)
    return Const(check_scalar(value, "comparison"))


def _operand(value: object) -> Term:
    """Return the right side of a comparison: a Path, Var or Const is kept, anything else is a constant."""
    if isinstance(value, Path | Var | Const):
        return value
    return Const(check_scalar(value, "comparison"))


@dataclass(frozen=True, slots=True, init=False)
class Compare:
    """``left op right`` with op one of == != < <= > >=."""

    op: str
    left: Term
    right: Term

    def __init__(self, op: str, left: object, right: object) -> None:
        if op not in COMPARISONS:
            raise PlanningError(f"unknown operator {op!r}: use one of {', '.join(COMPARISONS)}")
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "left", _subject(left))
        object.__setattr__(self, "right", _operand(right))

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, slots=True, init=False)
class In:
    """``left`` equals one of ``options`` (constants or parameters)."""

    left: Term
    options: tuple[Term, ...]

    def __init__(self, left: object, options: Iterable[object]) -> None:
        if isinstance(options, str | bytes) or not isinstance(options, Iterable):
            raise PlanningError(f"'in' needs a list of values, got {options!r}")
        terms = tuple(_operand(o) for o in options)
        for term in terms:
            if isinstance(term, Path):
                raise PlanningError(f"'in' options must be constants or parameters, got path {term}")
        object.__setattr__(self, "left", _subject(left))
        object.__setattr__(self, "options", terms)

    def __str__(self) -> str:
        return f"{self.left} in [{', '.join(str(o) for o in self.options)}]"


@dataclass(frozen=True, slots=True, init=False)
class Exists:
    """The path holds a value (any value, null included)."""

    path: Path

    def __init__(self, path: object) -> None:
        object.__setattr__(self, "path", path_of(path))

    def __str__(self) -> str:
        return f"exists({self.path})"


@dataclass(frozen=True, slots=True, init=False)
class And:
    """Every argument holds; ``And()`` is true."""

    args: tuple[Condition, ...]

    def __init__(self, *args: Condition) -> None:
        object.__setattr__(self, "args", _conditions(args, "and"))

    def __str__(self) -> str:
        if not self.args:
            return "true"
        return " and ".join(f"({a})" if isinstance(a, Or) and len(a.args) > 1 else str(a) for a in self.args)


@dataclass(frozen=True, slots=True, init=False)
class Or:
    """Some argument holds; ``Or()`` is false."""

    args: tuple[Condition, ...]

    def __init__(self, *args: Condition) -> None:
        object.__setattr__(self, "args", _conditions(args, "or"))

    def __str__(self) -> str:
        if not self.args:
            return "false"
        return " or ".join(str(a) for a in self.args)


@dataclass(frozen=True, slots=True, init=False)
class Not:
    """The argument does not hold."""

    arg: Condition

    def __init__(self, arg: Condition) -> None:
        object.__setattr__(self, "arg", _conditions((arg,), "not")[0])

    def __str__(self) -> str:
        if isinstance(self.arg, Exists | Not):
            return f"not {self.arg}"
        return f"not ({self.arg})"


Condition: TypeAlias = Compare | In | Exists | And | Or | Not
CONDITION_TYPES: Final = (Compare, In, Exists, And, Or, Not)


def _conditions(args: Iterable[object], where: str) -> tuple[Condition, ...]:
    out = tuple(args)
    for arg in out:
        if not isinstance(arg, CONDITION_TYPES):
            raise PlanningError(f"{where}: expected a condition, got {arg!r}")
    return out  # type: ignore[return-value]


TRUE: Final = And()
FALSE: Final = Or()


def Eq(left: object, right: object) -> Compare:
    """Return ``left == right`` (a string on the left is a path, on the right a constant)."""
    return Compare("==", left, right)


def Ne(left: object, right: object) -> Compare:
    """Return ``left != right``."""
    return Compare("!=", left, right)


def Lt(left: object, right: object) -> Compare:
    """Return ``left < right``."""
    return Compare("<", left, right)


def Le(left: object, right: object) -> Compare:
    """Return ``left <= right``."""
    return Compare("<=", left, right)


def Gt(left: object, right: object) -> Compare:
    """Return ``left > right``."""
    return Compare(">", left, right)


def Ge(left: object, right: object) -> Compare:
    """Return ``left >= right``."""
    return Compare(">=", left, right)


def _term_variables(term: Term) -> tuple[str, ...]:
    """Return the parameter names a term refers to."""
    if isinstance(term, Path):
        return term.variables
    if isinstance(term, Var):
        return (term.name,)
    return ()


def variables(condition: Condition) -> frozenset[str]:
    """Return the parameter names a condition refers to."""
    if isinstance(condition, Compare):
        return frozenset(_term_variables(condition.left) + _term_variables(condition.right))
    if isinstance(condition, In):
        return frozenset(_term_variables(condition.left)).union(*(_term_variables(o) for o in condition.options))
    if isinstance(condition, Exists):
        return frozenset(condition.path.variables)
    if isinstance(condition, Not):
        return variables(condition.arg)
    return frozenset().union(*(variables(a) for a in condition.args))


def _bind_term(term: Term, bindings: Bindings) -> Term:
    """Return the term with its holes filled and a Var replaced by its value."""
    if isinstance(term, Path):
        return term.bind(bindings)
    if isinstance(term, Var):
        if term.name not in bindings:
            raise PlanningError(f"unbound parameter {term}")
        return Const(bindings[term.name])
    return term


def bind(condition: Condition, bindings: Bindings) -> Condition:
    """Return the condition with every path and parameter bound (no holes, no Vars left)."""
    if isinstance(condition, Compare):
        return Compare(condition.op, _bind_term(condition.left, bindings), _bind_term(condition.right, bindings))
    if isinstance(condition, In):
        return In(_bind_term(condition.left, bindings), [_bind_term(o, bindings) for o in condition.options])
    if isinstance(condition, Exists):
        return Exists(condition.path.bind(bindings))
    if isinstance(condition, Not):
        return Not(bind(condition.arg, bindings))
    args = tuple(bind(a, bindings) for a in condition.args)
    return And(*args) if isinstance(condition, And) else Or(*args)


def conjuncts(condition: Condition) -> tuple[Condition, ...]:
    """Return the top-level conjuncts of a condition (nested ands flattened)."""
    if isinstance(condition, And):
        return tuple(c for a in condition.args for c in conjuncts(a))
    return (condition,)


# JSON ----------------------------------------------------------------------


def term_to_json(term: Term) -> Any:
    """Return a term as JSON: ``{"path": ...}``, ``{"var": ...}`` or the scalar itself."""
    if isinstance(term, Path):
        return {"path": term.template}
    if isinstance(term, Var):
        return {"var": term.name}
    return term.value


def term_from_json(data: Any) -> Term:
    """Return the term a JSON value stands for."""
    if isinstance(data, dict):
        if set(data) == {"path"}:
            return Path(data["path"])
        if set(data) == {"var"}:
            return Var(data["var"])
        raise PlanningError(f"a term is a scalar, {{'path': ...}} or {{'var': ...}}, got {data!r}")
    return Const(check_scalar(data, "term"))


def condition_to_json(condition: Condition) -> dict[str, Any]:
    """Return a condition as a JSON object."""
    if isinstance(condition, Compare):
        return {"op": condition.op, "left": term_to_json(condition.left), "right": term_to_json(condition.right)}
    if isinstance(condition, In):
        return {
            "op": "in",
            "left": term_to_json(condition.left),
            "values": [term_to_json(o) for o in condition.options],
        }
    if isinstance(condition, Exists):
        return {"op": "exists", "path": condition.path.template}
    if isinstance(condition, Not):
        return {"op": "not", "arg": condition_to_json(condition.arg)}
    return {"op": "and" if isinstance(condition, And) else "or", "args": [condition_to_json(a) for a in condition.args]}


_CONDITION_KEYS: Final = {
    **{op: {"op", "left", "right"} for op in COMPARISONS},
    "in": {"op", "left", "values"},
    "exists": {"op", "path"},
    "not": {"op", "arg"},
    "and": {"op", "args"},
    "or": {"op", "args"},
}


def condition_from_json(data: Any) -> Condition:
    """Return the condition a JSON object stands for, or raise PlanningError naming what is wrong."""
    if not isinstance(data, dict) or "op" not in data:
        raise PlanningError(f"a condition is an object with an 'op', got {data!r}")
    op = data["op"]
    if op not in _CONDITION_KEYS:
        raise PlanningError(f"unknown operator {op!r} in condition")
    if set(data) != _CONDITION_KEYS[op]:
        raise PlanningError(
            f"condition {op!r} needs exactly the keys {sorted(_CONDITION_KEYS[op])}, got {sorted(data)}"
        )
    if op in COMPARISONS:
        return Compare(op, term_from_json(data["left"]), term_from_json(data["right"]))
    if op == "in":
        if not isinstance(data["values"], list):
            raise PlanningError(f"'in' values must be a list, got {data['values']!r}")
        return In(term_from_json(data["left"]), [term_from_json(v) for v in data["values"]])
    if op == "exists":
        return Exists(Path(data["path"]))
    if op == "not":
        return Not(condition_from_json(data["arg"]))
    if not isinstance(data["args"], list):
        raise PlanningError(f"{op!r} args must be a list, got {data['args']!r}")
    args = tuple(condition_from_json(a) for a in data["args"])
    return And(*args) if op == "and" else Or(*args)
