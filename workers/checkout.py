"""An example: a checkout goal in three steps, with handlers that change state.

Run it (from the repository root):

    goalrt migrate
    goalrt worker --handlers workers.checkout &
    goalrt submit checkout order=o1 amount=20 --handlers workers.checkout
    goalrt get 1

``payment.charge`` shows the idempotency key an external payment API would
use to drop a duplicate charge; ``order.ship`` reads the state the previous
step wrote; ``order.notify`` is a sync handler (it runs in a thread).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

import goalrt


class Checkout(BaseModel):
    order: str = Field(min_length=1)
    amount: float = Field(gt=0)
    email: str | None = None


@goalrt.goal("checkout", params=Checkout)
def checkout(p: Checkout) -> list[goalrt.Step]:
    return [
        goalrt.Step("payment.charge", {"order": p.order, "amount": p.amount}),
        goalrt.Step("order.ship", {"order": p.order}),
        goalrt.Step("order.notify", {"order": p.order, "email": p.email}),
    ]


@goalrt.action("payment.charge", timeout=10, retry=goalrt.Retry(max_attempts=5, backoff=0.5))
async def charge(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    # A real handler calls the payment API here, passing ctx.idempotency_key
    # so that a retried step never charges twice.
    order = args["order"]
    return goalrt.Result(
        {"charged": args["amount"], "payment_ref": f"pay-{ctx.idempotency_key}"},
        changes=[
            goalrt.Change.set(f"orders.{order}.status", "paid"),
            goalrt.Change.inc("payments.total", args["amount"]),
        ],
        events=[{"type": "payment.completed", "data": {"order": order, "amount": args["amount"]}}],
    )


@goalrt.action("order.ship", timeout=10)
async def ship(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    order = args["order"]
    status = await ctx.state.value(f"orders.{order}.status")
    if status != "paid":
        raise goalrt.PermanentError(f"order {order} is {status!r}, not paid")
    return goalrt.Result({"tracking": f"trk-{order}"}, changes=[goalrt.Change.set(f"orders.{order}.status", "shipped")])


@goalrt.action("order.notify")
def notify(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    ctx.log.info("order %s shipped; telling %s", args["order"], args.get("email") or "nobody")
    return {"notified": args.get("email") is not None}
