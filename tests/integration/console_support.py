"""Real data for the console's tests: goal types, a worker in a thread, and goals run to known ends.

The worker runs in a thread with its own event loop while the server runs in
another (serve_support.serving), as in production: two processes' worth of
clients on one database.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from goalrt import ActionContext, Child, Goals, PermanentError, Registry, State, Step, Worker, ask, children, sleep
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load

HOSTILE = "<script>alert('x')</script>"
REPO_SHOP = "gdl/examples/shop"


class Job(BaseModel):
    n: int
    note: str = ""


class Approval(BaseModel):
    approved: bool
    amount: int
    note: str | None = None


def registry() -> Registry:
    reg = Registry()

    @reg.goal("job", params=Job)
    def job(p: Job) -> list[Step]:
        return [Step("work", {"n": p.n})]

    @reg.goal("boom")
    def boom(p: dict[str, Any]) -> list[Step]:
        return [Step("explode", {})]

    @reg.goal("approve")
    def approve(p: dict[str, Any]) -> list[Step]:
        return [ask("Approve the refund?", Approval, label="answer"), Step("work", {"n": 0})]

    @reg.goal("nap")
    def nap(p: dict[str, Any]) -> list[Step]:
        return [sleep(3600)]

    @reg.goal("fanout")
    def fanout(p: dict[str, Any]) -> list[Step]:
        return [children([Child("job", {"n": 10}), Child("job", {"n": 11})])]

    @reg.action("work")
    async def work(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        return {"doubled": args["n"] * 2}

    @reg.action("explode")
    async def explode(args: dict[str, Any], ctx: ActionContext) -> None:
        raise PermanentError("the part <b>broke</b>")

    return reg


@contextmanager
def running_worker(url: str) -> Iterator[Worker]:
    """Run a worker of ``registry()`` in a thread of its own until the block ends."""
    worker = Worker(url, registry(), poll=0.05, lease=5.0)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failed: list[BaseException] = []

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        await worker.wait_ready()
        ready.set()
        await task

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failed.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    if failed:
        raise failed[0]
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.request_stop)
        thread.join(30)


def wait_until(check_: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check_():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@dataclass
class Seeded:
    done: list[int]
    keyed: int
    hostile: int
    failed: int
    asking: int
    napping: int
    fanout: int


def seed(url: str) -> Seeded:
    """Submit goals of every kind and wait (a worker must run) until each reached its end or its wait."""
    with Goals.connect(url, registry=registry()) as goals:
        goals.register()
        done = [goals.submit("job", {"n": n}).id for n in (1, 2, 3)]
        keyed = goals.submit("job", {"n": 4}, key="order-k1").id
        hostile = goals.submit("job", {"n": 5, "note": HOSTILE}).id
        failed = goals.submit("boom").id
        asking = goals.submit("approve").id
        napping = goals.submit("nap").id
        fan = goals.submit("fanout").id
        goals.set_limit("work", concurrency=8)

        def settled() -> bool:
            ends = {i: goals.get(i).status for i in (*done, keyed, hostile, failed, fan)}
            waits = {i: goals.get(i).status for i in (asking, napping)}
            return all(s in ("complete", "failed") for s in ends.values()) and set(waits.values()) == {"waiting"}

        wait_until(settled)
    with State.connect(url) as st:
        st.set("orders.o1.status", "created")
        st.set("orders.o1.status", "paid")
        st.set("orders.o2.status", "created")
    with connect(url) as conn:
        load(conn, check(REPO_SHOP))
    return Seeded([*done, keyed, hostile], keyed, hostile, failed, asking, napping, fan)


def spread_history(url: str, ago: list[int], failed: int) -> None:
    """Move the complete goals' ends to ``ago`` minutes before now (the i-th took i + 1 s), the failed one's to 5."""
    import psycopg

    moved = "date_trunc('minute', now()) - make_interval(mins => %s) + interval '10 s'"
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM goalrt.goals WHERE status = 'complete' ORDER BY id")]
        assert len(ids) == len(ago), ids
        for i, (goal, minutes) in enumerate(zip(ids, ago, strict=True)):
            conn.execute(
                f"UPDATE goalrt.goals SET finished_at = {moved}, created_at = {moved} - make_interval(secs => %s)"
                " WHERE id = %s",
                (minutes, minutes, i + 1, goal),
            )
        conn.execute(f"UPDATE goalrt.goals SET finished_at = {moved} WHERE id = %s", (5, failed))
