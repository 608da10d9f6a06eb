"""The event types of the log: what is appended and what is read back.

``Event`` (what is read back) is defined in ``goalrt.log.committed``, which
does not import pydantic, so that reading goals (``goalrt get``) does not
pay for it; it is the same class here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from goalrt.db.jsontext import check
from goalrt.errors import ChainBrokenError, InvalidEventError
from goalrt.log.anchors import Anchor
from goalrt.log.committed import Event as Event

# Keys goalrt gives a meaning to inside an event's metadata.
CAUSATION_ID = "causation_id"
CORRELATION_ID = "correlation_id"
ACTOR = "actor"


class NewEvent(BaseModel):
    """An event to append: validated before anything is sent to the database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str = Field(min_length=1, max_length=512)
    type: str = Field(min_length=1, max_length=512)
    # Any JSON value, checked by goalrt.db.jsontext (not pydantic's JsonValue, which turns a Decimal into a float).
    data: Any = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", "metadata")
    @classmethod
    def _json(cls, value: Any) -> Any:
        try:
            return check(value)
        except TypeError as exc:
            raise ValueError(f"not JSON: {exc}") from None

    def as_json(self) -> dict[str, Any]:
        return {"stream": self.stream, "type": self.type, "data": self.data, "metadata": self.metadata}


def _describe(exc: ValidationError, prefix: str) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    if error["type"] == "string_too_short":
        message = "must not be empty"
    elif error["type"] == "missing":
        message = "is required"
    message = message.removeprefix("Value error, ")
    where = f"{prefix}.{field}" if prefix and field else (prefix or field)
    return f"{where}: {message}" if where else message


def new_event(
    stream: str,
    type: str,
    data: Any = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    causation_id: str | int | None = None,
    correlation_id: str | int | None = None,
    actor: str | None = None,
    where: str = "",
) -> NewEvent:
    """Build and validate one event; the error names the offending field."""
    meta: dict[str, Any] = dict(metadata or {})
    for key, value in ((CAUSATION_ID, causation_id), (CORRELATION_ID, correlation_id), (ACTOR, actor)):
        if value is not None:
            meta[key] = str(value) if key != ACTOR else value
    try:
        return NewEvent(stream=stream, type=type, data={} if data is None else data, metadata=meta)
    except ValidationError as exc:
        raise InvalidEventError(_describe(exc, where)) from None


def coerce_events(events: Iterable[NewEvent | Mapping[str, Any]]) -> list[NewEvent]:
    """Validate a batch; the error names the element (``events[3].type: ...``)."""
    out: list[NewEvent] = []
    for index, item in enumerate(events):
        where = f"events[{index}]"
        if isinstance(item, NewEvent):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InvalidEventError(f"{where}: must be a mapping or NewEvent, got {type(item).__name__}")
        try:
            out.append(NewEvent.model_validate(dict(item)))
        except ValidationError as exc:
            raise InvalidEventError(_describe(exc, where)) from None
    return out


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of checking the hash chain (and anchors, when given).

    ``checked`` counts the events whose hashes were recomputed, ``anchors``
    the anchors given. When the log does not hold an anchor, ``anchor`` is
    the first one (by position) it does not hold, ``first_bad_pos`` is its
    position and ``problem`` names it and says why.
    """

    ok: bool
    checked: int
    first_bad_pos: int | None
    problem: str | None
    anchors: int = 0
    anchor: Anchor | None = None

    def error(self) -> ChainBrokenError:
        """The ``ChainBrokenError`` that names what failed (for a report that is not ok)."""
        anchor = None if self.anchor is None else str(self.anchor)
        return ChainBrokenError(self.first_bad_pos or 0, self.problem or "unknown", anchor=anchor)
