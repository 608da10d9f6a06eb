"""`goalrt demo` as a newcomer runs it: no database URL, the embedded server under ./.goalrt, twice in a row."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg


def goalrt(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``cwd`` with no GOALRT_ variable at all: the embedded server under cwd/.goalrt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}
    return subprocess.run(
        [sys.executable, "-m", "goalrt", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


def run_demo(cwd: Path) -> tuple[str, float]:
    # Timed for the report only: the machines are shared, so the test asserts no duration.
    started = time.monotonic()
    result = goalrt(cwd, "demo")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # no warning, no traceback: nothing alarming
    return result.stdout, seconds


def check_output(out: str, home: Path) -> tuple[str, list[int]]:
    """Assert the lines a newcomer should see; return the run's tag and goal ids."""
    assert out.rstrip().endswith("demo ok")
    match = re.search(r"\(run tag ([0-9a-f]{6})\)", out)
    assert match, out
    tag = match.group(1)
    assert "the embedded PostgreSQL 18" in out and str(home / ".goalrt") in out
    assert re.search(r"loaded +version \d+ \(sha256 [0-9a-f]{12}\)", out)

    # The policy refuses an order with amount -1, and nothing of that change set is applied.
    assert f"policy_violation: policy positive_amounts (orders.*.amount > 0) does not hold for orders.o9-{tag}\n" in out
    assert f"nothing was applied: orders.o9-{tag} has neither an amount nor a status" in out

    goals = dict(re.findall(r"(\w+\(o=o\d-" + tag + r"\)) as goal (\d+)", out))
    assert set(goals) == {
        f"checkout(o=o1-{tag})",
        f"checkout(o=o2-{tag})",
        f"refund(o=o1-{tag})",
        f"fulfill(o=o3-{tag})",
    }
    ids = sorted(int(i) for i in goals.values())
    declined, fulfill, refund = (
        goals[f"checkout(o=o2-{tag})"],
        goals[f"fulfill(o=o3-{tag})"],
        goals[f"refund(o=o1-{tag})"],
    )

    # The declined card: the step fails for good, the goal re-plans and pays by invoice.
    timeline = out.split("\ntimeline", 1)[1].split("\nsummary", 1)[0]
    assert re.search(rf"{declined} checkout +step\.failed +step 1 payment\.card failed .*card declined", timeline)
    replan = re.search(rf"{declined} checkout +goal\.planned +(re-plan 2 \(step_failed.*?)\n +\d+ ", timeline, re.S)
    assert replan, timeline
    assert re.sub(r"\s+", " ", replan.group(1)).endswith("payment.invoice, warehouse.pack, label.print, carrier.ship")
    assert re.search(rf"{declined} checkout +payment\.completed +amount=50 method=invoice order_id=o2-{tag}", timeline)
    assert re.search(rf"o2-{tag} +amount 50 +status shipped +paid_by invoice", out)

    # order.created starts fulfill, which completes.
    assert re.search(rf"\(shop\) +order\.created +amount=15 order_id=o3-{tag}", timeline)
    assert re.search(rf"{fulfill} fulfill +goal\.submitted +fulfill\(o=o3-{tag}\), .*by the trigger on", timeline)
    assert re.search(rf"{fulfill} fulfill +goal\.completed +step \d+ \S+ \(attempt 1.*\); complete", timeline)

    # The refund waits for a person, is answered, and refunds.
    assert re.search(rf"{refund} refund +goal\.waiting +step 1 asks \"Approve refund of order o1-{tag}\?\"", timeline)
    assert re.search(rf"{refund} refund +goal\.resumed +step 1 answered by ann: by=ann approved=true", timeline)
    assert re.search(rf"{refund} refund +payment\.refunded +amount=120 order_id=o1-{tag}", timeline)
    assert re.search(rf"o1-{tag} +amount 120 +status shipped +paid_by card +label printed +refund done", out)

    # The timeline is in log order.
    positions = [int(p) for p in re.findall(r"^ +(\d+)  \S", timeline, re.M)]
    assert positions == sorted(positions) and len(positions) > 40

    assert "  goals     4: 4 complete (checkout 2, fulfill 1, refund 1)\n" in out
    assert re.search(r"  steps     14 complete, 1 failed, 3 superseded", out)
    assert "  re-plans  1 (goal " in out
    assert re.search(r"  elapsed   \d+\.\d s", out)
    assert re.search(r"hash chain intact over \d+ events", out)
    return tag, ids


def run_printed_sql(out: str, ids: list[int]) -> None:
    """Run the SQL the demo prints, against the URL it prints, and check what it shows."""
    section = out.split("the same history in psql:\n", 1)[1]
    lines = section.splitlines()
    command = lines[0].strip()
    match = re.fullmatch(r"\S*psql '(postgresql://[^']+)'", command)
    assert match, command
    url = match.group(1)
    sql = "\n".join(line for line in lines[1:] if not line.startswith(("hash chain", "the embedded", "demo ok")))
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    assert len(statements) == 4
    with psycopg.connect(url, autocommit=True) as conn:
        goals, steps, events, orders = (conn.execute(s).fetchall() for s in statements)
    assert [(row[0], row[3]) for row in goals] == [(i, "complete") for i in ids]
    assert {row[0] for row in steps} == set(ids) and len(steps) == 18
    assert ("payment.card", "failed") in {(row[3], row[4]) for row in steps}
    types = [row[2] for row in events]
    assert types.count("goal.completed") == 4 and "order.created" in types and "goal.resumed" in types
    assert len(orders) >= 13  # amount, status, paid_by, label of three orders, and the refund


def test_demo_on_the_embedded_server_twice(tmp_path: Path) -> None:
    """The README's first command, from a fresh folder; a second run on the same database works too."""
    try:
        first, seconds = run_demo(tmp_path)
        first_tag, first_ids = check_output(first, tmp_path)
        assert ", new: goals checkout, fulfill, refund; policy positive_amounts" in first
        run_printed_sql(first, first_ids)

        second, _ = run_demo(tmp_path)
        second_tag, second_ids = check_output(second, tmp_path)
        assert ", unchanged: the database has it already" in second
        assert second_tag != first_tag and min(second_ids) > max(first_ids)
        run_printed_sql(second, second_ids)
        assert "the embedded server keeps running for psql; `goalrt db stop` stops it" in second
        print(f"first demo run took {seconds:.1f} s (server start included)")
    finally:
        status = json.loads(goalrt(tmp_path, "db", "status", "--json").stdout)
        stopped = goalrt(tmp_path, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    # No postgres left behind: the postmaster is gone, not merely reported stopped.
    assert status["running"] and status["pgdata"] == str((tmp_path / ".goalrt" / "pgdata").resolve())
    assert not json.loads(goalrt(tmp_path, "db", "status", "--json").stdout)["running"]
    assert not alive(int(status["pid"]))


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not: some containers' init never reaps the stopped postmaster)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # gone meanwhile, or no /proc: kill said it runs
        return Path("/proc").is_dir() is False
    return state != "Z"
