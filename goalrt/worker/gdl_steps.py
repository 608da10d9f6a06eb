"""GDL goals given by their steps, and actions' ``emit``, at run time: from the stored templates to what runs.

A GDL ``steps { ... }`` goal is stored as step templates whose values are
``{"param": NAME}`` or ``{"value": CONST}`` (and an ask's prompt may name
parameters as ``{p}``). ``steps_function`` returns the goal type's function:
given a goal's validated params it fills the templates in and returns the
``goalrt.Step`` list the runtime runs (``goalrt.waits``), once, when a worker
first takes the goal.

``emitting_action`` is the function of a ``pure`` (or, in ``goalrt test``,
simulated) action that declares ``emit``: it runs no code but appends the
declared events, their data taken from its arguments, constants and, for
``{"path": TEMPLATE}``, the state when it runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from goalrt.goals.registry import Result, Step
from goalrt.goals.waits import Child, ask, children, sleep, wait_event

_HOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


def _value(term: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    return params[term["param"]] if "param" in term else term.get("value")


def _values(terms: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _value(term, params) for key, term in terms.items()}


def _text(value: Any) -> str:
    """Return a parameter's value as a prompt shows it: strings as they are, 120.0 as 120."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _fill(spec: Mapping[str, Any], params: Mapping[str, Any]) -> Step:
    """Return the runtime step of one stored template, its values taken from ``params``."""
    kind = spec["kind"]
    label = spec.get("label")
    if kind == "action":
        return Step(spec["action"], _values(spec["args"], params), label=label)
    if kind == "sleep":
        return sleep(spec["seconds"], label=label)
    timeout = spec.get("timeout")
    fallback = [_fill(s, params) for s in spec.get("on_timeout") or ()] or None
    if kind == "event":
        filters = _values(spec.get("where") or {}, params)
        return wait_event(
            spec["event"], filters, since=spec.get("since", "submit"), timeout=timeout, on_timeout=fallback, label=label
        )
    if kind == "ask":
        prompt = _HOLE.sub(lambda m: _text(params.get(m.group(1), m.group(0))), spec["prompt"])
        return ask(prompt, spec.get("schema"), timeout=timeout, on_timeout=fallback, label=label)
    goals = [Child(g["name"], _values(g["params"], params)) for g in spec["goals"]]
    return children(
        goals, mode=spec["mode"], on_failure=spec["on_failure"], timeout=timeout, on_timeout=fallback, label=label
    )


def steps_function(specs: Sequence[Mapping[str, Any]]) -> Callable[[Any], list[Step]]:
    """Return a goal type's steps function for stored templates (its params: a pydantic model or a dict)."""

    def steps(params: Any) -> list[Step]:
        values = params.model_dump(mode="json") if hasattr(params, "model_dump") else dict(params)
        return [_fill(spec, values) for spec in specs]

    return steps


def emitting_action(emit: Sequence[Mapping[str, Any]]) -> Callable[..., Any]:
    """Return the function of a pure or simulated action that appends its declared events (and runs no code)."""

    async def run(args: Mapping[str, Any], ctx: Any) -> Result:
        events = []
        for item in emit:
            data = {}
            for key, term in item["data"].items():
                if "path" in term:
                    path = _HOLE.sub(lambda m: str(args[m.group(1)]), term["path"])
                    data[key] = await ctx.state.value(path)
                elif "param" in term:
                    data[key] = args[term["param"]]
                else:
                    data[key] = term.get("value")
            events.append({"type": item["event"], "data": data})
        return Result(None, events=events)

    return run


__all__ = ["emitting_action", "steps_function"]
