"""`goalrt worker` in a workspace, and goals that wait for a worker with a handler, through the CLI in subprocesses.

- A worker started in a workspace folder imports the handler modules its
  goalrt.toml names (as `goalrt test` does), without --handlers.
- A step no live worker can run leaves its goal active, and `goalrt get` and
  `goalrt list` say what it waits for; a worker with the handler then runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_gdl_db_cli import REPO, goalrt

WAITING = "active (waiting for a worker that can run payment.charge)"


class Started:
    """`goalrt worker` processes started by a test, stopped (SIGTERM) after it."""

    def __init__(self, db_url: str, logs: Path) -> None:
        self.db_url = db_url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(self, cwd: Path, name: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}
        env.update({"GOALRT_DATABASE_URL": self.db_url, "PYTHONPATH": str(REPO)})
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "goalrt", "worker", "--name", name, "--poll", "0.2", "--lease", "3s"],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*")))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


@pytest.fixture
def started(db_url: str, tmp_path: Path) -> Iterator[Started]:
    logs = tmp_path / "logs"
    logs.mkdir()
    s = Started(db_url, logs)
    yield s
    s.stop()


def shop(db_url: str, tmp_path: Path) -> Path:
    """The `goalrt init` workspace, loaded, with an order to check out."""
    assert goalrt(db_url, "init", "x", cwd=tmp_path).returncode == 0
    root = tmp_path / "x"
    loaded = goalrt(db_url, "gdl", "load", str(root))
    assert loaded.returncode == 0, loaded.stderr
    for path, value in (("orders.o1.amount", "20"), ("orders.o1.status", '"created"')):
        assert goalrt(db_url, "state", "set", path, value).returncode == 0
    return root


def until(check: object, what: str, started: Started, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s\n{started.tail()}"
        time.sleep(0.2)


def goal_json(db_url: str, goal_id: int) -> dict[str, object]:
    shown = goalrt(db_url, "get", str(goal_id), "--json")
    assert shown.returncode == 0, shown.stderr
    data: dict[str, object] = json.loads(shown.stdout)
    return data


def test_a_worker_started_in_a_workspace_runs_the_handlers_its_goalrt_toml_names(
    db_url: str, tmp_path: Path, started: Started
) -> None:
    root = shop(db_url, tmp_path)
    started.worker(root, "in-workspace")  # no --handlers: goalrt.toml says handlers = ["workers.shop"]
    assert goalrt(db_url, "submit", "checkout", "o=o1").stdout.strip() == "1"
    until(lambda: goal_json(db_url, 1)["status"] in ("complete", "failed"), "goal 1 finished", started)
    goal = goal_json(db_url, 1)
    assert goal["status"] == "complete", goal["last_error"]
    steps = {s["action"]: s["result"] for s in goal["steps"]}  # type: ignore[attr-defined]
    # payment.charge ran its handler (workers/shop.py), not a bare state transition.
    assert steps == {"payment.charge": {"order": "o1", "reference": "1:1"}, "shipping.ship": None}
    assert "handlers from " in (tmp_path / "logs" / "in-workspace.log").read_text()


def test_get_and_list_show_a_goal_waiting_for_a_worker_with_its_handler(
    db_url: str, tmp_path: Path, started: Started
) -> None:
    root = shop(db_url, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    started.worker(elsewhere, "no-handlers")  # not in the workspace: no handlers, plans and hands over
    assert goalrt(db_url, "submit", "checkout", "o=o1").stdout.strip() == "1"
    until(lambda: WAITING in goalrt(db_url, "list").stdout, "goal 1 listed as waiting for a worker", started)
    shown = goalrt(db_url, "get", "1").stdout
    assert shown.startswith(f"goal 1: checkout  [{WAITING}]"), shown
    assert "no live worker can run payment.charge" in shown
    goal = goal_json(db_url, 1)
    assert goal["unserved_action"] == "payment.charge" and goal["status"] == "active"
    assert [(s["action"], s["status"], s["attempts"]) for s in goal["steps"]] == [  # type: ignore[attr-defined]
        ("payment.charge", "pending", 0),
        ("shipping.ship", "pending", 0),
    ]
    assert goalrt(db_url, "state", "get", "orders.o1.status").stdout.startswith('orders.o1.status = "created"')
    # A worker with the handler comes: the goal goes on and completes.
    started.worker(root, "with-handlers")
    until(lambda: goal_json(db_url, 1)["status"] == "complete", "goal 1 complete", started)
    listed = goalrt(db_url, "list").stdout
    assert "waiting for a worker" not in listed and "complete" in listed
    assert goalrt(db_url, "state", "get", "orders.o1.status").stdout.startswith('orders.o1.status = "shipped"')


def test_goalrt_test_names_a_step_without_a_handler_instead_of_running_it_as_a_transition(
    db_url: str, tmp_path: Path
) -> None:
    assert goalrt(db_url, "init", "x", cwd=tmp_path).returncode == 0
    root = tmp_path / "x"
    actions = root / "apps" / "shop" / "actions.gdl"
    actions.write_text(actions.read_text().replace("  pure\n", ""))
    test = root / "tests" / "checkout.gdl"
    test.write_text(test.read_text().replace("  simulate shipping.ship\n", ""))
    ran = goalrt(db_url, "test", cwd=root)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert (
        "goal 1 checkout waits for a worker that can run shipping.ship: no handler for it in the handler modules "
        "(register one, mark the action `pure`, or `simulate` it in the test)"
    ) in ran.stdout
    assert "expect goal complete: goal 1 checkout is active" in ran.stdout
