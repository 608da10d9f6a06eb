"""JSON text to and from Python values, with exact numbers and a nesting limit.

PostgreSQL's jsonb keeps numbers as exact decimals (``numeric``); Python's
``json`` turns them into floats and so rounds. Here a number comes back as an
``int`` when it is an integer, as a ``float`` when the float's shortest text
is the same decimal value (``0.1``, ``2.5e-3``), and as a ``decimal.Decimal``
otherwise (``0.10000000000000000000001``, ``1e400``); ``Decimal`` is written
exactly. So a number goes through goalrt unchanged.

Values goalrt sends are refused beyond ``MAX_JSON_DEPTH`` levels of nesting;
values read back are decoded whatever their depth the database holds, or,
where Python cannot (nesting near its recursion limit), replaced by an
``UnreadableJson`` marker so one bad row never stops a reader.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from typing import Any

from goalrt.errors import InvalidJsonError

MAX_JSON_DEPTH = 100
"""The deepest nesting of arrays and objects goalrt accepts in a value it sends (``[[1]]`` is 2 levels)."""

ENVELOPE_DEPTH = 8
"""Levels goalrt itself may wrap around a value when it sends it (a batch, its items, a change set)."""

# What an error message shows of the input: enough to recognise it, never a 100 kB echo.
ECHO_CHARS = 100

# PostgreSQL's numeric: up to 131072 digits before the decimal point and 16383 after.
_MAX_EXPONENT = 131071
_MIN_EXPONENT = -16383

# Python refuses int() of more digits than this (sys.get_int_max_str_digits); longer integers become Decimal.
_INT_DIGITS = 4300

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_DECIMAL_TAG = "\x00goalrt-decimal:"
# A Decimal is first written as a tagged string, then swapped for its digits. A real U+0000 is
# refused (jsonb cannot hold it), so no string can forge the tag.
_TAGGED = re.compile(r'"\\u0000goalrt-decimal:([0-9.E+\-]+)"')


@dataclass(frozen=True, slots=True)
class UnreadableJson:
    """Stands for a stored JSON value that Python cannot decode (e.g. nested thousands of levels deep)."""

    reason: str
    length: int

    def __str__(self) -> str:
        return f"<unreadable JSON ({self.length} characters): {self.reason}>"


def echo(text: str, width: int = ECHO_CHARS) -> str:
    """Return ``text`` cut to ``width`` characters for an error message."""
    return text if len(text) <= width else f"{text[: width - 1]}… ({len(text)} characters)"


def too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Return whether the arrays and objects of JSON ``text`` nest deeper than ``limit``."""
    # Cheap first: text cannot nest deeper than it has opening brackets (most values have few).
    if text.count("[") + text.count("{") <= limit:
        return False
    return depth(text) > limit


def depth(text: str) -> int:
    """Return how deeply the arrays and objects of JSON ``text`` nest."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def _too_deep() -> InvalidJsonError:
    return InvalidJsonError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels (goalrt's limit)")


def _parse_float(text: str) -> float | Decimal:
    number = float(text)
    if repr(number) == text:  # the common case, decided without a Decimal
        return number
    exact = Decimal(text)
    if math.isfinite(number) and Decimal(repr(number)) == exact:
        return number
    return exact


def _parse_int(text: str) -> int | Decimal:
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else Decimal(text)


def _parse(text: str, **options: Any) -> Any:
    """Parse with exact numbers; integers go through C's int parsing unless one is too long for it."""
    try:
        return json.loads(text, parse_float=_parse_float, **options)
    except ValueError as exc:
        if "integer string conversion" not in str(exc):
            raise
        return json.loads(text, parse_float=_parse_float, parse_int=_parse_int, **options)


def _refuse_constant(name: str) -> Any:
    raise InvalidJsonError(f"JSON has no {name}")


