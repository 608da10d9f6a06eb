"""Goals' model: what the clients return, and how submits are prepared (the statuses are in goalrt.goals.status).

Shared by ``Goals`` and ``AsyncGoals`` (goalrt.goals.goals, goalrt.goals.async_goals).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from goalrt import tracing
from goalrt.db.jsontext import check
from goalrt.errors import InvalidGoalError
from goalrt.goals.registry import Registry
from goalrt.goals.status import GoalStatus as GoalStatus
from goalrt.goals.status import StepStatus as StepStatus
from goalrt.log.committed import Event


@dataclass(frozen=True, slots=True)
class Submitted:
    """The goal a submit refers to; ``created`` is False when an idempotency key matched an earlier goal."""

    id: int
    created: bool


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a goal's plans, as stored."""

    seq: int
    plan_no: int
    action: str
    args: Any
    status: str
    attempts: int
    result: Any
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    kind: str = "action"
    label: str | None = None
    # What the handler last reported (ctx.progress): a fraction 0..1, a message, when (None: never).
    progress: float | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StepInfo:
        return cls(*row)

    def progress_text(self) -> str:
        """Return the progress as shown: ``42% copying files`` ('' when none was reported)."""
        if self.progress is None:
            return ""
        text = f"{self.progress * 100:.0f}%"
        return f"{text} {self.progress_message}" if self.progress_message else text

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "plan_no": self.plan_no,
            "action": self.action,
            "args": self.args,
            "status": self.status,
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "kind": self.kind,
            "label": self.label,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "progress_at": _iso(self.progress_at),
        }


