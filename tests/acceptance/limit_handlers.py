"""Handlers for the limit process tests: each step records when it ran in a side table.

The side table ``limit_calls`` (created by the tests) is what an external
system behind a limited action would see: one row per execution, with the
process, the limit key and the database's clock_timestamp() when the
handler began and ended. Both times are inside the step's admission (the
claim or continue that took the slot or token) and its release (the
completion), so no more intervals overlap than the limit admitted.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel

import goalrt
from tests.acceptance.side_db import connection


def timed_call(ctx: goalrt.ActionContext, key: str, seconds: float) -> dict[str, Any]:
    """Record the start, sleep ``seconds``, record the end; return what the step did."""
    row = (
        connection()
        .execute(
            "INSERT INTO limit_calls (goal_id, seq, action, key, pid, worker) VALUES (%s, %s, %s, %s, %s, %s) "
            "RETURNING id",
            (ctx.goal_id, ctx.step, ctx.action, key, os.getpid(), ctx.worker),
        )
        .fetchone()
    )
    assert row is not None
    time.sleep(seconds)
    connection().execute("UPDATE limit_calls SET ended = clock_timestamp() WHERE id = %s", (row[0],))
    return {"pid": os.getpid(), "key": key}


class Timed(BaseModel):
    sleep: float = 0.15
    customer: str = ""


@goalrt.goal("limit.slow", params=Timed)
def slow_goal(p: Timed) -> list[goalrt.Step]:
    return [goalrt.Step("work.slow", {"sleep": p.sleep})]


@goalrt.goal("limit.tick", params=Timed)
def tick_goal(p: Timed) -> list[goalrt.Step]:
    return [goalrt.Step("work.tick", {"sleep": p.sleep})]


@goalrt.goal("limit.charge", params=Timed)
def charge_goal(p: Timed) -> list[goalrt.Step]:
    return [goalrt.Step("work.charge", {"customer": p.customer, "sleep": p.sleep})]


@goalrt.action("work.slow")
def work_slow(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    return timed_call(ctx, "", args["sleep"])


@goalrt.action("work.tick")
def work_tick(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    return timed_call(ctx, "", args["sleep"])


@goalrt.action("work.charge")
def work_charge(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    return timed_call(ctx, args["customer"], args["sleep"])
