"""Planning reads: what a planned goal's worker pays to read the state, against the number of unrelated paths.

What it measures
----------------
For each size N (default 10^3 and 10^5; ``--sizes`` for others, e.g. 10^6),
a scratch database holds the shop domain of tests/integration/test_planned_goals.py
(``truck.at`` and ``--orders`` orders, ``orders.oK.status`` and
``orders.oK.total``) and N unrelated paths (half ``aa.pI``, half ``u.pI``, on
both sides of the domain's paths in byte order), then ANALYZE. The worker's
own ``Planning`` (goalrt/worker/planning.py) is timed, over an asyncpg pool
as the worker's:

- **step**: ``Planning.before`` for a step whose precondition holds (the step
  runs as planned): the read every step of a planned goal pays;
- **plan**: ``Planning.first``, the read of all the planner needs and the
  search (what a first plan or a re-plan pays);
- **whole state**: ``AsyncState.list()``, the read each of them made before
  issue 17 (``--whole-reads`` times, default 3: it is slow at 10^5 and more).

Each figure is the median of ``--steps`` calls (after 3 unmeasured ones),
in microseconds. The per-step figure should not move with N; the plan
figure moves with the number of orders, not with N. ``--plans`` prints
``EXPLAIN (ANALYZE, BUFFERS)`` of the plan read at each size.

How to run
----------
From the repository root::

    python bench/planning_bench.py --quick            # N = 10^3 and 10^4, 50 steps
    python bench/planning_bench.py                    # N = 10^3 and 10^5
    python bench/planning_bench.py --sizes 1000,100000,1000000

The server is ``--database-url``, else ``GOALRT_DATABASE_URL``, else the
embedded server; the bench creates databases ``goalrt_pbench_<random>_*``,
migrates them and drops them at the end. It prints figures; it never passes
or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import psycopg
from pgbench_support import scratch_databases

from goalrt import Registry
from goalrt.db.connect import asyncpg_dsn, setup_async_connection
from goalrt.db.migrate import upgrade
from goalrt.planner import ObjectType, Set
from goalrt.state.async_state import AsyncState
from goalrt.worker.dispatcher import StepRun
from goalrt.worker.planning import Planning

CHUNK = 10_000  # unrelated paths per change set when loading
SIZES = (10**3, 10**5)
QUICK_SIZES = (10**3, 10**4)
WARMUP = 3


def registry() -> Registry:
    """Return the shop domain: pay an order by card or invoice, call the truck, ship."""
    reg = Registry()
    reg.achieve(
        "deliver",
        "orders.{order}.status == 'shipped'",
        types=[ObjectType("Order", keys_under="orders")],
        param_types={"order": "Order"},
    )
    for name, cost in (("pay.card", 1), ("pay.invoice", 3)):
        reg.action(
            name,
            params={"o": "Order"},
            pre="orders.{o}.status == 'created'",
            effects=[Set("orders.{o}.status", "paid")],
            cost=cost,
        )(_noop)
    reg.action("truck.call", pre="truck.at == 'garage'", effects=[Set("truck.at", "dock")], cost=2)(_noop)
    reg.action(
        "ship",
        params={"o": "Order"},
        pre="orders.{o}.status == 'paid' and truck.at == 'dock'",
        effects=[Set("orders.{o}.status", "shipped")],
    )(_noop)
    return reg


def _noop(args: Any, ctx: Any) -> None:
    return None


def load(url: str, unrelated: int, orders: int) -> None:
    """Write the domain's paths and ``unrelated`` others through goalrt.change_state, then ANALYZE."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT count(*) FROM goalrt.change_state((SELECT jsonb_agg(c) FROM ("
            " SELECT jsonb_build_object('op', 'set', 'path', 'truck.at', 'value', 'dock') AS c"
            " UNION ALL SELECT jsonb_build_object("
            "   'op', 'set', 'path', 'orders.o' || i || '.status', 'value', 'created')"
            "   FROM generate_series(0, %(n)s::integer - 1) i"
            " UNION ALL SELECT jsonb_build_object('op', 'set', 'path', 'orders.o' || i || '.total', 'value', 10 + i)"
            "   FROM generate_series(0, %(n)s::integer - 1) i) x))",
            {"n": orders},
        )
        for start in range(0, unrelated, CHUNK):
            conn.execute(
                "SELECT count(*) FROM goalrt.change_state((SELECT jsonb_agg(jsonb_build_object("
                " 'op', 'set', 'path', CASE WHEN i %% 2 = 0 THEN 'aa.p' ELSE 'u.p' END || i, 'value', i))"
                " FROM generate_series(%s::bigint, %s::bigint) i))",
                (start, min(start + CHUNK, unrelated) - 1),
            )
        conn.execute("ANALYZE goalrt.state_data")


