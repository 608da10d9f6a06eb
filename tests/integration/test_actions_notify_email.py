"""notification.push (console, webhook) and email.send from GDL, against a real HTTP server and aiosmtpd."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from goalrt import AsyncGoals, GoalInfo, Registry, Worker
from goalrt.actions.catalog import Catalog
from goalrt.actions.config import ActionsConfig
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.state.state import State
from tests.integration.test_actions_http import secret_rows
from tests.integration.test_worker import FAST, until_finished
from tests.local_http import LocalServer

HOOK_SECRET = "s3cr3t-token-4711"  # the value secret_rows searches for

WORKSPACE = """
type Order under orders { }

action order.announce(o: Order) {
  require orders.{o}.status == "created"
  effect  orders.{o}.status = "announced"
  handler notification.push
  with { title = "New order"  text = "order {o} costs {state:orders.{o}.amount}" }
}

action order.hook(o: Order) {
  require orders.{o}.status == "announced"
  effect  orders.{o}.status = "hooked"
  handler notification.push
  with { provider = "webhook"  text = "order {o}" }
}

action order.mail(o: Order) {
  require orders.{o}.status == "hooked"
  effect  orders.{o}.status = "mailed"
  handler email.send
  retry 3 backoff fixed 50ms
  with { to = ["{o}@example.com"]  subject = "Order {o}"  body = "Total: {state:orders.{o}.amount} EUR" }
}

goal tell(o: Order) { achieve orders.{o}.status == "mailed" }
"""


class Mailbox:
    """An aiosmtpd handler: refuses recipients at nobody@, answers 451 to the first DATA of temp@, keeps the rest."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.attempts: list[str] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        self.attempts.append(str(message["Message-ID"]))
        if envelope.rcpt_tos[0].startswith("temp@") and self.attempts.count(self.attempts[-1]) == 1:
            return "451 4.3.0 try again later"
        self.messages.append(message)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


def catalog(server: LocalServer, smtp_port: int) -> Catalog:
    config = ActionsConfig(
        {
            "notification": {"webhook_url": f"{server.base}/hook/{{secret.HOOK}}"},
            "email": {"host": "127.0.0.1", "port": smtp_port, "from": "shop@example.com"},
        }
    )
    return Catalog(config, plugins=[])


async def tell(db_url: str, catalog: Catalog, *orders: str) -> list[GoalInfo]:
    with State.connect(db_url) as state:
        for o in orders:
            state.set(f"orders.{o}.amount", 42)
            state.set(f"orders.{o}.status", "created")
    worker = Worker(db_url, Registry(), actions=catalog, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(db_url) as goals:
            ids = [(await goals.submit("tell", {"o": o})).id for o in orders]
            return await until_finished(goals, *ids)
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task


def test_console_webhook_and_email_run_from_gdl(
    db_url: str,
    tmp_path: Path,
    server: LocalServer,
    smtp: tuple[Mailbox, int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALRT_SECRET_HOOK", HOOK_SECRET)
    mailbox, port = smtp
    (tmp_path / "apps" / "shop").mkdir(parents=True)
    (tmp_path / "goalrt.toml").write_text('name = "tell"\n')
    (tmp_path / "apps" / "shop" / "actions.gdl").write_text(WORKSPACE)
    with connect(db_url) as conn:
        load(conn, check(tmp_path))
    ok, temp, nobody = asyncio.run(tell(db_url, catalog(server, port), "buyer", "temp", "nobody"))

    assert "[notification] New order: order buyer costs 42" in capsys.readouterr().out
    assert ok.status == "complete", ok.last_error
    announce, hook, mail = ok.steps
    assert announce.result == {"provider": "console"}
    assert hook.result == {"provider": "webhook", "status": 200}
    hooks = [r for r in server.requests if r["path"].startswith("/hook/") and r["key"] == f"{ok.id}:{hook.seq}"]
    assert hooks[0]["path"] == f"/hook/{HOOK_SECRET}"  # the secret from the configured URL reached the server
    assert json.loads(hooks[0]["body"]) == {"text": "order buyer"}  # Slack-compatible
    assert hooks[0]["key"] == f"{ok.id}:{hook.seq}"
    assert mail.result == {"message_id": f"<goalrt.{ok.id}.{mail.seq}@example.com>", "accepted": ["buyer@example.com"]}
    (message,) = [m for m in mailbox.messages if m["To"] == "buyer@example.com"]
    assert message["Subject"] == "Order buyer" and message["To"] == "buyer@example.com"
    assert message["From"] == "shop@example.com"
    assert message.get_payload().strip() == "Total: 42 EUR"

    # A 451 is retried with the same Message-ID; a refused recipient fails the goal at once.
    assert temp.status == "complete", temp.last_error
    temp_id = f"<goalrt.{temp.id}.{temp.steps[-1].seq}@example.com>"
    assert mailbox.attempts.count(temp_id) == 2
    assert nobody.status == "failed" and "recipients refused" in str(nobody.last_error)
    assert nobody.steps[-1].attempts == 1
    assert secret_rows(db_url) == []
