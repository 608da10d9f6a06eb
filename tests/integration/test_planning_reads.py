"""A planned goal's worker reads only the paths its decisions depend on, and decides as a whole-state read would.

Issue 17: the worker read the whole state before every step of a planned
goal. ``Recording`` is the worker's own ``Planning``, keeping the paths each
of its reads returned; ``WholeState`` is it with every read of the whole state
(what the worker did before), the oracle its decisions must equal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import BaseModel

from goalrt import AsyncGoals, Registry, State
from goalrt.db.connect import asyncpg_dsn, setup_async_connection
from goalrt.planner import Increment, ObjectType, Set, Var
from goalrt.state.async_state import AsyncState
from goalrt.state.state import Change
from goalrt.worker.dispatcher import StepRun
from goalrt.worker.planner_bridge import RECHECK, scalar_state
from goalrt.worker.planning import Decision, Planning, Snapshot
from goalrt.worker.protocol import PlanReason


class Deliver(BaseModel):
    order: str


class Recording(Planning):
    """The worker's planning, keeping the paths each read returned (live ones, JSON scalars or not)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads: list[set[str]] = []
        # Run once right after the next read: a writer racing the worker.
        self.race: Callable[[], None] | None = None

    async def snapshot(self, *args: Any) -> Snapshot:
        snap = await super().snapshot(*args)
        self.reads.append(set(snap.versions))
        race, self.race = self.race, None
        if race is not None:
            await asyncio.to_thread(race)
        return snap


class WholeState(Planning):
    """The planning with every read of the whole state, as before issue 17."""

    async def snapshot(self, *args: Any) -> Snapshot:
        async with self._pool.acquire() as conn:
            entries = await AsyncState(conn, schema=self._schema).list()
        return Snapshot(scalar_state((e.path, e.value) for e in entries), {e.path: e.version for e in entries})


def _noop(args: Any, ctx: Any) -> None:
    return None


def shop(*, wide: bool = False, extra: bool = False) -> Registry:
    """Orders created, paid (by card if the wallet covers the total, else invoice), shipped from a lane.

    ``extra``: shipping needs a permit. ``wide``: that too, an invoice needs a trusted
    customer (``{o}.trusted``: a hole in the first segment), and an order may also go by
    any truck of ``trucks`` that is not busy.
    """
    reg = Registry()
    types = [ObjectType("Order", keys_under="orders")] + ([ObjectType("Truck", keys_under="trucks")] if wide else [])
    reg.achieve(
        "deliver",
        "orders.{order}.status == 'shipped' and not exists(holds.{order})",
        params=Deliver,
        types=types,
        param_types={"order": "Order"},
    )
    reg.achieve("keep.truck", "truck.at == 'dock'", maintain=True)
    action = reg.action
    action(
        "create",
        params={"o": "Order"},
        pre="not exists(orders.{o}.status)",
        effects=[Set("orders.{o}.status", "created")],
    )(_noop)
    action(
        "pay.card",
        params={"o": "Order"},
        pre="orders.{o}.status == 'created' and wallet.{o} >= orders.{o}.total",
        effects=[Set("orders.{o}.status", "paid")],
    )(_noop)
    action(
        "pay.invoice",
        params={"o": "Order"},
        pre="orders.{o}.status == 'created'" + (" and {o}.trusted == true" if wide else ""),
        effects=[Set("orders.{o}.status", "paid")],
        cost=3,
    )(_noop)
    action("truck.call", pre="truck.at == 'garage'", effects=[Set("truck.at", "dock")], cost=2)(_noop)
    action(
        "ship",
        params={"o": "Order"},
        pre="orders.{o}.status == 'paid' and truck.at in ['dock', 'yard'] and lane_{o}.open != false"
        + (" and permits.{o} == true" if extra or wide else ""),
        effects=[Set("orders.{o}.status", "shipped"), Increment("stats.shipped", 1)],
    )(_noop)
    # Not planned: no goal knows the type Customer. A step of it may still be checked.
    action(
        "notify",
        params={"c": "Customer"},
        pre="customers.{c}.ok == true",
        effects=[Set("customers.{c}.told", True)],
    )(_noop)
    if wide:
        action(
            "ship.by",
            params={"o": "Order", "t": "Truck"},
            pre="orders.{o}.status == 'paid' and not exists(busy.{t})",
            effects=[Set("orders.{o}.status", "shipped"), Set("busy.{t}", Var("o"))],
            cost=4,
        )(_noop)
    return reg


