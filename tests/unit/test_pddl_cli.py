"""`goalrt plan --pddl` and `goalrt gdl import-pddl`: output, exit codes, one-line errors, and the GDL round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goalrt.cli.main import main
from goalrt.gdl import check
from goalrt.planner import Budget, Plan, Problem, plan

DATA = Path(__file__).resolve().parents[1] / "data" / "pddl"
TASKS = [
    ("gripper-domain", "gripper-prob01"),
    ("blocks-domain", "blocks-sussman"),
    ("logistics-domain", "logistics-small"),
    ("miconic-domain", "miconic-s2-0"),
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["--database-url", "postgresql://nobody@127.0.0.1:1/none", *argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def files(domain: str, problem: str) -> list[str]:
    return [str(DATA / f"{domain}.pddl"), str(DATA / f"{problem}.pddl")]


def test_plan_pddl_prints_the_plan_as_pddl_steps(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--pddl", *files("blocks-domain", "blocks-sussman"))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("plan: 6 steps, cost 6 (minimum); ") and "24 ground actions" in lines[0]
    assert lines[1:] == [
        "(unstack c a)",
        "(put-down c)",
        "(pick-up b)",
        "(stack b c)",
        "(pick-up a)",
        "(stack a b)",
    ]


def test_plan_pddl_json_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--pddl", *files("gripper-domain", "gripper-prob01"), "--json")
    data = json.loads(out)
    assert code == 0 and data["found"] and data["length"] == 11 and data["domain"] == "gripper-strips"
    code, out, _ = run(capsys, "plan", "--pddl", *files("gripper-domain", "gripper-prob01"), "--explain")
    assert code == 0 and "1. pick(ball1, rooma, left)" in out


def test_plan_pddl_budget_out_is_exit_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--pddl", *files("gripper-domain", "gripper-prob01"), "--budget", "3")
    assert code == 1 and out.startswith("no plan (budget_exhausted)")
    assert err.count("\n") == 1 and err.startswith("goalrt: error: no plan for strips-gripper-x-1: ")


def test_plan_pddl_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.pddl"
    broken.write_text((DATA / "blocks-domain.pddl").read_text().replace("(holding ?x))", "(holds ?x))"))
    code, out, err = run(capsys, "plan", "--pddl", str(broken), str(DATA / "blocks-sussman.pddl"))
    assert code == 1 and out == ""
    assert err == f"goalrt: error: {broken}:13:20: unknown predicate 'holding'\n"
    code, _, err = run(capsys, "plan", "--pddl", str(tmp_path / "none.pddl"), str(broken))
    assert code == 1 and err.count("\n") == 1 and "cannot read" in err
    code, _, err = run(capsys, "plan", "--pddl", *files("blocks-domain", "blocks-sussman"), "somegoal")
    assert code == 2 and err.count("\n") == 1 and "--pddl takes no goal NAME" in err
    code, _, err = run(capsys, "plan")
    assert code == 2 and "missing argument NAME" in err


def gdl_plan(root: Path) -> Plan:
    """Plan the imported workspace's goal from its test's state, as the runtime would: from the compiled GDL."""
    compiled = check(root)
    goal = compiled.goals["solve"]
    (test,) = compiled.tests.values()
    problem = Problem(
        types=goal.achieve.types,
        state=dict(test.given),
        actions=[compiled.actions[name].schema for name in goal.actions],
        goal=goal.achieve.condition,
    )
    result = plan(problem, Budget(200_000))
    assert isinstance(result, Plan)
    return result


@pytest.mark.parametrize(("domain", "problem"), TASKS)
def test_import_pddl_writes_a_workspace_that_checks_and_plans_the_same(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, domain: str, problem: str
) -> None:
    to = tmp_path / "ws"
    code, out, _ = run(capsys, "gdl", "import-pddl", *files(domain, problem), "--to", str(to))
    assert code == 0 and out.startswith(f"wrote workspace {to} (5 files)")
    code, out, err = run(capsys, "gdl", "check", str(to))
    assert code == 0 and out.startswith("ok: ") and err == ""
    code, out, _ = run(capsys, "plan", "--pddl", *files(domain, problem), "--json")
    direct = json.loads(out)
    imported = gdl_plan(to)
    assert [op.name for op in imported.steps] == [step["name"] for step in direct["steps"]]
    assert imported.ground_actions == direct["ground_actions"]


def test_import_pddl_refuses_a_folder_with_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    code, _, err = run(capsys, "gdl", "import-pddl", *files("blocks-domain", "blocks-sussman"), "--to", str(tmp_path))
    assert code == 1 and err == f"goalrt: error: {tmp_path}: exists and is not an empty folder\n"
