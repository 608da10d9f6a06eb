"""A GDL version loaded while a worker holds goals: the goals re-plan under it (docs/gdl.md).

Each test loads version 1, lets a worker claim a goal and plan it, holds the
goal in its first step (the handler waits for the test) while version 2 is
loaded and the worker has picked it up, then lets the step finish. The rest
of the plan was made for version 1; the goal must be re-planned under
version 2 before its next step, and end as version 2 dictates.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg

from goalrt import ActionContext, AsyncGoals, GoalInfo, PermanentError, Registry, State, Step, Worker
from goalrt.db.connect import connect, dumps
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.state.state import Change
from tests.integration.test_worker import FAST, until_finished, wait_for, with_worker

TYPES = "type User under users { status: string  crm: string  confirmed: boolean }\n"
ACTIVATE = """
action activate(u: User) {
  require users.{u}.status == "new"
  effect users.{u}.status = "active"
  retry 3 backoff fixed 10ms
}
"""


def version(root: Path, actions: str, goal: str = 'achieve users.{u}.crm == "synced"') -> Path:
    """Write a workspace: type User, the actions given, and goal onboard(u) with ``goal`` as its clauses."""
    (root / "apps" / "crm").mkdir(parents=True, exist_ok=True)
    (root / "goalrt.toml").write_text('name = "crm"\nversion = "1"\n')
    (root / "apps" / "crm" / "types.gdl").write_text(TYPES)
    (root / "apps" / "crm" / "actions.gdl").write_text(actions)
    (root / "apps" / "crm" / "goals.gdl").write_text("goal onboard(u: User) {\n  " + goal + "\n}\n")
    return root


def load_version(db_url: str, root: Path) -> int:
    with connect(db_url) as conn:
        return load(conn, check(root)).version


class Gate:
    """Holds the first call of ``activate`` until the test opens it; then that call raises ``error`` if given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.error = error
        self.calls: list[str] = []

    def registry(self) -> Registry:
        registry = Registry()

        @registry.action("activate")
        async def activate(args: dict[str, Any], ctx: ActionContext) -> None:
            self.calls.append(f"activate#{ctx.attempt}")
            if not self.entered.is_set():
                self.entered.set()
                await self.open.wait()
                if self.error is not None:
                    raise self.error

        @registry.action("crm.push")
        async def push(args: dict[str, Any], ctx: ActionContext) -> None:
            self.calls.append("crm.push")
            raise PermanentError("the CRM refuses pushes")

        return registry


def new_user(db_url: str, u: str) -> None:
    with State.connect(db_url) as state:
        state.change([Change.set(f"users.{u}.status", "new")])


def planned(info: GoalInfo) -> list[tuple[str, int | None, list[str]]]:
    """Each goal.planned of a goal: reason, GDL version, ground actions."""
    out = []
    for e in info.events:
        if e.type == "goal.planned":
            planner = e.data.get("planner") or {}
            out.append((e.data.get("reason"), planner.get("gdl_version"), planner.get("ops", [])))
    return out


async def hold_first_step_across(db_url: str, worker: Worker, gate: Gate, newer: Path) -> int:
    """Wait until the first step runs, load ``newer``, wait until the worker plans with it, then let the step go."""
    async with asyncio.timeout(30):
        await gate.entered.wait()
    v2 = load_version(db_url, newer)
    await wait_for(lambda: asyncio.sleep(0, worker.gdl_version == v2))
    gate.open.set()
    return v2


def test_a_held_goal_re_plans_with_an_action_the_new_version_adds(db_url: str, tmp_path: Path) -> None:
    """The issue's goal 35: the old plan's next step fails for good; the new version has another way."""
    push = 'action crm.push(u: User) {\n require users.{u}.status == "active"\n effect users.{u}.crm = "synced"\n}\n'
    batch = push.replace("crm.push", "crm.batch").replace("}\n", " cost 2\n pure\n}\n")
    goal = 'achieve users.{u}.crm == "synced"\n  max_replans 0'
    v1 = load_version(db_url, version(tmp_path / "v1", ACTIVATE + push, goal))
    # Version 2 adds crm.batch and makes crm.push dearer, so its plan does without crm.push.
    dearer = push.replace("}\n", " cost 5\n}\n")
    gate = Gate()
    new_user(db_url, "inflight1")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("onboard", {"u": "inflight1"})).id
        v2 = await hold_first_step_across(
            db_url, worker, gate, version(tmp_path / "v2", ACTIVATE + dearer + batch, goal)
        )
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        # The re-plan for new definitions is not one of the goal's max_replans (0 here).
        assert planned(info) == [
            ("initial", v1, ["activate(inflight1)", "crm.push(inflight1)"]),
            ("definitions", v2, ["crm.batch(inflight1)"]),
        ]
        assert [(s.action, s.status) for s in info.steps] == [
            ("activate", "complete"),
            ("crm.push", "superseded"),
            ("crm.batch", "complete"),
        ]

    asyncio.run(with_worker(db_url, gate.registry(), body))
    assert gate.calls == ["activate#1"]
    with State.connect(db_url) as state:
        assert state.value("users.inflight1.crm") == "synced"