# Paths the shop's decisions never depend on: some sort right next to its own.
NEAR_MISSES = {
    "orders": 1,
    "ordersx.o1.status": "created",
    "orders-o1.status": "created",
    "truck.atx": "dock",
    "truck.at.x": "dock",
    "wallet": 10,
    "wallets.o1": 10,
    "lane.o1.open": False,
    "lane_o1": {"open": False},
    "holds": "x",
    "cards.o1": "declined",
}
UNRELATED = 3000


def put(url: str, values: dict[str, Any], deleted: tuple[str, ...] = ()) -> None:
    with State.connect(url) as state:
        state.change([Change.set(p, v) for p, v in values.items()] + [Change.delete(p) for p in deleted])


def seed(url: str, unrelated: int = UNRELATED, **domain: Any) -> None:
    """Write the shop's paths (``a__b`` is ``a.b``), the near misses and thousands of unrelated paths."""
    noise = {f"noise.{i % 7}.p{i}": i for i in range(unrelated)}
    put(url, {**noise, **NEAR_MISSES, **{k.replace("__", "."): v for k, v in domain.items()}})


@asynccontextmanager
async def plannings(url: str, registry: Registry, gdl_version: int | None = None) -> AsyncIterator[Any]:
    """Yield ``(planning, oracle, goal id)``: the recording planning and the whole-state one, and a submitted goal."""
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2, init=setup_async_connection)
    assert pool is not None
    try:
        async with await AsyncGoals.connect(url, registry=registry) as goals:
            await goals.register()
            goal_id = (await goals.submit("deliver", {"order": "o1"})).id
        with ThreadPoolExecutor(1) as executor:
            yield (
                Recording(pool, registry, executor, "goalrt", gdl_version),
                WholeState(pool, registry, executor, "goalrt", gdl_version),
                goal_id,
            )
    finally:
        await pool.close()


def run_of(goal_id: int, action: str, args: dict[str, Any], order: str = "o1", goal: str = "deliver") -> StepRun:
    return StepRun(goal_id, goal, {"order": order} if goal == "deliver" else {}, 1, 1, action, args, 1)


def same(ours: Decision | None, theirs: Decision | None) -> bool:
    """Return whether two decisions are the same, but for the search time an explanation ends with."""
    if ours is None or theirs is None or ours.error is None or theirs.error is None:
        return ours == theirs
    timeless = [dataclasses.replace(d, error=_MS.sub("… ms", d.error or "")) for d in (ours, theirs)]
    return timeless[0] == timeless[1]


_MS = re.compile(r"[0-9.]+ ms\b")


def steps(decision: Decision | None) -> list[str]:
    assert decision is not None and decision.steps is not None, decision
    return [f"{s['action']}({', '.join(map(str, s['args'].values()))})" for s in decision.steps]


# What a re-plan of the shop reads (in the state seed() writes with DOMAIN): the keys under orders,
# and the paths of its actions' conditions and effects, whatever their objects.
DOMAIN = {
    "truck__at": "dock",
    "orders__o1__status": "created",
    "orders__o1__total": 5,
    "wallet__o1": 10,
    "orders__o2__total": 3,  # an order with no status yet: still an object
    "orders__o3": {"not": "a scalar"},  # not an object: only scalars name objects
    "lane_o2__open": True,
    "stats__shipped": 4,
}
PLAN_READ = {
    "truck.at",
    "orders.o1.status",
    "orders.o1.total",
    "wallet.o1",
    "orders.o2.total",
    "orders.o3",
    "lane_o2.open",
    "stats.shipped",
}


