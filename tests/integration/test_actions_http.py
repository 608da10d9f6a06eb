"""http.call from GDL on a worker with no handler code, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from goalrt import AsyncGoals, GoalInfo, Registry, Step, Worker
from goalrt.actions.catalog import Catalog
from goalrt.actions.config import ActionsConfig
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.state.state import State
from tests.integration.test_worker import FAST, until_finished
from tests.local_http import LocalServer

SECRET = "s3cr3t-token-4711"

ACTIONS = """
type Order under orders { }

action order.notify(o: Order) {
  require orders.{o}.status == "created"
  effect  orders.{o}.status = "notified"
  handler http.call
  retry 3 backoff fixed 50ms
  with {
    method = "POST"
    url = "http://127.0.0.1:PORT/{o}"
    headers = { Authorization = "Bearer {secret.TOKEN}" }
    json = { order = "{o}"  amount = state(orders.{o}.amount)  note = "total {state:orders.{o}.amount}" }
    timeout = 0.5
    keep_headers = ["content-type", "x-request-count"]
  }
}

goal notify(o: Order) { achieve orders.{o}.status == "notified" }
"""


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'TOKEN = "{SECRET}"\n')
    return Catalog(ActionsConfig(secrets_file=secrets), plugins=[])


def load_workspace(db_url: str, root: Path, port: int, actions: str = ACTIONS) -> None:
    (root / "apps" / "shop").mkdir(parents=True)
    (root / "goalrt.toml").write_text('name = "notify"\nversion = "1"\n')
    (root / "apps" / "shop" / "actions.gdl").write_text(actions.replace("PORT", str(port)))
    with connect(db_url) as conn:
        load(conn, check(root))


async def run_goals(db_url: str, catalog: Catalog, *orders: str, registry: Registry | None = None) -> list[GoalInfo]:
    with State.connect(db_url) as state:
        for o in orders:
            state.set(f"orders.{o}.amount", 42)
            state.set(f"orders.{o}.status", "created")
    worker = Worker(db_url, registry or Registry(), actions=catalog, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(db_url) as goals:
            ids = [(await goals.submit("notify", {"o": o})).id for o in orders]
            return await until_finished(goals, *ids)
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task


def run(db_url: str, catalog: Catalog, *orders: str) -> list[GoalInfo]:
    return asyncio.run(run_goals(db_url, catalog, *orders))


def secret_rows(db_url: str) -> list[Any]:
    """Every stored row of the log, the state and the goals that holds the secret (should be none)."""
    queries = [
        "SELECT pos::text, type FROM goalrt.events WHERE data::text LIKE %s OR metadata::text LIKE %s",
        "SELECT path, '' FROM goalrt.state WHERE value::text LIKE %s OR %s = ''",
        "SELECT id::text, name FROM goalrt.goals WHERE coalesce(result::text, '') || coalesce(last_error, '') "
        "|| params::text LIKE %s OR %s = ''",
    ]
    with psycopg.connect(db_url) as conn:
        return [row for q in queries for row in conn.execute(q, (f"%{SECRET}%", f"%{SECRET}%")).fetchall()]


def test_a_gdl_action_calls_a_local_server_with_no_handler_code(
    db_url: str, tmp_path: Path, server: LocalServer, catalog: Catalog
) -> None:
    load_workspace(db_url, tmp_path, server.port)
    (info,) = run(db_url, catalog, "ok1")
    assert info.status == "complete", info.last_error
    (step,) = info.steps
    (request,) = server.requests
    assert request["method"] == "POST" and request["path"] == "/ok1"
    assert request["key"] == f"{info.id}:{step.seq}"  # the step's idempotency key
    assert request["authorization"] == f"Bearer {SECRET}"  # the secret reached the server...
    assert json.loads(request["body"]) == {"order": "ok1", "amount": 42, "note": "total 42"}
    result = step.result
    assert result["status"] == 200
    assert result["headers"] == {"content-type": "application/json", "x-request-count": "1"}
    # ... and the server's echo of it is redacted in the result; nothing stored holds it.
    assert result["body"]["authorization"] == "Bearer [secret TOKEN]"
    assert secret_rows(db_url) == []
    with State.connect(db_url) as state:
        assert state.value("orders.ok1.status") == "notified"


def test_retryable_statuses_retry_with_the_same_key_and_permanent_ones_fail_at_once(
    db_url: str, tmp_path: Path, server: LocalServer, catalog: Catalog
) -> None:
    load_workspace(db_url, tmp_path, server.port)
    flaky, bad, busy = run(db_url, catalog, "flaky", "bad", "busy")
    assert flaky.status == "complete", flaky.last_error
    keys = [r["key"] for r in server.requests if r["path"] == "/flaky"]
    assert keys == [f"{flaky.id}:1"] * 3  # two 503s, then 200: one key for every attempt
    assert bad.status == "failed"
    assert "HTTP 400" in str(bad.last_error) and "no such order" in str(bad.last_error)
    assert server.paths().count("/bad") == 1  # a 400 is not retried
    assert busy.status == "failed"
    assert "HTTP 429" in str(busy.last_error) and "(after 3 attempts)" in str(busy.last_error)
    assert server.paths().count("/busy") == 3  # a 429 is retried up to the action's retry 3
    assert secret_rows(db_url) == []


def test_a_timeout_is_a_retryable_failure(db_url: str, tmp_path: Path, server: LocalServer, catalog: Catalog) -> None:
    load_workspace(db_url, tmp_path, server.port)
    (info,) = run(db_url, catalog, "slow")
    assert info.status == "failed"
    assert "timed out after 0.5s" in str(info.last_error) and "(after 3 attempts)" in str(info.last_error)
    assert server.paths() == ["/slow"] * 3


def test_the_allow_list_refuses_a_redirect_to_a_host_the_workspace_did_not_name(
    db_url: str, tmp_path: Path, server: LocalServer, catalog: Catalog
) -> None:
    load_workspace(db_url, tmp_path, server.port)
    away, here = run(db_url, catalog, "redirect-away", "redirect-here")
    assert here.status == "complete", here.last_error
    assert here.steps[0].result["body"]["path"] == "/ok-after-redirect"
    assert away.status == "failed"
    assert "to localhost refused: the host is not on the allow-list (allowed: 127.0.0.1" in str(away.last_error)
    # localhost is this very server: only the redirect-here hop reached it.
    assert server.paths().count("/ok-after-redirect") == 1
    assert server.paths().count("/redirect-away") == 1


def test_a_python_step_may_call_only_configured_hosts(db_url: str, server: LocalServer) -> None:
    catalog = Catalog(ActionsConfig({"http": {"allow_hosts": ["localhost"]}}), plugins=[])
    registry = catalog.install(Registry())

    @registry.goal("fetch")
    def fetch(p: dict[str, Any]) -> list[Step]:
        return [Step("http.call", {"url": p["url"], "timeout": 2})]

    async def body() -> list[GoalInfo]:
        worker = Worker(db_url, registry, actions=catalog, **FAST)
        task = asyncio.create_task(worker.run())
        await worker.wait_ready()
        try:
            async with await AsyncGoals.connect(db_url, registry=registry) as goals:
                listed = (await goals.submit("fetch", {"url": f"http://localhost:{server.port}/ok-py"})).id
                unlisted = (await goals.submit("fetch", {"url": f"{server.base}/ok-unlisted"})).id
                return await until_finished(goals, listed, unlisted)
        finally:
            worker.request_stop()
            async with asyncio.timeout(30):
                await task

    listed, unlisted = asyncio.run(body())
    assert listed.status == "complete", listed.last_error
    assert listed.steps[0].result["body"]["host"] == f"localhost:{server.port}"
    assert unlisted.status == "failed" and "to 127.0.0.1 refused" in str(unlisted.last_error)
    assert server.paths() == ["/ok-py"]  # nothing was sent to the unlisted host


def test_a_missing_secret_fails_the_step_for_good(db_url: str, tmp_path: Path, server: LocalServer) -> None:
    load_workspace(db_url, tmp_path, server.port)
    (info,) = run(db_url, Catalog(ActionsConfig(), plugins=[]), "ok2")
    assert info.status == "failed"
    assert "secret TOKEN is not set" in str(info.last_error)
    assert server.requests == []


def test_goalrt_test_runs_a_builtin_or_simulates_it(
    db_url: str, tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goalrt.gdl.testing import run_tests

    monkeypatch.setenv("GOALRT_SECRET_TOKEN", SECRET)
    root = tmp_path / "ws"
    load_workspace(db_url, root, server.port)
    (root / "tests").mkdir()
    (root / "tests" / "t.gdl").write_text(
        """
test simulated {
  given orders.bad.status = "created"  given orders.bad.amount = 1
  simulate order.notify
  when goal notify(o = "bad")
  expect goal complete  expect state orders.bad.status == "notified"
}
test real {
  given orders.ok9.status = "created"  given orders.ok9.amount = 3
  when goal notify(o = "ok9")
  expect goal complete
}
"""
    )
    compiled = check(root)
    results = run_tests(db_url, compiled, Registry(), list(compiled.tests.values()), timeout=30)
    assert [(r.name, r.failures) for r in results] == [("real", []), ("simulated", [])]
    assert server.paths() == ["/ok9"]  # the simulated call sent nothing
