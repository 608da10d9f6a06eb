"""What the GDL compiler produces: checked definitions holding the planner's objects, as canonical JSON.

``CompiledWorkspace.to_json()`` groups the definitions by app, sorted by
name, without source positions; ``content_hash`` is the sha256 of that JSON,
so equal definitions have equal hashes however they are formatted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from goalrt.goals.conditions import Achieve
from goalrt.goals.retry import Retry
from goalrt.planner import ActionSchema, Condition, ObjectType, condition_to_json
from goalrt.planner.values import Scalar
from goalrt.worker.definitions import GDL_FORMAT

SHARED: Final = "shared"
TESTS: Final = "tests"


@dataclass(frozen=True, slots=True)
class CompiledType:
    """A declared type: its fields and the planner's ``ObjectType`` (with ``keys_under``)."""

    name: str
    app: str
    fields: tuple[tuple[str, str], ...]
    object_type: ObjectType

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fields": dict(self.fields), "keys_under": list(self.object_type.keys_under)}


@dataclass(frozen=True, slots=True)
class CompiledEvent:
    """A declared event type and the types of its data fields."""

    name: str
    app: str
    fields: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fields": dict(self.fields)}


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """An action: its planning schema and how the dispatcher runs it."""

    name: str
    app: str
    schema: ActionSchema
    handler: str
    timeout: float | None = None
    retry: Retry = field(default_factory=Retry)
    concurrency: int | None = None
    # (starts, per seconds): a token bucket shared by every worker.
    rate: tuple[int, float] | None = None
    # `pure`: no handler runs; the declared effects are the whole action (any worker runs it).
    pure: bool = False
    # A built-in handler's arguments (the `with` block): {"args", "hosts", "urls"} (goalrt.gdl.calls).
    call: dict[str, Any] | None = None
    # `emit TYPE { field = term }`: [{"event", "data": {field: {"param"|"value"|"path": ...}}}]
    emit: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        # "emit" only when there are some: definitions without them keep their content hash.
        emitted = {"emit": [dict(e) for e in self.emit]} if self.emit else {}
        out: dict[str, Any] = {
            **emitted,
            "schema": self.schema.to_json(),
            "handler": self.handler,
            "pure": self.pure,
            "timeout": self.timeout,
            "retry": {
                "max_attempts": self.retry.max_attempts,
                "backoff": self.retry.backoff,
                "factor": self.retry.factor,
                "max_backoff": self.retry.max_backoff,
                "jitter": self.retry.jitter,
            },
            "concurrency": self.concurrency,
            "rate": None if self.rate is None else {"count": self.rate[0], "per": self.rate[1]},
        }
        # Only an action that calls a built-in has the key: the JSON (and the hash) of the others is unchanged.
        if self.call is not None:
            out["call"] = self.call
        return out


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    """``on event TYPE as e { p = e.field }``: submit the goal for each such event, params taken from its data."""

    event: str
    # param -> ("field", data field name) or ("value", constant)
    bindings: tuple[tuple[str, tuple[str, Scalar]], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "params": {p: {kind: value} for p, (kind, value) in self.bindings},
        }


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    """``on schedule "CRON"`` / ``every D``: submit the goal at each tick, with these params (docs/schedules.md)."""

    name: str
    cron: str | None
    every: float | None
    timezone: str
    catch_up: str
    params: tuple[tuple[str, Scalar], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "every": self.every,
            "timezone": self.timezone,
            "catch_up": self.catch_up,
            "params": dict(self.params),
        }


@dataclass(frozen=True, slots=True)
class CompiledGoal:
    """A goal type: declared by a condition (the ``Achieve`` the planner runs) or by its ``steps``; its options."""

    name: str
    app: str
    params: tuple[tuple[str, str], ...]
    # None for a goal that lists its steps.
    achieve: Achieve | None
    actions: tuple[str, ...]
    priority: int = 0
    deadline: float | None = None
    triggers: tuple[CompiledTrigger, ...] = ()
    schedules: tuple[CompiledSchedule, ...] = ()
    # `steps { ... }`: the step templates (goalrt/gdl/steps.py), filled in with the params when a worker takes it.
    steps: tuple[Mapping[str, Any], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        # "schedules" only when there are some: definitions without them keep the hash they had before schedules.
        scheduled = {"schedules": [s.to_json() for s in self.schedules]} if self.schedules else {}
        if self.achieve is None:
            return {
                "name": self.name,
                "params": dict(self.params),
                "steps": [dict(s) for s in self.steps or ()],
                "priority": self.priority,
                "deadline": self.deadline,
                "triggers": [t.to_json() for t in self.triggers],
                **scheduled,
            }
        return {
            "name": self.name,
            "params": dict(self.params),
            "condition": condition_to_json(self.achieve.condition),
            "maintain": self.achieve.maintain,
            "types": [t.to_json() for t in self.achieve.types],
            "param_types": dict(sorted(self.achieve.param_types.items())),
            "max_replans": self.achieve.max_replans,
            "actions": list(self.actions),
            "priority": self.priority,
            "deadline": self.deadline,
            "triggers": [t.to_json() for t in self.triggers],
            **scheduled,
        }


@dataclass(frozen=True, slots=True)
class CompiledContract:
    """What an app lets other apps use."""

    name: str
    app: str
    types: tuple[str, ...]
    events: tuple[str, ...]
    actions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "types": list(self.types),
            "events": list(self.events),
            "actions": list(self.actions),
        }


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A rule every state change must keep; each ``*`` is a variable over the keys under its prefix."""

    name: str
    app: str
    condition: Condition
    # wildcard variable -> the prefix whose keys it ranges over ("_1" -> "orders")
    wildcards: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "condition": condition_to_json(self.condition), "wildcards": dict(self.wildcards)}


@dataclass(frozen=True, slots=True)
class CompiledExpect:
    """One ``expect``: an event appended, a goal's status, a condition on the state, or a refusal."""

    kind: str  # "event", "goal", "state" or "refused"
    event: str | None = None
    status: str | None = None
    condition: Condition | None = None
    # Checked after the `when` and this many of the test's `then` clauses.
    after: int = 0
    # "goal": the goals of this type (None: the `when goal`, or every goal); "refused": by this policy (None: any).
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        at = {"after": self.after} if self.after else {}
        named = {"name": self.name} if self.name is not None else {}
        if self.kind == "event":
            return {"event": self.event, **at}
        if self.kind == "goal":
            return {"goal": self.status, **named, **at}
        if self.kind == "refused":
            return {"refused": {"by": self.name}, **at}
        assert self.condition is not None
        return {"state": condition_to_json(self.condition), **at}