def test_planning_reads_only_the_paths_the_goal_and_its_actions_can_read(db_url: str) -> None:
    seed(db_url, **DOMAIN)
    registry = shop()

    async def body() -> None:
        async with plannings(db_url, registry) as (planning, oracle, goal_id):
            first = await planning.initial("deliver", {"order": "o1"})
            assert steps(first) == ["pay.card(o1)", "ship(o1)"]
            assert same(first, await oracle.initial("deliver", {"order": "o1"}))
            assert first.detail is not None and first.detail["versions"] == {
                "holds.o1": None,
                "lane_o1.open": None,
                "orders.o1.status": 1,
                "truck.at": 1,
                "wallet.o1": 1,
                "orders.o1.total": 1,
            }
            # Before a step that runs as planned: the goal's paths and the step's precondition's, no more.
            run = run_of(goal_id, "pay.card", {"o": "o1"})
            assert await planning.before(registry.goal_types["deliver"].achieve, run, None) is None
            assert planning.reads == [PLAN_READ, {"orders.o1.status", "orders.o1.total", "wallet.o1"}]

    asyncio.run(body())


ORDERS = ("o1", "O:2", "a@b-3")
TRUCKS = ("t1", "T-2")
# Each path of the wide shop and the values it may take (ABSENT: deleted, or never written).
ABSENT = object()
CHOICES: dict[str, list[Any]] = {
    **{
        template.format(o=o): choices
        for o in ORDERS
        for template, choices in (
            ("orders.{o}", [ABSENT, ABSENT, ABSENT, {"a": 1}, 1]),
            ("orders.{o}.status", ["created", "created", "paid", "shipped", ABSENT, {"a": 1}]),
            ("orders.{o}.total", [5, 12.5, Decimal("0.10000000000000000000001"), ABSENT, "x"]),
            ("orders.{o}.x.y", [ABSENT, 1]),
            ("wallet.{o}", [10, 1, ABSENT, Decimal("100.000000000000000000001")]),
            ("lane_{o}.open", [ABSENT, True, False]),
            ("{o}.trusted", [True, True, ABSENT, False]),
            ("holds.{o}", [ABSENT, ABSENT, ABSENT, "x"]),
            ("permits.{o}", [True, True, True, ABSENT, False]),
        )
    },
    **{
        template.format(t=t): choices
        for t in TRUCKS
        for template, choices in (
            ("trucks.{t}", [ABSENT, ABSENT, {"a": 1}]),
            ("trucks.{t}.name", [ABSENT, "x", [1]]),
            ("trucks.{t}.x.y", [ABSENT, 1]),
            ("busy.{t}", [ABSENT, ABSENT, "o1"]),
        )
    },
    "truck.at": ["dock", "garage", "yard", ABSENT],
    "stats.shipped": [4, 4, ABSENT, "n/a", Decimal("1.00000000000000000000001")],
    "orders": [ABSENT, 1],
    "trucks": [ABSENT, 1],
    "customers.c1.ok": [True, False, ABSENT],
}


