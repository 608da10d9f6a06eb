"""GDL `event` declarations, enforced by the database: an append of a declared type must match, others stay free.

With the trigger never created (or check_declared_events returning at once),
every refusal below fails.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from goalrt import ActionContext, AsyncGoals, Registry, Result
from goalrt.db import migrate
from goalrt.db.connect import connect
from goalrt.errors import InvalidEventError
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.log.eventlog import EventLog
from tests.integration.test_migrations import build_legacy
from tests.integration.test_worker import until_finished, with_worker

DECLARED = """
type Order under orders { status: string }
event order.created { order_id: Order  amount: number  count: integer  rush: boolean  note: any }
action confirm(o: Order) {
  require orders.{o}.status == "new"
  effect orders.{o}.status = "confirmed"
  emit order.created
}
goal confirmed(o: Order) { achieve orders.{o}.status == "confirmed" }
"""
GOOD = {"order_id": "o1", "amount": 9.5, "count": 2, "rush": False, "note": [1, "x"]}


def workspace(root: Path, text: str) -> Path:
    (root / "apps" / "shop").mkdir(parents=True, exist_ok=True)
    (root / "goalrt.toml").write_text('name = "shop"\nversion = "1"\n')
    (root / "apps" / "shop" / "shop.gdl").write_text(text)
    return root


def trigger_enabled(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'goalrt.event_data'::regclass"
        " AND tgname = 'event_data_declared' AND tgenabled <> 'D'"
    ).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture
def declared(db_url: str, tmp_path: Path) -> str:
    with connect(db_url) as conn:
        load(conn, check(workspace(tmp_path, DECLARED)))
    return db_url


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({k: v for k, v in GOOD.items() if k != "amount"}, "data.amount is required"),
        ({**GOOD, "amount": "9.5"}, "data.amount must be number, got string"),
        ({**GOOD, "count": 2.5}, "data.count must be integer, got number"),
        ({**GOOD, "rush": 1}, "data.rush must be boolean, got number"),
        ({**GOOD, "order_id": 7}, "data.order_id must be string, got number"),
        ({**GOOD, "extra": 1}, "data.extra is not a field (expected: amount, count, note, order_id, rush)"),
        ([1, 2], "data must be a JSON object"),
    ],
)
def test_an_append_that_does_not_match_its_declaration_is_refused_naming_the_field(
    declared: str, data: Any, problem: str
) -> None:
    with EventLog.connect(declared) as log:
        before = len(log.read(0))
        with pytest.raises(InvalidEventError, match="^" + re.escape(f"event order.created: {problem}")):
            log.append("orders", "order.created", data)
        assert len(log.read(0)) == before


def test_matching_and_undeclared_events_go_through_and_a_batch_is_all_or_nothing(declared: str) -> None:
    with psycopg.connect(declared, autocommit=True) as conn:
        conn.execute("SELECT goalrt.append_event('orders', 'order.created', %s)", (Jsonb(GOOD),))
        conn.execute("SELECT goalrt.append_event('orders', 'order.whatever', %s)", (Jsonb({"any": "thing"}),))
        conn.execute("SELECT goalrt.append_event('orders', 'order.created', %s)", (Jsonb({**GOOD, "count": 3.0}),))
        (before,) = conn.execute("SELECT count(*) FROM goalrt.event_data").fetchone()  # type: ignore[misc]
        batch = [
            {"stream": "orders", "type": "order.created", "data": GOOD},
            {"stream": "orders", "type": "order.created", "data": {**GOOD, "amount": None}},
        ]
        with pytest.raises(psycopg.Error, match=r"event order\.created: data\.amount must be number, got null"):
            conn.execute("SELECT goalrt.append_events(%s)", (Jsonb(batch),))
        # Even the owner's own INSERT is checked.
        with pytest.raises(psycopg.Error, match=r"data\.amount is required"):
            conn.execute(
                "INSERT INTO goalrt.event_data (stream, type, data) VALUES ('x', 'order.created', %s)",
                (Jsonb({"order_id": "o1"}),),
            )
        assert conn.execute("SELECT count(*) FROM goalrt.event_data").fetchone() == (before,)


def test_the_check_runs_only_while_declarations_exist(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn, connect(db_url) as gdl:
        assert not trigger_enabled(conn)
        load(gdl, check(workspace(tmp_path / "a", DECLARED)))
        assert trigger_enabled(conn)
        without = DECLARED.replace(
            "event order.created { order_id: Order  amount: number  count: integer  rush: boolean  note: any }\n", ""
        ).replace("  emit order.created\n", "")
        load(gdl, check(workspace(tmp_path / "b", without)))
        assert not trigger_enabled(conn)
        conn.execute("SELECT goalrt.append_event('orders', 'order.created', '{}')")  # free again


def test_a_handlers_event_that_does_not_match_fails_its_step_and_is_not_appended(declared: str) -> None:
    registry = Registry()

    @registry.action("confirm")
    async def confirm(args: dict[str, Any], ctx: ActionContext) -> Any:
        return Result({"ok": True}, events=[{"type": "order.created", "data": {**GOOD, "amount": "x"}}])

    with psycopg.connect(declared, autocommit=True) as conn:
        new = [{"op": "set", "path": "orders.o1.status", "value": "new"}]
        conn.execute("SELECT goalrt.change_state(%s)", (Jsonb(new),))

    async def body(goals: AsyncGoals, _worker: Any) -> None:
        gid = (await goals.submit("confirmed", {"o": "o1"})).id
        (info,) = await until_finished(goals, gid)
        assert info.status == "failed"
        assert info.last_error == "confirm: event order.created: data.amount must be number, got string" + (
            " (as declared in GDL)"
        )

    asyncio.run(with_worker(declared, registry, body))
    with psycopg.connect(declared, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM goalrt.event_data WHERE type = 'order.created'").fetchone() == (0,)
        assert conn.execute("SELECT value FROM goalrt.state WHERE path = 'orders.o1.status'").fetchone() == ("new",)


def test_a_database_loaded_before_the_check_enforces_its_declarations_after_the_upgrade(
    empty_db_url: str, tmp_path: Path
) -> None:
    build_legacy(empty_db_url)
    migrate.upgrade(empty_db_url, "0026")
    with psycopg.connect(empty_db_url) as conn:
        # load_gdl of 0026 knows no event declarations: the runtime it is given carries none.
        compiled = check(workspace(tmp_path, DECLARED))
        conn.execute(
            "SELECT * FROM goalrt.load_gdl(%s, %s, %s, '{}')",
            (compiled.name, compiled.content_hash, Jsonb(compiled.to_json())),
        )
        conn.commit()
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert trigger_enabled(conn)
        with pytest.raises(psycopg.Error, match=r"event order\.created: data\.count is required"):
            conn.execute(
                "SELECT goalrt.append_event('orders', 'order.created', %s)",
                (Jsonb({k: v for k, v in GOOD.items() if k != "count"}),),
            )
        conn.execute("SELECT goalrt.append_event('orders', 'order.created', %s)", (Jsonb(GOOD),))
