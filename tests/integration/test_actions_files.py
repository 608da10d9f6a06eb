"""file.upload / file.delete from GDL on a real folder: identity in the state, paths confined to the root."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from goalrt import AsyncGoals, GoalInfo, Registry, Worker
from goalrt.actions.catalog import Catalog
from goalrt.actions.config import ActionsConfig
from goalrt.db.connect import connect
from goalrt.errors import PermanentError
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.goals.registry import Result
from goalrt.state.state import State
from tests.integration.test_worker import FAST, until_finished

WORKSPACE = """
type Order under orders { }

action order.invoice(o: Order) {
  require orders.{o}.status == "created"
  effect  orders.{o}.status = "invoiced"
  handler file.upload
  with { key = "invoices.{o}"  path = "invoices/{o}.txt"  text = "Order {o}: {state:orders.{o}.amount} EUR" }
}

action order.purge(o: Order) {
  require orders.{o}.status == "invoiced"
  effect  orders.{o}.status = "purged"
  handler file.delete
  with { key = "invoices.{o}" }
}

goal invoice(o: Order) { achieve orders.{o}.status == "invoiced" }
goal purge(o: Order) { achieve orders.{o}.status == "purged" }
"""


def catalog(root: Path, sources: list[Path] | None = None) -> Catalog:
    settings: dict[str, Any] = {"root": str(root), "sources": [str(s) for s in sources or []]}
    return Catalog(ActionsConfig({"file": settings}), plugins=[])


async def pursue(db_url: str, catalog: Catalog, goal: str, *orders: str) -> list[GoalInfo]:
    worker = Worker(db_url, Registry(), actions=catalog, **FAST)
    task = asyncio.create_task(worker.run())
    await worker.wait_ready()
    try:
        async with await AsyncGoals.connect(db_url) as goals:
            ids = [(await goals.submit(goal, {"o": o})).id for o in orders]
            return await until_finished(goals, *ids)
    finally:
        worker.request_stop()
        async with asyncio.timeout(30):
            await task


def load_workspace(db_url: str, folder: Path) -> None:
    (folder / "apps" / "shop").mkdir(parents=True)
    (folder / "goalrt.toml").write_text('name = "files"\n')
    (folder / "apps" / "shop" / "actions.gdl").write_text(WORKSPACE)
    with connect(db_url) as conn:
        load(conn, check(folder))


def test_upload_records_the_identity_in_the_state_and_delete_removes_file_and_entry(
    db_url: str, tmp_path: Path
) -> None:
    load_workspace(db_url, tmp_path / "ws")
    root = tmp_path / "store"
    with State.connect(db_url) as state:
        for o in ("o1", "o2"):
            state.set(f"orders.{o}.amount", 42)
            state.set(f"orders.{o}.status", "created")
    info, _ = asyncio.run(pursue(db_url, catalog(root), "invoice", "o1", "o2"))
    assert info.status == "complete", info.last_error
    content = b"Order o1: 42 EUR"
    identity = {"path": "invoices/o1.txt", "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    assert info.steps[0].result == identity
    assert (root / "invoices" / "o1.txt").read_bytes() == content
    assert sorted(p.name for p in (root / "invoices").iterdir()) == ["o1.txt", "o2.txt"]  # no temporary file left
    with State.connect(db_url) as state:
        assert state.value("files.invoices.o1") == identity
        assert state.value("orders.o1.status") == "invoiced"

    # o2's file is already gone, as after a delete whose worker died before the step's completion committed.
    (root / "invoices" / "o2.txt").unlink()
    purged, rerun = asyncio.run(pursue(db_url, catalog(root), "purge", "o1", "o2"))
    assert purged.status == "complete", purged.last_error
    assert purged.steps[0].result == {"key": "invoices.o1", "path": "invoices/o1.txt", "deleted": True}
    assert rerun.status == "complete", rerun.last_error
    assert rerun.steps[0].result == {"key": "invoices.o2", "path": "invoices/o2.txt", "deleted": False}
    assert list((root / "invoices").iterdir()) == []
    with State.connect(db_url) as state:
        assert state.list("files") == []


def upload(cat: Catalog, **args: Any) -> Any:
    ctx = SimpleNamespace(idempotency_key="1:1", state=None, log=None)
    return asyncio.run(cat.handler("file.upload")(args, ctx))


def test_paths_are_confined_to_the_root_and_links_are_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "store", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    os.symlink(outside, root / "away")  # a folder link leading out
    os.symlink(outside / "victim.txt", root / "link.txt")  # a file link leading out
    cat = catalog(root)
    for path, message in [
        ("../outside/x.txt", "may not hold an empty, . or .. segment"),
        ("a/../../x.txt", "may not hold an empty, . or .. segment"),
        (str(outside / "x.txt"), "must be relative to the storage root"),
        ("a//b.txt", "may not hold an empty"),
        ("away/x.txt", "a segment is a link or not a folder"),
    ]:
        with pytest.raises(PermanentError, match=message):
            upload(cat, key="k", path=path, text="x")
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    # Renaming over a link replaces the link, never what it points to.
    result = upload(cat, key="k", path="link.txt", text="new")
    assert isinstance(result, Result) and result.value["size"] == 3
    assert (outside / "victim.txt").read_text() == "keep me"
    assert not (root / "link.txt").is_symlink() and (root / "link.txt").read_text() == "new"


def test_content_from_base64_or_a_source_file_inside_an_allowed_folder(tmp_path: Path) -> None:
    root, exports, private = tmp_path / "store", tmp_path / "exports", tmp_path / "private"
    exports.mkdir()
    private.mkdir()
    (exports / "report.bin").write_bytes(bytes(range(256)) * 1000)
    (private / "secret.txt").write_text("no")
    os.symlink(private / "secret.txt", exports / "sneaky.txt")  # resolves outside the allowed folder
    cat = catalog(root, [exports])
    copied = upload(cat, key="reports.r1", path="r/r1.bin", source=str(exports / "report.bin"))
    assert copied.value["sha256"] == hashlib.sha256(bytes(range(256)) * 1000).hexdigest()
    assert [(c.op, c.path, c.value) for c in copied.changes] == [("set", "files.reports.r1", copied.value)]
    raw = upload(cat, key="b", path="b.bin", base64=base64.b64encode(b"\x00\xffhi").decode())
    assert (root / "b.bin").read_bytes() == b"\x00\xffhi" and raw.value["size"] == 4
    with pytest.raises(PermanentError, match="is not inside an allowed folder"):
        upload(cat, key="s", path="s.txt", source=str(exports / "sneaky.txt"))
    with pytest.raises(PermanentError, match="exactly one of text, base64 and source"):
        upload(cat, key="s", path="s.txt", text="a", base64="YQ==")
    with pytest.raises(PermanentError, match="not valid base64"):
        upload(cat, key="s", path="s.txt", base64="***")
    with pytest.raises(PermanentError, match="key 'a b': invalid path"):
        upload(cat, key="a b", path="s.txt", text="a")
    with pytest.raises(PermanentError, match="file storage has no root"):
        upload(Catalog(ActionsConfig(), plugins=[]), key="s", path="s.txt", text="a")
