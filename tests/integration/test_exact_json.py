"""Numbers go through every interface exactly; one undecodable row never stops a reader or a claim.

Issue 15 items 5, 6 (the Python readers and the claim) and 8 (deep JSON refused before anything is sent).
"""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goalrt import AsyncEventLog, AsyncGoals, AsyncState, EventLog, Goals, Registry, State, Step
from goalrt.db.jsontext import MAX_JSON_DEPTH, UnreadableJson
from goalrt.errors import InvalidEventError, InvalidGoalError, InvalidStateChangeError

from .test_worker import until_finished, with_worker

POISON = "[" * 2000 + "]" * 2000  # PostgreSQL's jsonb takes it; Python's json cannot decode it

_paths = itertools.count()


def _in_jsonb_range(d: Decimal) -> bool:
    return not d or -16000 < d.adjusted() < 100000


numbers = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).filter(_in_jsonb_range),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(),
    # Integers beyond Python's 4300-digit int() limit (jsonb holds them): read back as Decimal.
    st.integers(1, 10**6).map(lambda k: Decimal(str(k) + "0" * 4500)),
    st.sampled_from([Decimal("0.10000000000000000000001"), Decimal("1E+400"), Decimal("19.999999999999999999")]),
)


def exact(value: Any) -> Decimal:
    """Return the decimal value a number stands for (a float's shortest text, as JSON writes it)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def assert_same_number(got: Any, sent: Any) -> None:
    assert isinstance(got, int | float | Decimal) and not isinstance(got, bool), got
    assert exact(got) == exact(sent)
    # A float comes back where (and only where) it says the number exactly.
    if isinstance(got, Decimal):
        assert exact(float(got)) != got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=numbers)
def test_numbers_round_trip_exactly_through_sync_async_and_sql(db_url: str, number: Any) -> None:
    path = f"n.p{next(_paths)}"
    with State.connect(db_url) as state, EventLog.connect(db_url) as log:
        state.set(path, number)
        entry = state.get(path)
        assert entry is not None
        assert_same_number(entry.value, number)
        event_id = log.append("numbers", "n", {"n": number}, metadata={"m": [number]})
        pos = log.position(event_id)
        assert pos is not None
        (event,) = log.read(pos - 1, 1)
        assert_same_number(event.data["n"], number)
        assert_same_number(event.metadata["m"][0], number)

    async def read_async() -> tuple[Any, Any]:
        async with await AsyncState.connect(db_url) as s, await AsyncEventLog.connect(db_url) as lg:
            got = await s.get(path)
            (ev,) = await lg.read(pos - 1, 1)
            # Written by the async client too: the same number again.
            await s.set(path + "a", got.value if got else None)
            again = await s.get(path + "a")
            return (got.value if got else None), (ev.data["n"], again.value if again else None)

    value, (data, again) = asyncio.run(read_async())
    assert_same_number(value, number)
    assert_same_number(data, number)
    assert_same_number(again, number)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT value #>> '{}', (SELECT data->>'n' FROM goalrt.events WHERE id = %s)"
            " FROM goalrt.state WHERE path = %s",
            (event_id, path),
        ).fetchone()
    assert row is not None
    assert Decimal(row[0]) == exact(number) and Decimal(row[1]) == exact(number)


def test_a_number_stored_exactly_by_sql_reads_back_exactly(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('SELECT goalrt.change_state(\'[{"op": "set", "path": "p", "value": 0.10000000000000000000001}]\')')
    with State.connect(db_url) as state:
        entry = state.get("p")
        assert entry is not None and entry.value == Decimal("0.10000000000000000000001")
        state.increment("p", Decimal("12345678901234567890.12345"))
        after = state.get("p")
        assert after is not None and after.value == Decimal("12345678901234567890.22345000000000000000001")


def test_deep_json_is_refused_before_anything_is_sent(db_url: str) -> None:
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    too_deep = [deep]
    very_deep: Any = 1
    for _ in range(3000):
        very_deep = [very_deep]
    with EventLog.connect(db_url) as log, State.connect(db_url) as state, Goals.connect(db_url) as goals:
        before = _event_count(db_url)
        log.append("s", "t", deep)  # the limit itself is fine
        for value in (too_deep, very_deep):
            with pytest.raises(InvalidEventError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
                log.append("s", "t", value)
            with pytest.raises(InvalidEventError, match="nested deeper"):
                log.append("s", "t", {}, metadata={"m": value})
            with pytest.raises(InvalidStateChangeError, match="nested deeper"):
                state.set("x", value)
            with pytest.raises(InvalidStateChangeError, match="nested deeper"):
                state.change([{"op": "set", "path": "x", "value": value}])
            with pytest.raises(InvalidGoalError, match="nested deeper"):
                goals.submit("anything", {"p": value})
        assert _event_count(db_url) == before + 1


def _event_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM goalrt.event_data").fetchone()
    assert row is not None
    return int(row[0])


def _append_poison_by_sql(db_url: str) -> None:
    """Insert an event as the tables' owner: a row from before migration 0010 (goalrt's functions refuse it now)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO goalrt.event_data (stream, type, data, metadata)"
            " VALUES ('s', 'poison', %s::jsonb, jsonb_build_object('m', %s::jsonb))",
            (POISON, POISON),
        )


def test_an_undecodable_event_does_not_stop_the_readers(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with EventLog.connect(db_url) as log:
        log.append("s", "before", {"n": 1})
        _append_poison_by_sql(db_url)
        log.append("s", "after", {"n": 2})
        events = log.read(0, 10)
        assert [e.type for e in events] == ["before", "poison", "after"]
        assert isinstance(events[1].data, UnreadableJson)
        assert "unreadable" in events[1].metadata
        assert f"event at pos {events[1].pos}: data is unreadable JSON" in caplog.text
        followed = list(itertools.islice(log.follow(0), 3))
        assert [e.type for e in followed] == ["before", "poison", "after"]

    async def read_async() -> list[Any]:
        async with await AsyncEventLog.connect(db_url) as alog:
            read = await alog.read(0, 10)
            followed = []
            async for e in alog.follow(0):
                followed.append(e)
                if len(followed) == 3:
                    break
            return [read, followed]

    read, followed = asyncio.run(read_async())
    assert [e.type for e in read] == [e.type for e in followed] == ["before", "poison", "after"]
    assert isinstance(read[1].data, UnreadableJson) and read[2].data == {"n": 2}


def test_a_goal_with_undecodable_params_fails_alone(db_url: str) -> None:
    registry = Registry()

    @registry.goal("job")
    def job(p: dict[str, Any]) -> list[Step]:
        return [Step("work", {})]

    @registry.action("work")
    def work(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"ok": True}

    with Goals.connect(db_url, registry=registry) as goals:
        goals.register()
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM goalrt.submit_goal('job', '{}', '{}')").fetchone()
        assert row is not None
        poisoned = int(row[0])
        # As the tables' owner: params from before migration 0010 (goalrt's functions refuse them now).
        conn.execute(
            "UPDATE goalrt.goals SET params = jsonb_build_object('p', %s::jsonb) WHERE id = %s", (POISON, poisoned)
        )

    async def body(goals: AsyncGoals, worker: Any) -> None:
        good = [(await goals.submit("job", {"i": i})).id for i in range(6)]
        infos = await until_finished(goals, poisoned, *good)
        assert infos[0].status == "failed"
        assert infos[0].last_error is not None and "params cannot be read" in infos[0].last_error
        assert [i.status for i in infos[1:]] == ["complete"] * 6

    asyncio.run(with_worker(db_url, registry, body))
