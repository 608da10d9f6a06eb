"""`goalrt head`, `goalrt anchor --to FILE` and `goalrt verify --anchor/--anchors` in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from .test_cli import goalrt

ANCHOR = re.compile(r"[0-9]+:[0-9a-f]{64}")


def ok(url: str, *args: str) -> str:
    result = goalrt(url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result
    stderr = result.stderr
    assert stderr.count("\n") == 1 and stderr.startswith("goalrt: error: "), stderr
    assert result.stdout == ""
    return stderr


def append(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        for i in range(n):
            c.execute("SELECT goalrt.append_event('s', 't', %s::jsonb)", (json.dumps({"i": i}),))
        c.execute("CALL goalrt.tick_commit()")


def test_head_anchor_and_verify(db_url: str, tmp_path: Path) -> None:
    assert ok(db_url, "head") == f"0:{'00' * 32}\n"
    append(db_url, 4)
    head = ok(db_url, "head").strip()
    assert ANCHOR.fullmatch(head) and head.startswith("4:")
    as_json = json.loads(ok(db_url, "head", "--json"))
    assert as_json == {"pos": 4, "hash": head.split(":")[1], "anchor": head}
    path = tmp_path / "anchors.txt"
    path.write_text("# anchors of the test log\n\n", encoding="utf-8")
    assert ok(db_url, "anchor", "--to", str(path)) == f"{head} appended to {path}\n"
    append(db_url, 2)
    ok(db_url, "anchor", "--to", str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[2] == head and lines[3].startswith("6:") and len(lines) == 4
    assert ok(db_url, "verify", "--anchors", str(path)) == "hash chain intact: 6 events, head 6; 2 anchors held\n"
    assert ok(db_url, "verify", "--anchor", head) == "hash chain intact: 6 events, head 6; 1 anchor held\n"
    report = json.loads(ok(db_url, "verify", "--json", "--anchor", head, "--anchors", str(path)))
    assert report["ok"] and report["anchors"] == 3 and report["anchor"] is None and report["head"] == 6


def test_a_forged_log_passes_plain_verify_and_fails_its_anchor(db_url: str, tmp_path: Path) -> None:
    append(db_url, 6)
    path = tmp_path / "anchors.txt"
    ok(db_url, "anchor", "--to", str(path))
    head = path.read_text(encoding="utf-8").strip()
    # Drop the newest two events and roll the clock back, as the owner can.
    with psycopg.connect(db_url, autocommit=True) as c, c.transaction():
        c.execute("SET LOCAL session_replication_role = replica")
        c.execute("DELETE FROM goalrt.event_data WHERE id IN (SELECT event_id FROM goalrt.event_order WHERE pos > 4)")
        c.execute("DELETE FROM goalrt.event_order WHERE pos > 4")
        c.execute("UPDATE goalrt.clock SET head = 4, head_hash = (SELECT hash FROM goalrt.event_order WHERE pos = 4)")
    assert ok(db_url, "verify") == "hash chain intact: 4 events, head 4\n"
    result = goalrt(db_url, "verify", "--anchors", str(path))
    stderr = one_line_error(result, 1)
    why = "the log ends at position 4, before the anchor"
    assert stderr == f"goalrt: error: the log does not hold anchor {head}: {why}\n"
    failed = goalrt(db_url, "verify", "--json", "--anchor", head)
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert not report["ok"] and report["anchor"] == head and report["first_bad_pos"] == 6


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["verify", "--anchor", "12"], "bad anchor '12': expected POS:HASH"),
        (["verify", "--anchor", "12:xyz"], "bad anchor '12:xyz'"),
        (["verify", "--anchor", f"-3:{'00' * 32}"], "bad anchor"),
        (["verify", "--anchor", "x" * 5000], "(5000 characters)"),
        (["verify", "--anchors", "missing.txt"], "cannot read anchors from 'missing.txt'"),
        (["verify", "--anchors", "bad.txt"], "bad.txt:2: bad anchor 'nope'"),
        (["verify", "--anchors", "empty.txt"], "no anchors in 'empty.txt'"),
        (["verify", "--anchors", "."], "cannot read anchors from '.'"),
        (["anchor", "--to", "."], "is a directory"),
        (["anchor"], "Missing option '--to'"),
    ],
)
def test_bad_input_is_one_line_exit_2(db_url: str, tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "bad.txt").write_text(f"1:{'00' * 32}\nnope\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("# none yet\n", encoding="utf-8")
    result = goalrt(db_url, *args, cwd=tmp_path)
    stderr = one_line_error(result, 2)
    assert needle in stderr and "Traceback" not in stderr


def test_anchor_to_an_unwritable_place_writes_nothing(db_url: str, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "anchors.txt"
    stderr = one_line_error(goalrt(db_url, "anchor", "--to", str(target)), 1)
    assert "No such file or directory" in stderr
    assert not target.parent.exists()
    # A database that cannot be reached: nothing is written either.
    path = tmp_path / "anchors.txt"
    one_line_error(goalrt("postgresql://goalrt@127.0.0.1:1/nothing", "anchor", "--to", str(path)), 1)
    assert not path.exists()


def test_anchors_in_a_fork(db_url: str) -> None:
    append(db_url, 3)
    main_head = ok(db_url, "head").strip()
    ok(db_url, "fork", "create", "sim")
    assert ok(db_url, "head", "--fork", "sim").strip() == main_head
    ok(db_url, "events", "append", "--stream", "s", "--type", "sim.only", "--fork", "sim")
    fork_head = ok(db_url, "head", "--fork", "sim").strip()
    assert fork_head.startswith("4:")
    assert "2 anchors held" in ok(db_url, "verify", "--fork", "sim", "--anchor", main_head, "--anchor", fork_head)
    stderr = one_line_error(goalrt(db_url, "verify", "--anchor", fork_head), 1)
    assert f"anchor {fork_head}: the log ends at position 3" in stderr