def test_decisions_equal_those_of_a_whole_state_read(db_url: str) -> None:
    """Random shop states (absent paths, tombstones, objects, exact decimals): every decision as before."""
    seed(db_url, unrelated=200)
    rng = random.Random(17)
    registry = shop(wide=True)
    achieve = registry.goal_types["deliver"].achieve
    keep = registry.goal_types["keep.truck"].achieve
    assert achieve is not None and keep is not None
    seen: set[str] = set()

    async def body() -> None:
        async with plannings(db_url, registry, gdl_version=2) as (planning, oracle, goal_id):
            for _ in range(10):
                state = {path: rng.choice(choices) for path, choices in CHOICES.items()}
                put(
                    db_url,
                    {p: v for p, v in state.items() if v is not ABSENT},
                    tuple(p for p, v in state.items() if v is ABSENT),
                )
                for order in (*ORDERS, "o4"):
                    params = {"order": order}
                    first = await planning.initial("deliver", params)
                    assert same(first, await oracle.initial("deliver", params))
                    seen.add(f"initial {bool(first.steps)} {first.error is None}")
                    for action, args in (
                        ("create", {"o": order}),
                        ("pay.card", {"o": order}),
                        ("pay.invoice", {"o": order}),
                        ("ship", {"o": order}),
                        ("ship.by", {"o": order, "t": "t1"}),
                        ("truck.call", {}),
                        ("notify", {"c": "c1"}),  # an action the goal does not plan with
                        ("ship", {}),  # arguments that do not bind the precondition
                    ):
                        run = run_of(goal_id, action, args, order)
                        for version in (2, 1):  # as planned; and a plan of another GDL version
                            ours = await planning.before(achieve, run, version)
                            assert same(ours, await oracle.before(achieve, run, version)), (action, args, version)
                            seen.add("run" if ours is None else f"{ours.reason} {ours.error is None}")
                        failed = await planning.after_failure(achieve, run, "boom")
                        assert same(failed, await oracle.after_failure(achieve, run, "boom")), (action, args)
                        seen.add(f"{failed.reason} {failed.error is None}")
                recheck = run_of(goal_id, RECHECK, {}, goal="keep.truck")
                assert same(await planning.before(keep, recheck, 2), await oracle.before(keep, recheck, 2))
                assert not any(p.startswith("noise.") for read in planning.reads for p in read)
                planning.reads.clear()

    asyncio.run(body())
    # The states reached every kind of decision, plans and their absence alike.
    assert seen >= {
        "initial True True",
        "initial False False",
        "run",
        "achieved True",
        "drift True",
        "drift False",
        "definitions True",
        "definitions False",
        "step_failed True",
        "step_failed False",
    }, seen


def test_a_precondition_on_a_path_that_does_not_exist_yet(db_url: str) -> None:
    """``not exists(orders.o4.status)`` holds while the path is absent; once it appears the step has drifted."""
    seed(db_url, **DOMAIN, orders__o4__total=1)
    registry = shop()
    achieve = registry.goal_types["deliver"].achieve
    assert achieve is not None

    async def body() -> None:
        async with plannings(db_url, registry) as (planning, _, goal_id):
            first = await planning.initial("deliver", {"order": "o4"})
            assert steps(first) == ["create(o4)", "pay.invoice(o4)", "ship(o4)"]
            run = run_of(goal_id, "create", {"o": "o4"}, "o4")
            planning.reads.clear()
            assert await planning.before(achieve, run, None) is None
            # Read, though absent: the goal's holds.o4, orders.o4.status.
            assert planning.reads == [set()]
            put(db_url, {"orders.o4.status": "created"})
            planning.reads.clear()
            drift = await planning.before(achieve, run, None)
            assert drift is not None and drift.reason is PlanReason.DRIFT
            assert steps(drift) == ["pay.invoice(o4)", "ship(o4)"]
            assert planning.reads == [{"orders.o4.status"}, PLAN_READ | {"orders.o4.status", "orders.o4.total"}]

    asyncio.run(body())


def test_drift_of_a_path_read_before_the_step_brings_a_new_plan(db_url: str) -> None:
    seed(db_url, **{**DOMAIN, "orders__o1__status": "paid"})
    registry = shop()
    achieve = registry.goal_types["deliver"].achieve
    assert achieve is not None

    async def body() -> None:
        async with plannings(db_url, registry) as (planning, oracle, goal_id):
            run = run_of(goal_id, "ship", {"o": "o1"})
            assert await planning.before(achieve, run, None) is None
            put(db_url, {"truck.at": "garage"})
            planning.reads.clear()
            drift = await planning.before(achieve, run, None)
            assert drift is not None and drift.reason is PlanReason.DRIFT
            assert steps(drift) == ["truck.call()", "ship(o1)"]
            assert same(drift, await oracle.before(achieve, run, None))
            small = {"orders.o1.status", "truck.at"}
            assert planning.reads == [small, PLAN_READ]
            # The goal reached meanwhile: decided on the small read alone.
            put(db_url, {"orders.o1.status": "shipped"})
            planning.reads.clear()
            done = await planning.before(achieve, run, None)
            assert done is not None and done.reason is PlanReason.ACHIEVED and done.steps == []
            assert planning.reads == [small]
            # Held up by a path that did not exist, and the truck gone: no plan reaches the goal.
            put(db_url, {"orders.o1.status": "paid", "truck.at": "garage", "holds.o1": "fraud check"})
            planning.reads.clear()
            stuck = await planning.before(achieve, run, None)
            assert same(stuck, await oracle.before(achieve, run, None))
            assert stuck is not None and stuck.error is not None and stuck.error.startswith("no plan after")
            assert planning.reads == [small | {"holds.o1"}, PLAN_READ | {"holds.o1"}]

    asyncio.run(body())


