"""What the fleet's handlers share: each call is recorded in the side table ``chaos_calls``, like an external system.

The handlers themselves are split by team, as in a real fleet: KYC in
``fleet_kyc``, mail in ``fleet_mail`` (see test_mixed_fleet.py). Each
handler also counts its step in the state (``fleet.g<goal>.s<step>``), so a
test sees any step applied twice.
"""

from __future__ import annotations

import time

import psycopg

import goalrt
from tests.acceptance.side_db import connection, forget


def record_call(ctx: goalrt.ActionContext) -> None:
    for attempt in range(50):  # the database may be busy with a killed worker's connections: keep the record
        try:
            connection().execute(
                "INSERT INTO chaos_calls (goal_id, seq, key, attempt, worker, phase) VALUES (%s, %s, %s, %s, %s, %s)",
                (ctx.goal_id, ctx.step, ctx.idempotency_key, ctx.attempt, ctx.worker, ctx.action),
            )
            return
        except psycopg.OperationalError:
            forget()
            time.sleep(0.1 * min(attempt + 1, 10))
    raise RuntimeError("side table unreachable")


def counted(ctx: goalrt.ActionContext, value: object) -> goalrt.Result:
    """Return ``value`` with the step counted once in the state."""
    return goalrt.Result(
        value, changes=[goalrt.Change.inc(f"fleet.g{ctx.goal_id}.s{ctx.step}"), goalrt.Change.inc("fleet.total")]
    )
