"""One-step http.call goals through a goalrt worker, next to a plain httpx loop making the same calls.

What it measures
----------------
A local HTTP server (uvicorn running the tiny ASGI app below, in a process of
its own, on 127.0.0.1) answers every request with a small JSON body. In the
same run, against that server:

* goalrt: a scratch database (``goalrt_hbench_<random>``, migrated, dropped
  at the end) with a GDL workspace of one action ``ping`` whose handler is
  the built-in ``http.call`` (``POST http://127.0.0.1:PORT/ping/{o}`` with a
  JSON body from the state-free ``with`` block) and one goal ``pinged(o)``
  reached by it. ``--goals`` goals are submitted in batches of 500 with no
  worker running, then one in-process ``goalrt.Worker`` (``--concurrency``,
  default 50) drains them; the figure is goals/s from the worker's start
  until the last goal is complete (plan, claim, step, the HTTP call, commit).
* httpx: the same number of ``POST`` requests with one ``httpx.AsyncClient``,
  at most ``--concurrency`` at once (a semaphore), timed from the first to the
  last response: requests/s.

Each is run ``--rounds`` times (default 2), alternating, and the best round
of each is printed with the ratio. The bench prints figures; it never
asserts a timing.

    python -m bench.http_action_bench [--goals 2000] [--concurrency 50] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

WORKSPACE = """
# `under` a prefix nothing is written under: an item is an object only as a goal's parameter. Objects
# derived from items.* would make every plan ground ping once per item done so far (quadratic).
type Item under bench_items { }

action ping(o: Item) {
  effect items.{o}.done = true
  handler http.call
  with { method = "POST"  url = "http://127.0.0.1:PORT/ping/{o}"  json = { item = "{o}" }  timeout = 10 }
}

goal pinged(o: Item) { achieve items.{o}.done == true }
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app the server runs: read the body, answer 200 with a small JSON body."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "bench.http_action_bench:app", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"],
        cwd=Path(__file__).resolve().parents[1],
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the local HTTP server did not start")


async def goalrt_round(url: str, goals: int, concurrency: int, round_no: int) -> float:
    from goalrt import AsyncGoals, Registry, Worker
    from goalrt.actions.catalog import Catalog

    async with await AsyncGoals.connect(url) as client:
        for start in range(0, goals, 500):
            batch = [("pinged", {"o": f"r{round_no}-{i}"}, None) for i in range(start, min(goals, start + 500))]
            await client.submit_many(batch)
        worker = Worker(url, Registry(), concurrency=concurrency, actions=Catalog(plugins=[]), poll=0.05)
        started = time.perf_counter()
        task = asyncio.create_task(worker.run())
        try:
            while True:
                await asyncio.sleep(0.02)
                rows = await client.connection.fetch(
                    "SELECT count(*) FROM goalrt.goals WHERE status NOT IN ('complete', 'failed')"
                )
                if rows[0][0] == 0:
                    break
            elapsed = time.perf_counter() - started
            failed = await client.connection.fetchval("SELECT count(*) FROM goalrt.goals WHERE status = 'failed'")
            if failed:
                error = await client.connection.fetchval("SELECT max(last_error) FROM goalrt.goals")
                raise SystemExit(f"{failed} goals failed: {error}")
        finally:
            worker.request_stop()
            await task
    return goals / elapsed


async def httpx_round(port: int, calls: int, concurrency: int) -> float:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(i: int) -> None:
            async with gate:
                response = await client.post(f"http://127.0.0.1:{port}/ping/{i}", json={"item": str(i)}, timeout=10)
                response.raise_for_status()
                response.json()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return calls / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.pgbench_support import scratch_databases
    from goalrt.db.config import database_url
    from goalrt.db.connect import connect
    from goalrt.db.migrate import upgrade
    from goalrt.gdl import check
    from goalrt.gdl.runtime import load

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", help="server to use (default: GOALRT_DATABASE_URL, else the embedded server)")
    p.add_argument("--goals", type=int, default=2000, help="goals (and plain calls) per round (default 2000)")
    p.add_argument("--concurrency", type=int, default=50, help="worker concurrency and httpx calls in flight")
    p.add_argument("--rounds", type=int, default=2, help="rounds; each figure is the best one (default 2)")
    args = p.parse_args(argv)
    port = free_port()
    server = start_server(port)
    try:
        with scratch_databases(database_url(args.database_url), [f"goalrt_hbench_{uuid.uuid4().hex[:8]}"]) as (url,):
            upgrade(url)
            with tempfile.TemporaryDirectory() as folder:
                root = Path(folder)
                (root / "apps" / "bench").mkdir(parents=True)
                (root / "goalrt.toml").write_text('name = "hbench"\n')
                (root / "apps" / "bench" / "actions.gdl").write_text(WORKSPACE.replace("PORT", str(port)))
                with connect(url) as conn:
                    load(conn, check(root))
            asyncio.run(httpx_round(port, 200, args.concurrency))  # warm-up: the server's first connections
            best_goalrt, best_httpx = 0.0, 0.0
            for round_no in range(args.rounds):
                best_goalrt = max(best_goalrt, asyncio.run(goalrt_round(url, args.goals, args.concurrency, round_no)))
                best_httpx = max(best_httpx, asyncio.run(httpx_round(port, args.goals, args.concurrency)))
    finally:
        server.terminate()
        server.wait(10)
    print(f"{args.goals} one-step http.call goals, concurrency {args.concurrency}, best of {args.rounds} rounds")
    print(f"{'goalrt http.call goals/s':28s} {best_goalrt:10.0f}")
    print(f"{'plain httpx calls/s':28s} {best_httpx:10.0f}")
    print(f"{'goalrt / httpx':28s} {best_goalrt / best_httpx:10.2f}")
    print(f"(CPUs: {os.cpu_count()}; the server, the worker and the database share them)")


if __name__ == "__main__":
    main()
