"""The example plugin installed with pip, listed by `goalrt plugins` and run by a plain `goalrt worker`;
http.call's idempotency key survives a worker killed in the middle of a request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from goalrt import Goals
from goalrt.state.state import State
from tests.acceptance.test_worker_processes import wait_until
from tests.local_http import LocalServer

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "examples" / "plugins" / "goalrt-example-plugin"

WORKSPACE = """
type Order under orders { }

action order.greet(o: Order) {
  require orders.{o}.status == "created"
  effect  orders.{o}.status = "greeted"
  handler example.greet
  with { name = "{o}" }
}

action order.tell(o: Order) {
  require orders.{o}.status == "greeted"
  effect  orders.{o}.status = "told"
  handler notification.push
  with { provider = "example"  title = "greeted"  text = "order {o}" }
}

action order.post(o: Order) {
  require orders.{o}.status == "told"
  effect  orders.{o}.status = "posted"
  handler http.call
  with { method = "POST"  url = "http://127.0.0.1:PORT/{o}"  timeout = 60 }
}

goal greet(o: Order) { achieve orders.{o}.status == "posted" }
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example plugin (no dependencies: goalrt is this checkout) into a folder of its own."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(PLUGIN)],
        check=True,
        capture_output=True,
    )
    return target


def goalrt(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalrt", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


def test_goalrt_plugins_lists_the_installed_plugin(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    listed = goalrt("plugins", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "example  goalrt-example-plugin 0.1.0  example.greet" in listed.stdout
    rows = [json.loads(line) for line in goalrt("plugins", "--json", env=env, cwd=tmp_path).stdout.splitlines()]
    assert {r["name"]: r["actions"] for r in rows} == {
        "goalrt": [
            "ai.call",
            "db.query",
            "email.send",
            "file.delete",
            "file.upload",
            "http.call",
            "notification.push",
        ],
        "example": ["example.greet"],
    }
    bare = goalrt("plugins", env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    assert "example" not in bare.stdout


def test_a_plain_worker_runs_the_plugin_and_a_killed_request_is_sent_again_with_its_key(
    db_url: str, installed: Path, tmp_path: Path, server: LocalServer
) -> None:
    ws = tmp_path / "ws"
    (ws / "apps" / "shop").mkdir(parents=True)
    (ws / "goalrt.toml").write_text('name = "greet"\n\n[plugins.example]\noutbox = "outbox.jsonl"\n')
    (ws / "apps" / "shop" / "actions.gdl").write_text(WORKSPACE.replace("PORT", str(server.port)))
    env = {
        **os.environ,
        "GOALRT_DATABASE_URL": db_url,
        "PYTHONPATH": str(installed),
        "GOALRT_PLUGIN_EXAMPLE_GREETING": "Hi",
    }
    without = goalrt("gdl", "load", ".", env={**env, "PYTHONPATH": ""}, cwd=ws)
    assert without.returncode == 1 and "handler example.greet is not one" in without.stderr
    loaded = goalrt("gdl", "load", ".", env=env, cwd=ws)
    assert loaded.returncode == 0, loaded.stderr
    with State.connect(db_url) as state:
        for o in ("ok-plugin", "hang"):
            state.set(f"orders.{o}.status", "created")

    logs: list[Path] = []

    def worker(name: str) -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"{name}.log")
        with logs[-1].open("wb") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "goalrt",
                    "worker",
                    *("--lease", "1s", "--poll", "0.2s", "--grace", "2s"),
                    "--name",
                    name,
                ],
                cwd=ws,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def tail() -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)

    first = worker("w1")
    second = None
    try:
        with Goals.connect(db_url) as goals:
            ok = goals.submit("greet", {"o": "ok-plugin"}).id
            hang = goals.submit("greet", {"o": "hang"}).id
            wait_until(lambda: goals.get(ok).status in ("complete", "failed"), 60, None, "the plugin goal")
            info = goals.get(ok)
            assert info.status == "complete", f"{info.last_error}\n{tail()}"
            greet, tell, post = info.steps
            assert greet.result == {"greeting": "Hi, ok-plugin!", "key": f"{ok}:{greet.seq}"}
            assert tell.result == {"provider": "example", "outbox": "outbox.jsonl"}
            lines = (ws / "outbox.jsonl").read_text().splitlines()
            assert {"title": "greeted", "text": "order ok-plugin"} in [json.loads(line) for line in lines]
            assert post.result["body"]["key"] == f"{ok}:{post.seq}"

            # Kill the worker while /hang holds its request; another worker runs the step again, same key.
            wait_until(server.hanging.is_set, 60, None, "the request to /hang")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = worker("w2")
            wait_until(lambda: server.paths().count("/hang") == 2, 60, None, f"the re-sent request\n{tail()}")
            server.release.set()
            wait_until(lambda: goals.get(hang).status in ("complete", "failed"), 60, None, "the re-run goal")
            info = goals.get(hang)
            assert info.status == "complete", f"{info.last_error}\n{tail()}"
            keys = [r["key"] for r in server.requests if r["path"] == "/hang"]
            assert keys == [f"{hang}:{info.steps[-1].seq}"] * 2
    finally:
        server.release.set()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
