"""The messages between the worker and the SQL functions it calls, as types.

What the worker sends (JSON items, one per goal, batched into one call):

- ``PlanItem`` to ``plan_goals_v1``: a goal's plan (or a re-plan) under its lease;
- ``StepItem`` to ``complete_steps_v1``: what became of a step (``StepOutcome``);
- ``FailItem`` to ``fail_goals_v1``: fail a goal before running a step.

What it gets back (rows):

- ``ClaimedGoal`` from ``claim_goals_v3``: a goal, its lease epoch and the step to run (if planned);
- ``PlanAnswer`` (``PlanOutcome``) from ``plan_goals_v1``;
- ``CompletionAnswer`` (``CompletionOutcome``) from ``complete_steps_v1``;
- ``Rejected``: the database raised on an item itself (bad steps, a child of an
  unknown goal type), so it was answered alone; no SQL function returns it.

The outcome enums mirror the literals of the live SQL functions exactly
(tests/integration/test_worker_protocol.py reads them from ``pg_proc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StepOutcome(StrEnum):
    """What the worker reports of a step (``complete_steps_v1`` accepts these alone)."""

    COMPLETE = "complete"
    RETRY = "retry"
    FAIL = "fail"
    # The step failed for good and the worker planned around it (``steps`` hold the new plan).
    REPLAN = "replan"


class Advance(StrEnum):
    """Where ``goalrt.advance_goal`` left a goal after a step ended or a plan was stored."""

    COMPLETE = "complete"
    # The next step is an action and runs now, under the same lease.
    CONTINUE = "continue"
    # The next step is an action for any worker (the lease was not kept).
    RELEASED = "released"
    # A concurrency or rate limit holds the next step back.
    BLOCKED = "blocked"
    # The next step is a wait (event, sleep, ask, children).
    WAITING = "waiting"


class PlanOutcome(StrEnum):
    """What ``plan_goals_v1`` answers for a plan."""

    # Stored; the first step runs now (``step_seq``, ``action``, ``args``, ``attempt`` given).
    PLANNED = "planned"
    # The lease is no longer held at that epoch: nothing stored.
    REFUSED = "refused"
    COMPLETE = Advance.COMPLETE.value
    RELEASED = Advance.RELEASED.value
    BLOCKED = Advance.BLOCKED.value
    WAITING = Advance.WAITING.value


class CompletionOutcome(StrEnum):
    """What ``complete_steps_v1`` answers for a step's outcome."""

    # A result sent again after a lost connection had been committed already.
    ALREADY_APPLIED = "already_applied"
    # The step's state change was refused (invalid, a policy, a version conflict): nothing applied.
    CHANGE_REFUSED = "change_refused"
    # The lease or the step is no longer this worker's: recorded, not applied.
    REFUSED = "refused"
    RETRY = "retry"
    FAILED = "failed"
    COMPLETE = Advance.COMPLETE.value
    CONTINUE = Advance.CONTINUE.value
    RELEASED = Advance.RELEASED.value
    BLOCKED = Advance.BLOCKED.value
    WAITING = Advance.WAITING.value


class PlanReason(StrEnum):
    """Why a plan was made (``reason`` of ``goal.planned``; chosen by the worker)."""

    INITIAL = "initial"
    # The goal's condition already holds: an empty plan (or a maintained goal's watch).
    ACHIEVED = "achieved"
    # A step's precondition no longer holds in the current state.
    DRIFT = "drift"
    # A step failed for good; its ground action is excluded.
    STEP_FAILED = "step_failed"
    # A maintained goal's watch saw a change of a path its condition reads.
    RECHECK = "recheck"
    # A newer GDL version than the plan's was loaded: the rest of the plan is made again under it.
    DEFINITIONS = "definitions"
    # No plan exists (the goal fails; never recorded as a plan).
    NO_PLAN = "no_plan"


# The SQLSTATE of an invalid state change: a step whose change it is cannot succeed on a retry.
INVALID_CHANGE_SQLSTATE = "GR003"


@dataclass(frozen=True, slots=True)
class NextStep:
    """The step a goal runs next under this worker's lease."""

    seq: int
    action: str
    args: Any
    attempt: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> NextStep | None:
        """Return the step a row names (``step_seq``, ``action``, ``args``, ``attempt``), or None when it names none."""
        if row["step_seq"] is None or row["action"] is None:
            return None
        return cls(row["step_seq"], row["action"], row["args"], row["attempt"])


