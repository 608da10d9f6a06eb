"""What the commands that submit or plan a goal share: handler modules to import, KEY=VALUE params."""

from __future__ import annotations

from typing import Any

import click

from goalrt.cli.support import F
from goalrt.db.jsontext import loads, too_deep
from goalrt.errors import InvalidGoalError, InvalidJsonError

ENV_HANDLERS = "GOALRT_HANDLERS"


def handlers_option(f: F) -> F:
    """Add ``--handlers MODULE`` (repeatable, default $GOALRT_HANDLERS), passed as ``handlers``."""
    return click.option(
        "--handlers",
        "handlers",
        multiple=True,
        envvar=ENV_HANDLERS,
        metavar="MODULE",
        help="Import this module of action handlers and goal types (repeatable; default: $GOALRT_HANDLERS, "
        "comma-separated).",
    )(f)


def load_handlers(handlers: tuple[str, ...]) -> None:
    """Import the handler modules named by ``--handlers`` (each value may list several, comma-separated)."""
    modules = [m for item in handlers for m in item.split(",") if m.strip()]
    if modules:
        from goalrt.goals.registry import import_modules

        import_modules(modules)


def coerce_param(value: str, spec: dict[str, Any] | None) -> Any:
    """Return a ``key=value`` argument as JSON: kept as text when the field is a string, else parsed if it can be."""
    kinds = _kinds(spec)
    if kinds is not None and kinds <= {"string", "null"} and not (value == "null" and "null" in kinds):
        return value
    if too_deep(value):
        return loads(value)  # raises: too deep is refused, never silently taken as text
    try:
        return loads(value)
    except InvalidJsonError:
        return value


def _kinds(spec: dict[str, Any] | None) -> set[str] | None:
    if not isinstance(spec, dict):
        return None
    if isinstance(spec.get("type"), str):
        return {spec["type"]}
    if isinstance(spec.get("type"), list):
        return set(spec["type"])
    alternatives = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(alternatives, list):
        out: set[str] = set()
        for alt in alternatives:
            kinds = _kinds(alt)
            if kinds is None:
                return None
            out |= kinds
        return out
    return None


def parse_params(pairs: tuple[str, ...], base: Any, schema: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``--params JSON`` with ``key=value`` arguments (which win), typed by the goal's schema."""
    if base is not None and not isinstance(base, dict):
        raise InvalidGoalError("--params must be a JSON object")
    params = dict(base or {})
    properties = (schema or {}).get("properties") or {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"parameter {pair!r} is not key=value")
        params[key] = coerce_param(value, properties.get(key))
    return params
