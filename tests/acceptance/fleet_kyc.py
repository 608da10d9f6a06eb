"""The KYC team's worker: checks a sign-up, refusing a blocklisted domain for good."""

from __future__ import annotations

import time
from typing import Any

import goalrt
from tests.acceptance.fleet_handlers import counted, record_call

BLOCKLIST = ("spam.example",)


@goalrt.action("kyc.check")
def check(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    record_call(ctx)
    time.sleep(0.05)
    domain = ctx.state.value(f"users.{args['u']}.domain")
    if domain in BLOCKLIST:
        raise goalrt.PermanentError(f"{domain} is blocklisted")
    return counted(ctx, {"passed": True, "by": ctx.worker})
