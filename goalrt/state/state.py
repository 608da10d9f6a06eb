"""The state: paths holding JSON values, changed only through events (sync API).

    with State.connect() as state:
        state.set("orders.o1.status", "created")
        state.increment("user.u1.balance", -10)
        state.get("orders.o1.status").value          # "created"
        state.list("orders.*")                         # every path under orders
        state.list("orders", at=120)                   # as it was at position 120

Each change set is one ``state.changed`` event, applied to the materialized
rows in the same transaction by ``goalrt.change_state`` (see docs/state.md).
Reads of the current state come from the materialized rows in one snapshot;
reads ``at=`` a position or time fold the log from the nearest snapshot.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from goalrt.db.connect import dumps
from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import InvalidStateChangeError, OutOfRangeError, translated
from goalrt.state import forks

# Mirrors goalrt.valid_path() in sql/schema/20_state.sql (a test checks they agree).
PATH = re.compile(r"^[A-Za-z0-9_:@-]+(\.[A-Za-z0-9_:@-]+)*$")
MAX_PATH = 512
OPS = ("set", "delete", "inc")
_MISSING = object()

At = int | datetime | str
"""A point in the log: a position, an aware datetime, or either as text (ISO 8601 time)."""


def check_path(path: object) -> str:
    """Return ``path`` if it is a valid state path, else raise naming it."""
    if not isinstance(path, str) or len(path) > MAX_PATH or not PATH.fullmatch(path):
        raise InvalidStateChangeError(
            f"invalid path {path!r}: use dot-separated segments of letters, digits, _ - : @ (e.g. orders.o1.status)"
        )
    return path


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a change set; build with ``Change.set/delete/inc``."""

    op: str
    path: str
    value: Any = None
    by: int | float | None = None
    expect_version: int | None = None

    @classmethod
    def set(cls, path: str, value: Any, *, expect_version: int | None = None) -> Change:
        return cls("set", check_path(path), value=value, expect_version=expect_version)

    @classmethod
    def delete(cls, path: str, *, expect_version: int | None = None) -> Change:
        return cls("delete", check_path(path), expect_version=expect_version)

    @classmethod
    def inc(cls, path: str, by: int | float = 1, *, expect_version: int | None = None) -> Change:
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
            dumps(item)
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


class State:
    """Read and change the state over one psycopg connection (main line or a fork)."""

    def __init__(
        self, conn: psycopg.Connection[Any], *, schema: str = MAIN_SCHEMA, owns_connection: bool = False
    ) -> None:
        self._conn = conn
        self.schema = schema
        self._owns = owns_connection
        self._q = queries("state", schema)

    @classmethod
    def connect(cls, url: str | None = None, *, fork: str | None = None) -> State:
        """Open the state at ``url`` (default: GOALRT_DATABASE_URL or the embedded server)."""
        conn, schema = forks.open_connection(url, fork)
        return cls(conn, schema=schema, owns_connection=True)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def close(self) -> None:
        if self._owns:
            self._conn.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, name: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with translated(), psycopg.RawCursor(self._conn) as cur:
            cur.execute(self._q[name], params or None)
            return cur.fetchall() if cur.description else []

    # -- writing ---------------------------------------------------------------

    def change(
        self,
        changes: Iterable[Change | Mapping[str, Any]],
        *,
        stream: str = "state",
        metadata: Mapping[str, Any] | None = None,
    ) -> ChangeResult:
        """Apply a change set atomically (one event); refused whole on any conflict."""
        payload = changes_json(changes)
        rows = self._run(
            "state_change",
            (Jsonb(payload, dumps=dumps), stream, Jsonb(dict(metadata or {}), dumps=dumps)),
        )
        return ChangeResult.from_rows(rows)

    def set(self, path: str, value: Any, *, expect_version: int | None = None) -> int:
        """Set ``path`` to ``value``; return its new version."""
        return self.change([Change.set(path, value, expect_version=expect_version)]).versions[path]

    def delete(self, path: str, *, expect_version: int | None = None) -> int:
        """Delete ``path`` (its version keeps counting); return its new version."""
        return self.change([Change.delete(path, expect_version=expect_version)]).versions[path]

    def increment(self, path: str, by: int | float = 1, *, expect_version: int | None = None) -> Any:
        """Add ``by`` to the number at ``path`` (0 if absent); return the new value."""
        return self.change([Change.inc(path, by, expect_version=expect_version)]).values[path]

    # -- reading ---------------------------------------------------------------

    def tick(self) -> int:
        """Give positions to committed changes (see EventLog.tick); return the head."""
        return int(self._run("clock_tick")[0][0])

    def _fresh(self) -> None:
        # Outside a transaction, position what has committed so entries carry
        # their pos; inside one a tick would hold the clock's lock to the end.
        if self._conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.tick()

    def position(self, at: At) -> int:
        """Return the log position ``at`` names (a time maps to the last position recorded by then)."""
        return self._position(at, fresh=True)

    def _position(self, at: At, *, fresh: bool = False) -> int:
        point = parse_at(at)
        if isinstance(point, int):
            return point
        if fresh:
            self._fresh()
        return int(self._run("pos_at_time", (point,))[0][0])

    def list(self, pattern: str | None = None, *, at: At | None = None) -> builtins.list[StateEntry]:
        """Return the live paths matching ``pattern``, now or at a past position or time.

        ``orders.o1`` is that path and everything beneath it; ``*`` is one
        segment (``orders.*.status``), a trailing ``*`` any depth beneath.
        """
        self._fresh()
        if at is not None:
            rows = self._run("state_at", (self._position(at), pattern))
        else:
            prefix = None
            if pattern is not None:
                prefix = self._run("pattern_check", (pattern,))[0][1]
            rows = self._run("state_list", (pattern, prefix))
        return [StateEntry.from_row(r) for r in rows]

    def get(self, path: str, *, at: At | None = None) -> StateEntry | None:
        """Return ``path``'s entry (None if it does not exist), now or at a past point."""
        check_path(path)
        if at is not None:
            return next((e for e in self.list(path, at=at) if e.path == path), None)
        self._fresh()
        rows = self._run("state_get", (path,))
        return StateEntry.from_row(rows[0]) if rows else None

    def value(self, path: str, default: Any = None, *, at: At | None = None) -> Any:
        entry = self.get(path, at=at)
        return default if entry is None else entry.value

    def version(self, path: str) -> int:
        """Return ``path``'s version: 0 if never written; a deleted path keeps its count."""
        check_path(path)
        rows = self._run("state_version", (path,))
        return int(rows[0][0]) if rows else 0

    def history(self, path: str) -> builtins.list[HistoryEntry]:
        """Return every value ``path`` has held, oldest first, from the log."""
        check_path(path)
        self._fresh()
        return [HistoryEntry.from_row(r) for r in self._run("state_history", (path,))]

    def replayed(self, to: int, pattern: str | None = None) -> builtins.list[StateEntry]:
        """Return the state at ``to`` computed from the events alone (no snapshots)."""
        self._fresh()
        return [StateEntry(r[0], r[1], int(r[2]), int(r[3]), None) for r in self._run("state_replayed", (to, pattern))]

    def __iter__(self) -> Iterator[StateEntry]:
        return iter(self.list())


__all__ = [
    "At",
    "Change",
    "ChangeResult",
    "HistoryEntry",
    "State",
    "StateEntry",
    "changes_json",
    "check_path",
    "parse_at",
]
