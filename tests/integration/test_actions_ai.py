"""ai.call against a chat-completions stub on 127.0.0.1: prompt from state, usage recorded, one payment per step."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from goalrt import AsyncGoals, GoalInfo, Registry, Worker
from goalrt.actions.catalog import Catalog
from goalrt.actions.clients import close_clients
from goalrt.actions.config import ActionsConfig
from goalrt.db.connect import connect
from goalrt.errors import ActionFailedError, PermanentError
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.state.state import State
from tests.integration.test_actions_http import secret_rows
from tests.integration.test_worker import FAST, until_finished
from tests.local_ai import ChatStub

SECRET = "s3cr3t-token-4711"  # the value secret_rows searches for

WORKSPACE = """
type Order under orders { }

action order.summarise(o: Order) {
  require orders.{o}.status == "created"
  effect  orders.{o}.status = "summarised"
  handler ai.call
  with { system = "You summarise orders."
         prompt = "Summarise order {o}: {state:orders.{o}.notes}"
         temperature = 0 }
}

goal summarise(o: Order) { achieve orders.{o}.status == "summarised" }
"""


@pytest.fixture
def stub() -> Iterator[ChatStub]:
    with ChatStub(SECRET) as s:
        yield s


def catalog(stub: ChatStub, cache: Path | None, **more: Any) -> Catalog:
    settings = {"base_url": stub.base, "model": "stub-1", "api_key_secret": "AI_KEY", "cache_dir": str(cache or "")}
    return Catalog(ActionsConfig({"ai": {**settings, **more}}), plugins=[])


def test_ai_call_from_gdl_builds_the_prompt_from_state_and_records_usage(
    db_url: str, tmp_path: Path, stub: ChatStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALRT_SECRET_AI_KEY", SECRET)
    (tmp_path / "apps" / "shop").mkdir(parents=True)
    (tmp_path / "goalrt.toml").write_text('name = "ai"\n')
    (tmp_path / "apps" / "shop" / "actions.gdl").write_text(WORKSPACE)
    with connect(db_url) as conn:
        load(conn, check(tmp_path))
    with State.connect(db_url) as state:
        state.set("orders.o1.notes", "two red chairs")
        state.set("orders.o1.status", "created")

    async def body() -> GoalInfo:
        worker = Worker(db_url, Registry(), actions=catalog(stub, tmp_path / "cache"), **FAST)
        task = asyncio.create_task(worker.run())
        await worker.wait_ready()
        try:
            async with await AsyncGoals.connect(db_url) as goals:
                (info,) = await until_finished(goals, (await goals.submit("summarise", {"o": "o1"})).id)
                return info
        finally:
            worker.request_stop()
            async with asyncio.timeout(30):
                await task

    info = asyncio.run(body())
    assert info.status == "complete", info.last_error
    (step,) = info.steps
    (request,) = stub.requests
    assert request["key"] == f"{info.id}:{step.seq}" and request["authorization"] == f"Bearer {SECRET}"
    assert request["body"] == {
        "model": "stub-1",
        "messages": [
            {"role": "system", "content": "You summarise orders."},
            {"role": "user", "content": "Summarise order o1: two red chairs"},
        ],
        "temperature": 0,
    }
    assert step.result == {
        "content": "echo: Summarise order o1: two red chairs",
        "finish_reason": "stop",
        "model": "stub-1",
        "usage": {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9},
        "cached": False,
    }
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    assert secret_rows(db_url) == []
    with State.connect(db_url) as state:
        assert state.value("orders.o1.status") == "summarised"


def ask(cat: Catalog, key: str = "7:1", **args: Any) -> Any:
    """Run ai.call's handler as a step with idempotency key ``key`` does (a Python step: arguments as given)."""
    ctx = SimpleNamespace(idempotency_key=key, state=None, log=logging.getLogger("test"))

    async def run() -> Any:
        try:
            return await cat.handler("ai.call")(args, ctx)
        finally:
            await close_clients()  # as the worker does when it stops

    return asyncio.run(run())


