"""Handlers for the GDL reload test: the actions of both versions of its workspace that run code.

Each takes a little while, so goals are in the middle of their plans when the
test loads the next version. Their state effects are the ones GDL declares.
"""

from __future__ import annotations

import time
from typing import Any

import goalrt


@goalrt.action("activate")
def activate(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    time.sleep(0.4)


@goalrt.action("crm.push")
def push(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    time.sleep(0.3)


@goalrt.action("crm.queue")
def queue(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    time.sleep(0.3)
