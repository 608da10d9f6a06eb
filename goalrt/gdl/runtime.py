"""GDL definitions at run time: what ``goalrt gdl load`` stores and how to read the newest version back.

``load(conn, compiled)`` stores a workspace's compiled JSON as a new version
(``goalrt.load_gdl``: nothing new when the content hash is unchanged) with
what the database itself runs: the goal types with their params schemas and
defaults (priority, deadline), the policies, the ``on event`` triggers,
the event declarations (the database refuses an append of a declared type
whose data does not match), the actions' cluster-wide limits and the
schedules.

A worker turns a stored version back into the registry it runs with
``goalrt.worker.definitions.registry_for``: the worker reads the stored JSON
and never imports GDL (GDL sits above the worker).

Which version a goal runs: its recorded plan is data, so steps already
planned run as recorded whatever is loaded later; every plan a worker makes
(a first plan or a re-plan) uses the newest version that worker has, and
``goal.planned`` records it as ``gdl_version``. Workers pick up a new version
when ``goalrt.load_gdl`` notifies them (channel ``goalrt_gdl``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from goalrt.db.connect import dumps
from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import ConfigError, translated
from goalrt.gdl.compiled import CompiledPolicy, CompiledWorkspace
from goalrt.planner.conditions import condition_to_json
from goalrt.worker.definitions import params_model

_HOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass(frozen=True, slots=True)
class Loaded:
    """The version a load stored (or found unchanged)."""

    version: int
    created: bool
    content_hash: str
    # What goalrt.load_gdl installed: goal_types, policies, triggers, limits (see runtime_json).
    runtime: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Definitions:
    """A stored version: its number and the compiled JSON (with ``runtime``)."""

    version: int
    workspace: str
    content_hash: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Version:
    """A stored version without its definitions: what a list of versions shows."""

    version: int
    workspace: str
    content_hash: str
    loaded_at: datetime
    loaded_by: str


# -- loading -------------------------------------------------------------------------


def runtime_json(compiled: CompiledWorkspace) -> dict[str, Any]:
    """Return what ``goalrt.load_gdl`` installs besides the definitions: goal types, policies, triggers, limits..."""
    goal_types = []
    triggers = []
    schedules: list[dict[str, Any]] = []
    for name in sorted(compiled.goals):
        goal = compiled.goals[name]
        defaults: dict[str, Any] = {}
        if goal.priority:
            defaults["priority"] = goal.priority
        if goal.deadline is not None:
            defaults["deadline"] = goal.deadline
        schema = params_model(name, dict(goal.params)).model_json_schema()
        goal_types.append({"name": name, "params_schema": schema, "defaults": defaults})
        for trigger in goal.triggers:
            params = {p: {kind: value} for p, (kind, value) in trigger.bindings}
            triggers.append({"event_type": trigger.event, "goal_name": name, "params": params})
        for sched in goal.schedules:
            timing: dict[str, Any] = {"cron": sched.cron} if sched.cron is not None else {"every": sched.every}
            timing.update(timezone=sched.timezone, catch_up=sched.catch_up)
            schedules.append({"name": sched.name, "goal_name": name, "params": dict(sched.params), "options": timing})
    limits = []
    for name in sorted(compiled.actions):
        action = compiled.actions[name]
        options: dict[str, Any] = {}
        if action.concurrency is not None:
            options["concurrency"] = action.concurrency
        if action.rate is not None:
            options["rate"], options["per"] = action.rate
        if options:
            limits.append({"action": name, "options": options})
    policies = [policy_json(compiled.policies[n]) for n in sorted(compiled.policies)]
    runtime: dict[str, Any] = {"goal_types": goal_types, "policies": policies, "triggers": triggers, "limits": limits}
    # Only when there are some: the runtime of a workspace without them is what it was before them.
    events = [
        {"type": name, "schema": params_model(name, dict(compiled.events[name].fields)).model_json_schema()}
        for name in sorted(compiled.events)
    ]
    if events:
        runtime["events"] = events
    if schedules:
        runtime["schedules"] = schedules
    return runtime


def policy_json(policy: CompiledPolicy) -> dict[str, Any]:
    """Return a policy as ``goalrt.gdl_policies`` holds it: its condition and which changed paths concern it.

    Each path the condition reads becomes a regex whose capture groups bind
    its wildcards; a path under a wildcard's prefix binds that wildcard too
    (setting ``orders.o1.status`` makes ``orders.o1`` an order the policy must
    hold for).
    """
    condition = condition_to_json(policy.condition)
    reads = []
    for template in sorted(set(condition_paths(condition))):
        holes = _HOLE.findall(template)
        parts = ["([^.]+)" if _HOLE.fullmatch(seg) else re.escape(seg) for seg in template.split(".")]
        reads.append({"regex": "^" + r"\.".join(parts) + "$", "vars": holes})
    for var, prefix in policy.wildcards:
        reads.append({"regex": "^" + re.escape(prefix) + r"\.([^.]+)(?:\.|$)", "vars": [var]})
    text = str(policy.condition)
    for var, _prefix in policy.wildcards:
        text = text.replace("{" + var + "}", "*")
    return {
        "name": policy.name,
        "app": policy.app,
        "condition": condition,
        "text": text,
        "wildcards": dict(policy.wildcards),
        "reads": reads,
    }


def condition_paths(condition: Any) -> list[str]:
    """Return the path templates a condition (as JSON) reads."""
    if isinstance(condition, dict):
        if set(condition) == {"path"}:
            return [condition["path"]]
        if condition.get("op") == "exists":
            return [condition["path"]]
        return [p for value in condition.values() for p in condition_paths(value)]
    if isinstance(condition, list):
        return [p for value in condition for p in condition_paths(value)]
    return []


def load(
    conn: psycopg.Connection[Any], compiled: CompiledWorkspace, schema: str = MAIN_SCHEMA, *, replace: bool = False
) -> Loaded:
    """Store ``compiled`` as the current version (unless unchanged) and install its runtime parts, in one commit.

    A database runs one workspace at a time: loading another one replaces
    its goal types' definitions, policies, triggers and limits, so that is
    refused (``ConfigError``, naming the workspace it runs) unless ``replace``.
    """
    body = compiled.to_json()
    content_hash = body.pop("content_hash")
    query = sql.SQL("SELECT version, created FROM {}.load_gdl($1, $2, $3::jsonb, $4::jsonb)").format(
        sql.Identifier(schema)
    )
    runtime = runtime_json(compiled)
    with translated(), conn.transaction():
        # load_gdl's own lock, taken first: no other load comes between this check and the load.
        conn.execute(
            sql.SQL("SELECT pg_advisory_xact_lock({}::regclass::oid::integer, 0)").format(
                sql.Literal(f"{schema}.gdl_versions")
            )
        )
        running = current(conn, schema)
        if running is not None and running.workspace != compiled.name and not replace:
            raise ConfigError(
                f"the database runs workspace {running.workspace} (version {running.version}); loading "
                f"{compiled.name} would replace its goal types, policies, triggers and limits: give --replace"
                " to do that, or use another database"
            )
        row = conn.execute(query, (compiled.name, content_hash, dumps(body), dumps(runtime))).fetchone()
    assert row is not None
    return Loaded(int(row[0]), bool(row[1]), content_hash, runtime)


# -- reading ---------------------------------------------------------------------------


def current(conn: psycopg.Connection[Any], schema: str = MAIN_SCHEMA) -> Definitions | None:
    """Return the newest loaded version, or None when nothing was loaded."""
    query = sql.SQL(
        "SELECT version, workspace, content_hash, definitions FROM {}.gdl_versions ORDER BY version DESC LIMIT 1"
    ).format(sql.Identifier(schema))
    with translated():
        row = conn.execute(query).fetchone()
    return None if row is None else Definitions(int(row[0]), row[1], row[2], row[3])


def versions(conn: psycopg.Connection[Any], schema: str = MAIN_SCHEMA, limit: int = 100) -> list[Version]:
    """Return the newest ``limit`` stored versions, newest first (named query ``gdl_versions_list``)."""
    with translated(), psycopg.RawCursor(conn) as cur:
        rows = cur.execute(queries("gdl", schema)["gdl_versions_list"], (limit,)).fetchall()
    return [Version(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def stored(conn: psycopg.Connection[Any], version: int, schema: str = MAIN_SCHEMA) -> Definitions | None:
    """Return a stored version with its definitions, or None when there is no such version."""
    with translated(), psycopg.RawCursor(conn) as cur:
        row = cur.execute(queries("gdl", schema)["gdl_version_get"], (version,)).fetchone()
    return None if row is None else Definitions(int(row[0]), row[1], row[2], row[3])


__all__ = [
    "Definitions",
    "Loaded",
    "Version",
    "condition_paths",
    "current",
    "load",
    "policy_json",
    "runtime_json",
    "stored",
    "versions",
]
