"""One suite over both flavours of each client: EventLog/AsyncEventLog, State/AsyncState, Goals/AsyncGoals.

The sync clients are generated from the async ones (tools/async_to_sync.py).
Here the twins must expose the same public names with the same docstrings and
signatures, the generated modules must be up to date, and every behaviour
test runs once per flavour through ``Blocking``, which lets one test body
call an async client as if it were sync. The last test checks that the
behaviour tests use every public name of every client.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import subprocess
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from goalrt import (
    AsyncEventLog,
    AsyncGoals,
    AsyncMemory,
    AsyncState,
    Change,
    EventLog,
    GoalNotFoundError,
    Goals,
    GoalStatus,
    GoalWaitTimeoutError,
    InvalidGoalError,
    InvalidTransitionError,
    Memory,
    Registry,
    State,
    Step,
    Submitted,
    VersionConflictError,
    ask,
)
from goalrt.db.async_client import AsyncClient
from goalrt.db.client import Client
from goalrt.state import forks

REPO = Path(__file__).resolve().parents[2]
PAIRS = {
    "log": (EventLog, AsyncEventLog),
    "state": (State, AsyncState),
    "goals": (Goals, AsyncGoals),
    "memory": (Memory, AsyncMemory),
}


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


# -- the twins agree ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", PAIRS)
def test_twins_have_the_same_public_names_docstrings_and_signatures(kind: str) -> None:
    sync_cls, async_cls = PAIRS[kind]
    only_sync = public_names(sync_cls) - public_names(async_cls)
    only_async = public_names(async_cls) - public_names(sync_cls)
    assert not only_sync, f"{async_cls.__name__} lacks {sorted(only_sync)}"
    assert not only_async, f"{sync_cls.__name__} lacks {sorted(only_async)}"
    assert inspect.getdoc(sync_cls) == inspect.getdoc(async_cls)
    for name in sorted(public_names(async_cls)):
        s, a = getattr(sync_cls, name), getattr(async_cls, name)
        doc = inspect.getdoc(a)
        assert doc, f"{async_cls.__name__}.{name} has no docstring"
        assert inspect.getdoc(s) == doc, f"{sync_cls.__name__}.{name}: docstring differs from the async twin's"
        assert isinstance(s, property) == isinstance(a, property), name
        if callable(a):
            assert _shape(s) == _shape(a), f"{name}: parameters differ"
            assert not inspect.iscoroutinefunction(s), f"{sync_cls.__name__}.{name} is async"


def _shape(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    # Names, kinds and defaults; annotations legitimately differ (psycopg's vs asyncpg's types).
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_async_methods_are_async() -> None:
    for _, async_cls in PAIRS.values():
        for name in public_names(async_cls):
            a = getattr(async_cls, name)
            if callable(a) and inspect.isfunction(inspect.unwrap(a)):
                unwrapped = inspect.unwrap(a)
                assert inspect.iscoroutinefunction(unwrapped) or inspect.isasyncgenfunction(unwrapped), name


def test_the_generated_sync_modules_are_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, "tools/async_to_sync.py", "--check"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


# -- one body, both flavours ------------------------------------------------------------


class Blocking:
    """Use a client of either flavour the same way: an async client's calls are run to completion on ``loop``."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._settle(value(*args, **kwargs))

        return call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._settle(self._target(*args, **kwargs))

    def _settle(self, result: Any) -> Any:
        if isinstance(result, Client | AsyncClient):  # a client is an async context manager too
            return self._wrap(result)
        if isinstance(result, AsyncGenerator):
            return self._iterate(result)
        if isinstance(result, AbstractAsyncContextManager):
            return self._context(result)
        if inspect.isawaitable(result):
            result = self._loop.run_until_complete(result)
        return self._wrap(result)

    def _wrap(self, value: Any) -> Any:
        return Blocking(value, self._loop) if isinstance(value, Client | AsyncClient) else value

    def _iterate(self, agen: AsyncGenerator[Any, None]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run_until_complete(agen.aclose())

    @contextmanager
    def _context(self, manager: AbstractAsyncContextManager[Any]) -> Iterator[Any]:
        value = self._loop.run_until_complete(manager.__aenter__())
        try:
            yield self._wrap(value)
        except BaseException as exc:
            if not self._loop.run_until_complete(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._loop.run_until_complete(manager.__aexit__(None, None, None))

    def __iter__(self) -> Iterator[Any]:
        if hasattr(self._target, "__aiter__"):
            return self._iterate(self._aiter(self._target))
        return iter(self._target)

    @staticmethod
    async def _aiter(target: Any) -> AsyncIterator[Any]:
        async for item in target:
            yield item


class Flavour:
    """Open clients of one flavour on the test database."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.loop = asyncio.new_event_loop()
        self._opened: list[Any] = []

    @property
    def is_async(self) -> bool:
        return self.name == "async"

    def cls(self, kind: str) -> Any:
        return Blocking(PAIRS[kind][self.is_async], self.loop)

    def open(self, kind: str, **options: Any) -> Any:
        client = self.cls(kind).connect(self.url, **options)
        self._opened.append(client)
        return client

    def stop_event(self) -> Any:
        return asyncio.Event() if self.is_async else threading.Event()

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.is_closed() if self.is_async else conn.closed)

    def close(self) -> None:
        for client in self._opened:
            client.close()
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest, db_url: str) -> Iterator[Flavour]:
    f = Flavour(request.param, db_url)
    try:
        yield f
    finally:
        f.close()


# -- the connection -------------------------------------------------------------------


@pytest.mark.parametrize("kind", PAIRS)
def test_close_closes_only_an_owned_connection(flavour: Flavour, kind: str) -> None:
    client = flavour.open(kind)
    assert client.schema == "goalrt"
    borrowed = flavour.cls(kind)(client.connection)
    assert borrowed.connection is client.connection
    borrowed.close()
    assert not flavour.is_closed(client.connection)
    client.close()
    assert flavour.is_closed(client.connection)


def test_connect_to_a_fork_acts_on_it(flavour: Flavour, db_url: str) -> None:
    with State.connect(db_url) as main:
        main.set("a", 1)
        forks.create(main.connection, "f")
        main.set("a", 2)
    st = flavour.open("state", fork="f")
    log = flavour.open("log", fork="f")
    goals = flavour.open("goals", fork="f")
    assert st.schema == log.schema == goals.schema == "goalrt_fork_f"
    assert st.value("a") == 1
    st.set("b", 1)
    assert [e.stream for e in log.read()] == ["state"]
    assert goals.list() == []
    with pytest.raises(Exception, match="no fork named 'nope'"):
        flavour.open("state", fork="nope")


# -- the event log ----------------------------------------------------------------------


def test_log_append_read_position_verify(flavour: Flavour) -> None:
    log = flavour.open("log")
    a = log.append("s", "t", {"x": 1.5}, actor="ann", correlation_id=7)
    ids = log.append_many([{"stream": "s", "type": "u.v", "data": [1, "two"]}])
    assert log.append_many([]) == []
    assert log.tick() == 2
    assert log.head() == 2
    with log.transaction() as same:
        same.append("other", "in-tx")
        assert [e.id for e in log.read()] == [a, *ids]  # no tick inside a transaction
    events = log.read()
    assert [(e.pos, e.type, e.data) for e in events] == [(1, "t", {"x": 1.5}), (2, "u.v", [1, "two"]), (3, "in-tx", {})]
    assert events[0].metadata == {"actor": "ann", "correlation_id": "7"}
    assert [e.pos for e in log.read(after=1, limit=5, stream="s", type="u.*")] == [2]
    assert [e.pos for e in log.read(limit=1)] == [1]
    assert log.position(ids[0]) == 2
    assert log.position(events[2].id, tick=False) == 3
    assert log.verify().ok
    assert log.verify_or_raise().checked == 3
    anchor = log.head_anchor()
    assert (anchor.pos, anchor.hash) == (3, events[2].hash.hex())
    report = log.verify([anchor, str(anchor)])
    assert report.ok and report.anchors == 2
    assert log.verify_or_raise([anchor]).checked == 3
    report = log.verify([f"3:{'ab' * 32}"])
    assert not report.ok and report.anchor is not None and report.anchor.pos == 3


def test_log_transaction_is_all_or_nothing(flavour: Flavour) -> None:
    log = flavour.open("log")
    with pytest.raises(RuntimeError, match="boom"), log.transaction():
        log.append("s", "lost")
        raise RuntimeError("boom")
    log.append("s", "kept")
    assert [e.type for e in log.read()] == ["kept"]


def test_log_follow_catches_up_and_stops(flavour: Flavour) -> None:
    log = flavour.open("log")
    log.append_many({"stream": "s" if i % 2 else "n", "type": "e", "data": {"i": i}} for i in range(6))
    stop = flavour.stop_event()
    got = []
    for event in log.follow(after=1, idle_poll=0.05, stop=stop):
        got.append(event.pos)
        if event.pos == 6:
            stop.set()  # seen once the page is out
    assert got == [2, 3, 4, 5, 6]
    stop = flavour.stop_event()
    filtered = []
    for event in log.follow(stream="s", batch=2, idle_poll=0.05, stop=stop):
        filtered.append(event.data["i"])
        if len(filtered) == 3:
            stop.set()
    assert filtered == [1, 3, 5]


# -- memory ----------------------------------------------------------------------------


def test_memory_index_search_remember_follow_reset(flavour: Flavour) -> None:
    memory = flavour.open("memory", embedder=None)  # words alone: the same on every server, no model to load
    assert memory.embedder is None
    log = flavour.open("log")
    log.append("order:o1", "payment.failed", {"reason": "card declined"})
    note = memory.remember("the customer prefers email", data={"who": "ann"})
    assert isinstance(note, int)
    assert memory.index(batch=1) == 2
    hits = memory.search("email please", limit=3)
    assert [(h.stream, h.type) for h in hits] == [("memory", "memory.noted")]
    assert "who: ann" in hits[0].text and hits[0].to_json()["pos"] == 2
    assert [h.type for h in memory.search("declined card", type="payment.*")] == ["payment.failed"]
    log.append("order:o2", "shipment.sent", {"carrier": "DHL"})
    stop = flavour.stop_event()
    stop.set()  # one pass, then stop
    assert memory.follow(idle_poll=0.05, stop=stop) == 1
    status = memory.status()
    assert (status.cursor_pos, status.head, status.entries) == (3, 3, 3)
    memory.reset()
    assert memory.status().entries == 0
    assert memory.index() == 3


# -- the state ---------------------------------------------------------------------------


def test_state_change_and_read(flavour: Flavour) -> None:
    st = flavour.open("state")
    result = st.change(
        [Change.set("a.b", 1), {"op": "set", "path": "a.c", "value": "x"}], stream="s", metadata={"why": "t"}
    )
    assert result.versions == {"a.b": 1, "a.c": 1} and result.event_id > 0
    assert st.tick() == 1
    assert st.set("a.b", 2) == 2
    assert st.increment("n", 5) == 5
    assert st.increment("n", by=-1.5) == 3.5
    assert st.delete("a.c") == 2
    with pytest.raises(VersionConflictError):
        st.set("a.b", 3, expect_version=1)
    entry = st.get("a.b")
    assert entry is not None and (entry.value, entry.version, entry.pos) == (2, 2, 2)
    assert st.get("a.c") is None
    assert st.value("a.b") == 2 and st.value("gone", "d") == "d"
    assert st.version("a.c") == 2 and st.version("never") == 0
    assert [e.path for e in st.list("a")] == ["a.b"]
    assert [e.path for e in st.list("*")] == ["a.b", "n"]
    assert [e.path for e in st] == ["a.b", "n"]
    assert [(h.pos, h.op, h.value, h.deleted, h.version) for h in st.history("a.c")] == [
        (1, "set", "x", False, 1),
        (5, "delete", None, True, 2),
    ]


def test_state_at_a_past_point(flavour: Flavour) -> None:
    st = flavour.open("state")
    st.set("a", 1)
    st.set("b", "x")
    st.set("a", 2)
    head = st.tick()
    assert st.position(2) == 2
    assert st.position(datetime.now(UTC).isoformat()) == head
    assert [(e.path, e.value) for e in st.list(at=2)] == [("a", 1), ("b", "x")]
    entry = st.get("a", at=1)
    assert entry is not None and entry.value == 1
    assert st.value("b", "none", at=1) == "none"
    assert [(e.path, e.value, e.version) for e in st.replayed(2)] == [("a", 1, 1), ("b", "x", 1)]
    assert [e.path for e in st.replayed(3, "b")] == ["b"]


# -- goals ------------------------------------------------------------------------------


class Charge(BaseModel):
    order: str
    amount: float


def make_registry() -> Registry:
    registry = Registry()

    @registry.goal("checkout", params=Charge)
    def checkout(p: Charge) -> list[Step]:
        return [Step("pay", {"order": p.order})]

    @registry.goal("noop")
    def noop(p: Any) -> list[Step]:
        return [Step("nothing")]

    return registry


def test_goals_submit_inspect_cancel(flavour: Flavour) -> None:
    registry = make_registry()
    goals = flavour.open("goals", registry=registry)
    assert goals.registry is registry
    assert goals.register() == ["checkout", "noop"]
    schema = goals.params_schema("checkout")
    assert schema is not None and set(schema["properties"]) == {"order", "amount"}
    assert goals.params_schema("nope") is None
    s = goals.submit("checkout", {"order": "o1", "amount": 5}, priority=3, key="k1")
    assert s.created
    assert goals.submit("checkout", {"order": "o1", "amount": 5}, key="k1") == Submitted(s.id, False)
    with pytest.raises(InvalidGoalError, match="amount"):
        goals.submit("checkout", {"order": "o1"})
    many = goals.submit_many([("noop", {}, None), ("noop", None, {"priority": 1})])
    assert [m.created for m in many] == [True, True]
    info = goals.get(s.id)
    assert (info.status, info.priority, info.params) == (GoalStatus.PENDING, 3, {"order": "o1", "amount": 5.0})
    assert [e.type for e in info.events] == ["goal.submitted"]
    assert [g.id for g in goals.list()] == [many[1].id, many[0].id, s.id]
    assert [g.id for g in goals.list(status="pending", name="checkout", limit=5)] == [s.id]
    with pytest.raises(InvalidGoalError, match="unknown status 'done'"):
        goals.list(status="done")
    goals.cancel(many[0].id, reason="not needed")
    with pytest.raises(InvalidTransitionError):
        goals.cancel(many[0].id)
    assert goals.counts() == {"cancelled": 1, "pending": 2}
    ended = goals.wait(many[0].id, timeout=5)
    assert (ended.status, ended.last_error) == (GoalStatus.CANCELLED, "not needed")
    assert goals.retry(many[0].id, reason="again") is None
    assert goals.get(many[0].id).status == GoalStatus.PENDING
    with pytest.raises(InvalidTransitionError, match="it is pending"):
        goals.retry(many[0].id)
    goals.cancel(many[0].id, reason="not needed")
    with pytest.raises(GoalWaitTimeoutError, match=f"goal {s.id} is still pending"):
        goals.wait(s.id, timeout=0)
    assert [(n.id, n.depth) for n in goals.tree(s.id)] == [(s.id, 0)]
    with pytest.raises(GoalNotFoundError):
        goals.get(10**9)
    with pytest.raises(GoalNotFoundError):
        goals.tree(10**9)
    assert goals.wake_due() == 0
    assert goals.wake_due(max_count=5) == 0


def test_goals_limits_and_workers(flavour: Flavour, conn: psycopg.Connection) -> None:
    goals = flavour.open("goals")
    limit = goals.set_limit("charge", concurrency=2, key="account")
    assert (limit.action, limit.key_arg, limit.max_concurrent) == ("charge", "account", 2)
    goals.set_limit("call", rate=5, per=2.0, burst=3)
    assert [(lim.action, lim.rate, lim.running, lim.parked) for lim in goals.limits()] == [
        ("call", 5, 0, 0),
        ("charge", None, 0, 0),
    ]
    assert goals.drop_limit("charge", "account") is True
    assert goals.drop_limit("charge", "account") is False
    assert [lim.action for lim in goals.limits()] == ["call"]
    assert goals.workers() == []
    conn.execute("SELECT goalrt.register_worker_v2('w1', 'one', 'host', 42, 4, '{g}', '{a}', NULL, NULL)")
    (worker,) = goals.workers()
    assert (worker["id"], worker["pid"], worker["goal_types"], worker["partitions"]) == ("w1", 42, ["g"], None)
    assert worker["seconds_since_seen"] >= 0 and isinstance(worker["started_at"], str)


APPROVAL = {"type": "object", "properties": {"approved": {"type": "boolean"}}, "required": ["approved"]}


def test_goals_waiting_and_resume(flavour: Flavour, conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.register_goal_type('g', '{}')")
    goals = flavour.open("goals")
    gid = goals.submit("g").id
    (epoch,) = [
        r[1] for r in conn.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v1('w1', 10, 30)") if r[0] == gid
    ]
    item = {"goal_id": gid, "epoch": epoch, "steps": [ask("Ship?", APPROVAL).as_json(), Step("ship", {}).as_json()]}
    conn.execute("SELECT goalrt.plan_goals_v1('w1', %s, 30)", (Jsonb([item]),))
    assert [(w.id, w.describe()) for w in goals.waiting()] == [(gid, "answer to 'Ship?'")]
    assert goals.waiting(limit=0) == []
    with pytest.raises(InvalidGoalError, match="approved is required"):
        goals.resume(gid, {})
    assert goals.resume(gid, {"approved": True}, actor="ann") == "released"
    assert goals.waiting() == []
    assert goals.get(gid).steps[0].result == {"approved": True}


def test_schedules_set_list_and_drop(flavour: Flavour, conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.register_goal_type('g', '{}')")
    goals = flavour.open("goals")
    made = goals.set_schedule("nightly", "g", {"x": 1}, cron="0 3 * * *", catch_up="skip")
    assert (made.name, made.goal, made.params, made.catch_up, made.enabled) == ("nightly", "g", {"x": 1}, "skip", True)
    assert [(s.name, s.fired) for s in goals.schedules()] == [("nightly", 0)]
    assert goals.drop_schedule("nightly") is True
    assert goals.drop_schedule("nightly") is False
    assert goals.schedules() == []


def test_queue_figures_and_recently_ended_goals(flavour: Flavour, conn: psycopg.Connection) -> None:
    conn.execute("SELECT goalrt.register_goal_type('g', '{}')")
    goals = flavour.open("goals")
    goals.submit("g")
    goals.cancel(goals.submit("g").id)
    figures = goals.figures()
    assert (figures.runnable, figures.waiting, figures.parked, figures.expired) == (1, 0, 0, 0)
    assert figures.oldest_runnable >= 0 and figures.unpositioned >= 0
    (ended,) = goals.finished()
    assert (ended.status, ended.count) == ("cancelled", 1) and 0 <= ended.p50 <= ended.max
    # Only the newest goals are read: the newest (the cancelled one) alone, or nothing in a window of no time.
    assert [(f.status, f.count) for f in goals.finished(newest=1)] == [("cancelled", 1)]
    assert goals.finished(window=0) == []
    # Pending goals still to be planned wait for any worker, not for a handler.
    assert goals.unserved() == 0
    # Per minute: the window's minutes, oldest first; the cancel in one of the last two (a minute may have begun
    # since), and no times (no goal completed).
    history = goals.per_minute(minutes=5)
    assert len(history.minutes) == 5 and not history.cut
    assert [m.ended for m in history.minutes if m.ended] == [{"cancelled": 1}]
    assert any(m.ended for m in history.minutes[-2:]) and all(m.p50 is None for m in history.minutes)


# -- coverage ---------------------------------------------------------------------------


def test_every_public_name_is_exercised() -> None:
    # Read from this file: the public names that the behaviour tests (those run per flavour) use.
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    used = {
        node.attr
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef) and any(arg.arg == "flavour" for arg in fn.args.args)
        for node in ast.walk(fn)
        if isinstance(node, ast.Attribute)
    }
    used.add("connect")  # Flavour.open connects
    for sync_cls, async_cls in PAIRS.values():
        missing = public_names(async_cls) - used
        assert not missing, f"no behaviour test uses {sync_cls.__name__}/{async_cls.__name__}.{sorted(missing)}"
