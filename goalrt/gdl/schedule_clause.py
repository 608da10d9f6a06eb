"""Compile a goal's ``on schedule "CRON"`` / ``every D`` clause (goalrt/gdl/clauses.py calls it)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from goalrt.gdl import ast
from goalrt.gdl.compiled import CompiledSchedule
from goalrt.gdl.declarations import Declared
from goalrt.goals.schedules import check_cron, check_timezone
from goalrt.planner.values import Scalar

if TYPE_CHECKING:
    from goalrt.gdl.clauses import Clauses

# A schedule's name (goalrt.schedules.name): dot-separated identifiers, as goal names.
_SCHEDULE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# The JSON types a constant may have for a goal parameter of each field type (declared types: an object's key).
ACCEPTS: Final = {"string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,)}


def compile_schedule(
    c: Clauses, d: Declared, clause: ast.ScheduleClause, params: Mapping[str, str]
) -> CompiledSchedule | None:
    """Return the schedule that submits goal ``d`` at each tick, its parameters bound to constants.

    Problems are recorded in ``c`` (the compiler's ``Clauses``); a schedule name is unique across the workspace.
    """
    before = len(c.decls.problems)
    options: dict[str, ast.ScheduleOption] = {}
    for option in clause.options:
        if option.kind in options:
            word = "as" if option.kind == "name" else option.kind
            c.fail(option.pos, f"goal {d.name}: schedule option {word} is given twice")
        options.setdefault(option.kind, option)
    name = d.name
    named = options.get("name")
    if named is not None and isinstance(named.value, ast.Name):
        name = named.value.text
        if not _SCHEDULE_NAME.fullmatch(name) or len(name) > 200:
            c.fail(named.value.pos, f"goal {d.name}: invalid schedule name {name!r}")
    where = f"goal {d.name}: schedule {name}"
    if name in c.schedules_seen:
        first = c.schedules_seen[name]
        c.fail(clause.pos, f"{where}: a schedule of that name is declared at {first}; name this one with `as`")
    c.schedules_seen.setdefault(name, clause.pos)
    cron: str | None = None
    every: float | None = None
    if clause.cron is not None:
        if not isinstance(clause.cron.value, str):
            c.fail(clause.cron.pos, f"{where}: the cron expression must be a string")
        else:
            cron = clause.cron.value
            problem = check_cron(cron)
            if problem:
                c.fail(clause.cron.pos, f"{where}: {problem}")
    elif clause.every is not None:
        every = clause.every.seconds
        span = timedelta(seconds=every)
        if every < 1 or every > 36500 * 86400 or span % timedelta(seconds=1):
            c.fail(clause.every.pos, f"{where}: every must be whole seconds from 1s to 36500d")
    timezone = "UTC"
    zone = options.get("timezone")
    if zone is not None and isinstance(zone.value, ast.Literal):
        timezone = str(zone.value.value)
        problem = check_timezone(timezone)
        if problem:
            c.fail(zone.value.pos, f"{where}: {problem}")
        if every is not None:
            c.fail(zone.pos, f"{where}: `every` ticks in UTC; a timezone needs a cron")
    policy = options.get("catch_up")
    catch_up = policy.value.text if policy is not None and isinstance(policy.value, ast.Name) else "latest"
    bound: dict[str, Scalar] = {}
    for binding in clause.bindings:
        param = binding.name.text
        if param not in params:
            known = ", ".join(sorted(params)) or "none"
            c.fail(binding.name.pos, f"{where}: {param} is not a parameter of goal {d.name} (parameters: {known})")
        elif param in bound:
            c.fail(binding.name.pos, f"{where}: {param} is bound twice")
        elif isinstance(binding.value, ast.Name):
            c.fail(binding.value.pos, f"{where}: {param} must be a constant, not {binding.value.text}")
        else:
            value = c.exprs.const(binding.value).value
            kind = params[param]
            # A declared type's value is an object's key (a string); bool is not a number here.
            accepts = ACCEPTS.get(kind, (str,))
            wrong = not isinstance(value, accepts) or (isinstance(value, bool) and bool not in accepts)
            if kind != "any" and wrong:
                c.fail(binding.value.pos, f"{where}: {param} is {kind}, got {json.dumps(value)}")
            bound[param] = value
    for param in params:
        if param not in bound and not any(b.name.text == param for b in clause.bindings):
            c.fail(clause.pos, f"{where}: parameter {param} is not bound (give it in {{ {param} = ... }})")
    if len(c.decls.problems) > before:
        return None
    return CompiledSchedule(name, cron, every, timezone, catch_up, tuple(sorted(bound.items())))


__all__ = ["ACCEPTS", "compile_schedule"]
