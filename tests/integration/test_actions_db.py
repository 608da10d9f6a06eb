"""db.query against a real PostgreSQL: a scratch database of its own, read-only by default, SQL errors permanent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from goalrt import AsyncGoals, GoalInfo, Registry, Worker
from goalrt.actions.catalog import Catalog
from goalrt.actions.config import ActionsConfig
from goalrt.db.connect import connect
from goalrt.errors import ActionFailedError, PermanentError
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.state.state import State
from tests.conftest import create_database, drop_database
from tests.integration.test_worker import FAST, until_finished

WORKSPACE = """
type Order under orders { }

action order.total(o: Order) {
  require orders.{o}.status == "created"
  effect  orders.{o}.status = "totalled"
  handler db.query
  with { database = "shop"
         sql = "SELECT order_id, sum(amount) AS total, '{}'::jsonb AS empty
                FROM lines WHERE order_id = $1 AND amount > $2 GROUP BY 1"
         params = ["{o}", state(orders.{o}.min)] }
}

action order.record(o: Order) {
  require orders.{o}.status == "totalled"
  effect  orders.{o}.status = "recorded"
  handler db.query
  with { database = "shop"  write = true
         sql = "INSERT INTO audit (order_id) VALUES ($1) RETURNING id"  params = ["{o}"] }
}

action order.sneak(o: Order) {
  require orders.{o}.status == "bad-write"
  effect  orders.{o}.status = "recorded"
  handler db.query
  with { database = "shop"  sql = "INSERT INTO audit (order_id) VALUES ($1)"  params = ["{o}"] }
}

action order.typo(o: Order) {
  require orders.{o}.status == "bad-sql"
  effect  orders.{o}.status = "recorded"
  handler db.query
  retry 3 backoff fixed 50ms
  with { database = "shop"  sql = "SELEC 1" }
}

action order.offline(o: Order) {
  require orders.{o}.status == "offline"
  effect  orders.{o}.status = "recorded"
  handler db.query
  retry 2 backoff fixed 50ms
  with { database = "down"  sql = "SELECT 1" }
}

