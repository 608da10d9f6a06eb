"""What the console draws from the clients' answers: the ask form, a goal's timeline (the charts: console_charts).

Pure functions of the data the clients return: no database here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from goalrt.db.jsontext import is_number, loads
from goalrt.errors import InvalidGoalError
from goalrt.goals.model import GoalInfo, StepInfo
from goalrt.log.committed import Event

# -- the ask form ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the form built from an ask's answer schema."""

    name: str
    kind: str  # text, number, integer, boolean, choice, json
    required: bool
    title: str
    description: str
    choices: tuple[str, ...] = ()


def ask_step(info: GoalInfo) -> StepInfo | None:
    """Return the ask step a waiting goal waits at (None if it waits for something else)."""
    if info.status != "waiting" or info.step_seq is None:
        return None
    return next((s for s in info.steps if s.seq == info.step_seq and s.kind == "ask"), None)


def ask_fields(schema: Mapping[str, Any] | None) -> list[Field] | None:
    """Return the inputs of an answer schema's properties; None when it has none to build a form of."""
    if not schema or schema.get("type", "object") != "object" or not isinstance(schema.get("properties"), Mapping):
        return None
    required = set(schema.get("required") or ())
    fields = []
    for name, spec in schema["properties"].items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = {"string": "text", "number": "number", "integer": "integer", "boolean": "boolean"}.get(
            str(spec.get("type")), "json"
        )
        choices: tuple[str, ...] = ()
        if isinstance(spec.get("enum"), list) and all(isinstance(v, str) for v in spec["enum"]):
            kind, choices = "choice", tuple(spec["enum"])
        fields.append(
            Field(
                name,
                kind,
                name in required,
                str(spec.get("title") or name),
                str(spec.get("description") or ""),
                choices,
            )
        )
    return fields


def ask_answer(fields: Sequence[Field] | None, form: Mapping[str, str]) -> dict[str, Any]:
    """Return the answer a submitted ask form gives (fields are ``f.NAME``; without fields, JSON in ``raw``).

    An empty optional field is left out; the database checks the answer against the schema.
    """
    if fields is None:
        data = _json(form.get("raw", "").strip() or "{}", "the answer")
        if not isinstance(data, dict):
            raise InvalidGoalError("the answer must be a JSON object")
        return data
    answer: dict[str, Any] = {}
    for f in fields:
        text = form.get(f"f.{f.name}", "")
        if f.kind == "boolean":
            answer[f.name] = text == "true"
        elif text.strip() == "":
            continue
        elif f.kind in ("text", "choice"):
            answer[f.name] = text
        else:
            value = _json(text.strip(), f.name)
            if f.kind in ("number", "integer") and not is_number(value):
                raise InvalidGoalError(f"{f.name}: not a number: {text.strip()[:40]}")
            answer[f.name] = value
    return answer


def _json(text: str, what: str) -> Any:
    try:
        return loads(text)
    except ValueError as exc:
        raise InvalidGoalError(f"{what}: {str(exc).splitlines()[0]}") from None


# -- a goal's timeline -----------------------------------------------------------------

# What each kind of goal event is drawn as (a CSS class): plans, steps, waits, the goal's own moves.
_KINDS = {
    "goal.planned": "plan",
    "goal.plan_refused": "plan",
    "goal.waiting": "wait",
    "goal.resumed": "wait",
    "goal.wait_timeout": "wait",
    "step.completed": "step",
    "step.failed": "fail",
    "step.result_refused": "fail",
    "goal.failed": "fail",
    "goal.completed": "done",
    "goal.cancelled": "fail",
}


@dataclass(frozen=True, slots=True)
class Moment:
    """One event of a goal's timeline, with a line saying what it means."""

    event: Event
    kind: str
    summary: str


def timeline(events: Iterable[Event]) -> list[Moment]:
    """Return a goal's events in log order, each with what it says in a few words."""
    return [Moment(e, _KINDS.get(e.type, "goal"), _summary(e)) for e in events]


def _summary(event: Event) -> str:
    data = event.data if isinstance(event.data, Mapping) else {}
    parts = []
    if "reason" in data:
        parts.append(f"reason: {data['reason']}")
    if isinstance(data.get("steps"), list):
        actions = [s.get("action", "?") if isinstance(s, Mapping) else "?" for s in data["steps"]]
        parts.append("plan: " + " → ".join(str(a) for a in actions))
    for key in ("plan_no", "seq", "action", "attempt", "kind", "error", "by", "outcome"):
        if key in data and data[key] is not None:
            parts.append(f"{key}: {data[key]}")
    return "; ".join(parts)
