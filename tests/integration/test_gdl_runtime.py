"""GDL in the database: load and versions, policies on every change, triggers, defaults, workers on GDL goals."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goalrt import ActionContext, AsyncGoals, GoalInfo, Registry, Result, State
from goalrt.db.connect import connect, dumps
from goalrt.errors import InvalidEventError, InvalidGoalError, InvalidStateChangeError
from goalrt.gdl import check
from goalrt.gdl.runtime import current, load, runtime_json
from goalrt.goals.goals import Goals
from goalrt.log.eventlog import EventLog
from goalrt.planner import condition_from_json, holds
from goalrt.state.state import Change
from goalrt.worker.definitions import registry_for, unhandled
from tests.integration.test_worker import until_finished, with_worker

TYPES = """
type Order under orders { amount: number  status: string }
event order.created { order_id: string  amount: number }
"""
ACTIONS = """
action pay(o: Order) {
  require orders.{o}.status == "created"
  effect orders.{o}.status = "paid"
  cost COST
}
action ship(o: Order) {
  require orders.{o}.status == "paid"
  effect orders.{o}.status = "shipped"
  concurrency 3
  pure
}
"""
GOALS = """
goal deliver(o: Order) {
  achieve orders.{o}.status == "shipped"
  priority 7  deadline 1h
  on event order.created as e { o = e.order_id }
}
"""
POLICIES = """
policy positive_amounts { require orders.*.amount > 0 }
policy stock_never_negative { require not exists(stock.total) or stock.total >= 0 }
"""


def workspace(root: Path, *, cost: int = 1, concurrency: bool = True) -> Path:
    (root / "apps" / "shop").mkdir(parents=True, exist_ok=True)
    (root / "goalrt.toml").write_text('name = "shop"\nversion = "1"\n')
    actions = ACTIONS.replace("COST", str(cost))
    if not concurrency:
        actions = actions.replace("  concurrency 3\n", "")
    files = {"types.gdl": TYPES, "actions.gdl": actions, "goals.gdl": GOALS, "policies.gdl": POLICIES}
    for name, text in files.items():
        (root / "apps" / "shop" / name).write_text(text)
    return root


@pytest.fixture
def loaded(db_url: str, tmp_path: Path) -> int:
    with connect(db_url) as conn:
        return load(conn, check(workspace(tmp_path))).version


def handlers(calls: list[str]) -> Registry:
    """The Python side: a handler for pay; ship is pure (its effect is the whole action)."""
    registry = Registry()

    @registry.action("pay")
    async def pay(args: dict[str, Any], ctx: ActionContext) -> Any:
        calls.append(f"pay({args['o']})")
        if await ctx.state.value(f"breaks.{args['o']}"):
            return Result({"paid": True}, changes=[Change.set(f"orders.{args['o']}.amount", -1)])
        return {"paid": True}

    return registry


def order(db_url: str, o: str, amount: float = 10, status: str = "created") -> None:
    with State.connect(db_url) as state:
        state.change([Change.set(f"orders.{o}.amount", amount), Change.set(f"orders.{o}.status", status)])


def plans(info: GoalInfo) -> list[dict[str, Any]]:
    """The planner's part of each goal.planned event of a goal (cost, ops, gdl_version...)."""
    return [e.data["planner"] for e in info.events if e.type == "goal.planned" and "planner" in e.data]


# -- load and versions -----------------------------------------------------------------


def test_load_stores_a_version_per_content_and_notifies(db_url: str, tmp_path: Path) -> None:
    with connect(db_url) as conn, connect(db_url) as listener:
        listener.execute("LISTEN goalrt_gdl")
        first = load(conn, check(workspace(tmp_path)))
        again = load(conn, check(workspace(tmp_path)))
        assert first.created and not again.created and again.version == first.version
        changed = load(conn, check(workspace(tmp_path, cost=5)))
        assert changed.created and changed.version > first.version and changed.content_hash != first.content_hash
        notes = [n.payload for n in listener.notifies(timeout=1, stop_after=2)]
        assert notes == [str(first.version), str(changed.version)]
        now = current(conn)
        assert now is not None and now.version == changed.version and now.content_hash == changed.content_hash
        costs = [a["schema"]["cost"] for a in now.body["apps"]["shop"]["actions"] if a["schema"]["name"] == "pay"]
        assert costs == [5]
        loads = conn.execute(
            "SELECT data->>'version' FROM goalrt.event_data WHERE stream = 'gdl' AND type = 'gdl.loaded' ORDER BY id"
        ).fetchall()
        assert [r[0] for r in loads] == [str(first.version), str(changed.version)]


