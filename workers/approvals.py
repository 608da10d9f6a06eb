"""Handlers of the approvals workspace (gdl/examples/approvals): an expense a person approves, then paid.

The goal ``expense`` is GDL (gdl/examples/approvals/apps/expenses/goals.gdl):
its steps record the expense, ask a person, pay, wait for the payment
provider's webhook and close it. This module registers the code of the two
actions that need some: ``expense.close`` and ``expense.expire`` are pure
(their effect and their event are the whole action).

Run it (from the repository root):

    goalrt gdl load gdl/examples/approvals                 # --replace if the database runs another workspace
    goalrt worker --handlers workers.approvals &
    goalrt submit expense id=e1 amount=120
    goalrt list --waiting                                  # e1 waits for an answer
    goalrt resume 1 --data '{"approved": true, "by": "ann"}'
    goalrt events append --stream payments --type payment.settled --data '{"expense": "e1"}'
    goalrt get 1

Nobody holds the goal while it waits (not a worker, not a lease), for as
long as it takes; the answer and the webhook can arrive through any client.
`goalrt test gdl/examples/approvals` runs the workspace's tests, answers,
webhooks and timers included.
"""

from __future__ import annotations

from typing import Any

import goalrt


@goalrt.action("expense.record")
async def record(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    # The declared effect sets the status; the amount comes from the goal's params (an action's arguments are objects).
    amount = ctx.params["amount"]
    return goalrt.Result({"recorded": amount}, changes=[goalrt.Change.set(f"expenses.{args['e']}.amount", amount)])


@goalrt.action("expense.pay")
async def pay(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    approval = (await ctx.results())["approval"]  # what the ask step returned
    if not approval["approved"]:
        raise goalrt.PermanentError(f"expense {args['e']} was rejected by {approval.get('by') or 'someone'}")
    amount = await ctx.state.value(f"expenses.{args['e']}.amount")
    return goalrt.Result({"paid": amount})  # the declared effect sets the status to "paying"
