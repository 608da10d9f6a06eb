"""The state's model: paths, change sets, entries, and points in the log.

Shared by ``State`` and ``AsyncState`` (goalrt.state.state, goalrt.state.async_state).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from goalrt.db.jsontext import MAX_JSON_DEPTH, dumps, echo
from goalrt.errors import InvalidStateChangeError, OutOfRangeError

# Mirrors goalrt.valid_path() in sql/schema/20_state.sql (a test checks they agree).
PATH = re.compile(r"^[A-Za-z0-9_:@-]+(\.[A-Za-z0-9_:@-]+)*$")
MAX_PATH = 512
OPS = ("set", "delete", "inc")

At = int | datetime | str
"""A point in the log: a position, an aware datetime, or either as text (ISO 8601 time)."""


def check_path(path: object) -> str:
    """Return ``path`` if it is a valid state path, else raise naming it."""
    if not isinstance(path, str) or len(path) > MAX_PATH or not PATH.fullmatch(path):
        raise InvalidStateChangeError(
            f"invalid path {echo(repr(path))}: use dot-separated segments of letters, digits, _ - : @"
            " (e.g. orders.o1.status)"
        )
    return path


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a change set; build with ``Change.set/delete/inc``."""

    op: str
    path: str
    value: Any = None
    by: int | float | Decimal | None = None
    expect_version: int | None = None

    @classmethod
    def set(cls, path: str, value: Any, *, expect_version: int | None = None) -> Change:
        return cls("set", check_path(path), value=value, expect_version=expect_version)

    @classmethod
    def delete(cls, path: str, *, expect_version: int | None = None) -> Change:
        return cls("delete", check_path(path), expect_version=expect_version)

    @classmethod
    def inc(cls, path: str, by: int | float | Decimal = 1, *, expect_version: int | None = None) -> Change:
        return cls("inc", check_path(path), by=by, expect_version=expect_version)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op == "set":
            out["value"] = self.value
        elif self.op == "inc":
            out["by"] = self.by
        if self.expect_version is not None:
            out["expect_version"] = self.expect_version
        return out


def changes_json(changes: Iterable[Change | Mapping[str, Any]]) -> list[Any]:
    """Return a change set as the JSON array goalrt.change_state takes.

    Mappings pass through as given (the database validates them and names
    the bad field); values that are not JSON are refused here with their index.
    """
    out = []
    for i, change in enumerate(changes):
        item = change.as_json() if isinstance(change, Change) else change
        try:
            # The change's object is one level around its value.
            dumps(item, max_depth=MAX_JSON_DEPTH + 1)
        except (TypeError, ValueError) as exc:
            raise InvalidStateChangeError(f"changes[{i}]: not JSON: {exc}") from None
        out.append(item)
    if not out:
        raise InvalidStateChangeError("changes must be a non-empty list of changes")
    return out


@dataclass(frozen=True, slots=True)
class StateEntry:
    """A live path: its value, version (how many changes it has had) and the pos that set it."""

    path: str
    value: Any
    version: int
    pos: int | None
    changed_at: datetime | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StateEntry:
        path, value, version, pos, changed_at = row
        return cls(path, value, int(version), None if pos is None else int(pos), changed_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "value": self.value,
            "version": self.version,
            "pos": self.pos,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
        }


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """What a change set did: its event and each path's new version and value."""

    event_id: int
    versions: dict[str, int]
    values: dict[str, Any]

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> ChangeResult:
        event_id = int(rows[0][0]) if rows else 0
        return cls(event_id, {r[1]: int(r[2]) for r in rows}, {r[1]: r[3] for r in rows})


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a path: the value after it (None and deleted=True for a delete)."""

    pos: int
    op: str
    value: Any
    deleted: bool
    version: int
    recorded_at: datetime | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> HistoryEntry:
        pos, op, value, deleted, version, recorded_at = row
        return cls(int(pos), op, value, bool(deleted), int(version), recorded_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "pos": self.pos,
            "op": self.op,
            "value": self.value,
            "deleted": self.deleted,
            "version": self.version,
            "recorded_at": self.recorded_at.isoformat() if self.recorded_at else None,
        }


def parse_at(at: At) -> int | datetime:
    """Return a position or an aware datetime from ``at`` (text: digits or ISO 8601; naive means UTC)."""
    if isinstance(at, bool):
        raise OutOfRangeError(f"invalid position or time {at!r}")
    if isinstance(at, int):
        if at < 0:
            raise OutOfRangeError(f"invalid position {at}: positions are >= 0")
        return at
    if isinstance(at, datetime):
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    text = str(at).strip()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise OutOfRangeError(
            f"invalid position or time {text!r}: give a position (e.g. 120) or an ISO 8601 time "
            "(e.g. 2026-11-21T10:00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


__all__ = [
    "MAX_PATH",
    "OPS",
    "PATH",
    "At",
    "Change",
    "ChangeResult",
    "HistoryEntry",
    "StateEntry",
    "changes_json",
    "check_path",
    "parse_at",
]
