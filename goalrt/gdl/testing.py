"""``goalrt test``: run a workspace's ``test`` blocks as deterministic simulations, each in a fork of its own.

For each test (in file and line order; ``-k`` keeps those whose name contains a text):

1. a fork of the main line at position 0 (``goalrt.forks``): an empty state
   and a log of its own, so neither the main line nor another test can
   change the outcome;
2. the workspace's definitions loaded into the fork (``goalrt.load_gdl``: its
   policies and triggers hold there too);
3. every ``given`` applied as one change set (a policy may refuse it: the
   test fails and says why, unless it expects that refusal);
4. the ``when``: a goal submitted, an event appended (its triggers submit
   their goals), or a change set applied; a refusal fails the test unless an
   ``expect refused`` says it must happen;
5. one in-process worker (one step at a time) runs the fork's goals with the
   real handlers, except the actions the test ``simulate``\\ s, which run by
   their declared effects alone and append their ``emit``\\ s (as ``pure``
   actions do), until the goals settle: none pending or active (a waiting
   goal has settled); a goal whose next step has no handler (and is neither
   pure nor simulated) fails the test, naming the action;
6. the ``expect``\\ s written before the first ``then`` checked: an event of
   the type was appended, the goals are in the status, the condition holds,
   what the test did last was refused (by the policy named);
7. each ``then`` in turn (an answer to the oldest goal waiting at an ask, an
   event appended, or the fork's timers brought closer and those due fired),
   the goals settled again, and the ``expect``\\ s written after it checked;
8. every event of a declared type appended in the fork checked against its
   declaration (``event_data``): a missing, undeclared or mistyped field
   fails the test, naming the event and the field;
9. the fork dropped.

Tests are the same run after run: a fresh fork each time, one step at a
time, handlers that do not depend on the clock, and time that passes only
when a ``then advance`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from goalrt.db.connect import connect
from goalrt.errors import GoalrtError
from goalrt.gdl.compiled import CompiledExpect, CompiledTest, CompiledWorkspace
from goalrt.gdl.event_data import data_problems
from goalrt.gdl.runtime import condition_paths, load
from goalrt.goals.goals import Goals
from goalrt.goals.registry import Action, Registry
from goalrt.log.eventlog import EventLog
from goalrt.planner import holds
from goalrt.planner.conditions import condition_to_json
from goalrt.planner.values import render
from goalrt.state import forks
from goalrt.state.state import Change, State
from goalrt.worker.definitions import pure_action
from goalrt.worker.gdl_steps import emitting_action
from goalrt.worker.planner_bridge import scalar_state
from goalrt.worker.worker import Worker

SETTLE_POLL_S = 0.02
_POLICY = re.compile(r"policy_violation: policy (\S+) ")


@dataclass(slots=True)
class TestResult:
    """One test's outcome: ``failures`` says what did not hold (empty: passed)."""

    name: str
    where: str
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


def select(compiled: CompiledWorkspace, keyword: str | None) -> list[CompiledTest]:
    """Return the tests to run in the order of their files and lines; ``keyword`` keeps names containing it."""
    chosen = [t for n, t in compiled.tests.items() if keyword is None or keyword in n]
    return sorted(chosen, key=_place)


def _place(test: CompiledTest) -> tuple[str, int, str]:
    file, _, line = test.where.rpartition(":")
    return (file, int(line) if line.isdigit() else 0, test.name)


def run_tests(
    url: str,
    compiled: CompiledWorkspace,
    handlers: Registry,
    tests: Sequence[CompiledTest],
    *,
    timeout: float = 60.0,
    report: Callable[[TestResult], None] | None = None,
) -> list[TestResult]:
    """Run ``tests`` against the database at ``url`` (migrated), each in a fork of its own; return the results."""
    results = []
    for test in tests:
        result = run_test(url, compiled, handlers, test, timeout=timeout)
        if report is not None:
            report(result)
        results.append(result)
    return results


def run_test(
    url: str, compiled: CompiledWorkspace, handlers: Registry, test: CompiledTest, *, timeout: float = 60.0
) -> TestResult:
    """Run one test in a new fork and drop the fork; never raises for what the test finds."""
    result = TestResult(test.name, test.where)
    started = time.monotonic()
    name = f"t{uuid.uuid4().hex[:12]}"
    with connect(url) as conn:
        fork = forks.create(conn, name, at=0)
        try:
            load(conn, compiled, fork.schema)
            _run_in_fork(url, conn, fork.name, fork.schema, compiled, handlers, test, timeout, result)
        except GoalrtError as exc:
            result.failures.append(str(exc).splitlines()[0])
        finally:
            forks.drop(conn, name)
    result.seconds = time.monotonic() - started
    return result


