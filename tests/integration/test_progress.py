"""``ctx.progress`` from handlers: seen by ``get`` while the step runs, throttled, refused under a lost lease."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from goalrt import ActionContext, AsyncGoals, InvalidGoalError, Registry, Step, Worker
from goalrt.cli.main import cli
from goalrt.goals.model import StepInfo
from goalrt.worker.progress import Progress, checked
from tests.integration.serve_support import serving
from tests.integration.test_roles_by_job import Login
from tests.integration.test_roles_by_job import login as login  # the fixture
from tests.integration.test_worker import until_finished, wait_for, with_worker
from tests.integration.test_worker_metrics import scrape, value


def progress_registry(gate: asyncio.Event, thread_gate: threading.Event, seen: dict[str, Any]) -> Registry:
    """``slow``: an async step and a sync step, each reporting progress and waiting to be let go."""
    registry = Registry()

    @registry.goal("slow")
    def slow(p: Any) -> list[Step]:
        return [Step("crunch"), Step("crunch_sync")]

    @registry.action("crunch")
    async def crunch(args: Any, ctx: ActionContext) -> str:
        ctx.progress(0.25, "a quarter")
        await gate.wait()
        for i in range(1, 50):  # many reports at once: throttled, the last one written when the step ends
            ctx.progress(i / 100, f"at {i}")
        ctx.progress(0.75, "almost")
        return "crunched"

    @registry.action("crunch_sync")
    def crunch_sync(args: Any, ctx: ActionContext) -> str:
        ctx.progress(0.5, "x" * 1000)  # cut to 200 characters
        thread_gate.wait(60)
        for bad in (1.5, -0.1, float("nan"), "half", True):
            try:
                ctx.progress(bad)  # type: ignore[arg-type]
            except ValueError as exc:
                seen.setdefault("errors", []).append(str(exc))
        ctx.progress(1)
        return "done"

    return registry


async def running_step(goals: AsyncGoals, goal_id: int, seq: int) -> StepInfo | None:
    return next((s for s in (await goals.get(goal_id)).steps if s.seq == seq), None)


def test_progress_is_seen_while_the_step_runs_and_the_last_report_stays(db_url: str) -> None:
    gate, thread_gate, seen = asyncio.Event(), threading.Event(), {}
    shown: dict[str, str] = {}

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        try:
            await steps(goals, worker)
        finally:  # let the handlers end, whatever happened
            gate.set()
            thread_gate.set()

    async def steps(goals: AsyncGoals, worker: Worker) -> None:
        goal_id = (await goals.submit("slow")).id

        async def reported(seq: int, fraction: float) -> bool:
            step = await running_step(goals, goal_id, seq)
            return step is not None and step.status == "running" and step.progress == fraction

        await wait_for(lambda: reported(1, 0.25))
        step = await running_step(goals, goal_id, 1)
        assert step is not None and (step.progress_message, step.progress_text()) == ("a quarter", "25% a quarter")
        assert step.progress_at is not None
        # `goalrt get` shows it beside the running step's status (and in --json).
        out = await asyncio.to_thread(CliRunner().invoke, cli, ["--database-url", db_url, "get", str(goal_id)])
        shown["get"] = out.output
        out = await asyncio.to_thread(
            CliRunner().invoke, cli, ["--database-url", db_url, "get", str(goal_id), "--json"]
        )
        shown["json"] = out.output
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            api = (await http.get(f"/api/v1/goals/{goal_id}")).json()["steps"][0]
            assert (api["progress"], api["progress_message"]) == (0.25, "a quarter")
            page = (await http.get(f"/goals/{goal_id}")).text
            assert '<progress max="1" value="0.25">' in page and "25% a quarter" in page
        gate.set()
        await wait_for(lambda: reported(2, 0.5))
        step = await running_step(goals, goal_id, 2)
        assert step is not None and step.progress_message == "x" * 200
        thread_gate.set()
        (info,) = await until_finished(goals, goal_id)
        assert info.status == "complete"
        assert worker.metrics_port
        samples = await scrape(worker.metrics_port)
        stored = value(samples, "goalrt_worker_progress_writes_total", action="crunch", outcome="stored")
        # 0.25, then the first of the burst at once or a second later, and the last one when the step ended.
        assert 2 <= stored <= 3, stored
        assert value(samples, "goalrt_worker_progress_writes_total", action="crunch_sync", outcome="stored") == 2
        first, second = info.steps
        # The last report of each step is what stays, however many came within the second.
        assert (first.progress, first.progress_message) == (0.75, "almost")
        assert (second.progress, second.progress_message) == (1.0, None)

    with serving(db_url) as base:
        asyncio.run(with_worker(db_url, progress_registry(gate, thread_gate, seen), body, metrics_port=0))
    assert "running 25% a quarter" in shown["get"], shown["get"]
    step = json.loads(shown["json"])["steps"][0]
    assert (step["progress"], step["progress_message"]) == (0.25, "a quarter")
    assert len(seen["errors"]) == 5 and all(
        e.startswith("progress must be a number from 0 to 1") for e in seen["errors"]
    )


def test_reports_are_throttled_to_one_write_a_second_and_the_last_is_flushed() -> None:
    written: list[tuple[float, str | None]] = []

    async def main() -> Progress:
        async def write(fraction: float, message: str | None) -> bool:
            written.append((fraction, message))
            return True

        progress = Progress(asyncio.get_running_loop(), write, interval=3600)
        for i in range(100):
            progress.report(i / 100, f"step {i}")
        await asyncio.sleep(0)  # the first write runs
        await asyncio.sleep(0)
        # From another thread, as a sync handler reports.
        await asyncio.to_thread(progress.report, 0.995, "from a thread")
        await progress.close()
        progress.report(1.0, "after the end")  # dropped
        await asyncio.sleep(0)
        return progress

    progress = asyncio.run(main())
    assert written == [(0.0, "step 0"), (0.995, "from a thread")]
    assert (progress.written, progress.refused) == (2, 0)


def test_a_report_is_checked() -> None:
    assert checked(0, None) == (0.0, None) and checked(1, "a\x00b") == (1.0, "ab")
    for bad in (1.0001, -1, float("inf"), None, "0.5", False):
        with pytest.raises(ValueError, match="progress must be a number from 0 to 1"):
            checked(bad, None)
    with pytest.raises(ValueError, match="a progress message must be a string"):
        checked(0.5, 42)


def claimed_step(conn: psycopg.Connection, worker: str, lease: float) -> tuple[int, int]:
    """Claim the one goal there is as ``worker`` and plan it (its first step starts); return its id and epoch."""
    gid, epoch = conn.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v3(%s, 1, %s)", (worker, lease)).fetchone()  # type: ignore[misc]
    plan = [{"goal_id": gid, "epoch": epoch, "steps": [{"action": "a"}]}]
    conn.execute("SELECT * FROM goalrt.plan_goals_v1(%s, %s::jsonb, %s)", (worker, json.dumps(plan), lease))
    return gid, epoch


def progress_of(conn: psycopg.Connection, gid: int) -> tuple[Any, ...]:
    row = conn.execute("SELECT progress, progress_message FROM goalrt.goal_steps WHERE goal_id = %s", (gid,))
    return tuple(row.fetchone() or ())


def report(conn: psycopg.Connection, worker: str, gid: int, epoch: int, fraction: float, message: str) -> bool:
    row = conn.execute(
        "SELECT goalrt.step_progress_v1(%s, %s, %s, 1, %s, %s)", (worker, gid, epoch, fraction, message)
    ).fetchone()
    return bool(row and row[0])


def test_a_fenced_workers_progress_is_refused(conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.register_goal_type('job', '{}')")
    conn.execute("SELECT goalrt.submit_goal('job', '{}')")
    gid, old = claimed_step(conn, "w1", 0.2)
    assert report(conn, "w1", gid, old, 0.3, "w1 at 30%")
    assert progress_of(conn, gid) == (0.3, "w1 at 30%")
    # Another worker name, or a wrong epoch, never writes.
    assert not report(conn, "w2", gid, old, 0.9, "not mine")
    assert not report(conn, "w1", gid, old + 1, 0.9, "no such epoch")
    # The lease runs out and w2 takes the goal over (a new epoch): w1 is fenced.
    time.sleep(0.3)
    (new,) = conn.execute("SELECT epoch FROM goalrt.claim_goals_v3('w2', 1, 30)").fetchone()  # type: ignore[misc]
    assert new == old + 1
    assert not report(conn, "w1", gid, old, 0.9, "stale")
    assert progress_of(conn, gid) == (0.3, "w1 at 30%")
    assert report(conn, "w2", gid, new, 0.6, "y" * 500)
    assert progress_of(conn, gid) == (0.6, "y" * 200)
    with pytest.raises(psycopg.Error, match="progress must be a number from 0 to 1"):
        report(conn, "w2", gid, new, 1.5, "too far")
    # Once the step has ended, a report is refused too.
    item = {"goal_id": gid, "epoch": new, "seq": 1, "outcome": "complete", "result": None}
    conn.execute("SELECT * FROM goalrt.complete_steps_v1('w2', %s::jsonb, 30)", (json.dumps([item]),))
    assert not report(conn, "w2", gid, new, 1.0, "after the end")
    assert progress_of(conn, gid) == (0.6, "y" * 200)


def test_progress_under_another_roles_lease_is_refused(conn: psycopg.Connection, login: Login) -> None:
    """The lease is an authorization: a worker role that reads the owner and epoch still cannot report under it."""
    mine, other = login("goalrt_worker"), login("goalrt_worker")
    conn.execute("SELECT goalrt.register_goal_type('job', '{}')")
    conn.execute("SELECT goalrt.submit_goal('job', '{}')")
    gid, epoch = claimed_step(mine, "w1", 30)
    assert not report(other, "w1", gid, epoch, 0.9, "not my lease")
    assert progress_of(conn, gid) == (None, None)
    assert report(mine, "w1", gid, epoch, 0.1, "mine")
    # A role that is not a worker may not call it at all.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        report(login("goalrt_app"), "w1", gid, epoch, 0.9, "an app")
    assert progress_of(conn, gid) == (0.1, "mine")


def test_the_python_check_is_an_invalid_goal_free_value_error() -> None:
    # A malformed report is the handler's bug: a ValueError (its step fails as for any exception), not a goalrt error.
    with pytest.raises(ValueError) as raised:
        checked(2, None)
    assert not isinstance(raised.value, InvalidGoalError)
