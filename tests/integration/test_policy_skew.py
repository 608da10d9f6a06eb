"""Policies hold under concurrency: two changes to different paths that together break a policy cannot both commit.

Each change keeps the policy on its own (it checks against the other's old
value); together they break it (write skew). lock_policies makes the second
writer of a policy instance wait for the first and check with its change in
view; under REPEATABLE READ the second gets a serialization failure.
With lock_policies emptied, the first three tests fail (both commit).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load

POLICIES = """
type Order under orders { amount: number  paid: number }
policy covered { require not exists(stock.total) or stock.reserved <= stock.total }
policy paid_within { require orders.*.paid <= orders.*.amount }
"""


@pytest.fixture
def policies(db_url: str, tmp_path: Path) -> str:
    (tmp_path / "apps" / "a").mkdir(parents=True)
    (tmp_path / "goalrt.toml").write_text('name = "skew"\nversion = "1"\n')
    (tmp_path / "apps" / "a" / "p.gdl").write_text(POLICIES)
    with connect(db_url) as conn:
        load(conn, check(tmp_path))
    with psycopg.connect(db_url, autocommit=True) as c:
        change(c, {"stock.total": 10, "stock.reserved": 5, "orders.o1.amount": 10, "orders.o1.paid": 0})
        change(c, {"orders.o2.amount": 10, "orders.o2.paid": 0})
    return db_url


def change(conn: psycopg.Connection, values: dict[str, Any]) -> None:
    conn.execute(
        "SELECT goalrt.change_state(%s)", (Jsonb([{"op": "set", "path": p, "value": v} for p, v in values.items()]),)
    )


def value(conn: psycopg.Connection, path: str) -> Any:
    row = conn.execute("SELECT value FROM goalrt.state WHERE path = %s", (path,)).fetchone()
    return None if row is None else row[0]


def waits_for_a_lock(conn: psycopg.Connection, pid: int) -> bool:
    """Whether backend ``pid`` is waiting for a lock, asked for up to 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row is not None and row[0] == "Lock":
            return True
        time.sleep(0.02)
    return False


def second_writer(url: str, values: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any], int]:
    """Start ``change(values)`` in a thread of its own; return it, its outcome and its backend pid."""
    out: dict[str, Any] = {}
    conn = psycopg.connect(url, autocommit=True)
    pid = conn.info.backend_pid

    def run() -> None:
        try:
            change(conn, values)
            out["ok"] = True
        except psycopg.Error as exc:
            out["error"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out, pid


def test_the_second_of_two_skewed_changes_waits_and_is_refused(policies: str) -> None:
    with psycopg.connect(policies) as first, psycopg.connect(policies, autocommit=True) as watch:
        change(first, {"stock.reserved": 8})  # 8 <= 10: holds, not committed yet
        thread, out, pid = second_writer(policies, {"stock.total": 6})  # 5 <= 6 against the old value
        assert waits_for_a_lock(watch, pid), "the second writer did not wait for the first"
        first.commit()
        thread.join(30)
        assert "ok" not in out, "both changes committed: reserved 8 > total 6"
        assert isinstance(out["error"], psycopg.Error) and out["error"].sqlstate == "GR003"
        assert "policy covered" in str(out["error"])
        assert (value(watch, "stock.reserved"), value(watch, "stock.total")) == (8, 10)


def test_a_wildcard_policy_serializes_one_key_and_leaves_the_others_alone(policies: str) -> None:
    with psycopg.connect(policies) as first, psycopg.connect(policies, autocommit=True) as watch:
        change(first, {"orders.o1.paid": 10})
        # Another order's instance is another lock: no wait.
        other = psycopg.connect(policies, autocommit=True)
        with other:
            other.execute("SET lock_timeout = '5s'")
            change(other, {"orders.o2.amount": 3})
        thread, out, pid = second_writer(policies, {"orders.o1.amount": 5})
        assert waits_for_a_lock(watch, pid)
        first.commit()
        thread.join(30)
        assert "ok" not in out and out["error"].sqlstate == "GR003"
        assert "orders.o1" in str(out["error"])
        assert value(watch, "orders.o1.amount") == 10 and value(watch, "orders.o2.amount") == 3


def test_many_writers_never_commit_a_broken_policy(policies: str) -> None:
    """Writers raise paid and lower amount of random orders by 1, each keeping the policy as it sees it.

    Both only move one way, so a skew, once committed, stays: the end state shows it.
    """
    keys = [f"k{i}" for i in range(12)]
    with psycopg.connect(policies, autocommit=True) as c:
        for k in keys:
            change(c, {f"orders.{k}.amount": 6, f"orders.{k}.paid": 0})
    broken: list[str] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(policies) as conn:
            for _ in range(60):
                k = rng.choice(keys)
                path, by = rng.choice([(f"orders.{k}.paid", 1), (f"orders.{k}.amount", -1)])
                try:
                    conn.execute("SELECT goalrt.change_state(%s)", (Jsonb([{"op": "inc", "path": path, "by": by}]),))
                    conn.execute("SELECT pg_sleep(0.003)")  # widen the window before the commit
                    conn.commit()
                except psycopg.Error as exc:
                    conn.rollback()
                    if exc.sqlstate not in ("GR003", "40P01"):
                        broken.append(str(exc))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not broken
    with psycopg.connect(policies, autocommit=True) as c:
        skewed = [k for k in keys if value(c, f"orders.{k}.paid") > value(c, f"orders.{k}.amount")]
    assert not skewed, f"orders paid beyond their amount: {skewed}"


def test_repeatable_read_gets_a_serialization_failure(policies: str) -> None:
    with psycopg.connect(policies) as late, psycopg.connect(policies, autocommit=True) as other:
        late.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        late.execute("SELECT 1 FROM goalrt.state LIMIT 1")  # the snapshot is taken here
        change(other, {"stock.reserved": 8})
        with pytest.raises(psycopg.errors.SerializationFailure):
            change(late, {"stock.total": 6})
        late.rollback()
        assert value(other, "stock.total") == 10
