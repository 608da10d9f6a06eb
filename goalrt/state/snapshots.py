"""Snapshots of the state: named bookmarks and the automatic ones.

A snapshot is the state at a position. Only the paths changed since the
previous snapshot are written (entries are intervals over snapshot
positions, see sql/schema/20_state.sql), so a snapshot of a large state costs what
changed, not the whole state. Automatic snapshots are taken every
``snapshot_every`` positions (setting, default 1000), which bounds the cost of
reading the state at any position to that many events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from goalrt.errors import InvalidStateChangeError, OutOfRangeError
from goalrt.state.state import State, StateEntry

SETTING_EVERY = "snapshot_every"


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: int
    pos: int
    name: str | None
    auto: bool
    tags: list[str]
    note: str | None
    paths: int
    written: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Snapshot:
        id_, pos, name, auto, tags, note, paths, written, created_at = row
        return cls(int(id_), int(pos), name, bool(auto), list(tags or []), note, int(paths), int(written), created_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pos": self.pos,
            "name": self.name,
            "auto": self.auto,
            "tags": self.tags,
            "note": self.note,
            "paths": self.paths,
            "written": self.written,
            "created_at": self.created_at.isoformat(),
        }


def create(state: State, name: str, *, tags: Sequence[str] = (), note: str | None = None) -> Snapshot:
    """Take a named snapshot of the state at the head of the log."""
    return Snapshot.from_row(state._run("snapshot_create", (name, list(tags), note))[0])


def list_snapshots(state: State, *, include_auto: bool = False) -> list[Snapshot]:
    return [Snapshot.from_row(r) for r in state._run("snapshots_list", (include_auto,))]


def get(state: State, name: str) -> Snapshot:
    rows = state._run("snapshot_get", (name,))
    if not rows:
        raise OutOfRangeError(f"no snapshot named {name!r} (`goalrt snapshot list` shows them)")
    return Snapshot.from_row(rows[0])


def contents(state: State, snapshot: Snapshot, pattern: str | None = None) -> list[StateEntry]:
    """Return the state a snapshot holds."""
    return state.list(pattern, at=snapshot.pos)


def take_due(state: State, up_to: int | None = None) -> int:
    """Take the automatic snapshots that are due; return how many were taken."""
    return int(state._run("snapshot_auto", (up_to,))[0][0])


def interval(state: State) -> int:
    rows = state._run("settings_get", (SETTING_EVERY,))
    return int(rows[0][0]) if rows else 0


def set_interval(state: State, every: int) -> None:
    """Take automatic snapshots every ``every`` positions (0 turns them off)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise InvalidStateChangeError(f"snapshot interval must be a non-negative integer, got {every!r}")
    state._run("settings_set", (SETTING_EVERY, Jsonb(every)))


__all__ = ["Snapshot", "contents", "create", "get", "interval", "list_snapshots", "set_interval", "take_due"]
