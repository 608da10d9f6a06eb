"""goalrt: a Postgres-native, event-sourced goal runtime."""

from __future__ import annotations

from goalrt.async_eventlog import AsyncEventLog
from goalrt.errors import (
    AppendOnlyError,
    ChainBrokenError,
    ConfigError,
    DatabaseError,
    DatabaseUnavailableError,
    EmbeddedServerError,
    GoalrtError,
    InvalidEventError,
    MigrationError,
    NotMigratedError,
)
from goalrt.event import ChainReport, Event, NewEvent
from goalrt.eventlog import EventLog

__version__ = "0.1.0"

__all__ = [
    "AppendOnlyError",
    "AsyncEventLog",
    "ChainBrokenError",
    "ChainReport",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "EmbeddedServerError",
    "Event",
    "EventLog",
    "GoalrtError",
    "InvalidEventError",
    "MigrationError",
    "NewEvent",
    "NotMigratedError",
    "__version__",
]
