"""The agent example (gdl/examples/agent) end to end, offline: its stubs on 127.0.0.1, a worker, the memory follower.

The primary source answers 503: the step fails after its retries and the
goal re-plans around it to the mirror; agent.recall finds the mirror's
response in memory (indexed by a follower running beside the worker);
ai.call answers from it; the agent's note is in memory afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from goalrt import AsyncGoals, GoalInfo, Registry, State, Worker
from goalrt.actions.catalog import Catalog
from goalrt.actions.config import ActionsConfig
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.memory.memory import Memory
from tests.integration.test_worker import FAST, until_finished
from workers.agent import recall
from workers.agent_stubs import Stubs

EXAMPLE = Path(__file__).resolve().parents[2] / "gdl" / "examples" / "agent"


def test_the_agent_re_plans_around_a_failed_source_and_answers_from_memory(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALRT_MEMORY_EMBEDDER", "none")  # words alone: the same on every server
    with Stubs() as stubs:
        # The workspace as shipped, with the stubs' port in place of 8765.
        root = tmp_path / "agent"
        shutil.copytree(EXAMPLE, root)
        for path in [root / "goalrt.toml", *root.rglob("*.gdl")]:
            path.write_text(path.read_text().replace("127.0.0.1:8765", f"127.0.0.1:{stubs.port}"))
        with connect(db_url) as conn:
            load(conn, check(root))
        with State.connect(db_url) as state:
            state.set("questions.tides.status", "asked")
        registry = Registry()
        registry.action("agent.recall")(recall)
        stop = threading.Event()
        with Memory.connect(db_url, embedder=None) as memory:
            follower = threading.Thread(target=memory.follow, kwargs={"idle_poll": 0.05, "stop": stop})
            follower.start()
            try:
                info = asyncio.run(run_goal(db_url, registry, Catalog(ActionsConfig.load(root), plugins=[])))
            finally:
                stop.set()
                follower.join()
    assert info.status == "complete", info.last_error
    actions = [(s.action, str(s.status)) for s in info.steps]
    assert actions[0] == ("research.primary", "failed"), actions
    assert [a for a, status in actions if status == "complete"] == ["research.mirror", "agent.recall", "agent.answer"]
    answer = info.steps[-1].result
    assert "moon's gravity" in answer["content"] and answer["usage"]["total_tokens"] > 0
    with State.connect(db_url) as state:
        assert state.value("questions.tides.source") == "mirror"
        assert state.value("questions.tides.status") == "answered"
    with Memory.connect(db_url, embedder=None) as memory:
        memory.index()
        (note,) = memory.search("researched tides facts recalled", type="memory.noted")
        assert note.stream == f"goal:{info.id}" and "question: tides" in note.text
        assert memory.search("moon gravity", type="goal.completed")[0].stream == f"goal:{info.id}"


async def run_goal(db_url: str, registry: Registry, actions: Catalog) -> GoalInfo:
    worker = Worker(db_url, registry, actions=actions, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(db_url) as goals:
            (info,) = await until_finished(goals, (await goals.submit("answered", {"q": "tides"})).id, timeout=60)
            return info
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task