def test_load_installs_goal_type_defaults_and_limits(db_url: str, tmp_path: Path, loaded: int) -> None:
    with Goals.connect(db_url) as goals:
        gid = goals.submit("deliver", {"o": "o1"}).id
        own = goals.submit("deliver", {"o": "o2"}, priority=1).id
        with pytest.raises(InvalidGoalError, match=r"params\.o"):
            goals.submit("deliver", {"o": 3})
    with connect(db_url) as conn:
        rows = dict(conn.execute("SELECT id, priority FROM goalrt.goals").fetchall())
        assert rows == {gid: 7, own: 1}
        assert conn.execute("SELECT deadline_at IS NOT NULL FROM goalrt.goals WHERE id = $1", (gid,)).fetchone() == (
            True,
        )
        assert conn.execute("SELECT max_concurrent FROM goalrt.limits WHERE action = 'ship'").fetchall() == [(3,)]
        load(conn, check(workspace(tmp_path, concurrency=False)))
        assert conn.execute("SELECT count(*) FROM goalrt.limits WHERE action = 'ship'").fetchone() == (0,)


def test_load_of_a_broken_workspace_stores_nothing(db_url: str, tmp_path: Path) -> None:
    root = workspace(tmp_path)
    (root / "apps" / "shop" / "goals.gdl").write_text("goal deliver(o: Nope) { achieve x == 1 }\n")
    with pytest.raises(Exception, match=r"apps/shop/goals.gdl:1:17: unknown type 'Nope'"):
        check(root)
    with connect(db_url) as conn:
        assert current(conn) is None


# -- policies ----------------------------------------------------------------------------


def test_policy_refuses_a_change_and_applies_none_of_it(db_url: str, loaded: int) -> None:
    order(db_url, "o1", 10)
    with State.connect(db_url) as state:
        before = {e.path: (e.value, e.version) for e in state.list()}
        with pytest.raises(InvalidStateChangeError, match=r"^policy_violation: policy positive_amounts .* orders\.o1$"):
            state.change([Change.set("orders.o1.status", "paid"), Change.set("orders.o1.amount", 0)])
        # A new order without an amount breaks it too (every order must have one > 0).
        with pytest.raises(InvalidStateChangeError, match=r"orders\.o2"):
            state.change([Change.set("orders.o2.status", "created")])
        with pytest.raises(InvalidStateChangeError, match="policy stock_never_negative"):
            state.change([Change.set("stock.total", -1)])
        assert {e.path: (e.value, e.version) for e in state.list()} == before
        # What keeps the policies goes through; deleting a whole order too.
        state.change([Change.set("stock.total", 0), Change.inc("orders.o1.amount", 5)])
        state.change([Change.delete("orders.o1.amount"), Change.delete("orders.o1.status")])
        assert state.value("orders.o1.status") is None


def test_policy_violation_fails_the_action_and_nothing_of_its_change_lands(db_url: str, loaded: int) -> None:
    calls: list[str] = []
    order(db_url, "o1", 10)
    with State.connect(db_url) as state:
        state.change([Change.set("breaks.o1", True)])

    async def body(goals: AsyncGoals, _worker: Any) -> None:
        gid = (await goals.submit("deliver", {"o": "o1"})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "failed"
        assert "policy_violation: policy positive_amounts" in (info.last_error or "")

    asyncio.run(with_worker(db_url, handlers(calls), body))
    with State.connect(db_url) as state:
        assert state.value("orders.o1.amount") == 10 and state.value("orders.o1.status") == "created"
    assert calls == ["pay(o1)"]


@st.composite
def conditions(draw: st.DrawFn, depth: int = 2) -> dict[str, Any]:
    constants = st.sampled_from([1, 2, 2.5, "1", "b", "a", True, False, None])
    terms = st.one_of(st.sampled_from([{"path": "p.a"}, {"path": "p.b"}]), constants)
    if depth > 0 and draw(st.booleans()):
        kind = draw(st.sampled_from(["and", "or", "not"]))
        if kind == "not":
            return {"op": "not", "arg": draw(conditions(depth - 1))}
        return {"op": kind, "args": draw(st.lists(conditions(depth - 1), min_size=1, max_size=3))}
    kind = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "exists"]))
    if kind == "exists":
        return {"op": "exists", "path": draw(st.sampled_from(["p.a", "p.b"]))}
    if kind == "in":
        return {"op": "in", "left": draw(terms), "values": draw(st.lists(constants, max_size=3))}
    return {"op": kind, "left": draw(terms), "right": draw(terms)}


VALUES = st.one_of(st.none(), st.sampled_from([1, 2, 2.5, "1", "b", "a", True, False, {"x": 1}]))


def test_the_sql_policy_check_means_what_the_planner_means(db_url: str) -> None:
    """policy_holds (SQL) and planner.holds (Python) agree on random conditions and states."""
    with psycopg.connect(db_url, autocommit=True) as conn:

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(conditions(), VALUES, VALUES)
        def agree(condition: dict[str, Any], a: Any, b: Any) -> None:
            changes = [
                {"op": "delete", "path": p} if v is None else {"op": "set", "path": p, "value": v}
                for p, v in (("p.a", a), ("p.b", b))
            ]
            conn.execute("SELECT count(*) FROM goalrt.change_state(%s::jsonb)", (dumps(changes),))
            state = {p: v for p, v in (("p.a", a), ("p.b", b)) if v is not None and not isinstance(v, dict)}
            sql_says = conn.execute("SELECT goalrt.policy_holds(%s::jsonb, '{}')", (dumps(condition),)).fetchone()
            assert sql_says is not None
            assert sql_says[0] == holds(condition_from_json(condition), state), (condition, a, b)

        agree()


