"""The mail team's worker: sends the welcome mail."""

from __future__ import annotations

import time
from typing import Any

import goalrt
from tests.acceptance.fleet_handlers import counted, record_call


@goalrt.action("mail.welcome")
def welcome(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    record_call(ctx)
    time.sleep(0.05)
    return counted(ctx, {"mailed": args["u"], "by": ctx.worker})
