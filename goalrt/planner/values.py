"""Values the planner reasons about: JSON scalars, the absent value, and how they compare.

Inside a search a state is a tuple of *encoded* values: ``True`` and ``False``
become the tokens ``TRUE`` and ``FALSE``, and an absent path is ``MISSING``.
The encoding exists because Python says ``True == 1`` and ``hash(True) ==
hash(1)``, while JSON (and the goalrt state) says ``true`` and ``1`` differ;
encoded values compare and hash as JSON values do, so states can be tuples
and dictionary keys.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from typing import Any, Final

from goalrt.errors import PlanningError

Scalar = str | int | float | bool | None

# Mirrors goalrt.state.PATH: one segment of a state path.
SEGMENT: Final = re.compile(r"[A-Za-z0-9_:@-]+")
PATH: Final = re.compile(r"[A-Za-z0-9_:@-]+(\.[A-Za-z0-9_:@-]+)*")
# An action-name part, type or parameter name: PDDL-like (drive-truck, from-loc).
NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
MAX_PATH: Final = 512


class Token:
    """A value that is not a JSON scalar: compares equal only to itself."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING: Final = Token("MISSING")
TRUE: Final = Token("TRUE")
FALSE: Final = Token("FALSE")

Encoded = object

ORDERINGS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
COMPARISONS: Final = ("==", "!=", "<", "<=", ">", ">=")


def _is_scalar(value: object) -> bool:
    """Return whether ``value`` is a JSON scalar the planner accepts (finite numbers only)."""
    if value is None or isinstance(value, str | bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def check_scalar(value: object, where: str) -> Scalar:
    """Return ``value`` if it is a JSON scalar, else raise naming ``where``."""
    if not _is_scalar(value):
        raise PlanningError(f"{where}: {value!r} is not a JSON scalar (str, finite number, bool or null)")
    return value  # type: ignore[return-value]


def is_number(value: object) -> bool:
    """Return whether ``value`` is a JSON number (bools are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_path(path: object, where: str) -> str:
    """Return ``path`` if it is a valid state path, else raise naming ``where``."""
    if not isinstance(path, str) or len(path) > MAX_PATH or not PATH.fullmatch(path):
        raise PlanningError(f"{where}: invalid path {path!r} (dot-separated segments of letters, digits, _ : @ -)")
    return path


def encode(value: Scalar) -> Encoded:
    """Return the search encoding of a scalar."""
    if value is True:
        return TRUE
    if value is False:
        return FALSE
    return value


def _decode(value: Encoded) -> Scalar:
    """Return the scalar an encoded value stands for (``MISSING`` must be handled by the caller)."""
    if value is TRUE:
        return True
    if value is FALSE:
        return False
    if isinstance(value, Token):
        raise ValueError(f"cannot decode {value!r}")
    return value  # type: ignore[return-value]


def compare(op: str, left: Encoded, right: Encoded) -> bool:
    """Return whether ``left op right`` holds for encoded values.

    An absent value equals nothing (so ``!=`` holds); ordering comparisons hold
    only between two numbers or two strings.
    """
    if op == "==":
        return left is not MISSING and right is not MISSING and left == right
    if op == "!=":
        return not (left is not MISSING and right is not MISSING and left == right)
    if (is_number(left) and is_number(right)) or (isinstance(left, str) and isinstance(right, str)):
        return ORDERINGS[op](left, right)
    return False


def render(value: Scalar) -> str:
    """Return ``value`` in the condition syntax: 'text', 12, 1.5, true, null."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


def render_encoded(value: Encoded) -> str:
    """Return an encoded value in the condition syntax; an absent value is ``<absent>``."""
    return "<absent>" if value is MISSING else render(_decode(value))


def sort_key(value: Scalar) -> str:
    """Return a total, hash-independent sort key for scalars of mixed types."""
    return json.dumps(value)