# -- triggers ------------------------------------------------------------------------------


def test_an_event_submits_its_goal_in_the_appending_transaction(db_url: str, loaded: int) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT goalrt.append_event('shop', 'order.created', '{\"order_id\": \"o9\", \"amount\": 1}')")
        conn.rollback()
    with connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM goalrt.goals").fetchone() == (0,)
    with EventLog.connect(db_url) as log:
        appended = log.append("shop", "order.created", {"order_id": "o9", "amount": 3})
        # No order_id: the declaration refuses the append, so no goal either (test_event_declarations.py).
        with pytest.raises(InvalidEventError, match=r"data\.order_id is required"):
            log.append("shop", "order.created", {"amount": 3})
    with connect(db_url) as conn:
        goals = conn.execute("SELECT name, params, priority, idempotency_key FROM goalrt.goals").fetchall()
        assert goals == [("deliver", {"o": "o9"}, 7, f"event:{appended}:deliver")]


# -- workers -------------------------------------------------------------------------------


def test_a_worker_runs_gdl_goals_with_pure_actions_and_records_the_version(db_url: str, loaded: int) -> None:
    calls: list[str] = []
    order(db_url, "o1", 10)

    async def body(goals: AsyncGoals, worker: Any) -> None:
        assert worker.gdl_version == loaded
        gid = (await goals.submit("deliver", {"o": "o1"})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete", info.error
        assert [s.action for s in info.steps] == ["pay", "ship"]
        assert [p["gdl_version"] for p in plans(info)] == [loaded]

    asyncio.run(with_worker(db_url, handlers(calls), body))
    assert calls == ["pay(o1)"]  # ship is pure: its declared effect did the work
    with State.connect(db_url) as state:
        assert state.value("orders.o1.status") == "shipped"


def test_a_running_worker_plans_with_a_newly_loaded_version(db_url: str, tmp_path: Path, loaded: int) -> None:
    order(db_url, "o1", 10)
    order(db_url, "o2", 10)

    async def body(goals: AsyncGoals, worker: Any) -> None:
        first = (await goals.submit("deliver", {"o": "o1"})).id
        await until_finished(goals, first)
        with connect(db_url) as conn:
            newer = load(conn, check(workspace(tmp_path / "v2", cost=4))).version
        deadline = asyncio.get_running_loop().time() + 10
        while worker.gdl_version != newer:
            assert asyncio.get_running_loop().time() < deadline, "the worker did not pick up the new version"
            await asyncio.sleep(0.02)
        second = (await goals.submit("deliver", {"o": "o2"})).id
        a, b = await until_finished(goals, first, second)
        assert plans(a)[0]["gdl_version"] == loaded
        assert plans(b)[0]["gdl_version"] == newer and plans(b)[0]["cost"] == 5

    asyncio.run(with_worker(db_url, handlers([]), body))


def test_an_action_without_a_handler_is_known_to_the_planner_but_not_runnable(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    (root / "apps" / "shop" / "extra.gdl").write_text("action audit(o: Order) { cost 1 }\n")
    body = check(root).to_json()
    registry = registry_for(body, handlers([]))
    assert registry.runnable_actions() == ["pay", "ship"]
    assert registry.actions["audit"].schema is not None and not registry.actions["audit"].runnable
    assert unhandled(body, handlers([])) == (["audit (handler audit)"], [])


def test_a_worker_keeps_its_version_when_a_newer_format_is_loaded(
    db_url: str, tmp_path: Path, loaded: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Definitions of a format this worker does not know (a newer goalrt compiled them) are refused in one line."""
    order(db_url, "o1", 10)

    async def body(goals: AsyncGoals, worker: Any) -> None:
        compiled = check(workspace(tmp_path / "v2", cost=4))
        future = {**compiled.to_json(), "format": 99}
        with psycopg.connect(db_url, autocommit=True) as conn:
            (newer,) = conn.execute(  # type: ignore[misc]
                "SELECT version FROM goalrt.load_gdl('shop', %s, %s::jsonb, %s::jsonb)",
                ("f" * 64, dumps(future), dumps(runtime_json(compiled))),
            ).fetchone()
        deadline = asyncio.get_running_loop().time() + 10
        while not any("format 99" in r.getMessage() for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline, "the worker said nothing of the newer format"
            await asyncio.sleep(0.02)
        assert worker.gdl_version == loaded and newer != loaded
        # It still runs the goals of the version it has.
        gid = (await goals.submit("deliver", {"o": "o1"})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "complete" and plans(info)[0]["gdl_version"] == loaded

    with caplog.at_level("ERROR", logger="goalrt.worker"):
        asyncio.run(with_worker(db_url, handlers([]), body))
    refused = [r.getMessage() for r in caplog.records if "format 99" in r.getMessage()]
    assert len(refused) == 1, refused
    assert "this worker understands formats 1 to 2: upgrade goalrt on this worker" in refused[0]