def test_a_rerun_of_the_step_after_a_crash_does_not_pay_twice(
    tmp_path: Path, stub: ChatStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALRT_SECRET_AI_KEY", SECRET)
    cat = catalog(stub, tmp_path / "cache")
    # The first run got its answer, then the worker died before the step's completion committed;
    # the step runs again with the same idempotency key.
    first = ask(cat, prompt="hello there")
    again = ask(cat, prompt="hello there")
    assert stub.paid == 1 and len(stub.requests) == 1
    assert first["cached"] is False and again == {**first, "cached": True}
    # Another step (another key) asks; the same step asking something else (the state changed) asks too.
    ask(cat, key="7:2", prompt="hello there")
    changed = ask(cat, prompt="hello again")
    assert stub.paid == 3 and changed["content"] == "echo: hello again" and changed["cached"] is False


def test_without_the_cache_the_idempotency_key_lets_a_deduplicating_endpoint_answer_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALRT_SECRET_AI_KEY", SECRET)
    with ChatStub(SECRET, dedupe=True) as stub:
        cat = catalog(stub, None)
        first, again = ask(cat, prompt="hi"), ask(cat, prompt="hi")
        assert len(stub.requests) == 2 and {r["key"] for r in stub.requests} == {"7:1"}
        assert stub.paid == 1 and first == again and first["cached"] is False


def test_failures_are_retryable_or_permanent_and_are_not_cached(
    tmp_path: Path, stub: ChatStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALRT_SECRET_AI_KEY", SECRET)
    cat = catalog(stub, tmp_path / "cache")
    with pytest.raises(ActionFailedError, match="HTTP 429"):
        ask(cat, prompt="x", model="busy")
    with pytest.raises(ActionFailedError, match="HTTP 500"):
        ask(cat, prompt="x", model="broken")
    with pytest.raises(PermanentError, match="HTTP 400"):
        ask(cat, prompt="x", model="bad")
    with pytest.raises(PermanentError, match="the endpoint's answer has no message"):
        ask(cat, prompt="x", model="empty")
    with pytest.raises(ActionFailedError, match=r"timed out after 0\.2s"):
        ask(cat, prompt="x", model="slow", timeout=0.2)
    with pytest.raises(PermanentError, match="give prompt or messages"):
        ask(cat, prompt="x", messages=[{"role": "user", "content": "y"}])
    monkeypatch.setenv("GOALRT_SECRET_AI_KEY", "sk-wrong-key")
    with pytest.raises(PermanentError, match=r"HTTP 401.*invalid api key") as info:
        ask(cat, prompt="x")
    assert "sk-wrong-key" not in str(info.value)
    assert list((tmp_path / "cache").glob("*.json")) == []  # nothing failed was kept
    assert stub.paid == 0
    # A failed attempt is asked again on the next one.
    monkeypatch.setenv("GOALRT_SECRET_AI_KEY", SECRET)
    assert ask(cat, prompt="x")["cached"] is False and stub.paid == 1


def test_goalrt_test_can_simulate_ai_call(db_url: str, tmp_path: Path, stub: ChatStub) -> None:
    from goalrt.gdl.testing import run_tests

    (tmp_path / "apps" / "shop").mkdir(parents=True)
    (tmp_path / "goalrt.toml").write_text('name = "ai"\n')
    (tmp_path / "apps" / "shop" / "actions.gdl").write_text(WORKSPACE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.gdl").write_text(
        """
test simulated {
  given orders.o9.status = "created"  given orders.o9.notes = "n"
  simulate order.summarise
  when goal summarise(o = "o9")
  expect goal complete  expect state orders.o9.status == "summarised"
}
"""
    )
    compiled = check(tmp_path)
    results = run_tests(db_url, compiled, Registry(), list(compiled.tests.values()), timeout=30)
    assert [(r.name, r.failures) for r in results] == [("simulated", [])]
    assert stub.requests == []
