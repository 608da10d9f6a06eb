"""HTTP submit against direct Python submits: throughput and latency (p50, p99), in the same run.

What it measures
----------------
Against one migrated database (``--url``; give it a scratch database: every
submit adds a pending goal that no worker runs), it submits ``--goals``
goals of a goal type it registers (no handler) in three ways, one after
another, each with ``--concurrency`` clients at once:

- **python async**: ``AsyncGoals.submit`` on one asyncpg connection per
  client (what an application in the same process would do);
- **http**: ``POST /api/v1/goals`` to a ``goalrt serve`` app run by uvicorn
  in a thread of this process on 127.0.0.1 (pool of ``--concurrency``
  connections), one httpx keep-alive client per concurrent sender;
- **http batch**: ``POST /api/v1/goals/batch`` of ``--batch`` goals at once
  (latency is per request, throughput counts goals).

Latency is each call's wall time as the caller sees it; throughput is goals
per second of the whole phase. The client and the server share this
machine's cores (and the database's), so the HTTP figures include the
server's CPU competing with the client's. No pass/fail: the figures are for
reading; compare runs made on the same machine, close together.

Run: ``.venv/bin/python bench/http_bench.py --url URL [--goals N] [--concurrency C] [--batch B]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
import psycopg

from goalrt.goals.async_goals import AsyncGoals
from tests.integration.serve_support import serving

GOAL = "bench.http_submit"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _phase(n_calls: int, concurrency: int, call: Callable[[int, int], Awaitable[None]]) -> list[float]:
    """Run ``n_calls`` calls over ``concurrency`` senders; return each call's latency (seconds)."""
    latencies: list[float] = []
    counter = iter(range(n_calls))

    async def sender(who: int) -> None:
        for i in counter:
            started = time.perf_counter()
            await call(who, i)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(sender(w) for w in range(concurrency)))
    return latencies


def _report(name: str, goals: int, seconds: float, latencies: list[float]) -> None:
    print(
        f"{name:<14} {goals / seconds:>9.0f} goals/s   p50 {_percentile(latencies, 0.5) * 1000:7.2f} ms"
        f"   p99 {_percentile(latencies, 0.99) * 1000:7.2f} ms   ({len(latencies)} calls,"
        f" mean {statistics.fmean(latencies) * 1000:.2f} ms)"
    )


async def run(url: str, base: str, n: int, concurrency: int, batch: int) -> None:
    clients = [await AsyncGoals.connect(url) for _ in range(concurrency)]
    try:
        started = time.perf_counter()
        lat = await _phase(n, concurrency, lambda who, i: clients[who].submit(GOAL, {"i": i}))
        _report("python async", n, time.perf_counter() - started, lat)
    finally:
        for c in clients:
            await c.close()
    https = [httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=60) for _ in range(concurrency)]
    try:

        async def post(who: int, i: int) -> None:
            r = await https[who].post("/goals", json={"name": GOAL, "params": {"i": i}})
            r.raise_for_status()

        started = time.perf_counter()
        lat = await _phase(n, concurrency, post)
        _report("http", n, time.perf_counter() - started, lat)

        async def post_batch(who: int, i: int) -> None:
            body = {"goals": [{"name": GOAL, "params": {"i": i, "j": j}} for j in range(batch)]}
            r = await https[who].post("/goals/batch", json=body)
            r.raise_for_status()

        calls = max(1, n // batch)
        started = time.perf_counter()
        lat = await _phase(calls, concurrency, post_batch)
        _report(f"http batch {batch}", calls * batch, time.perf_counter() - started, lat)
    finally:
        for h in https:
            await h.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="A migrated scratch database.")
    parser.add_argument("--goals", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute("SELECT goalrt.register_goal_type(%s, '{}')", (GOAL,))
    with serving(args.url, pool_size=args.concurrency) as base:
        asyncio.run(run(args.url, base, args.goals, args.concurrency, args.batch))


if __name__ == "__main__":
    main()