@dataclass(frozen=True, slots=True)
class CompiledTest:
    """A native test: state to set, actions to simulate by their effects, what happens, what to expect."""

    name: str
    given: tuple[tuple[str, Scalar], ...]
    simulate: tuple[str, ...]
    # {"goal": NAME, "params": {...}}, {"event": TYPE, "data": {...}} or {"change": {PATH: VALUE}};
    # None: nothing happens but the givens
    when: Mapping[str, Any] | None
    expects: tuple[CompiledExpect, ...]
    # Where the test is declared (file:line), for reports; not part of the JSON.
    where: str = ""
    # What happens after the `when`, in order: {"answer", "goal"}, {"event", "data"} or {"advance": seconds}.
    then: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        then = {"then": [dict(t) for t in self.then]} if self.then else {}
        return {
            **then,
            "name": self.name,
            "given": dict(self.given),
            "simulate": list(self.simulate),
            "when": None if self.when is None else dict(self.when),
            "expect": [e.to_json() for e in self.expects],
        }


@dataclass(frozen=True)
class CompiledWorkspace:
    """Every definition of a workspace, checked; names are unique across the workspace, each one has its app."""

    name: str
    version: str
    files: int
    apps: tuple[str, ...]
    types: Mapping[str, CompiledType]
    events: Mapping[str, CompiledEvent]
    actions: Mapping[str, CompiledAction]
    goals: Mapping[str, CompiledGoal]
    contracts: Mapping[str, CompiledContract]
    policies: Mapping[str, CompiledPolicy]
    tests: Mapping[str, CompiledTest]

    def to_json(self) -> dict[str, Any]:
        """Return the definitions as canonical JSON (sorted, no source positions), with the content hash."""
        body = self._body()
        return {**body, "content_hash": _hash(body)}

    @property
    def content_hash(self) -> str:
        """Return the sha256 of the canonical JSON: equal definitions, equal hash, whatever the formatting."""
        return _hash(self._body())

    def summary(self) -> str:
        """Return ``N types, M events, ... in K files``."""
        counts = [
            (len(self.types), "type"),
            (len(self.events), "event"),
            (len(self.actions), "action"),
            (len(self.goals), "goal"),
            (len(self.contracts), "contract"),
            (len(self.policies), "policy"),
            (len(self.tests), "test"),
        ]
        parts = [f"{n} {_plural(word, n)}" for n, word in counts]
        return f"{', '.join(parts)} in {self.files} {_plural('file', self.files)}"

    def _body(self) -> dict[str, Any]:
        apps: dict[str, dict[str, list[dict[str, Any]]]] = {}
        tables: list[tuple[str, Mapping[str, Any]]] = [
            ("types", self.types),
            ("events", self.events),
            ("actions", self.actions),
            ("goals", self.goals),
            ("contracts", self.contracts),
            ("policies", self.policies),
        ]
        for app in sorted({*self.apps, SHARED}):
            apps[app] = {key: [] for key, _ in tables}
        for key, table in tables:
            for name in sorted(table):
                item = table[name]
                apps.setdefault(item.app, {k: [] for k, _ in tables})[key].append(item.to_json())
        return {
            "format": GDL_FORMAT,  # (bump it with the shape: workers refuse newer formats)
            "name": self.name,
            "version": self.version,
            "apps": apps,
            "tests": [self.tests[n].to_json() for n in sorted(self.tests)],
        }


def _hash(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


__all__ = [
    "SHARED",
    "TESTS",
    "CompiledAction",
    "CompiledContract",
    "CompiledEvent",
    "CompiledExpect",
    "CompiledGoal",
    "CompiledPolicy",
    "CompiledSchedule",
    "CompiledTest",
    "CompiledTrigger",
    "CompiledType",
    "CompiledWorkspace",
]
