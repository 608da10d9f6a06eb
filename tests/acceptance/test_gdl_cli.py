"""The GDL commands in a subprocess: init, gdl check, gdl graph. None of them needs a database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "gdl"


def goalrt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}
    # A URL nothing listens on: these commands must not touch a database.
    env["GOALRT_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "goalrt", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_init_then_check_and_graph(tmp_path: Path) -> None:
    created = goalrt("init", "x", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created workspace x (11 files)")
    workspace = tmp_path / "x"
    for rel in ("goalrt.toml", "apps/shop/actions.gdl", "apps/shop/policies.gdl", "shared", "tests/checkout.gdl"):
        assert (workspace / rel).exists(), rel
    checked = goalrt("gdl", "check", cwd=workspace)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: 1 type, 1 event, 2 actions, 1 goal, 1 contract, 1 policy, 1 test in 8 files")
    # From a subfolder too: the workspace is found above.
    assert goalrt("gdl", "check", cwd=workspace / "apps").returncode == 0
    graph = goalrt("gdl", "graph", cwd=workspace)
    assert graph.returncode == 0 and graph.stdout.startswith("flowchart LR\n")
    assert '(["goal checkout"])' in graph.stdout
    # The worker module registers a handler for an action the GDL declares.
    probe = subprocess.run(
        [sys.executable, "-c", "import goalrt, workers.shop; print(sorted(goalrt.default_registry.actions))"],
        capture_output=True,
        text=True,
        cwd=workspace,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(workspace), str(REPO)])},
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "['payment.charge']"


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("")
    result = goalrt("init", "x", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "goalrt: error: x already exists and is not an empty folder\n"


def test_check_reports_every_problem_and_fails(tmp_path: Path) -> None:
    result = goalrt("gdl", "check", str(FIXTURES / "invalid" / "multiple_problems"), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "goalrt: error: 3 problems in the workspace"
    assert lines[1] == "apps/a/actions.gdl:3:18: unbound variable {x} in orders.{x}.status (parameters: o)"
    assert lines[2] == '      require orders.{x}.status == "created"'
    assert lines[3] == "                     ^"
    assert len(lines) == 10


def test_check_of_one_syntax_error(tmp_path: Path) -> None:
    result = goalrt("gdl", "check", str(FIXTURES / "invalid" / "missing_colon"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "goalrt: error: apps/a/types.gdl:2:6: unexpected name 'string'; expected ':'",
        "      id string",
        "         ^",
    ]


def test_check_usage_errors(tmp_path: Path) -> None:
    outside = goalrt("gdl", "check", cwd=tmp_path)
    assert outside.returncode == 1
    assert "not a goalrt workspace (no goalrt.toml here or above" in outside.stderr
    missing = goalrt("gdl", "check", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("goalrt: error: ")
    assert goalrt("gdl", "check", "--json", str(FIXTURES / "valid" / "shop"), cwd=tmp_path).returncode == 0
