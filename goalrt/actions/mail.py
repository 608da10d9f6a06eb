"""``email.send``: one message over SMTP with aiosmtplib.

Arguments (gdl/builtin/email.gdl): ``to`` (an address or a list), ``subject``
and ``body`` (templates in GDL: ``"Order {o} shipped"``,
``"{state:orders.{o}.amount} EUR"``), ``from`` (default ``[actions.email]
from``), ``cc`` and ``reply_to``. The server is ``[actions.email]`` ``host``
(localhost), ``port`` (25), ``username`` with ``password_secret`` (a secret's
name), ``starttls`` and ``tls``; ``$GOALRT_SMTP_*`` override them.

The message's ``Message-ID`` is made from the step's idempotency key, the
same on every attempt, so a mail system that drops duplicates by it sees one
message. A refused recipient or a 5xx reply fails the step for good; a 4xx
reply, a timeout or a connection error is retryable. The result is
``{"message_id", "accepted"}``.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib

from goalrt.errors import ActionFailedError, PermanentError


def _addresses(value: Any, what: str) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if items is None or not all(isinstance(a, str) and "@" in a for a in items):
        raise PermanentError(f"email.send: {what} must be an address or a list of addresses, got {value!r}")
    return items


async def email_send(args: dict[str, Any], ctx: Any, call: Any) -> dict[str, Any]:
    """Run one ``email.send`` step (see the module's docstring)."""
    unknown = sorted(set(args) - {"to", "subject", "body", "from", "cc", "reply_to"})
    if unknown:
        raise PermanentError(f"email.send: unknown argument {unknown[0]}")
    settings = call.config.section("email")
    to = _addresses(args.get("to"), "to")
    cc = _addresses(args.get("cc") or [], "cc")
    sender = args.get("from") or settings.get("from")
    if not isinstance(sender, str) or "@" not in sender:
        raise PermanentError("email.send: no sender: give from, or set [actions.email] from")
    for key in ("subject", "body"):
        if not isinstance(args.get(key), str):
            raise PermanentError(f"email.send: {key} (a string) is required")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if args.get("reply_to"):
        message["Reply-To"] = str(args["reply_to"])
    message["Subject"] = args["subject"]
    domain = sender.rsplit("@", 1)[1]
    message_id = f"<goalrt.{ctx.idempotency_key.replace(':', '.')}@{domain}>"
    message["Message-ID"] = message_id
    message["Idempotency-Key"] = ctx.idempotency_key
    message.set_content(args["body"])
    password = settings.get("password_secret")
    try:
        errors, _reply = await aiosmtplib.send(
            message,
            hostname=str(settings.get("host", "localhost")),
            port=int(settings.get("port", 25)),
            username=settings.get("username"),
            password=None if not password else call.secrets.get(str(password)),
            start_tls=bool(settings.get("starttls", False)),
            use_tls=bool(settings.get("tls", False)),
            timeout=float(settings.get("timeout", 30)),
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise PermanentError(f"email.send: recipients refused: {exc}") from None
    except aiosmtplib.SMTPResponseException as exc:
        error = PermanentError if exc.code >= 500 else ActionFailedError
        raise error(f"email.send: the server replied {exc.code} {exc.message}") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise ActionFailedError(f"email.send: {type(exc).__name__}: {exc}") from None
    return {"message_id": message_id, "accepted": sorted(set(to + cc) - set(errors))}


__all__ = ["email_send"]
