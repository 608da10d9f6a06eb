"""An example of waiting: an expense that a person approves, then a payment confirmed by a webhook.

Run it (from the repository root):

    goalrt worker --handlers workers.approvals &
    goalrt submit expense id=e1 amount=120 --handlers workers.approvals
    goalrt list --waiting                                  # e1 waits for an answer
    goalrt resume 1 --data '{"approved": true, "by": "ann"}'
    goalrt events append --stream payments --type payment.settled --data '{"expense": "e1"}'
    goalrt get 1

Nobody holds the goal while it waits (not a worker, not a lease), for as
long as it takes; the answer and the webhook can arrive through any client.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

import goalrt


class Expense(BaseModel):
    id: str = Field(min_length=1)
    amount: float = Field(gt=0)


class Approval(BaseModel):
    approved: bool
    by: str | None = None


@goalrt.goal("expense", params=Expense)
def expense(p: Expense) -> list[goalrt.Step]:
    rejected = goalrt.Step("expense.close", {"id": p.id, "outcome": "no answer"})
    return [
        goalrt.Step("expense.record", {"id": p.id, "amount": p.amount}),
        goalrt.ask(
            f"Approve expense {p.id} of {p.amount:g}?", Approval, timeout=86400, on_timeout=[rejected], label="approval"
        ),
        goalrt.Step("expense.pay", {"id": p.id, "amount": p.amount}),
        goalrt.wait_event("payment.settled", where={"expense": p.id}, timeout=3600, label="settled"),
        goalrt.Step("expense.close", {"id": p.id, "outcome": "paid"}),
    ]


@goalrt.action("expense.record")
async def record(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    return goalrt.Result(changes=[goalrt.Change.set(f"expenses.{args['id']}.status", "submitted")])


@goalrt.action("expense.pay")
async def pay(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    approval = (await ctx.results())["approval"]
    if not approval["approved"]:
        raise goalrt.PermanentError(f"expense {args['id']} was rejected by {approval.get('by') or 'someone'}")
    return goalrt.Result(
        {"paid": args["amount"]}, changes=[goalrt.Change.set(f"expenses.{args['id']}.status", "paying")]
    )


@goalrt.action("expense.close")
def close(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    return goalrt.Result(
        {"closed": args["outcome"]}, changes=[goalrt.Change.set(f"expenses.{args['id']}.status", args["outcome"])]
    )
