"""The state, snapshot, replay and fork commands, run as a user runs them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from .test_cli import event_count, goalrt


def ok(url: str, *args: str) -> str:
    result = goalrt(url, *args)
    assert result.returncode == 0, f"goalrt {' '.join(args)}: {result.stderr}"
    assert result.stderr == ""
    return result.stdout


def fails(url: str, *args: str, code: int = 1) -> str:
    result = goalrt(url, *args)
    assert result.returncode == code, f"goalrt {' '.join(args)}: {result.stdout} {result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("goalrt: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_state_commands(db_url: str) -> None:
    assert ok(db_url, "state", "set", "orders.o1.status", '"created"') == "set orders.o1.status (version 1)\n"
    ok(db_url, "state", "set", "orders.o1.amount", "200")
    assert ok(db_url, "state", "inc", "orders.o1.amount", "-50.5") == "orders.o1.amount = 149.5 (version 2)\n"
    got = json.loads(ok(db_url, "state", "get", "orders.o1.amount", "--json"))
    assert (got["value"], got["version"], got["pos"]) == (149.5, 2, 3)
    assert ok(db_url, "state", "get", "orders.o1.status") == 'orders.o1.status = "created"  (version 1, pos 1)\n'
    listed = [json.loads(line) for line in ok(db_url, "state", "list", "orders.o1.*", "--json").splitlines()]
    assert [e["path"] for e in listed] == ["orders.o1.amount", "orders.o1.status"]
    table = ok(db_url, "state", "list").splitlines()
    assert table[0].split() == ["path", "value", "version", "pos"] and len(table) == 3
    at = json.loads(ok(db_url, "state", "get", "orders.o1.amount", "--at", "2", "--json"))
    assert at["value"] == 200
    history = [json.loads(x) for x in ok(db_url, "state", "history", "orders.o1.amount", "--json").splitlines()]
    assert [(h["op"], h["value"]) for h in history] == [("set", 200), ("inc", 149.5)]
    assert ok(db_url, "state", "delete", "orders.o1.status") == "deleted orders.o1.status (version 2)\n"
    assert "does not exist" in fails(db_url, "state", "get", "orders.o1.status")
    assert "version conflict on path orders.o1.amount: expected version 1, found 2" in fails(
        db_url, "state", "set", "orders.o1.amount", "0", "--expect-version", "1"
    )
    ok(db_url, "state", "set", "orders.o1.amount", "0", "--expect-version", "2")


def test_state_time_travel_by_time(db_url: str) -> None:
    ok(db_url, "state", "set", "t.x", "1")
    time.sleep(0.05)
    between = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    ok(db_url, "state", "set", "t.x", "2")
    assert json.loads(ok(db_url, "state", "get", "t.x", "--at", between, "--json"))["value"] == 1
    assert json.loads(ok(db_url, "state", "get", "t.x", "--json"))["value"] == 2
    assert "does not exist at 2000-01-01" in fails(db_url, "state", "get", "t.x", "--at", "2000-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("state", "set", "a..b", "1"), "invalid path 'a..b'", 1),
        (("state", "set", "", "1"), "invalid path ''", 1),
        (("state", "set", "a.b", "{oops"), "not valid JSON", 2),
        (("state", "set", "a.b", "NaN"), "JSON has no NaN", 2),
        (("state", "inc", "a.b", '"x"'), "BY must be a number", 1),
        (("state", "get", "a.b", "--at", "soon"), "invalid position or time 'soon'", 1),
        (("state", "get", "a.b", "--at", "99"), "position 99 is after the head", 1),
        (("state", "list", "a..*"), "invalid path pattern", 1),
        (("state", "set", "a.b", "1", "--expect-version", "-1"), "expect-version", 2),
        (("snapshot", "create", "bad name"), "invalid snapshot name", 1),
        (("snapshot", "show", "nope"), "no snapshot named 'nope'", 1),
        (("replay",), "give exactly one of --verify and --to POS", 2),
        (("fork", "create", "Bad"), "invalid fork name", 1),
        (("state", "list", "--fork", "nope"), "no fork named 'nope'", 1),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(db_url: str, args: tuple[str, ...], message: str, code: int) -> None:
    before = event_count(db_url)
    assert message in fails(db_url, *args, code=code)
    assert event_count(db_url) == before


def test_snapshot_and_replay_commands(db_url: str) -> None:
    ok(db_url, "state", "set", "s.a", "1")
    ok(db_url, "state", "set", "s.b", "2")
    out = ok(db_url, "snapshot", "create", "v1", "--tag", "release", "--tag", "q4", "--note", "before the change")
    assert out == "snapshot v1 at pos 2: 2 paths (2 entries written)\n"
    ok(db_url, "state", "set", "s.a", "10")
    listed = [json.loads(x) for x in ok(db_url, "snapshot", "list", "--json").splitlines()]
    assert [(s["name"], s["pos"], s["tags"]) for s in listed] == [("v1", 2, ["release", "q4"])]
    shown = json.loads(ok(db_url, "snapshot", "show", "v1", "--json"))
    assert shown["note"] == "before the change"
    assert [(e["path"], e["value"]) for e in shown["state"]] == [("s.a", 1), ("s.b", 2)]
    assert "note: before the change" in ok(db_url, "snapshot", "show", "v1")
    assert ok(db_url, "replay", "--verify") == "identical at position 3 (2 paths)\n"
    report = json.loads(ok(db_url, "replay", "--verify", "--json"))
    assert report["identical"] and report["pos"] == 3
    replayed = [json.loads(x) for x in ok(db_url, "replay", "--to", "2", "--json").splitlines()]
    assert [(e["path"], e["value"]) for e in replayed] == [("s.a", 1), ("s.b", 2)]
    assert ok(db_url, "snapshot", "every", "50") == "automatic snapshots every 50 positions\n"
    assert ok(db_url, "snapshot", "every", "0") == "automatic snapshots are off\n"


def test_fork_commands(db_url: str) -> None:
    ok(db_url, "state", "set", "f.x", "1")
    ok(db_url, "state", "set", "f.x", "2")
    assert ok(db_url, "fork", "create", "sim") == "fork sim created at pos 2 (schema goalrt_fork_sim)\n"
    ok(db_url, "fork", "create", "old", "--at", "1")
    ok(db_url, "state", "set", "f.x", "3", "--fork", "sim")
    ok(db_url, "events", "append", "--stream", "s", "--type", "sim.only", "--fork", "sim")
    assert json.loads(ok(db_url, "state", "get", "f.x", "--json", "--fork", "sim"))["value"] == 3
    assert json.loads(ok(db_url, "state", "get", "f.x", "--json", "--fork", "old"))["value"] == 1
    assert json.loads(ok(db_url, "state", "get", "f.x", "--json"))["value"] == 2
    assert "sim.only" not in ok(db_url, "events", "list")
    assert "sim.only" in ok(db_url, "events", "list", "--fork", "sim")
    assert "hash chain intact: 2 events, head 4" in ok(db_url, "verify", "--fork", "sim")
    assert ok(db_url, "replay", "--verify", "--fork", "sim") == "identical at position 4 (1 path)\n"
    result = goalrt(db_url, "state", "get", "f.x", "--json", env={"GOALRT_FORK": "sim"})
    assert json.loads(result.stdout)["value"] == 3
    assert json.loads(ok(db_url, "--fork", "sim", "state", "get", "f.x", "--json"))["value"] == 3
    names = [json.loads(x)["name"] for x in ok(db_url, "fork", "list", "--json").splitlines()]
    assert names == ["old", "sim"]
    assert "already exists" in fails(db_url, "fork", "create", "sim")
    assert ok(db_url, "fork", "drop", "sim") == "fork sim dropped\n"
    assert "no fork named 'sim'" in fails(db_url, "fork", "drop", "sim")
