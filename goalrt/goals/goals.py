"""Goals: submit, inspect, list and cancel them (sync API; ``AsyncGoals`` is the async twin).

    with Goals.connect() as goals:
        submitted = goals.submit("checkout", {"order": "o1", "amount": 20}, key="order-o1")
        goals.get(submitted.id).status            # "pending", then "active", "complete"
        goals.cancel(submitted.id, reason="customer asked")

Every operation is one goalrt SQL function (``submit_goal``, ``cancel_goal``,
...), so psql users get the same rules. When the client knows the goal type
(a ``Registry`` with it), params are validated with pydantic first and the
error names the field; the database checks them again against the JSON
Schema that workers registered.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from goalrt.db.connect import dumps
from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import GoalNotFoundError, InvalidGoalError, translated
from goalrt.goals.registry import Registry
from goalrt.log.event import Event
from goalrt.state import forks


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


@dataclass(frozen=True, slots=True)
class Submitted:
    """The goal a submit refers to; ``created`` is False when an idempotency key matched an earlier goal."""

    id: int
    created: bool


@dataclass(frozen=True, slots=True)
class StepInfo:
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

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StepInfo:
        return cls(*row)

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
) -> dict[str, Any]:
    """Return the ``options`` object of goalrt.submit_goal (only what is set).

    ``deadline`` is a time, or seconds (a number or a timedelta) from the submit.
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
    return options


