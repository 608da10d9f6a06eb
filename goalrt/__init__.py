"""goalrt: a Postgres-native, event-sourced goal runtime."""

from __future__ import annotations

from goalrt.async_eventlog import AsyncEventLog
from goalrt.async_state import AsyncState
from goalrt.errors import (
    AppendOnlyError,
    ChainBrokenError,
    ConfigError,
    DatabaseError,
    DatabaseUnavailableError,
    DirectWriteError,
    EmbeddedServerError,
    GoalrtError,
    InvalidEventError,
    InvalidStateChangeError,
    MigrationError,
    NotMigratedError,
    OutOfRangeError,
    VersionConflictError,
)
from goalrt.event import ChainReport, Event, NewEvent
from goalrt.eventlog import EventLog
from goalrt.forks import Fork
from goalrt.replay import ReplayReport
from goalrt.snapshots import Snapshot
from goalrt.state import Change, ChangeResult, HistoryEntry, State, StateEntry

__version__ = "0.2.0"

__all__ = [
    "AppendOnlyError",
    "AsyncEventLog",
    "AsyncState",
    "ChainBrokenError",
    "ChainReport",
    "Change",
    "ChangeResult",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DirectWriteError",
    "EmbeddedServerError",
    "Event",
    "EventLog",
    "Fork",
    "GoalrtError",
    "HistoryEntry",
    "InvalidEventError",
    "InvalidStateChangeError",
    "MigrationError",
    "NewEvent",
    "NotMigratedError",
    "OutOfRangeError",
    "ReplayReport",
    "Snapshot",
    "State",
    "StateEntry",
    "VersionConflictError",
    "__version__",
]
