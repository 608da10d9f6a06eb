"""What carrying a trace costs a submit and a claim that carry none: migration 0029 against 0030.

What it measures
----------------
Two databases on the server of ``--url`` (it creates and drops databases
named ``trace_carry_*``): one migrated to the head, one migrated and then
downgraded to 0029 (before ``goals.trace_context`` and ``claim_goals_v3``),
each with a connection of its own. Calls alternate between the two, one
call each in turn (the first of each pair alternating too), so that the
load of a shared machine falls on both alike:

- ``--goals`` submits with no trace (``goalrt.submit_goal``) on each;
- then claims of 10 until each is empty: ``claim_goals_v2`` on 0029,
  ``claim_goals_v3`` (what the worker calls now) on the head.

Each call's wall time is taken in Python. It prints the median and p90 of
each, and the median of the pairwise ratios head / 0029 (1.00: no change).
The rounds repeat it (``--rounds``) on fresh databases.

Run: ``.venv/bin/python bench/trace_carry_bench.py --url postgresql://postgres@127.0.0.1:5432/postgres``
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt.db import migrate


def _url(base: str, dbname: str) -> str:
    params = conninfo_to_dict(base)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def _admin(base: str, *statements: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _template(base: str, name: str, revision: str | None) -> None:
    _admin(base, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    url = _url(base, name)
    migrate.upgrade(url)
    if revision is not None:
        migrate.downgrade(url, revision)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT goalrt.register_goal_type('t', '{}')")


def _timed(conn: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> tuple[float, int]:
    started = time.perf_counter()
    rows = conn.execute(query, params).fetchall()
    return time.perf_counter() - started, len(rows)


def _round(base: str, goals: int) -> dict[str, list[tuple[float, float]]]:
    """Return per kind of call the pairs (0029's time, the head's time) of one round."""
    for name, template in (("trace_carry_old", "trace_carry_0029"), ("trace_carry_new", "trace_carry_head")):
        _admin(base, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} TEMPLATE {template}")
    pairs: dict[str, list[tuple[float, float]]] = {"submit": [], "claim": []}
    try:
        with (
            psycopg.connect(_url(base, "trace_carry_old"), autocommit=True) as old,
            psycopg.connect(_url(base, "trace_carry_new"), autocommit=True) as new,
        ):
            submit = "SELECT * FROM goalrt.submit_goal('t', '{}', '{}'::jsonb)"
            for i in range(goals):
                if i % 2:
                    a, _ = _timed(old, submit)
                    b, _ = _timed(new, submit)
                else:
                    b, _ = _timed(new, submit)
                    a, _ = _timed(old, submit)
                pairs["submit"].append((a, b))
            for conn in (old, new):
                conn.execute("VACUUM ANALYZE goalrt.goals")
            i = 0
            while True:
                i += 1
                if i % 2:
                    a, n = _timed(old, "SELECT * FROM goalrt.claim_goals_v2('w', 10, 30)")
                    b, m = _timed(new, "SELECT * FROM goalrt.claim_goals_v3('w', 10, 30)")
                else:
                    b, m = _timed(new, "SELECT * FROM goalrt.claim_goals_v3('w', 10, 30)")
                    a, n = _timed(old, "SELECT * FROM goalrt.claim_goals_v2('w', 10, 30)")
                assert n == m, (n, m)
                if not n:
                    break
                pairs["claim"].append((a, b))
    finally:
        _admin(base, "DROP DATABASE IF EXISTS trace_carry_old", "DROP DATABASE IF EXISTS trace_carry_new")
    return pairs


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a database on the server to use (to create databases from)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--goals", type=int, default=1000)
    args = parser.parse_args()
    _template(args.url, "trace_carry_0029", "0029")
    _template(args.url, "trace_carry_head", None)
    pairs: dict[str, list[tuple[float, float]]] = {"submit": [], "claim": []}
    try:
        for _ in range(args.rounds):
            for kind, found in _round(args.url, args.goals).items():
                pairs[kind] += found
    finally:
        _admin(args.url, "DROP DATABASE IF EXISTS trace_carry_0029", "DROP DATABASE IF EXISTS trace_carry_head")
    for kind, found in pairs.items():
        old, new = [a for a, _ in found], [b for _, b in found]
        ratio = statistics.median(b / a for a, b in found)
        print(
            f"{kind:<7} ({len(found)} pairs)  0029 median {statistics.median(old) * 1e6:6.0f} us p90"
            f" {_pct(old, 0.9) * 1e6:6.0f} us   head median {statistics.median(new) * 1e6:6.0f} us p90"
            f" {_pct(new, 0.9) * 1e6:6.0f} us   median ratio head/0029 {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