def test_a_held_goal_whose_next_action_is_removed_re_plans(db_url: str, tmp_path: Path) -> None:
    push = 'action crm.push(u: User) {\n require users.{u}.status == "active"\n effect users.{u}.crm = "synced"\n}\n'
    load_version(db_url, version(tmp_path / "v1", ACTIVATE + push))
    gate = Gate()
    new_user(db_url, "u1")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        sync = push.replace("crm.push", "crm.sync").replace("}\n", " pure\n}\n")
        await hold_first_step_across(db_url, worker, gate, version(tmp_path / "v2", ACTIVATE + sync))
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert [(s.action, s.status) for s in info.steps] == [
            ("activate", "complete"),
            ("crm.push", "superseded"),
            ("crm.sync", "complete"),
        ]

    # crm.push has a handler that refuses: the old step must not run at all.
    asyncio.run(with_worker(db_url, gate.registry(), body))
    assert gate.calls == ["activate#1"]


def test_a_step_that_fails_for_good_while_a_version_loads_is_planned_around_with_the_new_one(
    db_url: str, tmp_path: Path
) -> None:
    push = 'action crm.push(u: User) {\n require users.{u}.status == "active"\n effect users.{u}.crm = "synced"\n}\n'
    sync = push.replace("crm.push", "crm.sync").replace("}\n", " pure\n}\n")
    load_version(db_url, version(tmp_path / "v1", ACTIVATE + sync))
    gate = Gate(PermanentError("the directory refuses"))
    new_user(db_url, "u1")
    # Version 2 has another way to activate a user, run by its declared effect.
    manual = ACTIVATE.replace("activate(", "activate.manual(").replace("  retry", "  cost 3\n  pure\n  retry")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        newer = version(tmp_path / "v2", ACTIVATE + manual + sync)
        v2 = await hold_first_step_across(db_url, worker, gate, newer)
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert [(reason, v, ops) for reason, v, ops in planned(info)][-1] == (
            "step_failed",
            v2,
            ["activate.manual(u1)", "crm.sync(u1)"],
        )

    asyncio.run(with_worker(db_url, gate.registry(), body))


PURE_PUSH = """
action crm.push(u: User) {
  require users.{u}.status == "active"
  effect users.{u}.crm = "EFFECT"
  pure
}
"""
CONFIRM = """
action crm.confirm(u: User) {
  require users.{u}.crm == "queued"
  effect users.{u}.crm = "synced"
  pure
}
"""


def test_a_held_goal_re_plans_when_an_action_changes_its_effects(db_url: str, tmp_path: Path) -> None:
    """Version 2 makes crm.push only queue: the old plan would end with the goal's condition false."""
    load_version(db_url, version(tmp_path / "v1", ACTIVATE + PURE_PUSH.replace("EFFECT", "synced")))
    gate = Gate()
    new_user(db_url, "u1")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        newer = version(tmp_path / "v2", ACTIVATE + PURE_PUSH.replace("EFFECT", "queued") + CONFIRM)
        await hold_first_step_across(db_url, worker, gate, newer)
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert [s.action for s in info.steps if s.status == "complete"] == ["activate", "crm.push", "crm.confirm"]

    asyncio.run(with_worker(db_url, gate.registry(), body))
    with State.connect(db_url) as state:
        # The in-flight step finished under the version it started with (its effect: status "active").
        assert state.value("users.u1.status") == "active"
        assert state.value("users.u1.crm") == "synced"


def test_a_goal_claimed_again_re_plans_a_plan_of_an_older_version(db_url: str, tmp_path: Path) -> None:
    """The step is retried later (a new claim): the claim tells the worker which version the plan was made with."""
    v1 = load_version(db_url, version(tmp_path / "v1", ACTIVATE + PURE_PUSH.replace("EFFECT", "synced")))
    gate = Gate(RuntimeError("activation service busy"))
    new_user(db_url, "u1")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        newer = version(tmp_path / "v2", ACTIVATE + PURE_PUSH.replace("EFFECT", "queued") + CONFIRM)
        v2 = await hold_first_step_across(db_url, worker, gate, newer)
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert [(reason, v) for reason, v, _ in planned(info)] == [("initial", v1), ("definitions", v2)]
        assert [(s.action, s.status) for s in info.steps] == [
            ("activate", "superseded"),
            ("crm.push", "superseded"),
            ("activate", "complete"),
            ("crm.push", "complete"),
            ("crm.confirm", "complete"),
        ]

    asyncio.run(with_worker(db_url, gate.registry(), body))
    assert gate.calls == ["activate#1", "activate#1"]
    with State.connect(db_url) as state:
        assert state.value("users.u1.crm") == "synced"