def prepared_params(registry: Registry | None, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return params to submit: validated and normalized when ``registry`` knows the goal type."""
    if params is not None and not isinstance(params, Mapping):
        raise InvalidGoalError(f"params of goal {name} must be a JSON object, got {type(params).__name__}")
    if registry is not None and name in registry.goal_types:
        return registry.goal_types[name].normalized(params)
    out = dict(params or {})
    try:
        dumps(out)
    except (TypeError, ValueError) as exc:
        raise InvalidGoalError(f"params of goal {name} are not JSON: {exc}") from None
    return out


def prepared_items(registry: Registry | None, goals: Iterable[GoalSpec]) -> builtins.list[dict[str, Any]]:
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


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=dumps)


class Goals:
    """Submit and inspect goals over one psycopg connection (main line or a fork)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        schema: str = MAIN_SCHEMA,
        owns_connection: bool = False,
        registry: Registry | None = None,
    ) -> None:
        self._conn = conn
        self.schema = schema
        self.registry = registry
        self._owns = owns_connection
        self._q = queries("goals", schema)

    @classmethod
    def connect(cls, url: str | None = None, *, fork: str | None = None, registry: Registry | None = None) -> Goals:
        conn, schema = forks.open_connection(url, fork)
        return cls(conn, schema=schema, owns_connection=True, registry=registry)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def close(self) -> None:
        if self._owns:
            self._conn.close()

    def __enter__(self) -> Goals:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, name: str, params: tuple[Any, ...] = ()) -> builtins.list[Any]:
        with translated(), psycopg.RawCursor(self._conn) as cur:
            cur.execute(self._q[name], params or None)
            return cur.fetchall() if cur.description else []

    def register(self, registry: Registry | None = None) -> builtins.list[str]:
        """Store the goal types of ``registry`` (default: this client's) with their params' JSON Schema."""
        registry = registry or self.registry
        names = sorted(registry.goal_types) if registry else []
        if registry:
            for name in names:
                self._run("goal_type_register", (name, _jsonb(registry.goal_types[name].params_schema())))
        return names

    def params_schema(self, name: str) -> dict[str, Any] | None:
        """Return the registered JSON Schema of a goal type's params (None if unknown)."""
        rows = self._run("goal_type_schema", (name,))
        return rows[0][0] if rows else None

    def submit(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        at: datetime | str | None = None,
        delay: float | None = None,
        key: str | None = None,
        parent: int | None = None,
        partition_key: str | None = None,
        deadline: datetime | str | float | timedelta | None = None,
    ) -> Submitted:
        """Submit a goal; with ``key``, a second submit returns the first goal (``created`` False)."""
        options = submit_options(
            priority=priority,
            at=at,
            delay=delay,
            key=key,
            parent=parent,
            partition_key=partition_key,
            deadline=deadline,
        )
        rows = self._run("goal_submit", (name, _jsonb(prepared_params(self.registry, name, params)), _jsonb(options)))
        return Submitted(int(rows[0][0]), bool(rows[0][1]))

    def submit_many(
        self, goals: Iterable[tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]]
    ) -> builtins.list[Submitted]:
        """Submit ``(name, params, options)`` triples in one transaction (options as in ``submit_options``)."""
        rows = self._run("goals_submit", (_jsonb(prepared_items(self.registry, goals)),))
        return [Submitted(int(r[0]), bool(r[1])) for r in rows]

    def get(self, goal_id: int) -> GoalInfo:
        """Return a goal with its steps and its events in log order."""
        row = self._run("goal_get", (goal_id,))
        if not row:
            raise GoalNotFoundError(f"goal {goal_id} does not exist")
        if not self._conn.info.transaction_status:
            self._run("clock_tick")
        return GoalInfo.from_rows(row[0], self._run("goal_steps", (goal_id,)), self._run("goal_events", (goal_id,)))

    def list(
        self, *, status: str | None = None, name: str | None = None, limit: int = 50
    ) -> builtins.list[GoalSummary]:
        """Return goals, newest first."""
        if status is not None and status not in GoalStatus.__members__.values():
            raise InvalidGoalError(f"unknown status {status!r}: use one of {', '.join(GoalStatus)}")
        return [GoalSummary.from_row(r) for r in self._run("goals_list", (status, name, limit))]

    def counts(self) -> dict[str, int]:
        """Return how many goals have each status."""
        return {status: int(n) for status, n in self._run("goals_count")}

    def workers(self) -> builtins.list[dict[str, Any]]:
        """Return the registered worker processes (seconds_since_seen tells which are alive)."""
        keys = ("id", "name", "hostname", "pid", "concurrency", "goal_types", "actions", "started_at", "last_seen")
        out = []
        for row in self._run("workers_list"):
            item = dict(zip(keys, row[:9], strict=True))
            item["seconds_since_seen"] = row[9].total_seconds()
            item["partitions"] = None if row[10] is None else {"buckets": list(row[10]), "of": row[11]}
            item["started_at"] = _iso(item["started_at"])
            item["last_seen"] = _iso(item["last_seen"])
            out.append(item)
        return out

    def cancel(self, goal_id: int, reason: str | None = None) -> None:
        """Cancel a goal that has not finished (a finished one is refused with InvalidTransitionError)."""
        self._run("goal_cancel", (goal_id, reason))

    def resume(self, goal_id: int, data: Mapping[str, Any], *, actor: str | None = None) -> str:
        """Answer a goal waiting at an ``ask`` step; return what the goal did next.

        A wrong answer raises ``InvalidGoalError`` naming the field, and the goal keeps waiting.
        """
        rows = self._run("goal_resume", (goal_id, _jsonb(dict(data)), actor))
        return str(rows[0][1])

    def tree(self, goal_id: int) -> builtins.list[TreeNode]:
        """Return the goal and its descendants, depth first."""
        rows = self._run("goal_tree", (goal_id,))
        if not rows:
            raise GoalNotFoundError(f"goal {goal_id} does not exist")
        return [TreeNode(*row) for row in rows]

    def waiting(self, *, limit: int = 50) -> builtins.list[Waiting]:
        """Return the waiting goals, newest first, with what each waits for."""
        return [Waiting(*row) for row in self._run("goals_waiting", (limit,))]

    def set_limit(
        self,
        action: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
        burst: int | None = None,
        key: str | None = None,
    ) -> Limit:
        """Set a cluster-wide limit on an action (per value of the argument ``key`` when given)."""
        options = {
            k: v
            for k, v in {"concurrency": concurrency, "rate": rate, "per": per, "burst": burst, "key": key}.items()
            if v is not None
        }
        return Limit(*self._run("limit_set", (action, _jsonb(options)))[0])

    def drop_limit(self, action: str, key: str | None = None) -> bool:
        """Remove a limit; return whether there was one."""
        return bool(self._run("limit_drop", (action, key or ""))[0][0])

    def limits(self) -> builtins.list[Limit]:
        """Return the limits, with how many steps hold a slot and how many goals are parked on each."""
        return [Limit(*row) for row in self._run("limits_list")]

    def wake_due(self, max_count: int = 1000) -> int:
        """Act on what is due now (timers, timeouts, deadlines); workers do this on every claim."""
        return int(self._run("timers_wake", (max_count,))[0][0])


__all__ = [
    "GoalInfo",
    "GoalStatus",
    "GoalSummary",
    "Goals",
    "Limit",
    "StepInfo",
    "StepStatus",
    "Submitted",
    "TreeNode",
    "Waiting",
    "submit_options",
]
