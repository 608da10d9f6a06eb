"""``notification.push``: a message to the console or to a webhook (Slack-compatible JSON), or a plugin's provider.

Arguments (gdl/builtin/notification.gdl): ``text``, ``title``, ``provider``
(``console``, the default, or ``webhook``, or a provider a plugin adds) and
``url`` (the webhook; default ``[actions.notification] webhook_url``).

- ``console`` prints ``[notification] TITLE: TEXT`` on the worker's standard
  output (and logs it); the result is ``{"provider": "console"}``.
- ``webhook`` POSTs ``{"text": "*TITLE*\\nTEXT"}`` (what Slack's incoming
  webhooks and their look-alikes take) through ``http.call``, so the host
  allow-list, the idempotency key, the status mapping and secrets apply; a
  webhook URL from the configuration names its own host.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

import httpx

from goalrt.actions.http import http_call
from goalrt.errors import PermanentError

log = logging.getLogger("goalrt.notify")


async def console(message: dict[str, Any], call: Any) -> dict[str, Any]:
    """Print the message on standard output."""
    line = f"[notification] {message['title']}: {message['text']}" if message.get("title") else message["text"]
    if not message.get("title"):
        line = f"[notification] {line}"
    print(line, file=sys.stdout, flush=True)
    log.info("%s", line)
    return {"provider": "console"}


async def webhook(message: dict[str, Any], call: Any) -> dict[str, Any]:
    """POST ``{"text": ...}`` to the webhook URL."""
    url = message.get("url")
    hosts = call.hosts
    if not url:
        configured = call.config.section("notification").get("webhook_url")
        if not configured:
            raise PermanentError(
                "notification.push: provider webhook needs a url (in the action, or [actions.notification] webhook_url)"
            )
        url = call.secrets.substitute(str(configured))
        hosts = hosts | {(httpx.URL(url).host or "").lower()}
    text = f"*{message['title']}*\n{message['text']}" if message.get("title") else message["text"]
    response = await http_call(
        {"url": url, "method": "POST", "json": {"text": text}}, message["ctx"], dataclasses.replace(call, hosts=hosts)
    )
    return {"provider": "webhook", "status": response["status"]}


async def notification_push(args: dict[str, Any], ctx: Any, call: Any) -> dict[str, Any]:
    """Run one ``notification.push`` step."""
    unknown = sorted(set(args) - {"text", "title", "provider", "url"})
    if unknown:
        raise PermanentError(f"notification.push: unknown argument {unknown[0]}")
    text = args.get("text")
    if not isinstance(text, str):
        raise PermanentError("notification.push: text (a string) is required")
    name = args.get("provider") or "console"
    provider = call.providers.get(name)
    if provider is None:
        known = ", ".join(sorted(call.providers))
        raise PermanentError(f"notification.push: unknown provider {name!r} (installed: {known})")
    message = {"text": text, "title": args.get("title"), "url": args.get("url"), "ctx": ctx}
    return dict(await provider(message, call))


__all__ = ["console", "notification_push", "webhook"]