def test_a_held_goal_whose_type_the_new_version_drops_is_released_until_one_declares_it(
    db_url: str, tmp_path: Path
) -> None:
    actions = ACTIVATE + PURE_PUSH.replace("EFFECT", "synced")
    v1 = version(tmp_path / "v1", actions)
    load_version(db_url, v1)
    gate = Gate()
    new_user(db_url, "u1")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        renamed = version(tmp_path / "v2", actions)
        (renamed / "apps" / "crm" / "goals.gdl").write_text('goal welcome(u: User) { achieve users.{u}.crm == "x" }\n')
        await hold_first_step_across(db_url, worker, gate, renamed)

        async def released() -> bool:
            info = await goals.get(gid)
            return any(e.type == "goal.released" for e in info.events)

        await wait_for(released)
        info = await goals.get(gid)
        assert info.status == "active" and info.lease_owner is None
        assert [(s.action, s.status) for s in info.steps] == [("activate", "complete"), ("crm.push", "pending")]
        # A version that declares the goal type again: the worker takes the goal back and re-plans it.
        v3 = load_version(db_url, version(tmp_path / "v3", actions))
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert [(reason, v) for reason, v, _ in planned(info)][-1] == ("definitions", v3)

    asyncio.run(with_worker(db_url, gate.registry(), body))
    with State.connect(db_url) as state:
        assert state.value("users.u1.crm") == "synced"


def test_a_worker_that_missed_a_newer_version_catches_up_before_running_a_plan_made_with_it(
    db_url: str, tmp_path: Path
) -> None:
    """The plan was made by a worker that has version 2; this one has not heard of it (its notification lost)."""
    v1 = load_version(db_url, version(tmp_path / "v1", ACTIVATE + PURE_PUSH.replace("EFFECT", "synced")))
    new_user(db_url, "u1")
    registry = Registry()
    busy, free = asyncio.Event(), asyncio.Event()

    @registry.action("activate")
    async def activate(args: dict[str, Any], ctx: ActionContext) -> None:
        return None

    @registry.goal("hold")
    def hold(_params: Any) -> list[Step]:
        return [Step("hold.wait", {})]

    @registry.action("hold.wait")
    async def wait(args: dict[str, Any], ctx: ActionContext) -> None:
        busy.set()
        await free.wait()

    async def scenario() -> None:
        worker = Worker(db_url, registry, concurrency=1, **FAST)
        worker._on_gdl = lambda *_: None  # type: ignore[method-assign]  # deaf to `goalrt gdl load`
        task = asyncio.create_task(worker.run())
        await worker.wait_ready()
        try:
            async with await AsyncGoals.connect(db_url, registry=registry) as goals:
                await goals.submit("hold", {})
                async with asyncio.timeout(30):  # the worker is full: it claims nothing more
                    await busy.wait()
                newer = version(tmp_path / "v2", ACTIVATE + PURE_PUSH.replace("EFFECT", "queued") + CONFIRM)
                v2 = load_version(db_url, newer)
                gid = (await goals.submit("onboard", {"u": "u1"})).id
                plan_elsewhere(db_url, gid, v2)
                assert worker.gdl_version == v1
                free.set()
                (info,) = await until_finished(goals, gid)
                assert info.status == "complete", info.last_error
                assert worker.gdl_version == v2
                # Run as planned, under the version it was planned with: no re-plan back to version 1.
                assert [(reason, v) for reason, v, _ in planned(info)] == [("initial", v2)]
                assert [s.action for s in info.steps if s.status == "complete"] == [
                    "activate",
                    "crm.push",
                    "crm.confirm",
                ]
        finally:
            worker.request_stop()
            async with asyncio.timeout(30):
                await task

    asyncio.run(scenario())


def plan_elsewhere(db_url: str, goal_id: int, gdl_version: int) -> None:
    """Claim, plan (as a worker with ``gdl_version`` would) and release the goal, through the SQL API."""
    steps = [{"action": a, "args": {"u": "u1"}, "max_attempts": 3} for a in ("activate", "crm.push", "crm.confirm")]
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2('other', 1, 30)").fetchone()
        assert row is not None and row[0] == goal_id
        item = {"goal_id": goal_id, "epoch": row[1], "steps": steps, "reason": "initial"}
        item["detail"] = {"reason": "initial", "gdl_version": gdl_version}
        planned = conn.execute("SELECT outcome FROM goalrt.plan_goals_v1('other', %s::jsonb, 30)", (dumps([item]),))
        assert planned.fetchone() == ("planned",)
        conn.execute("SELECT goalrt.release_goals_v1('other', %s, %s)", ([goal_id], [row[1]]))


def test_a_goal_claimed_again_keeps_a_plan_of_the_workers_own_version(db_url: str, tmp_path: Path) -> None:
    """A retry (a new claim) of a plan made with the version the worker has runs on: nothing to re-plan."""
    v1 = load_version(db_url, version(tmp_path / "v1", ACTIVATE + PURE_PUSH.replace("EFFECT", "synced")))
    gate = Gate(RuntimeError("activation service busy"))
    gate.open.set()
    new_user(db_url, "u1")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert [(reason, v) for reason, v, _ in planned(info)] == [("initial", v1)]
        assert [(s.action, s.status, s.attempts) for s in info.steps] == [
            ("activate", "complete", 2),
            ("crm.push", "complete", 1),
        ]

    asyncio.run(with_worker(db_url, gate.registry(), body))
    assert gate.calls == ["activate#1", "activate#2"]
