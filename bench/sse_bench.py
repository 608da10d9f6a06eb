"""The live event stream with many subscribers: every event delivered to each, once, in order; lag p50/p99.

What it measures
----------------
Starts ``goalrt serve`` (uvicorn, a process of its own) on a free port of
127.0.0.1 against ``--url`` (a scratch database: the bench appends events),
opens ``--subscribers`` concurrent ``GET /api/v1/events/stream`` streams
(httpx, one asyncio task each, from the current head, filtered to the
bench's event type), waits until every one is connected, then appends
``--events`` events at ``--rate`` events a second from one connection.

It checks that every subscriber got exactly the positions the database holds
for those events, in order (the run fails otherwise), and prints:

- the lag of each delivery: its arrival at the subscriber minus the event's
  ``recorded_at`` (the appending transaction's time; same machine, same
  clock), p50 / p99 / max over all deliveries;
- how many connections the database had while the streams were open (the
  fan-out holds one LISTEN connection per role and fork, not one per stream).

The subscribers, the server and PostgreSQL share this machine's cores: the
figures are for reading, compared between runs on the same machine.

Run: ``.venv/bin/python bench/sse_bench.py --url URL [--subscribers 100] [--events 500] [--rate 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import httpx
import psycopg

from goalrt.log.async_eventlog import AsyncEventLog

TYPE = "bench.sse"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _subscriber(
    client: httpx.AsyncClient, base: str, after: int, n: int, ready: asyncio.Queue[int], out: list[Any]
) -> None:
    got: list[tuple[int, float, float]] = []  # (pos, arrival, recorded_at)
    params: dict[str, str | int] = {"after": after, "type": TYPE}
    async with client.stream("GET", f"{base}/api/v1/events/stream", params=params) as response:
        response.raise_for_status()
        fields: dict[str, str] = {}
        lines = response.aiter_lines()
        first = await anext(lines)
        assert first.startswith(":"), first
        await ready.put(1)
        async for line in lines:
            if line:
                if not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                continue
            if fields.get("event") == "error":
                raise RuntimeError(f"the stream failed: {fields.get('data')}")
            if "id" in fields:
                event = json.loads(fields["data"])
                recorded = datetime.fromisoformat(event["recorded_at"]).timestamp()
                got.append((int(fields["id"]), time.time(), recorded))
                if len(got) == n:
                    break
            fields = {}
    out.append(got)


def _connections(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0


async def run(url: str, base: str, subscribers: int, events: int, rate: float) -> int:
    log = await AsyncEventLog.connect(url)
    try:
        head = await log.tick()
        before = _connections(url)
        ready: asyncio.Queue[int] = asyncio.Queue()
        results: list[Any] = []
        limits = httpx.Limits(max_connections=subscribers + 10, max_keepalive_connections=subscribers + 10)
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
            tasks = [
                asyncio.create_task(_subscriber(client, base, head, events, ready, results)) for _ in range(subscribers)
            ]
            for _ in range(subscribers):
                async with asyncio.timeout(120):
                    await ready.get()
            during = _connections(url)
            started = time.perf_counter()
            for i in range(events):
                await log.append("bench:sse", TYPE, {"i": i})
                pause = started + (i + 1) / rate - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
            appended_s = time.perf_counter() - started
            async with asyncio.timeout(300):
                await asyncio.gather(*tasks)
        expected = [e.pos for e in await log.read(head, events + 10, type=TYPE)]
    finally:
        await log.close()
    assert len(expected) == events, f"{len(expected)} events found, {events} appended"
    bad = [i for i, got in enumerate(results) if [p for p, _, _ in got] != expected]
    lags = [arrival - recorded for got in results for _, arrival, recorded in got]
    print(f"subscribers {subscribers}, events {events} appended in {appended_s:.1f} s ({events / appended_s:.0f}/s)")
    print(f"deliveries  {len(lags)} (expected {subscribers * events}); subscribers with a wrong sequence: {len(bad)}")
    print(
        f"lag         p50 {_percentile(lags, 0.5) * 1000:.1f} ms   p99 {_percentile(lags, 0.99) * 1000:.1f} ms"
        f"   max {max(lags) * 1000:.1f} ms"
    )
    print(f"connections to the database: {before} before the streams, {during} with {subscribers} streams open")
    return 1 if bad or len(lags) != subscribers * events else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a migrated scratch database")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0, help="events appended per second")
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "goalrt", "--database-url", args.url, "serve", "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("goalrt serve did not start")
            time.sleep(0.1)
        code = asyncio.run(run(args.url, base, args.subscribers, args.events, args.rate))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
