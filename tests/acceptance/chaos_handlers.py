"""Handlers for the worker process tests: each call is recorded in a side table, like an external system.

The side table ``chaos_calls`` (created by the tests) plays the payment API:
it sees every execution, with the step's idempotency key, so a test can
count duplicates of the external side effect, while the state (through
goalrt) must show each step's effect exactly once.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from pydantic import BaseModel

import goalrt
from tests.acceptance.side_db import connection, forget


def record_call(ctx: goalrt.ActionContext, phase: str) -> None:
    for attempt in range(50):  # the database may be restarting: keep the record, like a real API would
        try:
            connection().execute(
                "INSERT INTO chaos_calls (goal_id, seq, key, attempt, worker, phase) VALUES (%s, %s, %s, %s, %s, %s)",
                (ctx.goal_id, ctx.step, ctx.idempotency_key, ctx.attempt, ctx.worker, phase),
            )
            return
        except psycopg.OperationalError:
            forget()
            time.sleep(0.1 * min(attempt + 1, 10))
    raise RuntimeError("side table unreachable")


class Chaos(BaseModel):
    steps: int = 3
    sleep: float = 0.05


@goalrt.goal("chaos", params=Chaos)
def chaos(p: Chaos) -> list[goalrt.Step]:
    return [goalrt.Step("chaos.work", {"sleep": p.sleep}) for _ in range(p.steps)]


@goalrt.action("chaos.work", retry=goalrt.Retry(max_attempts=20, backoff=0.05, max_backoff=0.5))
def work(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    record_call(ctx, "start")
    time.sleep(args["sleep"])
    return goalrt.Result(
        {"seq": ctx.step, "by": ctx.worker},
        changes=[goalrt.Change.inc(f"chaos.g{ctx.goal_id}.s{ctx.step}"), goalrt.Change.inc("chaos.total")],
    )