async def median_us(calls: int, call: Callable[[], Awaitable[Any]]) -> float:
    for _ in range(WARMUP):
        await call()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


async def measure(url: str, steps: int, whole_reads: int, show_plans: bool) -> dict[str, float]:
    reg = registry()
    achieve = reg.goal_types["deliver"].achieve
    assert achieve is not None
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2, init=setup_async_connection)
    try:
        with ThreadPoolExecutor(1) as executor:
            planning = Planning(pool, reg, executor, "goalrt", None)
            run = StepRun(1, "deliver", {"order": "o1"}, 1, 1, "pay.card", {"o": "o1"}, 1)
            first = await planning.first(achieve, {"order": "o1"})
            assert first.error is None and first.steps, first.error
            step = await planning.before(achieve, run, None)
            assert step is None, step  # the step runs as planned: the common case
            out = {
                "step": await median_us(steps, lambda: planning.before(achieve, run, None)),
                "plan": await median_us(steps, lambda: planning.first(achieve, {"order": "o1"})),
            }

            async def whole() -> None:
                async with pool.acquire() as conn:
                    await AsyncState(conn).list()

            out["whole"] = await median_us(whole_reads, whole)
            if show_plans:
                reads = planning._plan_reads(achieve, {"order": "o1"}, run)
                async with pool.acquire() as conn:
                    query = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + planning._read_paths
                    for row in await conn.fetch(query, *reads.arguments()):
                        print("    " + row[0])
            return out
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    from goalrt.db.config import database_url

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", help="server to use (default: GOALRT_DATABASE_URL, else the embedded server)")
    p.add_argument("--sizes", help="numbers of unrelated paths, comma-separated (default 1000,100000)")
    p.add_argument("--orders", type=int, default=20, help="orders in the domain (default 20)")
    p.add_argument("--steps", type=int, default=200, help="timed calls of each kind per size (default 200)")
    p.add_argument("--whole-reads", type=int, default=3, help="timed whole-state reads per size (default 3)")
    p.add_argument("--quick", action="store_true", help="sizes 1000,10000 and 50 steps")
    p.add_argument("--plans", action="store_true", help="print the query plan of the planning read per size")
    args = p.parse_args(argv)
    try:
        sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip()) if args.sizes else None
    except ValueError:
        p.error("--sizes must be a comma-separated list of integers")
    sizes = sizes or (QUICK_SIZES if args.quick else SIZES)
    if args.quick:
        args.steps = min(args.steps, 50)
    if min(sizes) < 0 or args.orders < 2 or args.steps < 1 or args.whole_reads < 1:
        p.error("--sizes must be >= 0, --orders >= 2, --steps and --whole-reads >= 1")
    base_url = database_url(args.database_url)
    prefix = f"goalrt_pbench_{secrets.token_hex(4)}"
    print(f"{args.orders} orders; median of {args.steps} calls (whole state: {args.whole_reads}), in µs")
    print(f"{'unrelated paths':>16} {'step (before)':>14} {'plan (first)':>13} {'whole state':>12}")
    with scratch_databases(base_url, [f"{prefix}_{i}" for i in range(len(sizes))]) as urls:
        for size, url in zip(sizes, urls, strict=True):
            upgrade(url)
            load(url, size, args.orders)
            r = asyncio.run(measure(url, args.steps, args.whole_reads, args.plans))
            print(f"{size:>16,} {r['step']:>14,.0f} {r['plan']:>13,.0f} {r['whole']:>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
