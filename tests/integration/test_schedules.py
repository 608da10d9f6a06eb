"""Schedules against a real PostgreSQL: each tick submitted once under racing workers, catch-up, GDL ownership.

Time is simulated by setting a schedule's next tick in the past (``next_at``),
as after downtime: nothing here sleeps until a tick.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from goalrt.errors import GoalrtError, InvalidGoalError
from goalrt.gdl.compiled import CompiledWorkspace
from goalrt.goals.goals import Goals
from goalrt.goals.schedules import tick_key
from goalrt.worker.database import WorkerDatabase, connect_pool
from goalrt.worker.scheduler import Scheduler
from tests.integration.test_roles_by_job import login  # noqa: F401 - a fixture

Login = Callable[[str], psycopg.Connection]
# Feb 29 at midnight: its newest tick is years old (2024-02-29 until 2028), so no run of this test is "just late".
LEAP = "0 0 29 2 *"


@pytest.fixture
def goals(db_url: str, conn: psycopg.Connection) -> Iterator[Goals]:
    conn.execute("SELECT goalrt.register_goal_type('report', '{\"type\": \"object\"}')")
    with Goals.connect(db_url) as g:
        yield g


def now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def keys(conn: psycopg.Connection, name: str) -> list[str]:
    rows = conn.execute(
        "SELECT idempotency_key FROM goalrt.goals WHERE idempotency_key LIKE %s ORDER BY idempotency_key",
        (f"schedule:{name}:%",),
    ).fetchall()
    return [r[0] for r in rows]


def row(conn: psycopg.Connection, name: str) -> tuple[datetime | None, int, int, str | None, bool]:
    found = conn.execute(
        "SELECT next_at, fired, skipped, last_error, enabled FROM goalrt.schedules WHERE name = %s", (name,)
    ).fetchone()
    assert found is not None
    return found  # type: ignore[return-value]


async def run_passes(url: str, workers: int, until_idle: bool = True) -> list[int]:
    """Run ``workers`` schedulers (each with its own pool) at once, pass after pass, until none fires more."""
    pools = [await connect_pool(url, 2, asyncio.Event()) for _ in range(workers)]
    try:
        schedulers = [
            Scheduler(WorkerDatabase(pool, "goalrt", f"w{i}", lambda: None), f"w{i}", 1.0, asyncio.Event())
            for i, pool in enumerate(pools)
            if pool is not None
        ]
        while True:
            before = sum(s.fired for s in schedulers)
            await asyncio.gather(*(s.pass_once() for s in schedulers))
            if not until_idle or sum(s.fired for s in schedulers) == before:
                return [s.fired for s in schedulers]
    finally:
        for pool in pools:
            if pool is not None:
                await pool.close()


def test_set_list_and_drop(goals: Goals, conn: psycopg.Connection) -> None:
    s = goals.set_schedule("nightly", "report", {"region": "eu"}, cron="30 2 * * *", timezone="Europe/Paris")
    assert (s.name, s.goal, s.params, s.catch_up, s.enabled, s.next_at) == (
        "nightly",
        "report",
        {"region": "eu"},
        "latest",
        True,
        None,
    )
    runs = s.next_runs(3)
    assert [r.astimezone(UTC).hour for r in runs] in ([0, 0, 0], [1, 1, 1], [0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0])
    assert all(r > s.updated_at for r in runs) and runs == sorted(runs)
    goals.set_schedule("often", "report", every=timedelta(minutes=15), catch_up="all")
    assert [x.name for x in goals.schedules()] == ["nightly", "often"]
    assert [x.timing.describe() for x in goals.schedules()] == ["cron 30 2 * * * (Europe/Paris)", "every 15m"]
    assert goals.drop_schedule("often") is True
    assert goals.drop_schedule("often") is False
    assert [x.name for x in goals.schedules()] == ["nightly"]
    events = conn.execute("SELECT type FROM goalrt.event_data WHERE stream = 'schedule:often' ORDER BY id").fetchall()
    assert events == [("schedule.set",), ("schedule.dropped",)]


def test_bad_schedules_are_refused_with_the_reason(goals: Goals, conn: psycopg.Connection) -> None:
    with pytest.raises(InvalidGoalError, match=r"invalid cron '61 \* \* \* \*': bad minute"):
        goals.set_schedule("x", "report", cron="61 * * * *")
    with pytest.raises(InvalidGoalError, match="expected 5 fields"):
        goals.set_schedule("x", "report", cron="* * * *")
    with pytest.raises(InvalidGoalError, match="unknown time zone 'Mars/Olympus'"):
        goals.set_schedule("x", "report", cron="0 * * * *", timezone="Mars/Olympus")
    with pytest.raises(InvalidGoalError, match="either cron or every"):
        goals.set_schedule("x", "report")
    with pytest.raises(InvalidGoalError, match="whole seconds"):
        goals.set_schedule("x", "report", every=1.5)
    with pytest.raises(GoalrtError, match="unknown goal type 'nope'"):
        goals.set_schedule("x", "nope", every=60)
    with pytest.raises(GoalrtError, match="invalid schedule name"):
        goals.set_schedule("bad name", "report", every=60)
    # From SQL, what the database checks itself.
    for options, message in (
        ({"cron": "every day"}, "cron must be 5 fields"),
        ({"every": 0}, "every must be a whole number of seconds"),
        ({"cron": "0 * * * *", "every": 60}, "give cron or every, not both"),
        ({"every": 60, "timezone": "Nowhere"}, "unknown time zone 'Nowhere'"),
        ({"every": 60, "catch_up": "some"}, "catch_up must be skip, latest or all"),
        ({"every": 60, "when": 1}, "schedule option when is not an option"),
    ):
        with pytest.raises(psycopg.Error, match=message):
            conn.execute("SELECT goalrt.set_schedule('x', 'report', '{}', %s::jsonb)", (json.dumps(options),))
    assert goals.schedules() == []


def test_each_tick_is_submitted_once_by_racing_workers(goals: Goals, conn: psycopg.Connection, db_url: str) -> None:
    start = now(conn).replace(microsecond=0) - timedelta(seconds=300)
    goals.set_schedule("fast", "report", every=1, catch_up="all", next_at=start)
    goals.set_schedule("minutely", "report", every=60, catch_up="all", next_at=start - timedelta(hours=1))
    goals.set_schedule("leap", "report", cron=LEAP, catch_up="all", next_at=datetime(2016, 2, 29, tzinfo=UTC))
    fired = asyncio.run(run_passes(db_url, 4))
    total = conn.execute("SELECT count(*) FROM goalrt.goals").fetchone()
    assert total is not None and sum(fired) == total[0]
    for name in ("fast", "minutely", "leap"):
        found = keys(conn, name)
        next_at, count, _, error, _ = row(conn, name)
        assert error is None and count == len(found) == len(set(found))
        assert next_at is not None and next_at > now(conn) - timedelta(seconds=2)
    fast = keys(conn, "fast")
    # Every second from the start, none missing.
    assert fast[:2] == [tick_key("fast", start), tick_key("fast", start + timedelta(seconds=1))]
    expected = [tick_key("fast", start + timedelta(seconds=i)) for i in range(len(fast))]
    assert fast == expected and len(fast) >= 300
    assert keys(conn, "leap") == [tick_key("leap", datetime(y, 2, 29, tzinfo=UTC)) for y in (2016, 2020, 2024)]


def test_a_pass_that_dies_before_its_commit_is_fired_again(goals: Goals, conn: psycopg.Connection, db_url: str) -> None:
    goals.set_schedule("leap", "report", cron=LEAP, catch_up="all", next_at=datetime(2020, 2, 29, tzinfo=UTC))
    item = {
        "name": "leap",
        "revision": 1,
        "due": "2020-02-29T00:00:00+00:00",
        "ticks": ["2020-02-29T00:00:00+00:00", "2024-02-29T00:00:00+00:00"],
        "next_at": "2028-02-29T00:00:00+00:00",
    }
    fire = "SELECT name, outcome, goal_ids FROM goalrt.fire_schedules_v1(%s::jsonb)"
    dying = psycopg.connect(db_url)
    answer = dying.execute(fire, (json.dumps([item]),)).fetchone()
    assert answer is not None and answer[1] == "fired" and len(answer[2]) == 2
    # Meanwhile another worker's pass skips the locked schedule instead of waiting for it.
    other = conn.execute(fire, (json.dumps([item]),)).fetchone()
    assert other == ("leap", "moved", None)
    dying.close()  # the worker died: its transaction rolls back
    assert keys(conn, "leap") == []
    asyncio.run(run_passes(db_url, 2))
    assert keys(conn, "leap") == [tick_key("leap", datetime(y, 2, 29, tzinfo=UTC)) for y in (2020, 2024)]
    # The same pass sent again (a stale read) changes nothing.
    assert conn.execute(fire, (json.dumps([item]),)).fetchone() == ("leap", "moved", None)


def test_two_concurrent_passes_of_one_tick_submit_it_once(goals: Goals, conn: psycopg.Connection, db_url: str) -> None:
    for attempt in range(20):
        name = f"race{attempt}"
        goals.set_schedule(name, "report", cron=LEAP, catch_up="latest", next_at=datetime(2024, 2, 29, tzinfo=UTC))
        item = {
            "name": name,
            "revision": 1,
            "due": "2024-02-29T00:00:00+00:00",
            "ticks": ["2024-02-29T00:00:00+00:00"],
            "next_at": "2028-02-29T00:00:00+00:00",
        }
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def fire(
            item: dict[str, object] = item, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes
        ) -> None:
            with psycopg.connect(db_url, autocommit=True) as c:
                barrier.wait()
                got = c.execute("SELECT outcome FROM goalrt.fire_schedules_v1(%s::jsonb)", (json.dumps([item]),))
                outcomes.append(got.fetchone()[0])  # type: ignore[index]

        threads = [threading.Thread(target=fire) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["fired", "moved"]
        assert len(keys(conn, name)) == 1 and row(conn, name)[1] == 1


def test_after_downtime_catch_up_all_latest_or_skip(goals: Goals, conn: psycopg.Connection, db_url: str) -> None:
    since = datetime(2012, 2, 29, tzinfo=UTC)  # 2012, 2016, 2020 and 2024 were missed
    for policy in ("all", "latest", "skip"):
        goals.set_schedule(policy, "report", cron=LEAP, catch_up=policy, next_at=since)
    asyncio.run(run_passes(db_url, 3))
    missed = [datetime(y, 2, 29, tzinfo=UTC) for y in (2012, 2016, 2020, 2024)]
    assert keys(conn, "all") == [tick_key("all", t) for t in missed]
    assert keys(conn, "latest") == [tick_key("latest", missed[-1])]
    assert keys(conn, "skip") == []
    following = datetime(2028, 2, 29, tzinfo=UTC)
    assert row(conn, "all")[:3] == (following, 4, 0)
    assert row(conn, "latest")[:3] == (following, 1, 3)
    assert row(conn, "skip")[:3] == (following, 0, 4)


def test_a_late_tick_within_the_grace_runs_under_skip(goals: Goals, conn: psycopg.Connection, db_url: str) -> None:
    recent = now(conn).replace(microsecond=0) - timedelta(seconds=5)
    goals.set_schedule("daily", "report", every=86400, catch_up="skip", next_at=recent)
    asyncio.run(run_passes(db_url, 1))
    assert keys(conn, "daily") == [tick_key("daily", recent)]


def test_a_new_schedule_starts_after_it_was_set(goals: Goals, conn: psycopg.Connection, db_url: str) -> None:
    set_at = now(conn)
    goals.set_schedule("hourly", "report", cron="@hourly")
    asyncio.run(run_passes(db_url, 2))
    next_at = row(conn, "hourly")[0]
    assert next_at is not None and set_at < next_at <= set_at + timedelta(hours=1)
    assert (next_at.minute, next_at.second) == (0, 0)
    # Set again unchanged: it keeps its next tick; changed: the next worker computes a new one.
    goals.set_schedule("hourly", "report", cron="@hourly")
    assert row(conn, "hourly")[0] == next_at
    goals.set_schedule("hourly", "report", cron="30 * * * *")
    assert row(conn, "hourly")[0] is None


def test_a_cron_no_worker_can_read_disables_its_schedule(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("SELECT goalrt.register_goal_type('report', '{}')")
    conn.execute("SELECT goalrt.set_schedule('odd', 'report', '{}', '{\"cron\": \"99 * * * *\"}')")
    asyncio.run(run_passes(db_url, 1))
    _, fired, _, error, enabled = row(conn, "odd")
    assert (fired, enabled) == (0, False)
    assert error == "invalid cron '99 * * * *': bad minute"


def test_a_tick_the_goal_type_refuses_is_recorded(goals: Goals, conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("SELECT goalrt.register_goal_type('strict', %s::jsonb)", (json.dumps({"required": ["n"]}),))
    goals.set_schedule("s", "strict", {"n": 1}, cron=LEAP, catch_up="latest", next_at=datetime(2024, 2, 29, tzinfo=UTC))
    # The goal type changes after the schedule was set: its params no longer fit.
    conn.execute("SELECT goalrt.register_goal_type('strict', %s::jsonb)", (json.dumps({"required": ["m"]}),))
    asyncio.run(run_passes(db_url, 1))
    next_at, fired, _, error, enabled = row(conn, "s")
    assert (next_at, fired, enabled) == (datetime(2028, 2, 29, tzinfo=UTC), 0, True)
    assert error == "tick 2024-02-29T00:00:00Z: invalid params for goal strict: params.m is required"


def test_schedules_installed_by_gdl_change_only_by_loading_or_an_admin(
    conn: psycopg.Connection,
    login: Login,  # noqa: F811 - the fixture imported above
    db_url: str,
) -> None:
    def runtime(cron: str) -> str:
        return json.dumps(
            {
                "goal_types": [{"name": "report", "params_schema": {}, "defaults": {}}],
                "schedules": [{"name": "nightly", "goal_name": "report", "params": {}, "options": {"cron": cron}}],
            }
        )

    admin = login("goalrt_admin")
    load = "SELECT * FROM goalrt.load_gdl('ws', %s, '{}', %s::jsonb)"
    admin.execute(load, ("a" * 64, runtime("0 3 * * *")))
    app = login("goalrt_app")
    for call in (
        "SELECT goalrt.set_schedule('nightly', 'report', '{}', '{\"every\": 60}')",
        "SELECT goalrt.drop_schedule('nightly')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="installed by GDL version 1"):
            app.execute(call)
    app.execute("SELECT goalrt.set_schedule('mine', 'report', '{}', '{\"every\": 60}')")
    asyncio.run(run_passes(db_url, 1))
    first = row(conn, "nightly")[0]
    assert first is not None
    # Loading the same timing again keeps the next tick; another timing resets it; leaving it out drops it.
    admin.execute(load, ("b" * 64, runtime("0 3 * * *")))
    assert row(conn, "nightly")[0] == first
    admin.execute(load, ("c" * 64, runtime("0 4 * * *")))
    assert row(conn, "nightly")[0] is None
    admin.execute(load, ("d" * 64, json.dumps({"goal_types": [{"name": "report", "params_schema": {}}]})))
    names = conn.execute("SELECT name, gdl_version FROM goalrt.schedules ORDER BY name").fetchall()
    assert names == [("mine", None)]
    admin.execute(load, ("e" * 64, runtime("0 3 * * *")))
    admin.execute("SELECT goalrt.drop_schedule('nightly')")  # an admin may


def test_gdl_load_installs_a_workspaces_schedules(conn: psycopg.Connection, db_url: str) -> None:
    from goalrt.db.connect import connect
    from goalrt.gdl import compile_sources, source_for
    from goalrt.gdl.runtime import load

    def workspace(cron: str) -> CompiledWorkspace:
        goals = f'goal report(region: string) {{ achieve reports.{{region}}.done == true\n  on schedule "{cron}" '
        goals += 'timezone "Europe/Paris" catch_up all { region = "eu" } }'
        return compile_sources([source_for("apps/a/goals.gdl", goals)], name="ws", apps=["a"])

    with connect(db_url) as c:
        load(c, workspace("0 9 * * 1-5"))
    with Goals.connect(db_url) as goals:
        (found,) = goals.schedules()
        assert (found.name, found.goal, found.params, found.catch_up, found.gdl_version) == (
            "report",
            "report",
            {"region": "eu"},
            "all",
            1,
        )
        assert found.timing.describe() == "cron 0 9 * * 1-5 (Europe/Paris)"
        assert all(t.astimezone(ZoneInfo("Europe/Paris")).hour == 9 for t in found.next_runs(5))
        with connect(db_url) as c:
            load(c, workspace("0 10 * * *"))
        assert goals.schedules()[0].timing.cron == "0 10 * * *"
