"""Check values against GDL field types: a goal's params, an event's data against its ``event`` declaration.

The same meaning as the params schemas the runtime installs (``params_model``):
``string`` and a declared type (an object's key) take a string, ``integer`` a
whole number (``1.0`` too), ``number`` any number, ``boolean`` true or false, ``any``
anything; a boolean is no number. ``goalrt test`` checks with it, in Python,
the events appended during a test (to name every problem at once); the
database refuses such an append itself (``goalrt.check_declared_events``,
the first problem only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_KINDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean"}


def value_problem(value: Any, type_name: str) -> str | None:
    """Return why ``value`` is not of the GDL type ``type_name`` (``is a string, not a number``), or None."""
    if type_name == "any":
        return None
    if type_name == "boolean":
        ok = isinstance(value, bool)
    elif type_name == "integer":
        # As the database's schema check: 1.0 is a whole number.
        whole = isinstance(value, float) and value.is_integer()
        ok = (isinstance(value, int) and not isinstance(value, bool)) or whole
    elif type_name == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:  # string, or a declared type: an object's key
        ok = isinstance(value, str)
    if ok:
        return None
    want = _KINDS.get(type_name, f"a string (a {type_name}'s key)")
    return f"is {_kind(value)}, not {want}"


def data_problems(fields: Mapping[str, str], data: Mapping[str, Any]) -> list[str]:
    """Return what is wrong with an event's ``data`` for its declared ``fields``, one line per field."""
    out = [f"field {name} is missing" for name in fields if name not in data]
    out += [f"field {name} is not declared" for name in data if name not in fields]
    for name, type_name in fields.items():
        if name in data:
            problem = value_problem(data[name], type_name)
            if problem is not None:
                out.append(f"field {name} {problem}")
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


__all__ = ["data_problems", "value_problem"]
