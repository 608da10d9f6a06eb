"""An example of a goal declared by a condition: deliver an order; the planner finds the steps.

Run it (from the repository root):

    goalrt state set orders.o1.status '"created"'; goalrt state set truck.at '"dock"'
    goalrt plan deliver order=o1 --handlers workers.fulfillment --explain   # a dry run
    goalrt worker --handlers workers.fulfillment &
    goalrt submit deliver order=o1 --handlers workers.fulfillment
    goalrt get 1                                                            # with its plans

Paying by card is cheaper than by invoice, so the plan pays by card; a
declined card (``goalrt state set cards.o1 '"declined"'``) fails for good and
the worker re-plans with the invoice. If the truck leaves the dock while the
payment runs, the worker sees that ``ship`` can no longer run and re-plans
to call it back first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

import goalrt
from goalrt.planner import ObjectType, Set


class Deliver(BaseModel):
    order: str = Field(min_length=1)


goalrt.achieve(
    "deliver",
    "orders.{order}.status == 'shipped'",
    params=Deliver,
    types=[ObjectType("Order", keys_under="orders")],
    param_types={"order": "Order"},
    max_replans=3,
)


@goalrt.action(
    "pay.card",
    params={"o": "Order"},
    pre="orders.{o}.status == 'created'",
    effects=[Set("orders.{o}.status", "paid")],
    cost=1,
)
async def pay_card(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    if await ctx.state.value(f"cards.{args['o']}") == "declined":
        raise goalrt.PermanentError("card declined")
    return {"paid_by": "card", "reference": ctx.idempotency_key}


@goalrt.action(
    "pay.invoice",
    params={"o": "Order"},
    pre="orders.{o}.status == 'created'",
    effects=[Set("orders.{o}.status", "paid")],
    cost=3,
)
async def pay_invoice(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    return {"paid_by": "invoice"}


@goalrt.action("truck.call", pre="truck.at == 'garage'", effects=[Set("truck.at", "dock")], cost=2)
async def truck_call(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    return None


@goalrt.action(
    "ship",
    params={"o": "Order"},
    pre="orders.{o}.status == 'paid' and truck.at == 'dock'",
    effects=[Set("orders.{o}.status", "shipped")],
)
def ship(args: dict[str, Any], ctx: goalrt.ActionContext) -> str:
    return f"shipped {args['o']}"
