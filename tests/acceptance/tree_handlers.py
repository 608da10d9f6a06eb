"""Handlers for the lock-order stress test: trees of goals whose steps are limited actions.

A ``tree.root`` starts ``fan`` ``tree.node`` children, which start their own
down to ``depth`` (a cancelled child does not fail its parent, so a tree
lives on through many cancels); every goal also runs steps of two actions
that the test limits cluster-wide (``tree.a`` for all calls, ``tree.b`` per
customer), in an order that makes one worker's completion free a slot of
one and take a slot of the other while another worker does the reverse.

Each handler's first line notes when it started (``time.monotonic()``, one
clock for all processes of the host) in a file of its process under
``$TREE_STARTS``; the test compares those times with when each
``cancel_goal`` returned.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel

import goalrt


def note_start(ctx: goalrt.ActionContext) -> None:
    """Append "goal seq monotonic-time" to this process's file of handler starts."""
    started = time.monotonic()
    path = os.path.join(os.environ["TREE_STARTS"], f"starts-{os.getpid()}.txt")
    with open(path, "a") as out:
        out.write(f"{ctx.goal_id} {ctx.step} {started!r}\n")


class Tree(BaseModel):
    fan: int = 2
    depth: int = 1
    customer: str = "c0"
    sleep: float = 0.01


def _children(p: Tree) -> goalrt.Step:
    kids = [
        goalrt.Child("tree.node", {"fan": p.fan, "depth": p.depth - 1, "customer": f"{p.customer}.{i}"})
        for i in range(p.fan)
    ]
    # A cancelled child does not fail its parent: the rest of the tree runs on.
    return goalrt.children(kids, on_failure="continue")


@goalrt.goal("tree.root", params=Tree)
def root(p: Tree) -> list[goalrt.Step]:
    args = {"customer": p.customer, "sleep": p.sleep}
    return [goalrt.Step("tree.a", args), _children(p), goalrt.Step("tree.b", args)]


@goalrt.goal("tree.node", params=Tree)
def node(p: Tree) -> list[goalrt.Step]:
    args = {"customer": p.customer[:4], "sleep": p.sleep}
    if p.depth > 0:
        return [goalrt.Step("tree.b", args), _children(p), goalrt.Step("tree.a", args)]
    return [goalrt.Step("tree.a", args), goalrt.Step("tree.b", args), goalrt.Step("tree.a", args)]


@goalrt.action("tree.a")
async def tree_a(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    note_start(ctx)
    await asyncio.sleep(args["sleep"])
    return {"seq": ctx.step}


@goalrt.action("tree.b")
async def tree_b(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    note_start(ctx)
    await asyncio.sleep(args["sleep"])
    return {"seq": ctx.step}
