"""The asyncpg API, and following the log live (sync and async)."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest

from goalrt.errors import InvalidEventError
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.log.eventlog import EventLog


def test_async_append_read_verify(db_url: str) -> None:
    async def scenario() -> None:
        async with await AsyncEventLog.connect(db_url) as log:
            a = await log.append("s", "t", {"x": 1.5}, actor="async")
            ids = await log.append_many([{"stream": "s", "type": "u", "data": [1, "two"]}])
            await log.tick()
            async with log.transaction():
                await log.append("s", "in-tx")
                assert [e.id for e in await log.read()] == [a, *ids]  # no tick inside a transaction
            events = await log.read()
            assert [(e.type, e.data) for e in events] == [("t", {"x": 1.5}), ("u", [1, "two"]), ("in-tx", {})]
            assert events[0].metadata == {"actor": "async"}
            assert await log.head() == 3
            assert await log.position(ids[0]) == 2
            assert (await log.verify()).ok
            with pytest.raises(InvalidEventError, match=r"events\[0\]\.stream"):
                await log.append_many([{"stream": "", "type": "t"}])

    asyncio.run(scenario())


def test_sync_and_async_produce_the_same_rows(db_url: str) -> None:
    with EventLog.connect(db_url) as log:
        log.append("s", "t", {"k": [1, {"n": None}]}, metadata={"m": True})

    async def read() -> list:
        async with await AsyncEventLog.connect(db_url) as alog:
            return await alog.read()

    with EventLog.connect(db_url) as log:
        assert asyncio.run(read()) == log.read()


def test_sync_follow_catches_up_then_streams_live(db_url: str, log: EventLog) -> None:
    log.append_many({"stream": "s", "type": "old", "data": {"i": i}} for i in range(3))
    stop = threading.Event()
    got: list[tuple[int, str]] = []
    seen_live = threading.Event()

    def follow() -> None:
        with EventLog.connect(db_url) as follower:
            for e in follower.follow(after=1, idle_poll=5.0, stop=stop):
                got.append((e.pos, e.type))
                if e.type == "live":
                    seen_live.set()
                    stop.set()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    log.append("s", "live")  # the notification, not the 5 s poll, must wake the follower
    assert seen_live.wait(4.0), "follower did not receive the live event"
    assert time.monotonic() - started < 4.0
    t.join(5)
    assert got == [(2, "old"), (3, "old"), (4, "live")]


def test_filtered_follow_skips_unmatched_stretches(db_url: str, log: EventLog) -> None:
    log.append_many({"stream": "noise", "type": "n"} for _ in range(50))
    log.append("wanted", "w")
    stop = threading.Event()
    with EventLog.connect(db_url) as follower:
        out = []
        for e in follower.follow(stream="wanted", batch=10, stop=stop):
            out.append(e.pos)
            stop.set()
    assert out == [51]


def test_follow_survives_lost_notifications_by_polling(db_url: str) -> None:
    # Appends made in plain SQL send no goalrt_append notification; polling must still deliver them.
    stop = threading.Event()
    got: list[int] = []

    def follow() -> None:
        with EventLog.connect(db_url) as follower:
            for e in follower.follow(idle_poll=0.2, stop=stop):
                got.append(e.pos)
                if len(got) == 2:
                    stop.set()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SELECT goalrt.append_event('s', 'quiet')")
        time.sleep(0.5)
        c.execute("SELECT goalrt.append_event('s', 'quiet')")
    t.join(10)
    assert got == [1, 2]


def test_async_follow_receives_events_from_other_connections(db_url: str) -> None:
    async def scenario() -> list[str]:
        stop = asyncio.Event()
        out: list[str] = []
        async with await AsyncEventLog.connect(db_url) as reader, await AsyncEventLog.connect(db_url) as writer:

            async def consume() -> None:
                async for e in reader.follow(idle_poll=5.0, stop=stop):
                    out.append(e.type)
                    if len(out) == 3:
                        stop.set()

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.2)
            await writer.append("s", "a")
            await writer.append_many([{"stream": "s", "type": "b"}, {"stream": "s", "type": "c"}])
            async with asyncio.timeout(5.0):
                await task
        return out

    assert asyncio.run(scenario()) == ["a", "b", "c"]
