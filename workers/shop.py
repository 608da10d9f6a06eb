"""Handlers of the demo shop (gdl/examples/shop), including the refund that a person approves.

The GDL workspace declares the actions (parameters, requires, effects, cost,
retry, limits, emitted events) and the goals, the refund's steps among them
(apps/payments/goals.gdl: an ask, then payment.refund); this module registers
only the actions' code, by name. ``label.print`` has no handler here: GDL
marks it ``pure``, its declared effect is the whole action. A worker without
this module runs none of the other actions: their steps wait for a worker
that has it.

Check and draw the workspace (no database needed):

    goalrt gdl check gdl/examples/shop
    goalrt gdl graph gdl/examples/shop > shop.mmd

Run it (from the repository root): load the workspace, start a worker, and
submit. The policy wants an amount on every order, so set it before the status:

    goalrt gdl load gdl/examples/shop
    goalrt state set orders.o1.amount 120; goalrt state set orders.o1.status '"shipped"'
    goalrt worker --handlers workers.shop &
    goalrt submit refund o=o1
    goalrt resume 1 --data '{"approved": true, "by": "ann"}'    # or false: nothing is refunded
    goalrt get 1

The GDL goals run on the same worker:

    goalrt state set orders.o2.amount 80; goalrt state set orders.o2.status '"created"'
    goalrt submit checkout o=o2               # card, pack, label, ship: paid_by "card"
    goalrt state set orders.o3.amount 50; goalrt state set orders.o3.status '"created"'
    goalrt state set cards.o3 '"declined"'
    goalrt submit checkout o=o3               # the card fails for good; re-planned: paid_by "invoice"
    goalrt state set orders.o4.amount 40; goalrt state set orders.o4.status '"created"'
    goalrt events append --stream orders --type order.created --data '{"order_id": "o4", "amount": 40}'
                                              # starts fulfill(o=o4), which ships o4

Handlers are deterministic: their results depend on their arguments, the
state and the idempotency key only (the short sleeps stand in for real work).
"""

from __future__ import annotations

import asyncio
from typing import Any

import goalrt

# Statuses of an order that has been paid (see shared/types.gdl).
PAID = ("paid", "packed", "shipped")


# -- payments ----------------------------------------------------------------------


@goalrt.action("payment.card")
async def card(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    order = args["o"]
    await asyncio.sleep(0.05)  # the payment provider
    if await ctx.state.value(f"cards.{order}") == "declined":
        # Permanent: no retry; the goal re-plans without the card, so it pays by invoice.
        raise goalrt.PermanentError("card declined")
    amount = await ctx.state.value(f"orders.{order}.amount")
    # The declared effects (status "paid", paid_by "card") are applied with this completion.
    return goalrt.Result(
        {"reference": f"card-{ctx.idempotency_key}"},  # a retried step reuses the key: charged once
        events=[{"type": "payment.completed", "data": {"order_id": order, "amount": amount, "method": "card"}}],
    )


@goalrt.action("payment.invoice")
async def invoice(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    order = args["o"]
    amount = await ctx.state.value(f"orders.{order}.amount")
    return goalrt.Result(
        {"invoice": f"inv-{order}"},
        events=[{"type": "payment.completed", "data": {"order_id": order, "amount": amount, "method": "invoice"}}],
    )


# -- fulfillment --------------------------------------------------------------------


@goalrt.action("warehouse.pack")
async def pack(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    await asyncio.sleep(0.05)  # someone at a packing station
    return {"parcel": f"parcel-{args['o']}"}


@goalrt.action("carrier.ship")
async def ship(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    order = args["o"]
    tracking = f"trk-{order}"
    return goalrt.Result(
        {"tracking": tracking},
        events=[{"type": "shipment.dispatched", "data": {"order_id": order, "tracking": tracking}}],
    )


# -- a refund, approved by a person ---------------------------------------------------


# The second step of the GDL goal refund, after its ask (labelled approval).
@goalrt.action("payment.refund")
async def refund_payment(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    order = args["o"]
    answer = (await ctx.results())["approval"]  # what the ask step returned
    if not answer["approved"]:
        return goalrt.Result(
            {"refunded": None, "rejected_by": answer.get("by")},
            changes=[goalrt.Change.set(f"orders.{order}.refund", "rejected")],
        )
    status = await ctx.state.value(f"orders.{order}.status")
    if status not in PAID:
        raise goalrt.PermanentError(f"order {order} is {status!r}: nothing was paid, nothing to refund")
    amount = await ctx.state.value(f"orders.{order}.amount")
    await asyncio.sleep(0.05)  # the payment provider
    return goalrt.Result(
        {"refunded": amount, "reference": f"refund-{ctx.idempotency_key}"},
        # The declared effect (refund "done") is applied with this completion.
        events=[{"type": "payment.refunded", "data": {"order_id": order, "amount": amount}}],
    )
