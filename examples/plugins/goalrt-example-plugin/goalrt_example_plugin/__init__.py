"""An example goalrt plugin: the action ``example.greet`` and the notification provider ``example``.

Settings come from ``[plugins.example]`` in goalrt.toml or ``GOALRT_PLUGIN_EXAMPLE_*``:
``greeting`` (default "Hello") and ``outbox`` (a file the provider appends each message to).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from goalrt.actions.plugins import Plugin

plugin = Plugin(
    "example",
    contracts=[Path(__file__).with_name("contracts.gdl")],
    description="greets by name; a notification provider that writes to a file",
)


@plugin.action("example.greet")
async def greet(args: dict[str, Any], ctx: Any, call: Any) -> dict[str, Any]:
    greeting = call.settings.get("greeting", "Hello")
    return {"greeting": f"{greeting}, {args['name']}{args.get('punctuation', '!')}", "key": ctx.idempotency_key}


@plugin.provider("example")
async def outbox(message: dict[str, Any], call: Any) -> dict[str, Any]:
    path = call.settings.get("outbox")
    if not path:
        raise ValueError("set [plugins.example] outbox (or GOALRT_PLUGIN_EXAMPLE_OUTBOX) to a file")
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"title": message.get("title"), "text": message["text"]}) + "\n")
    return {"provider": "example", "outbox": str(path)}