@dataclass(frozen=True, slots=True)
class GoalInfo:
    """A goal as stored: its row, its steps and (from ``get``) its events in log order."""

    id: int
    name: str
    params: Any
    status: str
    priority: int
    run_at: datetime
    key: str | None
    parent_id: int | None
    partition_key: str | None
    plan_no: int
    step_seq: int | None
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: datetime | None
    claims: int
    result: Any
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    wake_at: datetime | None
    deadline_at: datetime | None
    blocked_on: str | None
    parent_step: int | None
    # The action of the next step when no live worker can run it: the goal waits for one that can.
    unserved_action: str | None = None
    steps: tuple[StepInfo, ...] = ()
    events: tuple[Event, ...] = ()

    @classmethod
    def from_rows(cls, row: Sequence[Any], steps: Iterable[Sequence[Any]], events: Iterable[Sequence[Any]]) -> GoalInfo:
        return dataclasses.replace(
            cls(*row),
            steps=tuple(StepInfo.from_row(s) for s in steps),
            events=tuple(Event.from_row(e) for e in events),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "params": self.params,
            "status": self.status,
            "priority": self.priority,
            "run_at": _iso(self.run_at),
            "key": self.key,
            "parent_id": self.parent_id,
            "partition_key": self.partition_key,
            "plan_no": self.plan_no,
            "step": self.step_seq,
            "lease": None
            if self.lease_owner is None
            else {"owner": self.lease_owner, "epoch": self.lease_epoch, "expires_at": _iso(self.lease_expires_at)},
            "claims": self.claims,
            "result": self.result,
            "last_error": self.last_error,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "finished_at": _iso(self.finished_at),
            "wake_at": _iso(self.wake_at),
            "deadline_at": _iso(self.deadline_at),
            "blocked_on": self.blocked_on,
            "parent_step": self.parent_step,
            "unserved_action": self.unserved_action,
            "steps": [s.to_json() for s in self.steps],
            "events": [e.to_json() for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class GoalSummary:
    """One line of ``list``."""

    id: int
    name: str
    status: str
    priority: int
    run_at: datetime
    step_seq: int | None
    claims: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    # As in GoalInfo: the next step's action when no live worker can run it.
    unserved_action: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> GoalSummary:
        return cls(*row)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "priority": self.priority,
            "run_at": _iso(self.run_at),
            "step": self.step_seq,
            "claims": self.claims,
            "last_error": self.last_error,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
            "unserved_action": self.unserved_action,
        }


@dataclass(frozen=True, slots=True)
class TreeNode:
    """A goal in a tree of goals (``Goals.tree``): depth 0 is the goal asked for."""

    id: int
    parent_id: int | None
    depth: int
    name: str
    status: str
    step_seq: int | None
    result: Any
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A waiting goal and what it waits for: kind event, sleep, ask or children, and the step's args."""

    id: int
    name: str
    seq: int
    kind: str
    action: str
    args: Any
    timeout_at: datetime | None
    waiting_since: datetime | None
    open_children: int

    def describe(self) -> str:
        a = self.args or {}
        if self.kind == "event":
            where = a.get("where") or {}
            return f"event {a.get('event')}" + (f" where {json.dumps(where, sort_keys=True)}" if where else "")
        if self.kind == "sleep":
            return f"time {_iso(self.timeout_at)}"
        if self.kind == "ask":
            return f"answer to {a.get('prompt')!r}"
        return f"{a.get('mode', 'all')} of {len(a.get('goals') or [])} children ({self.open_children} open)"

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["timeout_at"] = _iso(self.timeout_at)
        out["waiting_since"] = _iso(self.waiting_since)
        out["waits_for"] = self.describe()
        return out


@dataclass(frozen=True, slots=True)
class Limit:
    """A cluster-wide limit on an action; ``key_arg`` '' is one limit for all calls."""

    action: str
    key_arg: str
    max_concurrent: int | None
    rate: int | None
    per_seconds: float | None
    burst: int | None
    running: int = 0
    parked: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The ranges goalrt.set_limit accepts: a token's wait of up to `per` seconds
# is an interval, which overflows past these.
LIMIT_INT_MAX = 999_999_999
LIMIT_PER_MIN = 0.001
LIMIT_PER_MAX = 31_536_000.0


def limit_options(
    *, concurrency: int | None, rate: int | None, per: float | None, burst: int | None, key: str | None
) -> dict[str, Any]:
    """Return the options goalrt.set_limit takes; raise ``InvalidGoalError`` naming a field out of range."""
    for name, value in (("concurrency", concurrency), ("rate", rate), ("burst", burst)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMIT_INT_MAX
        ):
            raise InvalidGoalError(f"limit option {name} must be an integer from 1 to {LIMIT_INT_MAX}, got {value!r}")
    if per is not None and (
        isinstance(per, bool) or not isinstance(per, int | float) or not LIMIT_PER_MIN <= per <= LIMIT_PER_MAX
    ):
        raise InvalidGoalError(
            f"limit option per must be a number of seconds from {LIMIT_PER_MIN:g} to {LIMIT_PER_MAX:.0f} (a year), "
            f"got {per!r}"
        )
    options = {"concurrency": concurrency, "rate": rate, "per": per, "burst": burst, "key": key}
    return {k: v for k, v in options.items() if v is not None}


WORKER_KEYS = ("id", "name", "hostname", "pid", "concurrency", "goal_types", "actions", "started_at", "last_seen")


def worker_info(row: Sequence[Any]) -> dict[str, Any]:
    """Return a row of the workers_list query as the dict ``Goals.workers`` lists."""
    item = dict(zip(WORKER_KEYS, row[:9], strict=True))
    item["seconds_since_seen"] = row[9].total_seconds()
    item["partitions"] = None if row[10] is None else {"buckets": list(row[10]), "of": row[11]}
    item["started_at"] = _iso(item["started_at"])
    item["last_seen"] = _iso(item["last_seen"])
    return item


GoalSpec = tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]
"""(name, params, options) for ``submit_many``."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def submit_options(
    *,
    priority: int | None = None,
    at: datetime | str | None = None,
    delay: float | None = None,
    key: str | None = None,
    parent: int | None = None,
    partition_key: str | None = None,
    deadline: datetime | str | float | timedelta | None = None,
    traceparent: str | None = None,
) -> dict[str, Any]:
    """Return the ``options`` object of goalrt.submit_goal (only what is set).

    ``deadline`` is a time, or seconds (a number or a timedelta) from the submit;
    ``traceparent`` a W3C traceparent the workers' spans for the goal continue.
    """
    if at is not None and delay is not None:
        raise InvalidGoalError("give at or delay, not both")
    options: dict[str, Any] = {}
    if priority is not None:
        options["priority"] = priority
    if at is not None:
        when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        options["run_at"] = (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
    if delay is not None:
        options["delay"] = delay
    if key is not None:
        options["key"] = key
    if parent is not None:
        options["parent_id"] = parent
    if partition_key is not None:
        options["partition_key"] = partition_key
    if isinstance(deadline, timedelta):
        options["deadline"] = deadline.total_seconds()
    elif isinstance(deadline, datetime | str):
        when = deadline if isinstance(deadline, datetime) else datetime.fromisoformat(str(deadline))
        options["deadline"] = (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
    elif deadline is not None:
        options["deadline"] = float(deadline)
    if traceparent is not None:
        problem = tracing.traceparent_problem(traceparent)
        if problem is not None:
            raise InvalidGoalError(problem)
        options["traceparent"] = traceparent
    return options


def traced_items(items: list[dict[str, Any]], traceparent: str | None) -> list[dict[str, Any]]:
    """Give ``traceparent`` (if any) to each item of a batch that has none of its own."""
    if traceparent is None:
        return items
    for item in items:
        item["options"].setdefault("traceparent", traceparent)
    return items


def prepared_params(registry: Registry | None, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return params to submit: validated and normalized when ``registry`` knows the goal type."""
    if params is not None and not isinstance(params, Mapping):
        raise InvalidGoalError(f"params of goal {name} must be a JSON object, got {type(params).__name__}")
    if registry is not None and name in registry.goal_types:
        return registry.goal_types[name].normalized(params)
    out = dict(params or {})
    try:
        check(out)
    except (TypeError, ValueError) as exc:
        raise InvalidGoalError(f"params of goal {name} are not JSON: {exc}") from None
    return out


def prepared_items(registry: Registry | None, goals: Iterable[GoalSpec]) -> list[dict[str, Any]]:
    """Return the JSON array goalrt.submit_goals takes; an error names the element (``goals[3]: ...``)."""
    items = []
    for i, (name, params, options) in enumerate(goals):
        try:
            items.append(
                {"name": name, "params": prepared_params(registry, name, params), "options": dict(options or {})}
            )
        except InvalidGoalError as exc:
            raise InvalidGoalError(f"goals[{i}]: {exc}") from None
    return items


__all__ = [
    "GoalInfo",
    "GoalSpec",
    "GoalStatus",
    "GoalSummary",
    "Limit",
    "StepInfo",
    "StepStatus",
    "Submitted",
    "TreeNode",
    "Waiting",
    "limit_options",
    "prepared_items",
    "prepared_params",
    "submit_options",
    "traced_items",
    "worker_info",
]