def test_new_definitions_and_a_maintained_goals_recheck_read_what_the_planner_needs(db_url: str) -> None:
    seed(db_url, **{**DOMAIN, "truck__at": "garage", "permits__o1": True})
    registry = shop()
    achieve = registry.goal_types["deliver"].achieve
    keep = registry.goal_types["keep.truck"].achieve
    assert achieve is not None and keep is not None

    async def body() -> None:
        async with plannings(db_url, registry, gdl_version=2) as (planning, oracle, goal_id):
            run = run_of(goal_id, "pay.card", {"o": "o1"})
            replan = await planning.before(achieve, run, 1)  # a plan of GDL version 1: re-planned, one read
            assert replan is not None and replan.reason is PlanReason.DEFINITIONS
            assert sorted(steps(replan)) == ["pay.card(o1)", "ship(o1)", "truck.call()"]
            assert same(replan, await oracle.before(achieve, run, 1))
            assert planning.reads == [PLAN_READ]  # not permits.o1: no action of these definitions reads it
            planning.reads.clear()
            recheck = await planning.before(keep, run_of(goal_id, RECHECK, {}, goal="keep.truck"), 2)
            assert recheck is not None and recheck.reason is PlanReason.RECHECK
            assert steps(recheck)[:1] == ["truck.call()"] and steps(recheck)[-1] == f"{RECHECK}()"
            # It plans with the actions that take no objects (it knows no types): truck.call reads truck.at.
            assert planning.reads == [{"truck.at"}]
        # New definitions (a GDL reload builds a new registry, so a new planning): what their actions read.
        async with plannings(db_url, shop(extra=True), gdl_version=3) as (planning, oracle, _):
            first = await planning.initial("deliver", {"order": "o1"})
            assert same(first, await oracle.initial("deliver", {"order": "o1"}))
            assert planning.reads == [PLAN_READ | {"permits.o1"}]

    asyncio.run(body())


def test_a_change_between_the_step_check_and_the_plan_read_is_decided_on_the_later_read(db_url: str) -> None:
    """The step check calls for a re-plan, a writer changes the state, and the re-plan read sees it."""
    seed(db_url, **{**DOMAIN, "orders__o1__status": "paid", "customers__c1__ok": False})
    registry = shop()
    achieve = registry.goal_types["deliver"].achieve
    assert achieve is not None

    async def body() -> None:
        async with plannings(db_url, registry) as (planning, _, goal_id):
            # notify(c1), not an action the goal plans with, broken, then repaired: it runs as planned.
            run = run_of(goal_id, "notify", {"c": "c1"})
            planning.race = lambda: put(db_url, {"customers.c1.ok": True})
            assert await planning.before(achieve, run, None) is None
            goal = {"orders.o1.status"}
            assert planning.reads == [goal | {"customers.c1.ok"}, PLAN_READ | {"customers.c1.ok"}]
            # ship(o1) drifted, then the goal was reached: it completes.
            put(db_url, {"truck.at": "garage"})
            planning.reads.clear()
            planning.race = lambda: put(db_url, {"orders.o1.status": "shipped"})
            done = await planning.before(achieve, run_of(goal_id, "ship", {"o": "o1"}), None)
            assert done is not None and done.reason is PlanReason.ACHIEVED
            assert planning.reads == [goal | {"truck.at"}, PLAN_READ]

    asyncio.run(body())
