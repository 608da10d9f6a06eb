"""Goals' and steps' statuses: in a module of their own, so `goalrt list --status` lists them without a client."""

from __future__ import annotations

import enum


class GoalStatus(enum.StrEnum):
    """A goal's lifecycle status; mirrors the CHECK on goalrt.goals.status (a test checks)."""

    PENDING = "pending"
    ACTIVE = "active"
    WAITING = "waiting"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (GoalStatus.COMPLETE, GoalStatus.FAILED, GoalStatus.CANCELLED)


class StepStatus(enum.StrEnum):
    """A step's status; mirrors the CHECK on goalrt.goal_steps.status."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