def loads(text: str | bytes) -> Any:
    """Parse JSON ``text`` that goalrt is about to send: exact numbers, at most ``MAX_JSON_DEPTH`` levels.

    Raises ``InvalidJsonError`` (one line) for text that is not JSON, too deep,
    or holds NaN/Infinity; the message never echoes more than ``ECHO_CHARS``.
    """
    if isinstance(text, bytes):
        text = text.decode()
    if too_deep(text):
        raise _too_deep()
    try:
        return _parse(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidJsonError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def decode(text: str | bytes) -> Any:
    """Decode JSON the database sent: exact numbers; an ``UnreadableJson`` marker instead of an exception."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode()
    try:
        return _parse(text)
    except RecursionError:
        return UnreadableJson("nested too deeply for Python to decode", len(text))
    except (ValueError, MemoryError) as exc:
        return UnreadableJson(echo(str(exc)), len(text))


def _tag_decimal(value: object) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidJsonError("JSON has no NaN or Infinity")
        if value and not _MIN_EXPONENT <= value.adjusted() <= _MAX_EXPONENT:
            raise InvalidJsonError(f"number {echo(str(value))} is out of the range PostgreSQL's jsonb holds")
        return _DECIMAL_TAG + str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def dumps(value: Any, *, max_depth: int | None = None) -> str:
    """Serialise a value as strict JSON for PostgreSQL: ``Decimal`` exactly, nested at most ``max_depth`` levels.

    NaN, Infinity, U+0000 (which jsonb cannot hold), nesting deeper than
    ``max_depth`` (or than Python can write) are refused with
    ``InvalidJsonError``; values that are not JSON with ``TypeError``.
    """
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), default=_tag_decimal)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        if isinstance(exc, InvalidJsonError):
            raise
        if "Out of range float" in str(exc):
            raise InvalidJsonError("JSON has no NaN or Infinity") from None
        if "integer string conversion" in str(exc):
            raise InvalidJsonError(f"an int of more than {_INT_DIGITS} digits: pass it as decimal.Decimal") from None
        raise InvalidJsonError(str(exc)) from None
    if "\\u0000" in text:
        # Only a real U+0000 is refused: tags written for Decimals are swapped for the numbers.
        if _holds_nul(value):
            raise InvalidJsonError("JSON strings cannot hold the character U+0000 (PostgreSQL's jsonb refuses it)")
        text = _TAGGED.sub(r"\1", text)
    if max_depth is not None and too_deep(text, max_depth):
        raise _too_deep()
    return text


def encode(value: Any) -> str:
    """Serialise what a driver sends: a value of at most ``MAX_JSON_DEPTH`` levels in goalrt's own envelope."""
    return dumps(value, max_depth=MAX_JSON_DEPTH + ENVELOPE_DEPTH)


def render(value: Any, *, ensure_ascii: bool = True) -> str:
    """Return ``value`` as one line of JSON for output: numbers exact, any other object as its ``str``."""

    def default(obj: object) -> str:
        if isinstance(obj, Decimal) and obj.is_finite():
            return _DECIMAL_TAG + str(obj)
        return str(obj)

    try:
        text = json.dumps(value, separators=(",", ":"), default=default, ensure_ascii=ensure_ascii)
    except RecursionError:
        return json.dumps(str(UnreadableJson("nested too deeply to print", len(repr(value)))))
    return _TAGGED.sub(r"\1", text) if "\\u0000" in text else text


def check(value: Any) -> Any:
    """Return ``value`` if goalrt can send it as JSON, else raise ``InvalidJsonError`` or ``TypeError``."""
    dumps(value, max_depth=MAX_JSON_DEPTH)
    return value


def number(text: str) -> int | float | Decimal:
    """Parse a JSON number given as text (``state inc``'s amount), exactly; raise ``InvalidJsonError`` otherwise."""
    value = loads(text)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidJsonError(f"not a number: {echo(text)}")
    return value


def is_number(value: object) -> bool:
    """Return whether ``value`` is a JSON number (``int``, ``float`` or ``Decimal``, not ``bool``)."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


__all__ = [
    "ECHO_CHARS",
    "ENVELOPE_DEPTH",
    "MAX_JSON_DEPTH",
    "UnreadableJson",
    "check",
    "decode",
    "depth",
    "dumps",
    "echo",
    "encode",
    "is_number",
    "loads",
    "number",
    "render",
    "too_deep",
]
