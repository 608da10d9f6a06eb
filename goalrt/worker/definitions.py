"""The registry a worker runs for the GDL definitions stored in the database.

``goalrt gdl load`` (``goalrt.gdl``) compiles a workspace and stores it as a
version in ``goalrt.gdl_versions``; this module reads that stored JSON back,
so the worker depends on the stored format alone, never on the compiler.

``registry_for(definitions, handlers)`` turns a stored version into a
``Registry``: each GDL goal becomes a goal type planned from its condition
(with only its actions), each GDL action gets its Python handler
(``@goalrt.action(NAME)`` in the handler modules, found by the action's
``handler`` name) with the schema, retry and timeout of its declaration. A
GDL goal given by its ``steps`` becomes a goal type listing them, filled in
with the goal's params (``goalrt.worker.gdl_steps``). An action GDL marks
``pure`` is a state transition: it runs no code (a handler registered under
its name is not run), and its declared effects are applied with its
completion, with the events it declares (``emit``). Any other action without a handler in ``handlers`` is
known to the planner but not runnable by this worker (``Action.fn`` None):
the worker does not register it, so it never claims or continues a step of
it, and a worker that has the handler runs it. Python goal types and actions
the handler modules register that GDL does not declare are kept as they are.

An action whose handler is a built-in (``handler http.call`` with a ``with``
block; goalrt.actions) runs it on every worker: the built-in renders the
block from the step's arguments and the state when the step runs. A Python
handler registered under a built-in's name is run instead only for an action
without a ``with`` block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, create_model

from goalrt.errors import ConfigError
from goalrt.goals.conditions import Achieve
from goalrt.goals.registry import Action, GoalType, Registry, planned_steps
from goalrt.goals.retry import Retry
from goalrt.planner import ActionSchema, ObjectType, condition_from_json
from goalrt.worker.gdl_steps import emitting_action, steps_function

if TYPE_CHECKING:
    from goalrt.actions.catalog import Catalog

# The newest shape of stored GDL definitions (``"format"``) this worker runs; the compiler writes it.
# 2: goals given by their steps (waits, asks, sleeps, children), emit, built-in calls' with blocks,
# schedules (a worker of format 1 failed on them). A worker refuses a newer format in one line and
# keeps the version it had.
GDL_FORMAT = 2

# GDL's parameter types as pydantic fields (objects are strings: their keys).
_SCALARS: dict[str, Any] = {
    "string": StrictStr,
    "integer": StrictInt,
    "number": float,
    "boolean": StrictBool,
    "any": Any,
}


def params_model(goal: str, params: Mapping[str, str]) -> type[BaseModel]:
    """Return the pydantic model of a GDL goal's params: every one required, no others; objects are strings."""
    fields: dict[str, Any] = {name: (_SCALARS.get(type_name, StrictStr), ...) for name, type_name in params.items()}
    model: type[BaseModel] = create_model(
        "Params_" + re.sub(r"\W", "_", goal), __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def _builtin(spec: Mapping[str, Any], handlers: Registry, catalog: Catalog | None) -> Catalog | None:
    """Return the catalog when the action runs a built-in (a ``with`` block, or a built-in's name no handler has)."""
    registered = handlers.actions.get(spec["handler"])
    # A handler registered under the built-in's name runs for an action without a with block; `goalrt test`
    # simulates an action by registering pure_action under its handler's name, which wins in any case.
    if spec.get("pure") is True or (registered is not None and ("call" not in spec or registered.fn is pure_action)):
        return None
    if catalog is None:
        from goalrt.actions.catalog import default_catalog

        catalog = default_catalog()
    return catalog if spec["handler"] in catalog.actions else None


def _uses_builtins(definitions: Mapping[str, Any], handlers: Registry) -> bool:
    return any(
        "call" in spec or (spec.get("pure") is not True and spec["handler"] not in handlers.actions)
        for app in (definitions.get("apps") or {}).values()
        for spec in app.get("actions", [])
    )


def registry_for(definitions: Mapping[str, Any], handlers: Registry, catalog: Catalog | None = None) -> Registry:
    """Return the registry a worker runs for stored definitions, with the handlers of ``handlers``.

    A GDL action is runnable when it is ``pure``, names a built-in of
    ``catalog`` (default: ``goalrt.actions.catalog.default_catalog()``, loaded
    only when an action may need it) or ``handlers`` has its handler; the
    others are there for the planner only (``Action.fn`` None).
    """
    from goalrt.actions.catalog import GdlCall

    found = definitions.get("format")
    if not isinstance(found, int) or isinstance(found, bool) or not 1 <= found <= GDL_FORMAT:
        raise ConfigError(
            f"the stored GDL definitions have format {found!r}; this worker understands formats 1 to {GDL_FORMAT}:"
            " upgrade goalrt on this worker"
        )
    out = handlers.copy()
    for app in (definitions.get("apps") or {}).values():
        for spec in app.get("actions", []):
            schema = ActionSchema.from_json(spec["schema"])
            handler = handlers.actions.get(spec["handler"])
            builtins = _builtin(spec, handlers, catalog)
            # Definitions stored before `pure` existed have no key: their actions need a handler.
            pure = emitting_action(spec["emit"]) if spec.get("emit") else pure_action
            fn = pure if spec.get("pure") is True else None if handler is None else handler.fn
            if builtins is not None:
                fn = builtins.handler(spec["handler"], GdlCall.from_json(spec.get("call") or {}))
            retry = Retry(**spec["retry"])
            out.actions[schema.name] = Action(schema.name, fn, spec.get("timeout"), retry, None, schema)
        for spec in app.get("goals", []):
            name = spec["name"]
            if "steps" in spec:
                steps = steps_function(spec["steps"])
                out.goal_types[name] = GoalType(name, steps, params_model(name, spec["params"]))
                continue
            achieve = Achieve(
                condition_from_json(spec["condition"]),
                tuple(ObjectType(t["name"], keys_under=t["keys_under"]) for t in spec["types"]),
                {},
                dict(spec["param_types"]),
                spec["max_replans"],
                maintain=spec["maintain"],
                actions=frozenset(spec["actions"]),
            )
            out.goal_types[name] = GoalType(name, planned_steps(name), params_model(name, spec["params"]), achieve)
    return out


def unhandled(
    definitions: Mapping[str, Any], handlers: Registry, catalog: Catalog | None = None
) -> tuple[list[str], list[str]]:
    """Return the GDL actions neither ``handlers`` nor the built-ins run, and the pure ones it has a handler for.

    Each as ``"NAME (handler HANDLER)"``, sorted: what a worker says when it starts.
    """
    if catalog is None and _uses_builtins(definitions, handlers):
        from goalrt.actions.catalog import default_catalog

        catalog = default_catalog()
    builtins = set() if catalog is None else set(catalog.actions)
    missing, ignored = [], []
    for app in (definitions.get("apps") or {}).values():
        for spec in app.get("actions", []):
            name = f"{spec['schema']['name']} (handler {spec['handler']})"
            if spec.get("pure") is True:
                if spec["handler"] in handlers.actions:
                    ignored.append(name)
            elif spec["handler"] not in handlers.actions and spec["handler"] not in builtins:
                missing.append(name)
    return sorted(missing), sorted(ignored)


def pure_action(_args: Any, _ctx: Any) -> None:
    """A GDL action marked ``pure``: nothing to run; its declared effects are its result."""
    return None


__all__ = ["GDL_FORMAT", "params_model", "pure_action", "registry_for", "unhandled"]
