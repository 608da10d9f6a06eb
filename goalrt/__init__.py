"""goalrt: a Postgres-native, event-sourced goal runtime."""

from __future__ import annotations

from goalrt.errors import (
    AppendOnlyError,
    ChainBrokenError,
    ConfigError,
    DatabaseError,
    DatabaseUnavailableError,
    DirectWriteError,
    EmbeddedServerError,
    GoalNotFoundError,
    GoalrtError,
    InvalidEventError,
    InvalidGoalError,
    InvalidStateChangeError,
    InvalidTransitionError,
    MigrationError,
    NotMigratedError,
    OutOfRangeError,
    PermanentError,
    VersionConflictError,
)
from goalrt.goals.async_goals import AsyncGoals
from goalrt.goals.goals import GoalInfo, Goals, GoalStatus, Limit, StepInfo, StepStatus, Submitted, TreeNode, Waiting
from goalrt.goals.registry import Registry, Result, Step, achieve, action, default_registry, goal
from goalrt.goals.retry import Retry
from goalrt.goals.waits import Child, ask, children, sleep, wait_event
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.log.event import ChainReport, Event, NewEvent
from goalrt.log.eventlog import EventLog
from goalrt.state.async_state import AsyncState
from goalrt.state.forks import Fork
from goalrt.state.replay import ReplayReport
from goalrt.state.snapshots import Snapshot
from goalrt.state.state import Change, ChangeResult, HistoryEntry, State, StateEntry
from goalrt.worker.dispatcher import ActionContext
from goalrt.worker.worker import Partitions, Worker

__version__ = "0.4.0"

__all__ = [
    "ActionContext",
    "AppendOnlyError",
    "AsyncEventLog",
    "AsyncGoals",
    "AsyncState",
    "ChainBrokenError",
    "ChainReport",
    "Change",
    "ChangeResult",
    "Child",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DirectWriteError",
    "EmbeddedServerError",
    "Event",
    "EventLog",
    "Fork",
    "GoalInfo",
    "GoalNotFoundError",
    "GoalStatus",
    "GoalrtError",
    "Goals",
    "HistoryEntry",
    "InvalidEventError",
    "InvalidGoalError",
    "InvalidStateChangeError",
    "InvalidTransitionError",
    "Limit",
    "MigrationError",
    "NewEvent",
    "NotMigratedError",
    "OutOfRangeError",
    "Partitions",
    "PermanentError",
    "Registry",
    "ReplayReport",
    "Result",
    "Retry",
    "Snapshot",
    "State",
    "StateEntry",
    "Step",
    "StepInfo",
    "StepStatus",
    "Submitted",
    "TreeNode",
    "VersionConflictError",
    "Waiting",
    "Worker",
    "__version__",
    "achieve",
    "action",
    "ask",
    "children",
    "default_registry",
    "goal",
    "sleep",
    "wait_event",
]
