"""Handlers for the dying-worker test: the second step ends the worker's process, as a crash in C code would."""

from __future__ import annotations

import os
from typing import Any

import goalrt


@goalrt.goal("dies")
def dies(params: Any) -> list[goalrt.Step]:
    return [goalrt.Step("dying.ok", {}), goalrt.Step("payment.charge", {})]


@goalrt.action("dying.ok")
def ok(args: dict[str, Any], ctx: goalrt.ActionContext) -> str:
    return "ok"


@goalrt.action("payment.charge", retry=goalrt.Retry(max_attempts=2, backoff=0.05))
def charge(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    os._exit(17)
