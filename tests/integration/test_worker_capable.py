"""Workers run only the steps they can: a handler they have, or an action the workspace marks ``pure``.

- An action with no handler is a pure state transition only when GDL says
  ``pure``; otherwise a worker without its handler never runs it (never
  claims its step, hands the goal over when a plan or the step before
  leads to it).
- A mixed fleet routes each step to a worker that has its handler.
- A step no live worker can run leaves its goal active and shows it
  (``unserved_action``), until a capable worker starts and runs it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from goalrt import ActionContext, AsyncGoals, GoalInfo, PermanentError, Registry, State, Worker
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.state.state import Change
from tests.integration.test_worker import FAST, until_finished, wait_for, with_worker
from tests.integration.test_worker_attempts import claim, one, rows

ONBOARDING = """
type User under users { status: string  domain: string }

action kyc.check(u: User) {
  require users.{u}.status == "new"
  effect  users.{u}.status = "checked"
}
action mail.welcome(u: User) {
  require users.{u}.status == "checked"
  effect  users.{u}.status = "welcomed"
}
goal onboard(u: User) { achieve users.{u}.status == "welcomed" }
"""

BLOCKLIST = {"spam.example"}


def workspace(root: Path, text: str = ONBOARDING) -> Path:
    (root / "apps" / "crm").mkdir(parents=True, exist_ok=True)
    (root / "goalrt.toml").write_text('name = "crm"\nversion = "1"\n')
    (root / "apps" / "crm" / "onboarding.gdl").write_text(text)
    return root


def load_workspace(db_url: str, root: Path) -> int:
    with connect(db_url) as conn:
        return load(conn, check(root)).version


def kyc_handlers() -> Registry:
    """A worker of the KYC team: it checks sign-ups, refusing blocklisted domains for good."""
    registry = Registry()

    @registry.action("kyc.check")
    async def kyc(args: dict[str, Any], ctx: ActionContext) -> Any:
        domain = await ctx.state.value(f"users.{args['u']}.domain")
        if domain in BLOCKLIST:
            raise PermanentError(f"{domain} is blocklisted")
        return {"checked_by": ctx.worker}

    return registry


def mail_handlers() -> Registry:
    registry = Registry()

    @registry.action("mail.welcome")
    async def welcome(args: dict[str, Any], ctx: ActionContext) -> Any:
        return {"mailed_by": ctx.worker}

    return registry


def sign_up(db_url: str, user: str, domain: str) -> None:
    with State.connect(db_url) as state:
        state.change([Change.set(f"users.{user}.domain", domain), Change.set(f"users.{user}.status", "new")])


def ran_by(info: GoalInfo) -> dict[str, str]:
    """Return the worker that completed each action (by action name) of a goal."""
    # (goal.completed records the last step's completion.)
    completions = (
        e for e in info.events if e.type == "step.completed" or (e.type == "goal.completed" and "seq" in e.data)
    )
    return {e.data["action"]: e.data["worker"] for e in completions}


async def unserved_or_finished(goals: AsyncGoals, gid: int) -> GoalInfo:
    async def settled() -> bool:
        info = await goals.get(gid)
        return info.status in ("complete", "failed") or info.unserved_action is not None

    await wait_for(settled, 30)
    return await goals.get(gid)


def test_a_step_without_a_handler_waits_visibly_and_never_runs_as_a_transition(db_url: str, tmp_path: Path) -> None:
    """The onboarding of issue 16: a blocklisted sign-up must never come out KYC-passed."""
    load_workspace(db_url, workspace(tmp_path))
    sign_up(db_url, "u1", "spam.example")
    sign_up(db_url, "u2", "good.example")

    async def body(goals: AsyncGoals, mailer: Worker) -> None:
        bad = (await goals.submit("onboard", {"u": "u1"})).id
        good = (await goals.submit("onboard", {"u": "u2"})).id
        for gid in (bad, good):
            info = await unserved_or_finished(goals, gid)
            # Planned (any worker may plan), but kyc.check is nobody's here: not run, not failed, visibly waiting.
            assert info.status == "active", (info.status, info.last_error, [s.result for s in info.steps])
            assert info.unserved_action == "kyc.check"
            assert info.lease_owner is None
            assert [(s.action, s.status, s.attempts) for s in info.steps] == [
                ("kyc.check", "pending", 0),
                ("mail.welcome", "pending", 0),
            ]
        listed = {g.id: g for g in await goals.list()}
        assert listed[bad].unserved_action == listed[good].unserved_action == "kyc.check"
        with State.connect(db_url) as state:
            assert state.value("users.u1.status") == state.value("users.u2.status") == "new"

        # A capable worker starts: the steps go where their handlers are.
        kyc = Worker(db_url, kyc_handlers(), name="kyc", **FAST)
        task = asyncio.create_task(kyc.run())
        try:
            first, second = await until_finished(goals, bad, good)
        finally:
            kyc.request_stop()
            async with asyncio.timeout(30):
                await task
        assert first.status == "failed" and "spam.example is blocklisted" in (first.last_error or "")
        assert second.status == "complete", second.last_error
        assert ran_by(second) == {"kyc.check": kyc.id, "mail.welcome": mailer.id}
        assert first.unserved_action is None and second.unserved_action is None

    asyncio.run(with_worker(db_url, mail_handlers(), body, name="mail"))
    with State.connect(db_url) as state:
        assert state.value("users.u1.status") == "new"
        assert state.value("users.u2.status") == "welcomed"


def test_a_mixed_fleet_routes_each_step_to_a_worker_with_its_handler(
    db_url: str, tmp_path: Path, conn: psycopg.Connection
) -> None:
    load_workspace(db_url, workspace(tmp_path))
    users = {f"u{i}": ("spam.example" if i % 4 == 0 else "good.example") for i in range(12)}
    for user, domain in users.items():
        sign_up(db_url, user, domain)

    async def body(goals: AsyncGoals, mailer: Worker) -> None:
        kyc = Worker(db_url, kyc_handlers(), name="kyc", **FAST)
        task = asyncio.create_task(kyc.run())
        await kyc.wait_ready()
        try:
            ids = {user: (await goals.submit("onboard", {"u": user})).id for user in users}
            infos = dict(zip(ids, await until_finished(goals, *ids.values()), strict=True))
        finally:
            kyc.request_stop()
            async with asyncio.timeout(30):
                await task
        for user, info in infos.items():
            if users[user] in BLOCKLIST:
                assert info.status == "failed" and "is blocklisted" in (info.last_error or ""), info
                assert "mail.welcome" not in ran_by(info)
            else:
                assert info.status == "complete", info.last_error
                assert ran_by(info) == {"kyc.check": kyc.id, "mail.welcome": mailer.id}

    asyncio.run(with_worker(db_url, mail_handlers(), body, name="mail"))
    refused = conn.execute("SELECT count(*) FROM goalrt.event_data WHERE type = 'step.result_refused'").fetchone()
    assert refused == (0,)
    # Each step ran once: no attempt was counted for a step handed over.
    attempts = conn.execute("SELECT DISTINCT attempts FROM goalrt.goal_steps WHERE status = 'complete'").fetchall()
    assert attempts == [(1,)]


def test_a_pure_action_runs_as_a_state_transition(db_url: str, tmp_path: Path) -> None:
    text = ONBOARDING.replace('effect  users.{u}.status = "welcomed"', 'effect  users.{u}.status = "welcomed"\n  pure')
    load_workspace(db_url, workspace(tmp_path, text))
    sign_up(db_url, "u1", "good.example")

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        assert worker.runnable == ["goalrt.recheck", "kyc.check", "mail.welcome"]
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.last_error
        assert [(s.action, s.result) for s in info.steps] == [
            ("kyc.check", {"checked_by": worker.id}),
            ("mail.welcome", None),
        ]

    asyncio.run(with_worker(db_url, kyc_handlers(), body))
    with State.connect(db_url) as state:
        assert state.value("users.u1.status") == "welcomed"


def test_a_new_action_loaded_while_workers_run_waits_for_a_worker_with_its_handler(db_url: str, tmp_path: Path) -> None:
    """Deploying crm.sync before restarting the workers: it must not 'run' with a null result."""
    load_workspace(db_url, workspace(tmp_path / "v1"))
    newer_text = ONBOARDING.replace(
        'goal onboard(u: User) { achieve users.{u}.status == "welcomed" }',
        'action crm.sync(u: User) {\n  require users.{u}.status == "welcomed"\n  effect  users.{u}.synced = true\n}\n'
        'goal onboard(u: User) { achieve users.{u}.status == "welcomed" and users.{u}.synced == true }',
    )
    sign_up(db_url, "u1", "good.example")
    registry = kyc_handlers()
    registry.actions.update(mail_handlers().actions)

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        newer = load_workspace(db_url, workspace(tmp_path / "v2", newer_text))
        await wait_for(_loaded(db_url, worker, newer), 10)
        assert "crm.sync" not in worker.runnable
        gid = (await goals.submit("onboard", {"u": "u1"})).id
        info = await unserved_or_finished(goals, gid)
        assert (info.status, info.unserved_action) == ("active", "crm.sync")
        assert [(s.action, s.status) for s in info.steps][-1] == ("crm.sync", "pending")

        crm = Registry()

        @crm.action("crm.sync")
        async def sync(args: dict[str, Any], ctx: ActionContext) -> Any:
            return {"synced": args["u"]}

        other = Worker(db_url, crm, name="crm", **FAST)
        task = asyncio.create_task(other.run())
        try:
            (info,) = await until_finished(goals, gid)
        finally:
            other.request_stop()
            async with asyncio.timeout(30):
                await task
        assert info.status == "complete", info.last_error
        assert info.steps[-1].result == {"synced": "u1"}

    asyncio.run(with_worker(db_url, registry, body))


def _loaded(db_url: str, worker: Worker, version: int) -> Any:
    async def check() -> bool:
        if worker.gdl_version == version:
            return True
        # The load's NOTIFY may have come before the worker's LISTEN connection did: say it again.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('goalrt_gdl', '')")
        return False

    return check


# -- the SQL functions, driven by hand as workers would ---------------------------------------


def register(conn: psycopg.Connection, worker: str, actions: list[str]) -> None:
    conn.execute(
        "SELECT goalrt.register_worker_v2(%s, %s, 'h', 1, 10, '{g}', %s, NULL, NULL)", (worker, worker, actions)
    )


def test_a_claim_takes_only_steps_the_worker_registered_and_a_plan_hands_over_the_rest(
    conn: psycopg.Connection,
) -> None:
    conn.execute("SELECT goalrt.register_goal_type('g')")
    register(conn, "planner", [])  # no handlers at all: it may plan, never run
    register(conn, "a-worker", ["a"])
    register(conn, "b-worker", ["b"])
    gid = one(conn, "SELECT id FROM goalrt.submit_goal('g', '{}', '{}')")["id"]

    # A goal needing a plan is anyone's.
    claimed = claim(conn, "planner")[gid]
    assert claimed["step_seq"] is None
    item = {"goal_id": gid, "epoch": claimed["epoch"], "steps": [{"action": "b"}, {"action": "a"}]}
    (answer,) = rows(conn.execute("SELECT * FROM goalrt.plan_goals_v1('planner', %s, 30)", (Jsonb([item]),)))
    # The planner cannot run b: the goal is handed over, no attempt counted.
    assert answer["outcome"] == "released"
    goal = one(conn, "SELECT status, step_seq, lease_owner, goalrt.unserved_action(g) AS unserved FROM goalrt.goals g")
    assert goal == {"status": "active", "step_seq": 1, "lease_owner": None, "unserved": None}  # b-worker is live
    step = one(conn, "SELECT status, attempts FROM goalrt.goal_steps WHERE goal_id = %s AND seq = 1", gid)
    assert step == {"status": "pending", "attempts": 0}

    assert claim(conn, "planner") == {} and claim(conn, "a-worker") == {}
    taken = claim(conn, "b-worker")[gid]
    assert (taken["action"], taken["attempt"]) == ("b", 1)

    # b done, a next: b-worker hands over at the completion, a-worker takes it.
    done = {"goal_id": gid, "epoch": taken["epoch"], "seq": 1, "outcome": "complete", "continue": True}
    (answer,) = rows(conn.execute("SELECT * FROM goalrt.complete_steps_v1('b-worker', %s, 30)", (Jsonb([done]),)))
    assert answer["outcome"] == "released" and answer["step_seq"] == 2
    assert claim(conn, "b-worker") == {}
    assert claim(conn, "a-worker")[gid]["action"] == "a"


def test_unserved_action_counts_live_workers_only(conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.register_goal_type('g')")
    gid = one(conn, "SELECT id FROM goalrt.submit_goal('g', '{}', '{}')")["id"]
    epoch = claim(conn, "sql-caller")[gid]["epoch"]  # a caller that never registered claims as before
    item = {"goal_id": gid, "epoch": epoch, "steps": [{"action": "crm.sync"}]}
    conn.execute("SELECT * FROM goalrt.plan_goals_v1('sql-caller', %s, 30)", (Jsonb([item]),))
    conn.execute("SELECT * FROM goalrt.release_goals_v1('sql-caller', %s, %s)", ([gid], [epoch]))

    def unserved() -> Any:
        return one(conn, "SELECT goalrt.unserved_action(g) AS a FROM goalrt.goals g WHERE id = %s", gid)["a"]

    assert unserved() == "crm.sync"
    register(conn, "crm", ["crm.sync"])
    assert unserved() is None
    conn.execute("UPDATE goalrt.workers SET last_seen = now() - interval '2 minutes' WHERE id = 'crm'")
    assert unserved() == "crm.sync"
