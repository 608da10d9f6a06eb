"""The coordination commands in a subprocess: resume, list --waiting, get --tree, limits, and bad inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_cli import goalrt
from tests.acceptance.test_goals_cli import one_line_error, worker_process

HANDLERS = "workers.approvals"
# The expense goal is GDL (ported from workers/approvals.py); workers.approvals has its handlers.
APPROVALS = Path(__file__).resolve().parents[2] / "gdl" / "examples" / "approvals"


def load_approvals(db_url: str) -> None:
    loaded = goalrt(db_url, "gdl", "load", str(APPROVALS))
    assert loaded.returncode == 0, loaded.stderr


def wait_until(db_url: str, gid: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = goalrt(db_url, "get", gid, "--json")
        assert got.returncode == 0, got.stderr
        info: dict[str, Any] = json.loads(got.stdout)
        if check(info):
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.2)


def test_an_expense_waits_for_an_answer_and_a_webhook(db_url: str) -> None:
    load_approvals(db_url)
    with worker_process(db_url, HANDLERS):
        gid = goalrt(db_url, "submit", "expense", "id=e1", "amount=120", "--handlers", HANDLERS).stdout.strip()
        assert gid.isdigit()
        wait_until(db_url, gid, lambda i: i["status"] == "waiting")
        listed = goalrt(db_url, "list", "--waiting")
        assert "answer to 'Approve expense e1 of 120?'" in listed.stdout, listed.stdout
        as_json = [json.loads(line) for line in goalrt(db_url, "list", "--waiting", "--json").stdout.splitlines()]
        assert [(w["id"], w["kind"]) for w in as_json] == [(int(gid), "ask")]

        # A wrong answer: one line naming the field, and the goal keeps waiting.
        bad = goalrt(db_url, "resume", gid, "--data", '{"approved": "yes"}')
        one_line_error(bad, 1, f"invalid answer for goal {gid}: data.approved must be boolean, got string")
        one_line_error(goalrt(db_url, "resume", gid, "--data", "{oops"), 2, "not valid JSON")
        assert wait_until(db_url, gid, lambda i: True)["status"] == "waiting"

        ok = goalrt(db_url, "resume", gid, "--data", '{"approved": true, "by": "ann"}', "--by", "ann")
        assert ok.returncode == 0 and "resumed" in ok.stdout, ok.stderr
        info = wait_until(db_url, gid, lambda i: i["status"] == "waiting" and i["step"] == 4)
        assert "event payment.settled" in goalrt(db_url, "list", "--waiting").stdout
        appended = goalrt(
            db_url,
            "events",
            "append",
            "--stream",
            "payments",
            "--type",
            "payment.settled",
            "--data",
            '{"expense": "e1"}',
        )
        assert appended.returncode == 0, appended.stderr
        info = wait_until(db_url, gid, lambda i: i["status"] in ("complete", "failed"))
        assert info["status"] == "complete", info
        assert [s["kind"] for s in info["steps"]] == ["action", "ask", "action", "event", "action"]
        assert goalrt(db_url, "state", "get", "expenses.e1.status").stdout.startswith('expenses.e1.status = "paid"')
        assert "expense.closed" in goalrt(db_url, "events", "list", "--type", "expense.*").stdout
        text = goalrt(db_url, "get", gid).stdout
        assert "ask: ask" in text and "goal.resumed" in text
        tree = goalrt(db_url, "get", gid, "--tree")
        assert tree.stdout.strip() == f"{gid} expense [complete]"


def test_limits_can_be_set_listed_and_dropped(db_url: str) -> None:
    out = goalrt(db_url, "limits", "set", "payment.charge", "--concurrency", "2", "--key", "customer")
    assert out.returncode == 0 and "payment.charge per customer: at most 2 at once" in out.stdout, out.stderr
    out = goalrt(db_url, "limits", "set", "api.call", "--rate", "10", "--per", "1")
    assert "api.call: 10 per 1s (burst 10)" in out.stdout, out.stderr
    rows = [json.loads(line) for line in goalrt(db_url, "limits", "--json").stdout.splitlines()]
    assert [(r["action"], r["key_arg"], r["max_concurrent"], r["rate"]) for r in rows] == [
        ("api.call", "", None, 10),
        ("payment.charge", "customer", 2, None),
    ]
    assert "payment.charge" in goalrt(db_url, "limits").stdout
    assert goalrt(db_url, "limits", "drop", "api.call").returncode == 0
    one_line_error(goalrt(db_url, "limits", "drop", "api.call"), 1, "no limit on api.call")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--per", "1e300", "limit option per must be a number of seconds from 0.001 to 31536000 (a year), got 1e+300"),
        ("--per", "0.0001", "limit option per must be a number of seconds from 0.001 to 31536000"),
        ("--rate", "10000000000", "limit option rate must be an integer from 1 to 999999999"),
    ],
)
def test_limits_out_of_range_are_refused_when_set(db_url: str, option: str, value: str, message: str) -> None:
    args = ["--rate", "1", option, value] if option != "--rate" else [option, value]
    one_line_error(goalrt(db_url, "limits", "set", "A", *args), 1, message)
    assert goalrt(db_url, "limits", "--json").stdout == ""  # nothing written


def test_limits_act_on_the_fork_named_before_or_after_the_command_or_in_the_environment(db_url: str) -> None:
    def actions(*args: str, env: dict[str, str] | None = None) -> list[str]:
        result = goalrt(db_url, *args, env=env)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["action"] for line in result.stdout.splitlines()]

    assert goalrt(db_url, "fork", "create", "what_if").returncode == 0
    out = goalrt(db_url, "limits", "set", "api.call", "--rate", "5", "--per", "1", "--fork", "what_if")
    assert out.stdout == "limit set: api.call: 5 per 1s (burst 5)\n", out.stderr
    assert actions("limits", "--json") == []  # the main line has none
    assert actions("--fork", "what_if", "limits", "--json") == ["api.call"]
    assert actions("limits", "--fork", "what_if", "--json") == ["api.call"]
    assert actions("limits", "--json", env={"GOALRT_FORK": "what_if"}) == ["api.call"]
    assert goalrt(db_url, "--fork", "what_if", "limits", "drop", "api.call").stdout == "limit dropped: api.call\n"
    assert actions("limits", "--json", "--fork", "what_if") == []
    one_line_error(goalrt(db_url, "list", "--fork", "nope"), 1, "no fork named 'nope'")
    assert goalrt(db_url, "fork", "drop", "what_if").returncode == 0


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (["limits", "set", "x"], 1, ["a limit needs concurrency or rate"]),
        (["limits", "set", "x", "--concurrency", "0"], 2, ["--concurrency"]),
        (["limits", "set", "x", "--per", "2", "--concurrency", "1"], 1, ["per and burst need rate"]),
        (["resume", "999", "--data", "{}"], 1, ["goal 999 does not exist"]),
        (["resume", "1", "--data", "[1]"], 1, ["--data must be a JSON object"]),
        (["submit", "expense", "id=e1", "amount=5", "--deadline", "soon"], 1, ["invalid --deadline"]),
        (["worker", "--handlers", HANDLERS, "--partitions", "5/4"], 1, ["--partitions '5/4'", "within 0..count-1"]),
        (["worker", "--handlers", HANDLERS, "--partitions", "a"], 1, ["expected buckets/count"]),
        (["worker", "--handlers", HANDLERS, "--only", "nope"], 1, ["--only nope: not a goal type"]),
        (["get", "999", "--tree"], 1, ["goal 999 does not exist"]),
        (["list", "--waiting", "--status", "failed"], 2, ["--waiting lists every waiting goal"]),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    db_url: str, args: list[str], code: int, fragments: list[str]
) -> None:
    load_approvals(db_url)
    first = goalrt(db_url, "submit", "expense", "id=e0", "amount=1", "--handlers", HANDLERS)
    assert first.returncode == 0, first.stderr
    one_line_error(goalrt(db_url, *args), code, *fragments)
    assert len(goalrt(db_url, "list", "--json").stdout.splitlines()) == 1
    assert goalrt(db_url, "limits", "--json").stdout == ""