def _run_in_fork(
    url: str,
    conn: Any,
    fork: str,
    schema: str,
    compiled: CompiledWorkspace,
    handlers: Registry,
    test: CompiledTest,
    timeout: float,
    result: TestResult,
) -> None:
    # What the test did at each point (0: the when, or the givens without one; k: its k-th then) that an
    # `expect refused` speaks of: the refusal's message, or None when it was done.
    refusals = {e.after for e in test.expects if e.kind == "refused"}
    outcomes: dict[int, str | None] = {}
    if test.given:
        with State.connect(url, fork=fork) as state:
            try:
                state.change([Change.set(path, value) for path, value in test.given])
            except GoalrtError as exc:
                if test.when is not None or 0 not in refusals:
                    result.failures.append(f"given: {exc}")
                    return
                outcomes[0] = str(exc)
            else:
                outcomes[0] = None
    goal_id = None
    try:
        if test.when is not None and "goal" in test.when:
            with Goals.connect(url, fork=fork) as goals:
                goal_id = goals.submit(test.when["goal"], dict(test.when.get("params") or {})).id
        elif test.when is not None and "change" in test.when:
            with State.connect(url, fork=fork) as state:
                state.change([Change.set(path, value) for path, value in test.when["change"].items()])
        elif test.when is not None:
            with EventLog.connect(url, fork=fork) as log:
                log.append("test", test.when["event"], dict(test.when.get("data") or {}))
    except GoalrtError as exc:
        if 0 not in refusals:
            raise
        outcomes[0] = str(exc)
    else:
        if test.when is not None:
            outcomes[0] = None
    registry = _simulating(compiled, handlers, test.simulate)
    declared = {name: dict(event.fields) for name, event in compiled.events.items()}
    asyncio.run(_run_timeline(url, conn, fork, schema, registry, test, goal_id, outcomes, declared, timeout, result))


async def _run_timeline(
    url: str,
    conn: Any,
    fork: str,
    schema: str,
    handlers: Registry,
    test: CompiledTest,
    goal_id: int | None,
    outcomes: dict[int, str | None],
    declared: Mapping[str, Mapping[str, str]],
    timeout: float,
    result: TestResult,
) -> None:
    """Run the worker while the goals settle after the ``when`` and after each ``then``; check each expect in turn."""
    refusals = {e.after for e in test.expects if e.kind == "refused"}
    worker = Worker(
        url, handlers, schema=schema, concurrency=1, poll=0.05, grace=5, name="goalrt-test", schedules=False
    )
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait({task, asyncio.create_task(worker.wait_ready())}, return_when=asyncio.FIRST_COMPLETED)
        for done in range(len(test.then) + 1):
            if done:
                try:
                    problem = await asyncio.to_thread(_then, url, conn, fork, schema, test.then[done - 1])
                    outcomes[done] = None
                except GoalrtError as exc:  # an answer refused
                    if done not in refusals:
                        result.failures.append(f"then answer: {str(exc).splitlines()[0]}")
                        break
                    problem, outcomes[done] = None, str(exc)
                if problem is not None:
                    result.failures.append(problem)
                    break
            if not await _settle(task, conn, schema, timeout):
                result.failures.append(f"goals still pending or active after {timeout:g}s: {_open_goals(conn, schema)}")
                break
            for expect in test.expects:
                if expect.after == done:
                    problem = await asyncio.to_thread(_check, conn, url, fork, schema, test, expect, goal_id, outcomes)
                    if problem is not None:
                        result.failures.append(problem)
        unserved = await asyncio.to_thread(_unserved, conn, schema)
        result.failures.extend(await asyncio.to_thread(_undeclared, conn, schema, declared))
    finally:
        worker.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises what stopped the worker (a configuration error, say)
    result.failures[:0] = [
        f"goal {goal} {name} waits for a worker that can run {action}: no handler for it in the handler modules "
        f"(register one, mark the action `pure`, or `simulate` it in the test)"
        for goal, name, action in unserved
    ]


async def _settle(task: asyncio.Task[Any], conn: Any, schema: str, timeout: float) -> bool:
    """Wait until no goal the worker can move on is pending or active; return whether that happened in time."""
    deadline = time.monotonic() + timeout
    while not task.done():
        # In a thread: the psycopg query must not stall the worker sharing this loop.
        if await asyncio.to_thread(_open_goals, conn, schema) == 0:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(SETTLE_POLL_S)
    return False


