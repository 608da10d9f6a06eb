"""Steps that wait: for an event, a time, a person's answer, or child goals.

A goal type's steps may mix actions and waits::

    @goalrt.goal("checkout", params=Checkout)
    def checkout(p: Checkout):
        return [
            goalrt.Step("payment.request", {"order": p.order}),
            goalrt.wait_event("payment.completed", where={"order_id": p.order}, timeout=3600,
                              on_timeout=[goalrt.Step("order.cancel", {"order": p.order})], label="payment"),
            goalrt.ask("Ship it?", schema=Approval, timeout=86400),
            goalrt.children([goalrt.Child("ship.parcel", {"parcel": n}) for n in p.parcels]),
            goalrt.sleep(60),
            goalrt.Step("order.notify", {"order": p.order}),
        ]

The database runs the waits: a waiting goal holds no worker and no lease,
and what it waits for is matched in the transaction that makes it true (the
event's append, the answer, the last child's end), so no wakeup is lost
whatever restarts. A handler reads what a labelled wait returned with
``await ctx.results()`` (``ctx.results()`` in a sync handler).

Every wait may have a ``timeout`` in seconds; when it passes, the steps of
``on_timeout`` replace the rest of the plan, or without them the goal fails
with ``wait_timeout``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from goalrt.errors import InvalidGoalError
from goalrt.goals.registry import Step, check_json

STEP_KINDS = ("action", "event", "sleep", "ask", "children")


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0 or seconds != seconds:
        raise InvalidGoalError(f"{what} must be a number of seconds >= 0")
    return seconds


def _time(value: datetime | str) -> str:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def _wait(
    kind: str,
    title: str,
    args: dict[str, Any],
    timeout: float | timedelta | None,
    on_timeout: Sequence[Step] | None,
    label: str | None,
) -> Step:
    seconds = _seconds(timeout, "timeout")
    if seconds is not None:
        args["timeout"] = seconds
    if on_timeout:
        if seconds is None:
            raise InvalidGoalError("on_timeout needs a timeout")
        args["on_timeout"] = [step.as_json() for step in on_timeout]
    check_json(args, f"the arguments of the {kind} step")
    return Step(title, args, kind=kind, label=label)


def wait_event(
    event_type: str,
    where: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    since: str = "submit",
    timeout: float | timedelta | None = None,
    on_timeout: Sequence[Step] | None = None,
    label: str | None = None,
) -> Step:
    """Return a step that waits for an event of ``event_type`` whose data contains ``where``.

    ``since="submit"`` (the default) also counts an event appended after the
    goal was submitted but before the wait began; ``since="wait"`` only
    counts events appended once the goal waits. ``where`` may be a list:
    an event whose data contains any of them matches. The step's result is
    ``{"event": {"id", "stream", "type", "data"}}``.
    """
    if not isinstance(event_type, str) or not event_type:
        raise InvalidGoalError("wait_event needs an event type")
    if since not in ("submit", "wait"):
        raise InvalidGoalError('since must be "submit" or "wait"')
    if isinstance(where, Sequence) and not isinstance(where, str):
        if not where:
            raise InvalidGoalError("where: give at least one filter, or none")
        filters: Any = [dict(w) for w in where]
    else:
        filters = dict(where or {})
    args: dict[str, Any] = {"event": event_type, "where": filters, "since": since}
    return _wait("event", f"wait {event_type}", args, timeout, on_timeout, label)


def sleep(
    seconds: float | timedelta | None = None, *, until: datetime | str | None = None, label: str | None = None
) -> Step:
    """Return a durable timer step: ``seconds`` from when it starts, or ``until`` a time."""
    if (seconds is None) == (until is None):
        raise InvalidGoalError("sleep needs seconds or until (one of them)")
    if until is not None:
        return Step("sleep", {"until": _time(until)}, kind="sleep", label=label)
    return Step("sleep", {"seconds": _seconds(seconds, "sleep")}, kind="sleep", label=label)


def ask(
    prompt: str,
    schema: type[BaseModel] | Mapping[str, Any] | None = None,
    *,
    timeout: float | timedelta | None = None,
    on_timeout: Sequence[Step] | None = None,
    label: str | None = None,
) -> Step:
    """Return a step that waits for a person's answer (``goalrt resume ID --data JSON``).

    ``schema`` (a pydantic model or a JSON Schema) is what the answer must
    satisfy; a wrong answer is refused, naming the field, and the goal keeps
    waiting. The step's result is the answer.
    """
    if not isinstance(prompt, str):
        raise InvalidGoalError("ask needs a prompt (a string)")
    args: dict[str, Any] = {"prompt": prompt}
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        spec = schema.model_json_schema()
        if schema.model_config.get("extra") != "allow":
            spec["additionalProperties"] = False
        args["schema"] = spec
    elif schema is not None:
        args["schema"] = dict(schema)
    return _wait("ask", "ask", args, timeout, on_timeout, label)


@dataclass(frozen=True, slots=True)
class Child:
    """A child goal for ``children``: a goal type, its params and submit options."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "options": dict(self.options)}


def children(
    goals: Sequence[Child | tuple[str, Mapping[str, Any]]],
    *,
    mode: str = "all",
    on_failure: str = "fail",
    timeout: float | timedelta | None = None,
    on_timeout: Sequence[Step] | None = None,
    label: str | None = None,
) -> Step:
    """Return a step that starts child goals and waits for all of them (``mode="any"``: the first to complete).

    A failed or cancelled child fails the goal unless ``on_failure="continue"``.
    With ``mode="any"`` the other children are cancelled once one completes.
    The step's result is ``{"children": [{"id", "name", "status", "result", "error"}], "first": id}``.
    """
    if mode not in ("all", "any"):
        raise InvalidGoalError('mode must be "all" or "any"')
    if on_failure not in ("fail", "continue"):
        raise InvalidGoalError('on_failure must be "fail" or "continue"')
    items = [(c if isinstance(c, Child) else Child(c[0], c[1])).as_json() for c in goals]
    args: dict[str, Any] = {"goals": items, "mode": mode, "on_failure": on_failure}
    return _wait("children", f"children ({len(items)})", args, timeout, on_timeout, label)


__all__ = ["STEP_KINDS", "Child", "ask", "children", "sleep", "wait_event"]