goal record(o: Order) { achieve orders.{o}.status == "recorded" }
"""


@pytest.fixture
def shop_url(server_url: str) -> Iterator[str]:
    """A scratch database (not goalrt's): a table of order lines and an audit table to write to."""
    name = create_database(server_url)
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE lines (order_id text, amount numeric)")
        conn.execute("INSERT INTO lines VALUES ('o1', 10.25), ('o1', 5), ('o1', 1), ('o2', 7)")
        conn.execute("INSERT INTO lines SELECT 'big', g FROM generate_series(1, 5000) g")
        conn.execute("CREATE TABLE audit (id serial PRIMARY KEY, order_id text)")
    try:
        yield url
    finally:
        drop_database(server_url, name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(shop_url: str, writable: bool = True) -> ActionsConfig:
    down = f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing"
    return ActionsConfig(
        {"db": {"databases": {"shop": shop_url, "down": down}, "writable": ["shop"] if writable else []}}
    )


def audit(shop_url: str) -> list[str]:
    with psycopg.connect(shop_url) as conn:
        return [r[0] for r in conn.execute("SELECT order_id FROM audit ORDER BY id")]


async def record(db_url: str, catalog: Catalog, orders: dict[str, str]) -> list[GoalInfo]:
    with State.connect(db_url) as state:
        for o, status in orders.items():
            state.set(f"orders.{o}.min", 2)
            state.set(f"orders.{o}.status", status)
    worker = Worker(db_url, Registry(), actions=catalog, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(db_url) as goals:
            ids = [(await goals.submit("record", {"o": o})).id for o in orders]
            return await until_finished(goals, *ids)
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task


def test_db_query_from_gdl_reads_with_bound_params_writes_when_allowed_and_maps_failures(
    db_url: str, tmp_path: Path, shop_url: str
) -> None:
    (tmp_path / "apps" / "shop").mkdir(parents=True)
    (tmp_path / "goalrt.toml").write_text('name = "db"\n')
    (tmp_path / "apps" / "shop" / "actions.gdl").write_text(WORKSPACE)
    with connect(db_url) as conn:
        load(conn, check(tmp_path))
    orders = {"o1": "created", "sneaky": "bad-write", "typo": "bad-sql", "offline": "offline"}
    ok, sneaky, typo, offline = asyncio.run(record(db_url, Catalog(config(shop_url), plugins=[]), orders))

    assert ok.status == "complete", ok.last_error
    total, recorded = ok.steps
    # amount > $2 (the state's 2) drops the line of 1; '{}' in the statement reached PostgreSQL as written.
    assert total.result == {
        "columns": ["order_id", "total", "empty"],
        "rows": [{"order_id": "o1", "total": 15.25, "empty": {}}],
        "row_count": 1,
        "truncated": False,
    }
    assert recorded.result["rows"] == [{"id": 1}] and recorded.result["command"] == "INSERT 0 1"
    assert audit(shop_url) == ["o1"]

    # Without write = true the transaction is read-only: PostgreSQL refuses, once, for good.
    assert sneaky.status == "failed" and sneaky.steps[-1].attempts == 1
    assert "cannot execute INSERT in a read-only transaction (SQLSTATE 25006)" in str(sneaky.last_error)
    assert audit(shop_url) == ["o1"]
    # A syntax error is not retried despite retry 3; a database that cannot be reached is, up to the policy.
    assert typo.status == "failed" and typo.steps[-1].attempts == 1
    assert "syntax error" in str(typo.last_error) and "SQLSTATE 42601" in str(typo.last_error)
    assert offline.status == "failed" and offline.steps[-1].attempts == 2
    assert "db.query on down: OperationalError" in str(offline.last_error)
    assert "(after 2 attempts)" in str(offline.last_error)


def query(catalog: Catalog, **args: Any) -> Any:
    """Run db.query as a Python step does (arguments as given)."""
    ctx = SimpleNamespace(idempotency_key="1:1", state=None, log=None)
    return asyncio.run(catalog.handler("db.query")(args, ctx))


def test_db_query_binds_caps_times_out_and_refuses_what_the_configuration_does_not_allow(shop_url: str) -> None:
    catalog = Catalog(config(shop_url), plugins=[])
    # A value is a value: a quote in it is no SQL.
    injected = query(
        catalog, database="shop", sql="SELECT count(*) AS n FROM lines WHERE order_id = $1", params=["o1' OR '1'='1"]
    )
    assert injected["rows"] == [{"n": 0}]
    # Rows are capped; the result says so.
    big = query(
        catalog, database="SHOP", sql="SELECT amount FROM lines WHERE order_id = 'big' ORDER BY amount", max_rows=3
    )
    assert big["rows"] == [{"amount": 1}, {"amount": 2}, {"amount": 3}] and big["truncated"] is True
    default = query(catalog, database="shop", sql="SELECT amount FROM lines WHERE order_id = 'big'")
    assert len(default["rows"]) == 1000 and default["truncated"] is True
    # One statement only: the extended protocol refuses two.
    with pytest.raises(PermanentError, match="cannot insert multiple commands"):
        query(catalog, database="shop", sql="SELECT 1; DELETE FROM lines", write=True)
    with pytest.raises(ActionFailedError, match=r"statement timeout.*SQLSTATE 57014"):
        query(catalog, database="shop", sql="SELECT pg_sleep(10)", timeout=0.2)
    with pytest.raises(PermanentError, match=r"no database named nope \(configured: down, shop"):
        query(catalog, database="nope", sql="SELECT 1")
    with pytest.raises(PermanentError, match="the statement returns no rows"):
        query(catalog, database="shop", sql="SET work_mem = '8MB'")
    read_only = Catalog(config(shop_url, writable=False), plugins=[])
    with pytest.raises(PermanentError, match=r"writes to shop are not allowed \(list it in \[actions\.db\] writable\)"):
        query(read_only, database="shop", sql="DELETE FROM lines", write=True)
    # The URL may hold a secret (this server trusts any password; the value reaches libpq all the same).
    with_secret = ActionsConfig({"db": {"databases": {"shop": shop_url + " password={secret.SHOP_PASSWORD}"}}})
    with pytest.raises(PermanentError, match="secret SHOP_PASSWORD is not set"):
        query(Catalog(with_secret, plugins=[]), database="shop", sql="SELECT 1")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GOALRT_SECRET_SHOP_PASSWORD", "pw-0123456789")
        assert query(Catalog(with_secret, plugins=[]), database="shop", sql="SELECT 1 AS one")["rows"] == [{"one": 1}]
    deleted = query(catalog, database="shop", sql="DELETE FROM lines WHERE order_id = $1", params=["o2"], write=True)
    assert deleted == {"columns": [], "rows": [], "row_count": 1, "truncated": False, "command": "DELETE 1"}


def test_databases_come_from_goalrt_toml_and_goalrt_db_variables(tmp_path: Path) -> None:
    (tmp_path / "goalrt.toml").write_text(
        '[actions.db]\nwritable = ["a"]\n[actions.db.databases]\na = "postgresql:///a"\n'
    )
    cfg = ActionsConfig.load(tmp_path, {"GOALRT_DB_REPORTS": "postgresql:///r", "GOALRT_DB_MAX_ROWS": "5"})
    assert cfg.databases() == {"a": "postgresql:///a", "reports": "postgresql:///r"}
    assert cfg.section("db")["max_rows"] == 5 and cfg.section("db")["writable"] == ["a"]