def _then(url: str, conn: Any, fork: str, schema: str, then: Mapping[str, Any]) -> str | None:
    """Do one ``then`` of a test in the fork; return why it could not be done, or None."""
    s = sql.Identifier(schema)
    if "event" in then:
        with EventLog.connect(url, fork=fork) as log:
            log.append("test", then["event"], dict(then.get("data") or {}))
        return None
    if "advance" in then:
        # The fork is the test's own: its timers (sleeps, wait timeouts, deadlines, delayed starts) come closer by
        # the duration (advance_timers, which the main schema refuses), and the due ones are acted on now, as a
        # worker's next claim would.
        conn.execute(sql.SQL("SELECT {}.advance_timers($1)").format(s), (then["advance"],))
        conn.execute(sql.SQL("SELECT {}.wake_due_v1(1000)").format(s))
        return None
    query = sql.SQL(
        "SELECT g.id FROM {0}.goals g JOIN {0}.goal_steps st ON st.goal_id = g.id AND st.seq = g.step_seq"
        " WHERE g.status = 'waiting' AND st.kind = 'ask' AND ($1::text IS NULL OR g.name = $1) ORDER BY g.id LIMIT 1"
    ).format(s)
    row = conn.execute(query, (then.get("goal"),)).fetchone()
    if row is None:
        named = f" {then['goal']}" if then.get("goal") else ""
        return f"then answer{named}: no goal{named} waits for an answer"
    with Goals.connect(url, fork=fork) as goals:
        goals.resume(int(row[0]), dict(then["answer"]), actor="goalrt-test")  # a refused answer raises
    return None


def _simulating(compiled: CompiledWorkspace, handlers: Registry, simulate: Sequence[str]) -> Registry:
    """Return ``handlers`` with the simulated actions' handlers replaced by nothing (their effects run alone).

    A simulated action that declares ``emit`` appends those events, as a pure one does.
    """
    out = handlers.copy()
    for action in simulate:
        spec = compiled.actions[action]
        fn = emitting_action(spec.emit) if spec.emit else pure_action
        out.actions[spec.handler] = Action(spec.handler, fn)
    return out


def _open_goals(conn: Any, schema: str) -> int:
    """Return how many goals have something left to do now: pending or active, or a wait that is due.

    Goals waiting for a worker with a handler (none comes) are not counted. A
    waiting goal counts while its timer or deadline is due and a worker has
    not acted on it yet, or while it has a recheck left (after ``then
    advance``, the worker's own claim may be acting on it at that moment).
    """
    query = sql.SQL(
        "SELECT count(*) FROM {0}.goals g"
        " WHERE (status IN ('pending', 'active') AND {0}.unserved_action(g) IS NULL)"
        " OR (status = 'waiting' AND (wake_at <= now() OR deadline_at <= now()"
        " OR EXISTS (SELECT 1 FROM {0}.wait_rechecks r WHERE r.goal_id = g.id)))"
    ).format(sql.Identifier(schema))
    row = conn.execute(query).fetchone()
    return int(row[0])


def _unserved(conn: Any, schema: str) -> list[tuple[int, str, str]]:
    """Return (id, name, action) of the goals whose next step no worker of the test can run."""
    query = sql.SQL(
        "SELECT id, name, a FROM {0}.goals g, {0}.unserved_action(g) a WHERE a IS NOT NULL ORDER BY id"
    ).format(sql.Identifier(schema))
    return [(int(r[0]), str(r[1]), str(r[2])) for r in conn.execute(query).fetchall()]


