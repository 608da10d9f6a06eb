"""A failed handler's traceback is kept with its step's failure, in the step.failed event (issue 19, item 4)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
from click.testing import CliRunner

from goalrt import ActionContext, AsyncGoals, Goals, PermanentError, Registry, Retry, Step, Worker
from goalrt.cli.main import cli
from goalrt.worker.dispatcher import TRACEBACK_CHARS

FAST = {"poll": 0.05, "lease": 5.0}


def inner_check(amount: int) -> None:
    if amount < 0:
        raise ValueError(f"negative amount {amount}")


def recurse(n: int) -> None:
    if n == 0:
        raise RuntimeError("x" * 20_000 + " bottom of a deep stack")
    recurse(n - 1)


def registry() -> Registry:
    reg = Registry()

    @reg.goal("job")
    def job(p: dict[str, Any]) -> list[Step]:
        return [Step(p["action"], dict(p))]

    @reg.action("check", retry=Retry(max_attempts=2, backoff=0.01))
    async def check(args: dict[str, Any], ctx: ActionContext) -> None:
        inner_check(int(args["amount"]))

    @reg.action("refuse")
    def refuse(args: dict[str, Any], ctx: ActionContext) -> None:
        raise PermanentError("refused for good")

    @reg.action("deep")
    def deep(args: dict[str, Any], ctx: ActionContext) -> None:
        recurse(300)

    return reg


async def run(url: str, reg: Registry, *params: dict[str, Any]) -> list[int]:
    worker = Worker(url, reg, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(url, registry=reg) as goals:
            ids = [(await goals.submit("job", p)).id for p in params]
            async with asyncio.timeout(60):
                for goal_id in ids:
                    await goals.wait(goal_id, poll=0.1)
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task
    return ids


def failures(url: str, goal_id: int) -> list[dict[str, Any]]:
    with Goals.connect(url) as goals:
        return [e.data for e in goals.get(goal_id).events if e.type == "step.failed"]


def test_each_failed_attempt_keeps_its_handlers_traceback(db_url: str) -> None:
    reg = registry()
    check, refuse, deep = asyncio.run(
        run(db_url, reg, {"action": "check", "amount": -5}, {"action": "refuse"}, {"action": "deep"})
    )
    retried, failed = failures(db_url, check)
    assert (retried["final"], failed["final"]) == (False, True)
    for data in (retried, failed):
        assert "ValueError: negative amount -5" in data["traceback"]
        assert 'in inner_check\n    raise ValueError(f"negative amount {amount}")' in data["traceback"]
    (permanent,) = failures(db_url, refuse)
    assert "PermanentError: refused for good" in permanent["traceback"] and "in refuse" in permanent["traceback"]
    bottom = failures(db_url, deep)[-1]
    # The end is kept: what it raised, not the top of the stack.
    assert len(bottom["traceback"]) <= TRACEBACK_CHARS and bottom["traceback"].startswith("...\n")
    assert bottom["traceback"].rstrip().endswith(" bottom of a deep stack")
    shown = CliRunner().invoke(cli, ["--database-url", db_url, "get", str(check)])
    assert shown.exit_code == 0, shown.output
    assert "traceback of step 1 (attempt 2):" in shown.output and "  ValueError: negative amount -5" in shown.output


def test_a_rogue_traceback_is_capped_or_ignored_by_the_database(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.register_goal_type('job', '{}')")
    gid = conn.execute("SELECT id FROM goalrt.submit_goal('job', '{}')").fetchone()[0]  # type: ignore[index]
    epoch = conn.execute("SELECT epoch FROM goalrt.claim_goals_v2('w', 1, 30)").fetchone()[0]  # type: ignore[index]
    plan = [{"goal_id": gid, "epoch": epoch, "steps": [{"action": "a"}, {"action": "a"}]}]
    conn.execute("SELECT * FROM goalrt.plan_goals_v1('w', %s::jsonb, 30)", (json.dumps(plan),))
    huge = "x" * 100_000 + "THE END"
    item = {
        "goal_id": gid,
        "epoch": epoch,
        "seq": 1,
        "outcome": "retry",
        "error": "e",
        "retry_in": 0,
        "traceback": huge,
    }
    conn.execute("SELECT * FROM goalrt.complete_steps_v1('w', %s::jsonb, 30)", (json.dumps([item]),))
    epoch = conn.execute("SELECT epoch FROM goalrt.claim_goals_v2('w', 1, 30)").fetchone()[0]  # type: ignore[index]
    item = {"goal_id": gid, "epoch": epoch, "seq": 1, "outcome": "fail", "error": "e", "traceback": {"not": "text"}}
    conn.execute("SELECT * FROM goalrt.complete_steps_v1('w', %s::jsonb, 30)", (json.dumps([item]),))
    rows = conn.execute(
        "SELECT data FROM goalrt.event_data WHERE type = 'step.failed' AND stream = %s ORDER BY id", (f"goal:{gid}",)
    ).fetchall()
    capped, ignored = rows[0][0], rows[1][0]
    assert len(capped["traceback"]) == 16000 and capped["traceback"].endswith("THE END")
    assert "traceback" not in ignored
