"""Agent memory (issue 22 item 3): the follower that indexes the log, and search by words and meaning.

On a server without pgvector (the Debian PostgreSQL 15) search is by words
and says so once; on one with it (the embedded PostgreSQL 18) it is hybrid.
Tests that need one or the other skip on the other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from goalrt import ActionContext, PermanentError, Registry, Step, Worker
from goalrt.errors import ConfigError, DatabaseError, InvalidQueryError
from goalrt.log.eventlog import EventLog
from goalrt.memory import model
from goalrt.memory.embedders import OpenAIEmbedder, WordLlamaEmbedder
from goalrt.memory.memory import Memory
from tests.integration import test_tenants
from tests.integration.serve_support import serving
from tests.integration.test_worker import until_finished, with_worker
from tests.local_embeddings import EmbeddingsStub, stub_vector

tenancy = test_tenants.tenancy


def has_vector(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT goalrt.memory_vector_schema() IS NOT NULL").fetchone() == (True,)


@pytest.fixture
def memory(db_url: str) -> Iterator[Memory]:
    with Memory.connect(db_url, embedder=None) as m:
        yield m


@pytest.fixture
def fresh_notes() -> Iterator[None]:
    """Forget which one-time notes this process said, so a test sees its own."""
    saved = set(model._said)
    model._said.clear()
    yield
    model._said.clear()
    model._said.update(saved)


def append(log: EventLog, n: int, start: int = 0) -> None:
    log.append_many(
        [
            {"stream": f"order:o{i}", "type": "order.placed", "data": {"n": i, "note": f"item {i}"}}
            for i in range(start, start + n)
        ]
    )


def indexed(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT pos FROM goalrt.memory ORDER BY pos").fetchall()]


# -- the follower -----------------------------------------------------------------------


def test_indexing_resumes_exactly_where_it_stopped(
    db_url: str, log: EventLog, memory: Memory, conn: psycopg.Connection
) -> None:
    append(log, 250)
    assert memory.index(batch=30, max_events=100) == 100
    assert memory.status().cursor_pos == 100
    # A new indexer (a restart) goes on from the durable cursor.
    with Memory.connect(db_url, embedder=None) as again:
        assert again.index(batch=64) == 150
        append(log, 10, start=250)
        assert again.index() == 10
        assert again.index() == 0
    head = log.head()
    assert indexed(conn) == list(range(1, head + 1))


def test_an_indexer_killed_mid_run_resumes_without_a_gap_or_a_repeat(
    db_url: str, log: EventLog, conn: psycopg.Connection
) -> None:
    append(log, 400)
    env = {**os.environ, "GOALRT_MEMORY_EMBEDDER": "none"}
    cmd = [sys.executable, "-m", "goalrt", "--database-url", db_url, "memory", "index", "--batch", "1"]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            # Wait for the signal the indexer gives (its cursor moved), then kill it mid-run.
            while conn.execute("SELECT cursor_pos FROM goalrt.memory_cursor").fetchone() == (0,):
                assert proc.poll() is None, "the indexer ended before indexing anything"
                conn.execute("SELECT pg_sleep(0.01)")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    stopped_at = conn.execute("SELECT cursor_pos FROM goalrt.memory_cursor").fetchone()
    assert stopped_at is not None and 0 < stopped_at[0] < 400
    assert indexed(conn) == list(range(1, stopped_at[0] + 1))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert indexed(conn) == list(range(1, 401))


def test_two_indexers_at_once_index_each_event_once(db_url: str, log: EventLog, conn: psycopg.Connection) -> None:
    # Broken on purpose (memory_index without its cursor check), the loser of a
    # race inserts positions the winner inserted: a duplicate key, seen here.
    append(log, 600)
    counts: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            with Memory.connect(db_url, embedder=None) as m:
                start.wait()
                counts.append(m.index(batch=7))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(counts) == 600
    assert indexed(conn) == list(range(1, 601))


def test_the_appending_transaction_indexes_nothing(log: EventLog, memory: Memory, conn: psycopg.Connection) -> None:
    append(log, 5)
    assert indexed(conn) == []
    assert memory.status().cursor_pos == 0
    assert memory.index() == 5


# -- what is indexed -------------------------------------------------------------------


def test_secret_fields_are_never_indexed(log: EventLog, memory: Memory, conn: psycopg.Connection) -> None:
    log.append(
        "user:u1",
        "user.signed_up",
        {
            "name": "Ann",
            "password": "hunter2",
            "api_key": "sk-live-abc",
            "auth": {"token": "tok-xyz"},
            "nested": {"Authorization": "Bearer q"},
        },
    )
    memory.index()
    body = conn.execute("SELECT body FROM goalrt.memory").fetchone()
    assert body is not None
    assert "Ann" in body[0]
    for secret in ("hunter2", "sk-live-abc", "tok-xyz", "Bearer q"):
        assert secret not in body[0]
        assert memory.search(secret) == []
    # A note is an event: one with a field named like a secret is refused before it is appended.
    with pytest.raises(InvalidQueryError, match="named like a secret"):
        memory.remember("deploy key rotated", data={"api_key": "sk-live-abc"})
    assert log.head() == 1


# -- search ----------------------------------------------------------------------------


def test_search_without_pgvector_is_by_words_and_says_so_once(
    log: EventLog, memory: Memory, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture, fresh_notes: None
) -> None:
    if has_vector(conn):
        pytest.skip("this server has pgvector (run on PostgreSQL without it: GOALRT_TEST_DATABASE_URL)")
    memory.embedder = WordLlamaEmbedder()
    log.append("order:o1", "payment.failed", {"reason": "card declined by the bank"})
    log.append("order:o2", "shipment.sent", {"carrier": "DHL"})
    memory.index()
    with caplog.at_level(logging.WARNING, logger="goalrt.memory"):
        first = memory.search("why was the card declined?")
        second = memory.search("payment failed")
    assert [h.type for h in first] == ["payment.failed"]
    assert [h.stream for h in second] == ["order:o1"]
    assert all(h.vector_rank is None and h.text_rank == 1 for h in first + second)
    notes = [r.getMessage() for r in caplog.records if r.name == "goalrt.memory"]
    assert notes == ["memory: this PostgreSQL has no pgvector; search is by full text only"]
    assert memory.status().vectors is False


def test_hybrid_search_with_pgvector_and_wordllama(
    log: EventLog, db_url: str, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture, fresh_notes: None
) -> None:
    if not has_vector(conn):
        pytest.skip("this server has no pgvector (unset GOALRT_TEST_DATABASE_URL for the embedded PostgreSQL 18)")
    log.append("order:o1", "payment.failed", {"reason": "card declined by the bank"})
    log.append("order:o2", "shipment.sent", {"carrier": "DHL"})
    log.append("user:u1", "user.complained", {"message": "my parcel never arrived"})
    with Memory.connect(db_url) as memory, caplog.at_level(logging.WARNING, logger="goalrt.memory"):
        memory.embedder = WordLlamaEmbedder()
        assert memory.index() == 3
        status = memory.status()
        assert status.vectors and status.embedder == "wordllama:l2_supercat_256" and status.dims == 256
        hits = memory.search("card declined")
        assert hits[0].type == "payment.failed" and hits[0].text_rank == 1 and hits[0].vector_rank is not None
        # Every entry has a vector: each is a candidate by meaning, whatever its words.
        assert {h.type for h in hits} == {"payment.failed", "shipment.sent", "user.complained"}
        assert [h.type for h in memory.search("card", type="user.*")] == ["user.complained"]
        assert memory.search("card", since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert not [r for r in caplog.records if r.name == "goalrt.memory"]
    # Vectors of another embedder are never compared with these: indexing with it is refused.
    with EmbeddingsStub() as stub, Memory.connect(db_url) as other:
        other.embedder = OpenAIEmbedder(stub.base, "hash", stub.key)
        log.append("order:o3", "order.placed", {})
        with pytest.raises(DatabaseError, match="memory reset"):
            other.index()
        other.reset()
        assert other.index() == 4
        assert other.status().embedder == "openai:hash"


def test_hostile_queries_are_refused_in_one_line(memory: Memory, conn: psycopg.Connection) -> None:
    for query, message in (
        ("", "must not be empty"),
        ("   \n\t", "must not be empty"),
        ("x" * 4001, "4001 characters long; at most 4000"),
        ("a\x00b", "NUL"),
    ):
        with pytest.raises(InvalidQueryError, match=message):
            memory.search(query)
    for limit in (0, -1, 1001, True):
        with pytest.raises(InvalidQueryError, match="limit"):
            memory.search("x", limit=limit)
    with pytest.raises(InvalidQueryError, match="ISO 8601"):
        model.parse_since("yesterday")
    # Text-search operators and quotes are words like any other.
    for query in ("a & | ! ( ) :* <-> 'quoted'", "the of and", "'; DROP TABLE goalrt.memory; --"):
        assert memory.search(query) == []
    # The database refuses what the client would, for a caller in psql.
    for sql in ("SELECT * FROM goalrt.memory_search('')", "SELECT * FROM goalrt.memory_search(repeat('x', 5000))"):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute(sql)


def test_the_cli_refuses_bad_input_in_one_line(db_url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "goalrt", "--database-url", db_url, *args]
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, env={**os.environ, "GOALRT_MEMORY_EMBEDDER": "none"}
        )

    for args, message in (
        (("search", ""), "the query must not be empty"),
        (("search", "x", "--since", "yesterday"), "since 'yesterday' is not an ISO 8601 time"),
        (("search", "y" * 5000), "at most 4000"),
        (("memory", "reset"), "pass --yes"),
    ):
        done = run(*args)
        assert done.returncode != 0
        assert done.stderr.strip().splitlines()[-1].startswith("goalrt: error: ")
        assert message in done.stderr and "Traceback" not in done.stderr
    done = run("search", "anything", "--json")
    assert done.returncode == 0 and done.stdout.strip() == "[]"


# -- the embedders ----------------------------------------------------------------------


def test_wordllama_embeds_with_no_network(tmp_path: Path) -> None:
    # Every request of the child goes to a proxy that is not there, so any download fails:
    # wordllama's own loader, which fetches a tokenizer its wheel has under another folder, shows it.
    dead = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "ALL_PROXY": dead,
        "NO_PROXY": "",
        "HOME": str(tmp_path),
    }
    ours = "from goalrt.memory.embedders import WordLlamaEmbedder as W; print(len(W().embed(['hello world'])[0]))"
    theirs = "from wordllama import WordLlama; WordLlama.load()"
    done = subprocess.run([sys.executable, "-c", ours], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "256", done.stderr
    done = subprocess.run([sys.executable, "-c", theirs], env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "Failed to download tokenizer" in done.stderr


# -- the embeddings endpoint -----------------------------------------------------------


def test_the_openai_embedder_speaks_the_wire_format_of_a_real_server() -> None:
    with EmbeddingsStub() as stub:
        embedder = OpenAIEmbedder(stub.base, "hash", stub.key)
        texts = [f"text number {i}" for i in range(300)]  # two requests: 256 then 44
        vectors = embedder.embed(texts)
        assert vectors == [stub_vector(t, 256) for t in texts]  # placed by index, not by the answer's order
        assert [len(r["body"]["input"]) for r in stub.requests] == [256, 44]
        assert all(r["body"]["dimensions"] == 256 and r["authorization"] == f"Bearer {stub.key}" for r in stub.requests)
        import asyncio

        assert asyncio.run(embedder.aembed(["one", "two"])) == [stub_vector("one", 256), stub_vector("two", 256)]
        for model_name, key, message in (
            ("broken", stub.key, "answered 500"),
            ("short", stub.key, "answered 3 dimensions; memory needs 256"),
            ("hash", "wrong", "answered 401"),
        ):
            with pytest.raises(ConfigError, match=message):
                OpenAIEmbedder(stub.base, model_name, key).embed(["x"])
    with pytest.raises(ConfigError, match="http"):
        OpenAIEmbedder("ftp://x", "m")


def test_hybrid_search_through_an_embeddings_endpoint(log: EventLog, db_url: str, conn: psycopg.Connection) -> None:
    if not has_vector(conn):
        pytest.skip("this server has no pgvector (unset GOALRT_TEST_DATABASE_URL for the embedded PostgreSQL 18)")
    with EmbeddingsStub() as stub, Memory.connect(db_url) as memory:
        memory.embedder = OpenAIEmbedder(stub.base, "hash", stub.key)
        log.append("order:o1", "payment.failed", {"reason": "card declined"})
        log.append("order:o2", "shipment.sent", {"carrier": "DHL"})
        assert memory.index() == 2
        hits = memory.search("declined card")
        assert hits[0].type == "payment.failed" and hits[0].vector_rank == 1 and hits[0].text_rank == 1


# -- who may do what -------------------------------------------------------------------


def test_tenants_find_only_their_own_events(tenancy: test_tenants.Tenancy) -> None:
    app_a = tenancy.login("goalrt_app", "a")
    app_b = tenancy.login("goalrt_app", "b")
    reader_a = tenancy.login("goalrt_reader", "a")
    app_a.execute("SELECT goalrt.append_event('orders', 'order.placed', '{\"note\": \"apples for alice\"}')")
    app_b.execute("SELECT goalrt.append_event('orders', 'order.placed', '{\"note\": \"bananas for bob\"}')")
    with Memory(tenancy.owner, embedder=None) as owner:
        assert owner.index() == 2
    with Memory(reader_a, embedder=None) as a:
        assert [h.text.splitlines()[-1] for h in a.search("apples bananas")] == ["note: apples for alice"]
        assert a.search("bananas") == []
        assert a.status().entries == 1
        # A reader searches; it neither indexes nor resets.
        for call in (a.index, a.reset):
            with pytest.raises(DatabaseError, match="permission denied"):
                call()
    with Memory(app_b, embedder=None) as b:
        assert [h.stream for h in b.search("bananas")] == ["orders"]
        b.remember("bob likes bananas", data={"who": "bob"})
        with pytest.raises(DatabaseError, match="permission denied"):
            b.index()
    with Memory(tenancy.owner, embedder=None) as owner:
        assert owner.index() == 1
    with Memory(reader_a, embedder=None) as a:
        assert a.search("bob likes") == []
    # Nobody but the owner reads the tables themselves.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader_a.execute("SELECT body FROM goalrt.memory")


# -- over HTTP ---------------------------------------------------------------------------


def test_goalrt_serve_searches_memory(
    db_url: str, log: EventLog, memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALRT_MEMORY_EMBEDDER", "none")
    log.append("order:o1", "payment.failed", {"reason": "card declined"})
    log.append("order:o2", "shipment.sent", {"carrier": "DHL"})
    memory.index()
    with serving(db_url) as base, httpx.Client(base_url=f"{base}/api/v1", timeout=30) as api:
        found = api.get("/memory/search", params={"q": "declined", "limit": 5}).json()
        assert found["mode"] == "text"
        assert [(e["pos"], e["type"]) for e in found["events"]] == [(1, "payment.failed")]
        assert api.get("/memory/search", params={"q": "declined", "type": "ship*"}).json()["events"] == []
        assert api.get("/memory/status").json()["cursor_pos"] == 2
        for params, message in (
            ({"q": " "}, "the query must not be empty"),
            ({"q": "x", "since": "soon"}, "ISO 8601"),
            ({"q": "x" * 4001}, "q: "),
            ({"q": "x", "limit": 0}, "limit: "),
        ):
            response = api.get("/memory/search", params=params)
            assert response.status_code == 400, response.text
            assert message in response.json()["error"]["message"]


# -- ctx.memory in handlers ---------------------------------------------------------------


def test_handlers_search_memory_and_their_notes_commit_with_their_step(
    db_url: str, log: EventLog, memory: Memory, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALRT_MEMORY_EMBEDDER", "none")
    log.append("order:o1", "payment.failed", {"reason": "card declined"})
    memory.index()
    registry = Registry()
    found: list[list[str]] = []

    @registry.goal("recall")
    def recall_goal(p: dict[str, Any]) -> list[Step]:
        return [Step("look"), Step("look_async"), Step("fail")]

    @registry.action("look")
    def look(args: dict[str, Any], ctx: ActionContext) -> None:  # sync: runs in a thread
        assert ctx.memory is not None
        found.append([h.stream for h in ctx.memory.search("declined card")])
        ctx.memory.remember("the card of o1 was declined", order="o1")

    @registry.action("look_async")
    async def look_async(args: dict[str, Any], ctx: ActionContext) -> None:
        assert ctx.memory is not None
        found.append([h.type for h in await ctx.memory.search("declined", type="payment.*")])
        with pytest.raises(InvalidQueryError):
            ctx.memory.remember("x", token="t")

    @registry.action("fail")
    def fail(args: dict[str, Any], ctx: ActionContext) -> None:
        assert ctx.memory is not None
        ctx.memory.remember("this note is lost with its step")
        raise PermanentError("no")

    async def body(goals: Any, worker: Worker) -> None:
        (info,) = await until_finished(goals, (await goals.submit("recall", {})).id)
        assert info.status == "failed"

    asyncio.run(with_worker(db_url, registry, body))
    assert found == [["order:o1"], ["payment.failed"]]
    notes = conn.execute("SELECT stream, data FROM goalrt.events WHERE type = 'memory.noted'").fetchall()
    assert [(s, d) for s, d in notes] == [("goal:1", {"text": "the card of o1 was declined", "order": "o1"})]
    memory.index()
    (hit,) = memory.search("card declined", type="memory.*")
    assert hit.stream == "goal:1"