def _undeclared(conn: Any, schema: str, declared: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Return a line for each event of a declared type in the fork whose data does not match its declaration."""
    if not declared:
        return []
    query = sql.SQL("SELECT id, stream, type, data FROM {}.event_data WHERE type = ANY($1) ORDER BY id").format(
        sql.Identifier(schema)
    )
    out = []
    for event_id, stream, type_, data in conn.execute(query, (sorted(declared),)).fetchall():
        problems = data_problems(declared[type_], data) if isinstance(data, dict) else ["its data is no object"]
        out += [f"event {type_} (id {event_id}, stream {stream}) does not match its declaration: {p}" for p in problems]
    return out


def _act(test: CompiledTest, after: int) -> str:
    """Name what the test did at ``after`` (0: its when, or its givens without one), for messages."""
    if after:
        return f"then {next(iter(test.then[after - 1]))}"
    if test.when is None:
        return "the givens"
    if "goal" in test.when:
        return f"when goal {test.when['goal']}"
    return f"when event {test.when['event']}" if "event" in test.when else "when change"


def _refused(
    conn: Any, s: sql.Identifier, test: CompiledTest, expect: CompiledExpect, outcome: str | None
) -> str | None:
    """Return what is wrong with an ``expect refused``, given what happened (a refusal's message, or None).

    ``by POLICY`` after a ``when goal`` (whose submit no policy refuses) holds when a step of the test's
    goals was refused by that policy: its action's result broke it.
    """
    what = f"expect refused{' by ' + expect.name if expect.name else ''}"
    act = _act(test, expect.after)
    if outcome is None and expect.name is not None and act.startswith("when goal"):
        errors = [
            str(r[0])
            for r in conn.execute(
                sql.SQL(
                    "SELECT error FROM {}.goal_steps WHERE error LIKE '%policy_violation: %' ORDER BY goal_id, seq"
                ).format(s)
            ).fetchall()
        ]
        if any((m := _POLICY.search(e)) is not None and m.group(1) == expect.name for e in errors):
            return None
        others = "; ".join(e.splitlines()[0] for e in errors) or "none"
        return f"{what}: no step of the goals was refused by policy {expect.name} (steps refused by a policy: {others})"
    if outcome is None:
        return f"{what}: {act} was not refused"
    found = _POLICY.search(outcome)
    if expect.name is None or (found is not None and found.group(1) == expect.name):
        return None
    return f"{what}: {act} was refused otherwise: {outcome.splitlines()[0]}"


def _check(
    conn: Any,
    url: str,
    fork: str,
    schema: str,
    test: CompiledTest,
    expect: CompiledExpect,
    goal_id: int | None,
    outcomes: Mapping[int, str | None],
) -> str | None:
    """Return what is wrong with ``expect`` in the fork, or None when it holds."""
    s = sql.Identifier(schema)
    if expect.kind == "refused":
        return _refused(conn, s, test, expect, outcomes.get(expect.after))
    if expect.kind == "event":
        types = [
            r[0]
            for r in conn.execute(
                sql.SQL(
                    "SELECT DISTINCT type FROM {}.event_data"
                    " WHERE type NOT LIKE 'goal.%' AND type NOT LIKE 'step.%' AND type NOT LIKE 'gdl.%' ORDER BY 1"
                ).format(s)
            ).fetchall()
        ]
        if expect.event in types:
            return None
        return f"expect event {expect.event}: not appended (appended: {', '.join(types) or 'none'})"
    if expect.kind == "goal":
        return _goal_status(conn, s, expect, goal_id)
    assert expect.condition is not None
    with State.connect(url, fork=fork) as state:
        values = scalar_state((e.path, e.value) for e in state.list())
    if holds(expect.condition, values):
        return None
    found = ", ".join(
        f"{p} is {render(values[p]) if p in values else 'absent'}"
        for p in sorted(set(condition_paths(condition_to_json(expect.condition))))
    )
    return f"expect state {expect.condition}: does not hold ({found})"


def _goal_status(conn: Any, s: sql.Identifier, expect: CompiledExpect, goal_id: int | None) -> str | None:
    """Check ``expect goal [NAME] STATUS``: the goals of that type, else the ``when goal``, else every goal."""
    args: tuple[Any, ...]
    if expect.name is not None:
        where, args = sql.SQL("WHERE name = $1"), (expect.name,)
    elif goal_id is not None:
        where, args = sql.SQL("WHERE id = $1"), (goal_id,)
    else:
        where, args = sql.SQL(""), ()
    rows = conn.execute(
        sql.SQL("SELECT id, name, status, last_error FROM {}.goals {} ORDER BY id").format(s, where), args
    ).fetchall()
    what = f"expect goal {expect.name + ' ' if expect.name else ''}{expect.status}"
    if not rows:
        refused = conn.execute(
            sql.SQL("SELECT data FROM {}.event_data WHERE type = 'gdl.trigger_refused' ORDER BY id").format(s)
        ).fetchall()
        why = "; ".join(
            f"trigger of {r[0].get('goal')} on {r[0].get('event_type')} refused: {r[0].get('error')}" for r in refused
        )
        return f"{what}: no {expect.name + ' ' if expect.name else ''}goal was submitted" + (f" ({why})" if why else "")
    wrong = [r for r in rows if r[2] != expect.status]
    if not wrong:
        return None
    shown = "; ".join(f"goal {r[0]} {r[1]} is {r[2]}" + (f" ({r[3]})" if r[3] else "") for r in wrong)
    return f"{what}: {shown}"


def summary(results: Sequence[TestResult], seconds: float) -> str:
    """Return ``N passed, M failed in S.Ss``."""
    passed = sum(r.passed for r in results)
    return f"{passed} passed, {len(results) - passed} failed in {seconds:.1f}s"


def quiet_workers() -> None:
    """Keep the worker's own logging (claims, plans) out of test output; warnings still show."""
    for name in ("goalrt.worker", "goalrt.planning", "goalrt.dispatcher"):
        logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["TestResult", "quiet_workers", "run_test", "run_tests", "select", "summary"]