@dataclass(frozen=True, slots=True)
class ClaimedGoal:
    """A row of ``claim_goals_v3``: a goal now leased at ``epoch``; ``step`` is None until it is planned.

    ``trace_context`` is the caller's W3C traceparent given at submit (None:
    none was): the worker's spans for the goal continue that trace.

    ``plan_gdl_version`` is not a column of the function: the ``goals_claim``
    query adds it (the GDL version the goal's plan was made with, from its
    last ``goal.planned``; None when that plan recorded none).
    """

    goal_id: int
    name: str
    params: Any
    epoch: int
    plan_no: int
    step: NextStep | None
    plan_gdl_version: int | None = None
    trace_context: str | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ClaimedGoal:
        step = None
        if row["step_seq"] is not None:
            step = NextStep(row["step_seq"], row["action"], row["args"], row["attempt"])
        version = row.get("plan_gdl_version")
        return cls(
            row["goal_id"],
            row["name"],
            row["params"],
            row["epoch"],
            row["plan_no"],
            step,
            version,
            row["trace_context"],
        )


@dataclass(frozen=True, slots=True)
class PlanItem:
    """A plan for ``plan_goals_v1``: the steps as JSON, why, and what ``goal.planned`` records beside them."""

    goal_id: int
    epoch: int
    steps: list[dict[str, Any]]
    reason: PlanReason | None = None
    detail: dict[str, Any] | None = None
    # Replace the rest of a plan the goal already has (else a re-sent first plan is recognised).
    replan: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"goal_id": self.goal_id, "epoch": self.epoch, "steps": self.steps}
        if self.replan:
            out["replan"] = True
        if self.reason is not None:
            out["reason"] = self.reason.value
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class StepItem:
    """A step's outcome for ``complete_steps_v1``; which fields count depends on ``outcome``."""

    goal_id: int
    epoch: int
    seq: int
    outcome: StepOutcome
    # complete: the handler's value (sent even when None: it becomes the step's JSON null result).
    result: Any = None
    changes: list[dict[str, Any]] | None = None
    events: list[dict[str, Any]] | None = None
    # retry, fail, replan: what went wrong.
    error: str | None = None
    # retry: seconds until the goal may run again.
    retry_in: float | None = None
    # replan: the new plan and why.
    steps: list[dict[str, Any]] | None = None
    reason: PlanReason | None = None
    detail: dict[str, Any] | None = None
    # Keep the lease and run the next action at once (False while draining).
    keep: bool = True
    # retry, fail: the handler's traceback, when it raised (its end, at most TRACEBACK_CHARS characters).
    traceback: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "goal_id": self.goal_id,
            "epoch": self.epoch,
            "seq": self.seq,
            "outcome": self.outcome.value,
            "continue": self.keep,
        }
        if self.outcome is StepOutcome.COMPLETE:
            out["result"] = self.result
        optional = {
            "changes": self.changes,
            "events": self.events,
            "error": self.error,
            "traceback": self.traceback,
            "retry_in": self.retry_in,
            "steps": self.steps,
            "reason": None if self.reason is None else self.reason.value,
            "detail": self.detail,
        }
        out.update((k, v) for k, v in optional.items() if v is not None)
        return out


@dataclass(frozen=True, slots=True)
class FailItem:
    """A goal for ``fail_goals_v1`` to fail with ``error`` (under the lease at ``epoch``)."""

    goal_id: int
    epoch: int
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"goal_id": self.goal_id, "epoch": self.epoch, "error": self.error}


@dataclass(frozen=True, slots=True)
class PlanAnswer:
    """A row of ``plan_goals_v1``."""

    goal_id: int
    outcome: PlanOutcome
    step: NextStep | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> PlanAnswer:
        return cls(row["goal_id"], PlanOutcome(row["outcome"]), NextStep.of(row))


@dataclass(frozen=True, slots=True)
class CompletionAnswer:
    """A row of ``complete_steps_v1``; ``step`` is the next step when the lease continues with it."""

    goal_id: int
    outcome: CompletionOutcome
    step: NextStep | None
    error: str | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> CompletionAnswer:
        return cls(row["goal_id"], CompletionOutcome(row["outcome"]), NextStep.of(row), row["error"])


@dataclass(frozen=True, slots=True)
class Rejected:
    """The database refused an item itself (it raised); the worker's answer for that item alone."""

    goal_id: int
    error: str


__all__ = [
    "INVALID_CHANGE_SQLSTATE",
    "Advance",
    "ClaimedGoal",
    "CompletionAnswer",
    "CompletionOutcome",
    "FailItem",
    "NextStep",
    "PlanAnswer",
    "PlanItem",
    "PlanOutcome",
    "PlanReason",
    "Rejected",
    "StepItem",
    "StepOutcome",
]
