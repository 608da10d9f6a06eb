"""The goal commands in a subprocess: the flow the issue names, and every bad input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.acceptance.test_cli import REPO, goalrt
from tests.unit.test_cli_imports import _beyond_client, _run

HANDLERS = "workers.checkout"


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("goalrt: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class WorkerRun:
    """A ``goalrt worker`` process; ``output`` is what it printed, once it stopped."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.output = ""


@contextlib.contextmanager
def worker_process(db_url: str, handlers: str) -> Iterator[WorkerRun]:
    """Run ``goalrt worker --handlers HANDLERS`` on the test database; SIGTERM it at the end, expecting exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}
    env["GOALRT_DATABASE_URL"] = db_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "goalrt", "worker", "--handlers", handlers, "--poll", "0.2s"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = WorkerRun(proc)
    try:
        yield run
    finally:
        proc.send_signal(signal.SIGTERM)
        run.output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, run.output


def test_worker_submit_get_completes_a_multi_step_goal(db_url: str) -> None:
    with worker_process(db_url, HANDLERS) as worker:
        submitted = goalrt(db_url, "submit", "checkout", "order=o7", "amount=20", "--handlers", HANDLERS, "--json")
        assert submitted.returncode == 0, submitted.stderr
        gid = json.loads(submitted.stdout)["id"]
        deadline = time.monotonic() + 60
        while True:
            got = goalrt(db_url, "get", str(gid), "--json")
            assert got.returncode == 0, got.stderr
            info = json.loads(got.stdout)
            if info["status"] in ("complete", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert info["status"] == "complete", info
        assert [(s["action"], s["status"], s["attempts"]) for s in info["steps"]] == [
            ("payment.charge", "complete", 1),
            ("order.ship", "complete", 1),
            ("order.notify", "complete", 1),
        ]
        assert info["events"][0]["type"] == "goal.submitted" and info["events"][-1]["type"] == "goal.completed"
        state = goalrt(db_url, "state", "get", "orders.o7.status", "--json")
        assert json.loads(state.stdout)["value"] == "shipped"
        text = goalrt(db_url, "get", str(gid))
        assert "payment.charge" in text.stdout and "goal.completed" in text.stdout
        listed = goalrt(db_url, "list", "--status", "complete", "--json")
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [gid]
        workers = goalrt(db_url, "workers", "--json")
        assert len(workers.stdout.splitlines()) == 1
    assert "1 goals completed" in worker.output


def test_submit_twice_with_a_key_prints_the_same_id(db_url: str) -> None:
    first = goalrt(db_url, "submit", "checkout", "order=o1", "amount=5", "--key", "k-1", "--handlers", HANDLERS)
    again = goalrt(db_url, "submit", "checkout", "--params", '{"order": "o1", "amount": 5}', "--key", "k-1")
    assert first.returncode == again.returncode == 0, (first.stderr, again.stderr)
    assert first.stdout == again.stdout and first.stdout.strip().isdigit()


def test_submit_keeps_the_traceparent_given(db_url: str) -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    args = ["submit", "checkout", "order=o1", "amount=5", "--traceparent", caller, "--handlers", HANDLERS]
    submitted = goalrt(db_url, *args)
    assert submitted.returncode == 0, submitted.stderr
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT trace_context FROM goalrt.goals WHERE id = %s", (int(submitted.stdout),))
        assert row.fetchone() == (caller,)


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (["submit", "checkout", "order=o1"], 1, ["params.amount", "required"]),
        (["submit", "checkout", "order=o1", "amount=lots"], 1, ["params.amount"]),
        (["submit", "checkout", "order=o1", "amount=-5"], 1, ["params.amount", "greater than 0"]),
        (["submit", "checkout", "order=o1", "amount=5", "colour=red"], 1, ["params.colour is not a parameter"]),
        (["submit", "nope"], 1, ["unknown goal type 'nope'"]),
        (["submit", "checkout", "order=o1", "amount=5", "--delay", "5 parsecs"], 1, ["invalid --delay"]),
        (["submit", "checkout", "order=o1", "amount=5", "--at", "soon"], 1, ["invalid --at"]),
        (["submit", "checkout", "order=o1", "amount=5", "--at", "2030-01-01", "--delay", "1s"], 2, ["not both"]),
        (["submit", "checkout", "justtext"], 2, ["not key=value"]),
        (["submit", "checkout", "--params", "[1]"], 1, ["--params must be a JSON object"]),
        (["get", "999"], 1, ["goal 999 does not exist"]),
        (["cancel", "999"], 1, ["goal 999 does not exist"]),
        (["list", "--status", "done"], 2, ["'done' is not one of"]),
        (["submit", "checkout", "order=o1", "amount=5", "--handlers", "no.such.module"], 1, ["cannot import"]),
        (
            ["submit", "checkout", "order=o1", "amount=5", "--traceparent", "00-abc"],
            1,
            ["--traceparent must be a W3C traceparent", "'00-abc'"],
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    db_url: str, args: list[str], code: int, fragments: list[str]
) -> None:
    registered = goalrt(db_url, "submit", "checkout", "order=o0", "amount=1", "--handlers", HANDLERS)
    assert registered.returncode == 0, registered.stderr
    handlers = ["--handlers", HANDLERS] if "amount=-5" in args else []
    one_line_error(goalrt(db_url, *args, *handlers), code, *fragments)
    listed = goalrt(db_url, "list", "--json")
    assert len(listed.stdout.splitlines()) == 1  # only the goal submitted above


def test_cancel_of_a_finished_goal_is_refused(db_url: str) -> None:
    gid = goalrt(db_url, "submit", "checkout", "order=o1", "amount=5", "--handlers", HANDLERS).stdout.strip()
    assert goalrt(db_url, "cancel", gid, "--reason", "test").returncode == 0
    one_line_error(goalrt(db_url, "cancel", gid), 1, f"cannot cancel goal {gid}: it is already cancelled")


def test_worker_without_handlers_says_what_to_do(db_url: str) -> None:
    one_line_error(goalrt(db_url, "worker"), 1, "no goal types registered", "--handlers")


def test_submit_get_and_list_against_a_database_import_only_the_client(db_url: str) -> None:
    # One process runs them in turn (tests/unit/test_cli_imports.py's probe): none loads the planner,
    # lark, pydantic, the worker, the GDL compiler, SQLAlchemy or alembic, also after the connection.
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT goalrt.register_goal_type('counted', %s::jsonb)", (json.dumps(schema),))
    url = ["--database-url", db_url]
    calls = _run(
        [
            [*url, "submit", "counted", "n=1", "--key", "k1", "--json"],
            [*url, "submit", "counted", "n=2", "--priority", "3", "--delay", "1h"],
            [*url, "submit", "counted", "n=x"],
            [*url, "get", "1", "--json"],
            [*url, "get", "2"],
            [*url, "get", "1", "--tree"],
            [*url, "list", "--json"],
            [*url, "list", "--waiting"],
            [*url, "cancel", "2"],
        ]
    )
    outputs = {" ".join(c["argv"][2:]): (c["code"], str(c["output"])) for c in calls[1:]}
    assert outputs["submit counted n=1 --key k1 --json"][0] == 0
    assert json.loads(outputs["submit counted n=1 --key k1 --json"][1])["id"] == 1
    assert outputs["submit counted n=2 --priority 3 --delay 1h"] == (0, "2\n")
    code, output = outputs["submit counted n=x"]
    assert code == 1 and output.startswith("goalrt: error: ") and "Traceback" not in output, output
    info = json.loads(outputs["get 1 --json"][1])
    assert info["params"] == {"n": 1} and info["events"][0]["type"] == "goal.submitted"
    assert outputs["get 2"][0] == 0 and "priority 3" in outputs["get 2"][1] and "goal.submitted" in outputs["get 2"][1]
    assert outputs["get 1 --tree"] == (0, "1 counted [pending]\n")
    assert [json.loads(line)["id"] for line in outputs["list --json"][1].splitlines()] == [2, 1]
    assert outputs["list --waiting"][0] == 0 and outputs["cancel 2"] == (0, "goal 2 cancelled\n")
    last = calls[-1]
    assert "psycopg" in last["modules"] and "goalrt.goals.goals" in last["modules"]  # a client ran
    assert _beyond_client(last["modules"]) == []


def test_submit_wait_prints_how_the_goal_ended(db_url: str) -> None:
    with worker_process(db_url, HANDLERS):
        done = goalrt(
            db_url, "submit", "checkout", "order=o9", "amount=5", "--handlers", HANDLERS, "--wait", "--timeout", "60s"
        )
        assert done.returncode == 0, done.stderr
        gid, outcome = done.stdout.splitlines()
        assert outcome.startswith("complete: ") and int(gid) > 0
        as_json = goalrt(
            db_url, "submit", "checkout", "order=o10", "amount=5", "--handlers", HANDLERS, "--wait", "--json"
        )
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout) | {"result": None} == {
            "id": int(gid) + 1,
            "created": True,
            "status": "complete",
            "result": None,
            "error": None,
        }


def test_submit_wait_times_out_in_one_line_and_the_goal_goes_on(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT goalrt.register_goal_type('counted', '{}')")
    late = goalrt(db_url, "submit", "counted", "--wait", "--timeout", "0.3s")
    assert late.returncode == 1 and late.stdout == "1\n", (late.stdout, late.stderr)
    one_line_error(late, 1, "goal 1 is still pending after 0.3 s")
    one_line_error(goalrt(db_url, "submit", "counted", "--timeout", "1s"), 2, "--timeout goes with --wait")
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT status FROM goalrt.goals ORDER BY id").fetchall() == [("pending",)]


def test_retry_runs_a_cancelled_goal_again_and_refuses_in_one_line(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT goalrt.register_goal_type('counted', '{}')")
    assert goalrt(db_url, "submit", "counted").stdout == "1\n"
    one_line_error(goalrt(db_url, "retry", "1"), 1, "cannot retry goal 1: it is pending")
    assert goalrt(db_url, "cancel", "1").returncode == 0
    again = goalrt(db_url, "retry", "1", "--reason", "try again")
    assert (again.returncode, again.stdout) == (0, "goal 1 pending again (it will be planned anew)\n"), again.stderr
    one_line_error(goalrt(db_url, "retry", "2"), 1, "goal 2 does not exist")
    one_line_error(goalrt(db_url, "retry", "1", "--from-step", "0"), 2, "--from-step")
    got = json.loads(goalrt(db_url, "get", "1", "--json").stdout)
    assert got["status"] == "pending"
    assert [e["type"] for e in got["events"]] == ["goal.submitted", "goal.cancelled", "goal.retried"]
