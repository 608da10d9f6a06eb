"""The live event stream (Server-Sent Events): events appended while a client is connected arrive, once, in order;
a client that reconnects with ``Last-Event-ID`` gets every later event, none lost, none twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.log.eventlog import EventLog
from tests.integration.serve_support import serving
from tests.integration.test_tenants import Tenancy
from tests.integration.test_tenants import tenancy as tenancy  # the fixture

STREAM = "/api/v1/events/stream"


@pytest.fixture
def base(db_url: str) -> Iterator[str]:
    with serving(db_url) as url:
        yield url


def messages(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Yield each SSE message with an id as {"id": ..., "event": ...}; stop at an error message."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            continue
        if fields.get("event") == "error":
            raise AssertionError(f"the stream failed: {fields.get('data')}")
        if "id" in fields:
            yield {"id": int(fields["id"]), "event": json.loads(fields["data"])}
        fields = {}


def append(url: str, n: int, start: int = 0) -> None:
    with EventLog.connect(url) as log:
        for i in range(start, start + n):
            log.append("s:1", "thing.happened", {"i": i})


def take(base: str, n: int, *, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, Any]]:
    """Read ``n`` messages from a fresh connection, then disconnect."""
    got: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{base}{STREAM}", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for message in messages(response.iter_lines()):
            got.append(message)
            if len(got) == n:
                break
    return got


def test_events_appended_while_connected_arrive_once_in_order(base: str, db_url: str) -> None:
    n = 40
    got: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client, client.stream("GET", f"{base}{STREAM}") as response:
        lines = response.iter_lines()
        assert next(lines).startswith(":")  # connected: the server follows the log from here
        writer = threading.Thread(target=append, args=(db_url, n))
        writer.start()
        for message in messages(lines):
            got.append(message)
            if len(got) == n:
                break
        writer.join()
    assert [m["event"]["data"]["i"] for m in got] == list(range(n))
    assert [m["id"] for m in got] == [m["event"]["pos"] for m in got]
    assert [m["id"] for m in got] == sorted({m["id"] for m in got})


def test_a_client_resumes_from_last_event_id_without_loss_or_duplicates(base: str, db_url: str) -> None:
    append(db_url, 10)
    first = take(base, 4, stream="s:1")
    assert [m["event"]["data"]["i"] for m in first] == [0, 1, 2, 3]
    # While the client is away, more events are appended; it comes back with the last id it saw.
    append(db_url, 10, start=10)
    rest = take(base, 16, headers={"Last-Event-ID": str(first[-1]["id"])}, stream="s:1")
    assert [m["event"]["data"]["i"] for m in rest] == list(range(4, 20))
    assert [m["id"] for m in first + rest] == sorted({m["id"] for m in first + rest})


def test_the_stream_filters_by_type_and_starts_after_a_position(base: str, db_url: str) -> None:
    with EventLog.connect(db_url) as log:
        log.append("s:2", "other.thing", {})
        log.append("s:2", "thing.happened", {"i": 0})
        log.append("s:2", "thing.happened", {"i": 1})
        log.tick()
    (first,) = take(base, 1, type="thing.*")
    assert first["event"]["data"] == {"i": 0}
    (second,) = take(base, 1, type="thing.*", after=first["id"])
    assert second["event"]["data"] == {"i": 1}


def test_a_bad_last_event_id_is_refused(base: str) -> None:
    r = httpx.get(f"{base}{STREAM}", headers={"Last-Event-ID": "abc"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("invalid Last-Event-ID 'abc'")


def subscribe_until(base: str, n: int, ready: threading.Barrier, out: list[Any], **params: Any) -> None:
    """A subscriber: connect, say so, then read ``n`` messages (or record what went wrong)."""
    got: list[dict[str, Any]] = []
    try:
        with httpx.Client(timeout=60) as client, client.stream("GET", f"{base}{STREAM}", params=params) as response:
            lines = response.iter_lines()
            assert next(lines).startswith(":")  # subscribed
            ready.wait(60)
            for message in messages(lines):
                got.append(message)
                if len(got) == n:
                    break
        out.append(got)
    except BaseException as exc:
        out.append(exc)
        ready.abort()


def connections(url: str, dbname: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchone()
    return int(row[0]) if row else 0


def test_twenty_subscribers_share_one_reader_and_each_gets_every_event_once_in_order(base: str, db_url: str) -> None:
    with EventLog.connect(db_url) as log:
        log.append("s:other", "noise", {})
        head = log.tick()
        dbname = str(log.connection.info.dbname)
    n, plain, filtered = 120, 14, 6
    ready = threading.Barrier(plain + filtered + 1)
    results: list[Any] = []
    threads = [
        threading.Thread(target=subscribe_until, args=(base, n, ready, results), kwargs={"after": head})
        for _ in range(plain)
    ] + [
        threading.Thread(
            target=subscribe_until,
            args=(base, n // 2, ready, results),
            kwargs={"after": head, "type": "fan.even"},
        )
        for _ in range(filtered)
    ]
    for t in threads:
        t.start()
    ready.wait(60)
    # Twenty open streams hold no connection each: the server's pool and one reader of the log.
    assert connections(db_url, dbname) <= 4 + 1 + 2  # pool_size, the hub, this check's own and a spare
    writers = [threading.Thread(target=append_typed, args=(db_url, f"s:fan{w}", range(w, n, 2))) for w in range(2)]
    for t in writers:
        t.start()
    for t in writers + threads:
        t.join(120)
    assert not [r for r in results if isinstance(r, BaseException)], results
    with EventLog.connect(db_url) as log:
        appended = log.read(head, 10_000)
    every = [e.pos for e in appended if e.type.startswith("fan.")]
    evens = [e.pos for e in appended if e.type == "fan.even"]
    assert len(every) == n and len(evens) == n // 2
    for got in results:
        ids = [m["id"] for m in got]
        assert ids in (every, evens), ids  # each event once, in log order, none missing
        assert [m["event"]["pos"] for m in got] == ids


def append_typed(url: str, stream: str, numbers: range) -> None:
    with EventLog.connect(url) as log:
        for i in numbers:
            log.append(stream, "fan.even" if i % 2 == 0 else "fan.odd", {"i": i})


def test_a_subscriber_behind_the_window_catches_up_from_the_pool_exactly(
    base: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goalrt.serve import fanout

    monkeypatch.setattr(fanout, "WINDOW", 5)
    monkeypatch.setattr(fanout, "PAGE", 7)
    with EventLog.connect(db_url) as log:
        start = log.tick()
    # A first subscriber opens the reader; then 40 events go by, more than the window holds.
    got: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client, client.stream("GET", f"{base}{STREAM}", params={"after": start}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith(":")
        append(db_url, 40)
        for message in messages(lines):
            got.append(message)
            if len(got) == 40:
                # Still open, the reader's window has moved on: a client resuming from early on reads
                # the pool up to the window, then the window, and gets every event once, in order.
                late = take(base, 34, headers={"Last-Event-ID": str(got[5]["id"])})
                break
    assert [m["event"]["data"]["i"] for m in got] == list(range(40))
    assert [m["id"] for m in late] == [m["id"] for m in got[6:]]


def as_role(url: str, role: str) -> str:
    params = conninfo_to_dict(url)
    params["user"] = role
    params.pop("password", None)
    return make_conninfo("", **params)


def test_streams_of_two_tenants_share_no_reader_and_see_only_their_own_events(tenancy: Tenancy) -> None:
    """One reader per role: a tenant's stream never carries another tenant's events, even both open at once."""
    a, b = tenancy.login("goalrt_app", "a"), tenancy.login("goalrt_app", "b")
    readers = {name: tenancy.login("goalrt_reader", name).info.user for name in ("a", "b")}
    tokens = {f"token-{name}-" + name * 20: as_role(tenancy.url, role) for name, role in readers.items()}
    for c in (a, b):
        c.execute("CALL goalrt.tick_commit()")
    with serving(tenancy.url, tokens=tokens) as base:
        results: list[Any] = []
        ready = threading.Barrier(3)

        def read(token: str) -> None:
            got: list[dict[str, Any]] = []
            headers = {"Authorization": f"Bearer {token}"}
            with (
                httpx.Client(timeout=60) as client,
                client.stream("GET", f"{base}{STREAM}", params={"stream": "shared"}, headers=headers) as r,
            ):
                assert r.status_code == 200, r.read()
                lines = r.iter_lines()
                assert next(lines).startswith(":")
                ready.wait(60)
                for message in messages(lines):
                    got.append(message)
                    if len(got) == 5:
                        break
            results.append((token, got))

        threads = [threading.Thread(target=read, args=(token,)) for token in tokens]
        for t in threads:
            t.start()
        ready.wait(60)
        for i in range(5):  # the same stream name in both tenants, interleaved
            for name, c in (("a", a), ("b", b)):
                c.execute(
                    "SELECT goalrt.append_event('shared', 'said', %s::jsonb)", (json.dumps({"who": name, "i": i}),)
                )
        for t in threads:
            t.join(60)
    assert len(results) == 2
    for token, got in results:
        who = token.split("-")[1]
        assert [m["event"]["data"] for m in got] == [{"who": who, "i": i} for i in range(5)]
