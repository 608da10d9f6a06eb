"""The condition text syntax: ``cond("orders.{o}.status == 'paid' and stock.{i} > 0")``.

The grammar is ``conditions.lark`` next to this module; GDL imports the same
rules, so a condition means the same in a ``.gdl`` file and in ``cond()``::

    condition  := conj ("or" conj)*
    conj       := unary ("and" unary)*
    unary      := "not" unary | "(" condition ")" | "exists" "(" path ")" | "true" | "false" | comparison
    comparison := term ("==" | "!=" | "<" | "<=" | ">" | ">=") term | term "in" "[" [term ("," term)*] "]"
    term       := path | "{" name "}" | 'text' | "text" | number | true | false | null

A path is dot-separated segments of letters, digits, ``_ : @ -`` and
``{param}`` holes, and does not start with a digit or ``-`` (those start a
number). The words above are keywords only where the grammar expects them
(``exists(true)`` reads the path ``true``). Anything this syntax cannot say
(a path named ``not``) is built with the classes directly.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache, lru_cache
from typing import Any, Final

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from goalrt.errors import PlanningError
from goalrt.planner.conditions import (
    CONDITION_TYPES,
    FALSE,
    TRUE,
    And,
    Compare,
    Condition,
    Const,
    Exists,
    In,
    Not,
    Or,
    Path,
    Term,
    Var,
)

_VAR: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_ESCAPE: Final = re.compile(r"\\(.)")
_INTEGER: Final = re.compile(r"-?\d+")
# Readable words for the terminals whose pattern is a regular expression.
_WORDS: Final = {
    "PATH": "a path",
    "NUMBER": "a number",
    "STRING": "a string",
    "COMPARE": "a comparison (== != < <= > >=)",
    "$END": "the end",
}


def string_value(raw: str) -> str:
    """Return the text a STRING token stands for (JSON escapes in double quotes when valid JSON)."""
    body = raw[1:-1]
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return _ESCAPE.sub(r"\1", body)
        assert isinstance(value, str)
        return value
    return _ESCAPE.sub(r"\1", body)


# Python's int() refuses longer digit strings (sys.get_int_max_str_digits); no plan compares such numbers.
MAX_NUMBER_CHARS = 4300


def number_value(raw: str) -> int | float:
    """Return the number a NUMBER token stands for: an int when written without a fraction or exponent."""
    if len(raw) > MAX_NUMBER_CHARS:
        raise PlanningError(f"number literal of {len(raw)} characters is too long (at most {MAX_NUMBER_CHARS})")
    if _INTEGER.fullmatch(raw):
        return int(raw)
    value = float(raw)
    if not math.isfinite(value):
        shown = raw if len(raw) <= 40 else raw[:39] + "…"
        raise PlanningError(f"number {shown} is too large for a float")
    return value


class _Positioned(Exception):
    """A PlanningError raised while building the condition, with the offset of the token it is about."""

    def __init__(self, error: PlanningError, offset: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.offset = offset


def _offset(token: Any) -> int:
    return getattr(token, "start_pos", None) or 0


class _Build(Transformer[Token, Any]):
    """Build planner conditions as the parser reduces; a term stays a token until its condition is built."""

    def _path(self, token: Token) -> Path:
        try:
            if "*" in token.value.split("."):
                raise PlanningError(f"{token.value}: '*' is allowed only in GDL policies")
            return Path(token.value)
        except PlanningError as exc:
            raise _Positioned(exc, _offset(token)) from exc

    def _term(self, token: Token) -> Term:
        if token.type == "PATH":
            var = _VAR.fullmatch(token.value)
            return self._path(token) if var is None else Var(var.group(1))
        try:
            if token.type == "STRING":
                return Const(string_value(token.value))
            if token.type == "NUMBER":
                return Const(number_value(token.value))
            return Const({"TRUE": True, "FALSE": False}.get(token.type))
        except PlanningError as exc:
            raise _Positioned(exc, _offset(token)) from exc

    def any_of(self, items: list[Condition]) -> Condition:
        return items[0] if len(items) == 1 else Or(*items)

    def all_of(self, items: list[Condition]) -> Condition:
        return items[0] if len(items) == 1 else And(*items)

    def negation(self, items: list[Condition]) -> Condition:
        return Not(items[0])

    def exists(self, items: list[Token]) -> Condition:
        # A path that is exactly one hole ({o}) is the key named by the parameter's value, not the value.
        return Exists(self._path(items[0]))

    def compare(self, items: list[Token]) -> Condition:
        return Compare(str(items[1]), self._term(items[0]), self._term(items[2]))

    def member(self, items: list[Token | None]) -> Condition:
        left = items[0]
        assert left is not None
        options = []
        for token in items[1:]:
            if token is None:
                continue
            if token.type == "PATH" and _VAR.fullmatch(token.value) is None:
                error = PlanningError(f"'in' lists constants or parameters, not a path ({token.value})")
                raise _Positioned(error, _offset(token))
            options.append(self._term(token))
        return In(self._term(left), options)

    def constant(self, items: list[Token]) -> Condition:
        return TRUE if items[0].type == "TRUE" else FALSE


@cache
def _parser() -> Lark:
    # Built once per process (cond() runs whenever an action is registered). LALR with the transformer
    # applied while parsing: no tree is built and nothing recurses, however deeply the text nests.
    return Lark.open_from_package(
        "goalrt.planner", "conditions.lark", start="condition", parser="lalr", lexer="contextual", transformer=_Build()
    )


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"at column {column}" if line == 0 else f"at line {line + 1} column {column}"


def _describe(name: str) -> str:
    if name in _WORDS:
        return _WORDS[name]
    for terminal in _parser().terminals:
        if terminal.name == name and isinstance(terminal.pattern, PatternStr):
            return repr(terminal.pattern.value)
    return name.lower()


def _expected(names: set[str] | frozenset[str]) -> str:
    words = sorted({_describe(n) for n in names if n not in ("WS", "COMMENT")})
    if len(words) <= 1:
        return words[0] if words else "nothing more"
    return ", ".join(words[:-1]) + " or " + words[-1]


@cache
def _tree_parser() -> Lark:
    # For messages only: the same grammar without the transformer, so that trying tokens builds nothing.
    return Lark.open_from_package("goalrt.planner", "conditions.lark", start="condition", parser="lalr")


def _accepted_at(text: str) -> set[str]:
    """Return the terminals the parser accepts where ``text`` stops parsing."""
    # The lists in lark's exceptions hold LALR's merged lookaheads (tokens that would fail a few reductions
    # later); parsing again step by step stops in the parser's own state, which knows what it accepts.
    interactive = _tree_parser().parse_interactive(text)
    try:
        for _ in interactive.iter_parse():
            pass
        interactive.feed_eof()  # type: ignore[no-untyped-call]
    except UnexpectedInput:
        return set(interactive.accepts())  # type: ignore[no-untyped-call]
    return set()


def _syntax_error(text: str, exc: UnexpectedInput) -> PlanningError:
    head = f"condition {text!r}"
    if isinstance(exc, UnexpectedToken):
        expected = _expected(_accepted_at(text))
        if exc.token.type == "$END":
            return PlanningError(f"{head}: unexpected end; expected {expected}")
        found = repr(str(exc.token.value))
        return PlanningError(f"{head}: unexpected {found} {_where(text, _offset(exc.token))}; expected {expected}")
    if isinstance(exc, UnexpectedCharacters):
        at = exc.pos_in_stream or 0
        found = repr(text[at])
        return PlanningError(
            f"{head}: unexpected character {found} {_where(text, at)}; expected {_expected(_accepted_at(text))}"
        )
    if isinstance(exc, UnexpectedEOF):
        return PlanningError(f"{head}: unexpected end; expected {_expected(set(exc.expected))}")
    return PlanningError(f"{head}: {str(exc).splitlines()[0]}")


@lru_cache(maxsize=4096)
def _cond(text: str) -> Condition:
    try:
        # With a transformer attached, lark returns what the start rule's callback built.
        result: Any = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    except _Positioned as exc:
        raise PlanningError(f"condition {text!r}: {exc.error} {_where(text, exc.offset)}") from exc.error
    except PlanningError as exc:
        raise PlanningError(f"condition {text!r}: {exc}") from exc
    assert isinstance(result, CONDITION_TYPES)
    return result


def cond(text: str) -> Condition:
    """Return the condition ``text`` describes, or raise PlanningError naming the column that is wrong."""
    if not isinstance(text, str):
        raise PlanningError(f"cond() takes a string, got {text!r}")
    # Conditions are immutable, so one parse serves every caller that registers the same text.
    return _cond(text)
