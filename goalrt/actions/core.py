"""goalrt's own built-in actions, as the plugin ``goalrt`` (their contracts: gdl/builtin/*.gdl)."""

from __future__ import annotations

from goalrt.actions.ai import ai_call
from goalrt.actions.dbquery import db_query
from goalrt.actions.files import file_delete, file_upload
from goalrt.actions.http import http_call
from goalrt.actions.mail import email_send
from goalrt.actions.notify import console, notification_push, webhook
from goalrt.actions.plugins import Plugin

core = Plugin("goalrt", description="goalrt's built-in actions")
core.actions.update(
    {
        "ai.call": ai_call,
        "db.query": db_query,
        "email.send": email_send,
        "file.delete": file_delete,
        "file.upload": file_upload,
        "http.call": http_call,
        "notification.push": notification_push,
    }
)
core.providers.update({"console": console, "webhook": webhook})

__all__ = ["core"]
