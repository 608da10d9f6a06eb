"""What tenants cost: the hot path and single appends, with no tenant or with two, as the roles a deployment uses.

One run: a scratch database owned by an ordinary role (``goalrt_tb_owner``,
LOGIN CREATEROLE: row-level security applies to it, as tenants need),
migrated as that role; with ``--tenants 2`` the login roles
``goalrt_tb_a`` and ``goalrt_tb_b`` (members of ``goalrt_writer``) are
mapped to tenants ``a`` and ``b``, and ``b`` first runs three rounds and
200 appends of its own. Then, as ``goalrt_tb_a``: ``bench/hotpath_bench.py``'s
rounds (database time per one-step goal for each call, the median over the
rounds but the first two) and the WAL they wrote (after a CHECKPOINT), then
``--appends`` single ``append_event`` calls, each its own transaction (the
median latency, the rate, WAL per append). Prints one JSON object.

The machine is usually shared: run it several times, alternating the
checkouts or modes compared (A B A B ...), against a private server (WAL
figures count every database's writes), and compare medians. The roles are
created once per cluster and left for the next run. To run another checkout's
SQL, put that checkout first on PYTHONPATH::

    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/tenancy_bench.py \\
        --database-url postgresql://postgres@127.0.0.1:5498/postgres --tenants 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.hotpath_bench import CALLS, run_rounds

OWNER, ROLE_A, ROLE_B = "goalrt_tb_owner", "goalrt_tb_a", "goalrt_tb_b"


def as_role(url: str, role: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params.update(user=role, dbname=dbname)
    params.pop("password", None)
    return make_conninfo("", **params)


def ensure_role(su: psycopg.Connection, role: str, options: str) -> None:
    if not su.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        su.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))


def appends(conn: psycopg.Connection, count: int) -> tuple[float, float, float]:
    """Return the median microseconds per append, appends per second and WAL bytes per append."""
    (since,) = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()  # type: ignore[misc]
    each = []
    start = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        conn.execute("SELECT goalrt.append_event('s:' || %s, 'bench.single', '{\"n\": 1}', '{}')", (str(i % 10),))
        each.append((time.perf_counter() - t) * 1e6)
    seconds = time.perf_counter() - start
    (wal,) = conn.execute(  # type: ignore[misc]
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)", (since,)
    ).fetchone()
    return statistics.median(each), count / seconds, float(wal) / count


def main(argv: list[str] | None = None) -> None:
    from goalrt.db.config import database_url
    from goalrt.db.migrate import upgrade

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", help="a superuser's URL (default: GOALRT_DATABASE_URL, else the embedded server)")
    p.add_argument("--tenants", type=int, choices=(0, 2), default=0, help="no tenant, or two (default 0)")
    p.add_argument("--goals", type=int, default=100, help="goals per call (default 100)")
    p.add_argument("--rounds", type=int, default=30, help="rounds (default 30)")
    p.add_argument("--appends", type=int, default=3000, help="single appends (default 3000)")
    args = p.parse_args(argv)
    if args.goals < 1 or args.rounds < 3 or args.appends < 1:
        p.error("--goals and --appends must be >= 1 and --rounds >= 3")
    url = database_url(args.database_url)
    db = f"goalrt_tenancy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as su:
        ensure_role(su, OWNER, "LOGIN CREATEROLE")
        su.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(OWNER)))
        try:
            upgrade(as_role(url, OWNER, db))
            for role in (ROLE_A, ROLE_B):  # (goalrt_writer exists once a database is migrated)
                ensure_role(su, role, "LOGIN IN ROLE goalrt_writer")
            with psycopg.connect(as_role(url, OWNER, db), autocommit=True) as owner:
                owner.execute("SELECT goalrt.register_goal_type('bench.hot', '{}')")
                if args.tenants:
                    owner.execute("SELECT goalrt.set_tenant_role(%s, 'a')", (ROLE_A,))
                    owner.execute("SELECT goalrt.set_tenant_role(%s, 'b')", (ROLE_B,))
            if args.tenants:  # the other tenant's goals and events, in the same tables
                with psycopg.connect(as_role(url, ROLE_B, db), autocommit=True) as b:
                    run_rounds(b, args.goals, 3)
                    appends(b, 200)
            with psycopg.connect(as_role(url, ROLE_A, db), autocommit=True) as a:
                su.execute("CHECKPOINT")
                (since,) = a.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()  # type: ignore[misc]
                times = run_rounds(a, args.goals, args.rounds)
                (wal,) = a.execute(  # type: ignore[misc]
                    "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)", (since,)
                ).fetchone()
                su.execute("CHECKPOINT")
                append_us, append_rate, append_wal = appends(a, args.appends)
        finally:
            su.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
    out: dict[str, object] = {call: round(statistics.median(times[call][2:]), 1) for call in CALLS}
    out["total"] = round(sum(statistics.median(times[call][2:]) for call in CALLS), 1)
    out["wal_per_goal"] = round(float(wal) / (args.goals * args.rounds))
    out["append_us_median"] = round(append_us, 1)
    out["appends_per_s"] = round(append_rate)
    out["wal_per_append"] = round(append_wal)
    out["tenants"] = args.tenants
    print(json.dumps(out))


if __name__ == "__main__":
    main()
