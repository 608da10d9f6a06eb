"""Handlers for the GDL reload test: the actions of both versions of its workspace that run code.

Each takes a little while, so goals are in the middle of their plans when the
test loads the next version. Their state effects are the ones GDL declares.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import goalrt

# The test's gate (a folder): goals of users from GATED_FROM on wait in
# activate until the test has loaded the next version, so that some goals
# are certainly held across the load whatever the machine's speed.
GATE = "GOALRT_RELOAD_GATE"
GATED_FROM = 30


@goalrt.action("activate")
def activate(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    gate = os.environ.get(GATE)
    if gate and int(str(args["u"]).lstrip("u")) >= GATED_FROM:
        Path(gate, f"held-{args['u']}").touch()
        while not Path(gate, "open").exists():
            time.sleep(0.02)
    time.sleep(0.4)


@goalrt.action("crm.push")
def push(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    time.sleep(0.3)


@goalrt.action("crm.queue")
def queue(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    time.sleep(0.3)
