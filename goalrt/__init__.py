"""goalrt: a Postgres-native, event-sourced goal runtime.

The public names load on first use (PEP 562's module ``__getattr__``):
``import goalrt``, which every ``goalrt`` command runs first, imports no
driver, ORM or parser; ``goalrt.Goals`` (or ``from goalrt import Goals``)
imports what ``Goals`` needs then. A submodule is an attribute on first use too
(``goalrt.planner``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        GoalWaitTimeoutError,
        InvalidAnchorError,
        InvalidEventError,
        InvalidGoalError,
        InvalidQueryError,
        InvalidStateChangeError,
        InvalidTransitionError,
        MigrationError,
        NotMigratedError,
        OutOfRangeError,
        PermanentError,
        VersionConflictError,
    )
    from goalrt.goals.async_goals import AsyncGoals
    from goalrt.goals.goals import (
        GoalInfo,
        Goals,
        GoalStatus,
        Limit,
        Schedule,
        StepInfo,
        StepStatus,
        Submitted,
        TreeNode,
        Waiting,
    )
    from goalrt.goals.registry import Registry, Result, Step, achieve, action, default_registry, goal
    from goalrt.goals.retry import Retry
    from goalrt.goals.waits import Child, ask, children, sleep, wait_event
    from goalrt.log.anchors import Anchor
    from goalrt.log.async_eventlog import AsyncEventLog
    from goalrt.log.committed import Event
    from goalrt.log.event import ChainReport, NewEvent
    from goalrt.log.eventlog import EventLog
    from goalrt.memory.async_memory import AsyncMemory
    from goalrt.memory.memory import Memory
    from goalrt.memory.model import MemoryHit
    from goalrt.state.async_state import AsyncState
    from goalrt.state.forks import Fork
    from goalrt.state.replay import ReplayReport
    from goalrt.state.snapshots import Snapshot
    from goalrt.state.state import Change, ChangeResult, HistoryEntry, State, StateEntry
    from goalrt.worker.dispatcher import ActionContext
    from goalrt.worker.partitions import Partitions
    from goalrt.worker.worker import Worker

__version__ = "0.4.0"

# Each public name -> the module that defines it (the imports above, for type checkers, name the same).
_SOURCES = {
    "ActionContext": "goalrt.worker.dispatcher",
    "Anchor": "goalrt.log.anchors",
    "AppendOnlyError": "goalrt.errors",
    "AsyncEventLog": "goalrt.log.async_eventlog",
    "AsyncGoals": "goalrt.goals.async_goals",
    "AsyncMemory": "goalrt.memory.async_memory",
    "AsyncState": "goalrt.state.async_state",
    "ChainBrokenError": "goalrt.errors",
    "ChainReport": "goalrt.log.event",
    "Change": "goalrt.state.state",
    "ChangeResult": "goalrt.state.state",
    "Child": "goalrt.goals.waits",
    "ConfigError": "goalrt.errors",
    "DatabaseError": "goalrt.errors",
    "DatabaseUnavailableError": "goalrt.errors",
    "DirectWriteError": "goalrt.errors",
    "EmbeddedServerError": "goalrt.errors",
    "Event": "goalrt.log.committed",
    "EventLog": "goalrt.log.eventlog",
    "Fork": "goalrt.state.forks",
    "GoalInfo": "goalrt.goals.goals",
    "GoalNotFoundError": "goalrt.errors",
    "GoalWaitTimeoutError": "goalrt.errors",
    "GoalStatus": "goalrt.goals.goals",
    "GoalrtError": "goalrt.errors",
    "Goals": "goalrt.goals.goals",
    "HistoryEntry": "goalrt.state.state",
    "InvalidAnchorError": "goalrt.errors",
    "InvalidEventError": "goalrt.errors",
    "InvalidGoalError": "goalrt.errors",
    "InvalidQueryError": "goalrt.errors",
    "InvalidStateChangeError": "goalrt.errors",
    "InvalidTransitionError": "goalrt.errors",
    "Limit": "goalrt.goals.goals",
    "Memory": "goalrt.memory.memory",
    "MemoryHit": "goalrt.memory.model",
    "MigrationError": "goalrt.errors",
    "NewEvent": "goalrt.log.event",
    "NotMigratedError": "goalrt.errors",
    "OutOfRangeError": "goalrt.errors",
    "Partitions": "goalrt.worker.partitions",
    "PermanentError": "goalrt.errors",
    "Registry": "goalrt.goals.registry",
    "ReplayReport": "goalrt.state.replay",
    "Result": "goalrt.goals.registry",
    "Retry": "goalrt.goals.retry",
    "Schedule": "goalrt.goals.goals",
    "Snapshot": "goalrt.state.snapshots",
    "State": "goalrt.state.state",
    "StateEntry": "goalrt.state.state",
    "Step": "goalrt.goals.registry",
    "StepInfo": "goalrt.goals.goals",
    "StepStatus": "goalrt.goals.goals",
    "Submitted": "goalrt.goals.goals",
    "TreeNode": "goalrt.goals.goals",
    "VersionConflictError": "goalrt.errors",
    "Waiting": "goalrt.goals.goals",
    "Worker": "goalrt.worker.worker",
    "achieve": "goalrt.goals.registry",
    "action": "goalrt.goals.registry",
    "ask": "goalrt.goals.waits",
    "children": "goalrt.goals.waits",
    "default_registry": "goalrt.goals.registry",
    "goal": "goalrt.goals.registry",
    "sleep": "goalrt.goals.waits",
    "wait_event": "goalrt.goals.waits",
}


# Hidden from type checkers, which see the imports above: to them `goalrt.Gaols` stays an error.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Return public name ``name`` (importing its module), or submodule ``goalrt.name``."""
        module = _SOURCES.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif name.startswith("_"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        else:
            try:
                value = importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


__all__ = [
    "ActionContext",
    "Anchor",
    "AppendOnlyError",
    "AsyncEventLog",
    "AsyncGoals",
    "AsyncMemory",
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
    "GoalWaitTimeoutError",
    "GoalrtError",
    "Goals",
    "HistoryEntry",
    "InvalidAnchorError",
    "InvalidEventError",
    "InvalidGoalError",
    "InvalidQueryError",
    "InvalidStateChangeError",
    "InvalidTransitionError",
    "Limit",
    "Memory",
    "MemoryHit",
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
    "Schedule",
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
