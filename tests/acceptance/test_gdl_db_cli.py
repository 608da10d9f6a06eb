"""The GDL commands that use a database, in a subprocess: gdl load, gdl status, goalrt test, a worker on GDL goals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SHOP = REPO / "gdl" / "examples" / "shop"
APPROVALS = REPO / "gdl" / "examples" / "approvals"


def goalrt(db_url: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}
    env["GOALRT_DATABASE_URL"] = db_url
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "goalrt", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_the_scaffold_passes_its_own_tests(db_url: str, tmp_path: Path) -> None:
    assert goalrt(db_url, "init", "x", cwd=tmp_path).returncode == 0
    ran = goalrt(db_url, "test", cwd=tmp_path / "x")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "tests/checkout.gdl:1::checkout_ships_a_created_order PASSED" in ran.stdout
    assert ran.stdout.splitlines()[-1].startswith("1 passed, 0 failed in ")


def outcome(text: str) -> list[str]:
    """Return the lines of a ``goalrt test`` run without their timings."""
    return [line.rsplit(" (", 1)[0] for line in text.splitlines()[:-1]]


def test_the_shop_workspace_passes_its_tests_the_same_way_twice(db_url: str) -> None:
    runs = [goalrt(db_url, "test", str(SHOP)) for _ in range(2)]
    for ran in runs:
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ran.stdout.splitlines()[-1].startswith("13 passed, 0 failed in ")
    assert outcome(runs[0].stdout) == outcome(runs[1].stdout)
    # Refusals expected (tests/policies.gdl), and the goal an event's trigger submitted (tests/fulfill.gdl).
    assert "tests/policies.gdl:5::negative_amount_is_refused PASSED" in runs[0].stdout
    assert "tests/policies.gdl:23::refund_answer_of_the_wrong_type_is_refused PASSED" in runs[0].stdout
    assert "tests/fulfill.gdl:1::order_created_event_starts_fulfill PASSED" in runs[0].stdout
    # The refund, ported from Python to GDL steps: an ask answered, or timed out, by the tests.
    assert "tests/refund.gdl:24::unanswered_refund_fails_after_a_day PASSED" in runs[0].stdout
    # -k selects; the forks are gone afterwards.
    one = goalrt(db_url, "test", str(SHOP), "-k", "declined")
    assert one.returncode == 0 and one.stdout.splitlines()[-1].startswith("1 passed, 0 failed")
    assert goalrt(db_url, "fork", "list").stdout.count("goalrt_fork_t") == 0


def test_the_approvals_workspace_passes_its_tests_the_same_way_twice(db_url: str) -> None:
    # workers/approvals.py's expense, ported to GDL: answers, webhooks and timers given by the tests.
    runs = [goalrt(db_url, "test", str(APPROVALS)) for _ in range(2)]
    for ran in runs:
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ran.stdout.splitlines()[-1].startswith("5 passed, 0 failed in ")
    assert outcome(runs[0].stdout) == outcome(runs[1].stdout)
    assert outcome(runs[0].stdout) == [
        "tests/expense.gdl:4::approved_expense_is_paid_when_the_payment_settles PASSED",
        "tests/expense.gdl:19::rejected_expense_is_not_paid PASSED",
        "tests/expense.gdl:26::unanswered_expense_is_closed_after_a_day PASSED",
        "tests/expense.gdl:34::a_payment_that_never_settles_fails_the_goal PASSED",
        "tests/expense.gdl:44::the_deadline_fails_a_goal_wherever_it_waits PASSED",
    ]


def test_a_then_that_cannot_be_done_fails_the_test_and_says_why(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "w"
    (root / "apps" / "a").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "goalrt.toml").write_text('name = "w"\nversion = "1"\n')
    (root / "apps" / "a" / "goals.gdl").write_text(
        'goal g { steps { ask "Ok?" answer { ok: boolean } } }\ngoal h { steps { sleep 1h } }\n'
    )
    (root / "tests" / "t.gdl").write_text(
        "test wrong_answer { when goal g()  then answer { ok = 1 }  expect goal complete }\n"
        "test nobody_asks { when goal h()  then answer { ok = true }  expect goal complete }\n"
        "test too_early { when goal h()  then advance 59m  expect goal complete }\n"
    )
    ran = goalrt(db_url, "test", str(root))
    assert ran.returncode == 1
    assert "then answer: invalid answer for goal 1: data.ok must be boolean, got number" in ran.stdout
    assert "then answer: no goal waits for an answer" in ran.stdout
    assert "expect goal complete: goal 1 h is waiting" in ran.stdout
    assert ran.stdout.splitlines()[-1].startswith("0 passed, 3 failed in ")


def test_a_failing_test_says_what_was_expected_and_found(db_url: str, tmp_path: Path) -> None:
    assert goalrt(db_url, "init", "x", cwd=tmp_path).returncode == 0
    (tmp_path / "x" / "tests" / "wrong.gdl").write_text(
        "test wrong {\n"
        '  given orders.o1.status = "created"\n'
        "  given orders.o1.amount = 20\n"
        '  when goal checkout(o = "o1")\n'
        "  expect goal failed\n"
        '  expect state orders.o1.status == "paid"\n'
        "}\n"
        "test refused_given {\n"
        "  given orders.o2.amount = -1\n"
        "  expect state orders.o2.amount == -1\n"
        "}\n"
    )
    ran = goalrt(db_url, "test", cwd=tmp_path / "x")
    assert ran.returncode == 1
    out = ran.stdout
    assert "tests/wrong.gdl:1::wrong FAILED" in out
    assert "expect goal failed: goal 1 checkout is complete" in out
    assert "expect state orders.o1.status == 'paid': does not hold (orders.o1.status is 'shipped')" in out
    assert "given: policy_violation: policy positive_amounts" in out
    assert out.splitlines()[-1].startswith("1 passed, 2 failed in ")


def test_a_refusal_or_named_goal_that_does_not_happen_fails_the_test(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "w"
    (root / "apps" / "a").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "goalrt.toml").write_text('name = "w"\nversion = "1"\nhandlers = ["wh"]\n')
    (root / "apps" / "a" / "defs.gdl").write_text(
        "policy positive { require stock.n > 0 }\n"
        "policy small { require stock.n < 10 }\n"
        "event made { n: integer }\n"
        "event noted { text: string }\n"
        "goal g(n: integer) { steps { sleep 1h } on event made as e { n = e.n } }\n"
        'action note { emit noted { text = "x" } }\n'
        "goal h { steps { action note() } }\n"
        "action bump { effect stock.n = 50  pure }\n"
        "goal fill { steps { action bump() } }\n"
    )
    # A handler whose event does not match its declaration.
    (root / "wh.py").write_text(
        "import goalrt\n\n\n"
        '@goalrt.action("note")\n'
        "async def note(args, ctx):\n"
        '    return goalrt.Result({}, events=[{"type": "noted", "data": {"text": 1}}])\n'
    )
    (root / "tests" / "t.gdl").write_text(
        "test applied { when change { stock.n = 5 }  expect refused  expect state stock.n == 5 }\n"
        "test other_policy { when change { stock.n = 50 }  expect refused by positive }\n"
        "test refused_as_expected { when change { stock.n = 50 }  expect refused by small }\n"
        "test named_goal { when event made { n = 1 }  expect goal g complete }\n"
        "test bad_emit { when goal h()  expect goal complete }\n"
        "test step_refused { given stock.n = 5  when goal fill()  expect refused by small  expect goal failed }\n"
        "test step_refused_otherwise { given stock.n = 5  when goal fill()  expect refused by positive }\n"
    )
    runs = [goalrt(db_url, "test", str(root)) for _ in range(2)]
    assert outcome(runs[0].stdout) == outcome(runs[1].stdout)
    out = runs[0].stdout
    assert runs[0].returncode == 1, out + runs[0].stderr
    assert "expect refused: when change was not refused" in out
    assert "expect refused by positive: when change was refused otherwise: policy_violation: policy small" in out
    assert "tests/t.gdl:3::refused_as_expected PASSED" in out
    assert "expect goal g complete: goal 1 g is waiting" in out
    # The database refuses the handler's event (its declaration), so the step fails.
    assert (
        "expect goal complete: goal 1 h is failed (note: event noted: data.text must be string, got number"
        " (as declared in GDL))" in out
    )
    # A step of the goal refused by the policy (its pure action's effect broke it).
    assert "tests/t.gdl:6::step_refused PASSED" in out
    assert "expect refused by positive: no step of the goals was refused by policy positive (steps refused by a" in out
    assert out.splitlines()[-1].startswith("2 passed, 5 failed in ")


def test_load_status_and_a_worker_running_the_loaded_goals(db_url: str) -> None:
    assert goalrt(db_url, "migrate").returncode == 0
    missing = goalrt(db_url, "gdl", "status")
    assert missing.returncode == 1 and "no GDL definitions loaded" in missing.stderr
    loaded = goalrt(db_url, "gdl", "load", str(SHOP))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("loaded shop as version 1 (sha256 ")
    assert "3 goal types, 1 policies, 1 triggers, 2 limits" in loaded.stdout
    again = goalrt(db_url, "gdl", "load", str(SHOP))
    assert again.stdout.startswith("unchanged: shop is version 1")
    assert goalrt(db_url, "gdl", "status").stdout.startswith("shop version 1 (sha256 ")
    # A policy refuses a bad change from the CLI, with a one-line error.
    bad = goalrt(db_url, "state", "set", "orders.o1.amount", "--", "-5")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "policy_violation" in bad.stderr
    # The event-triggered goal: an order appears in the state, its event starts fulfill.
    assert goalrt(db_url, "state", "set", "orders.o1", '{"x": 1}').returncode == 1  # orders.o1 needs an amount
    worker = subprocess.Popen(
        [sys.executable, "-m", "goalrt", "worker", "--handlers", "workers.shop", "--poll", "0.2"],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")},
            "GOALRT_DATABASE_URL": db_url,
            "PYTHONPATH": str(REPO),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        script = (
            "import sys; from goalrt.state.state import State, Change\n"
            "with State.connect(sys.argv[1]) as s:\n"
            "    s.change([Change.set('orders.o7.amount', 12), Change.set('orders.o7.status', 'created')])\n"
        )
        subprocess.run([sys.executable, "-c", script, db_url], check=True, cwd=REPO)
        appended = goalrt(
            db_url, "events", "append", "--stream", "shop", "--type", "order.created",
            "--data", '{"order_id": "o7", "amount": 12}',
        )  # fmt: skip
        assert appended.returncode == 0, appended.stderr
        deadline = time.monotonic() + 60
        while "complete" not in goalrt(db_url, "list").stdout:
            assert time.monotonic() < deadline, goalrt(db_url, "list").stdout
            time.sleep(0.2)
        shown = goalrt(db_url, "get", "1").stdout
        assert "fulfill" in shown and "[complete]" in shown and "label.print" in shown
        assert goalrt(db_url, "state", "get", "orders.o7.status").stdout.startswith('orders.o7.status = "shipped"')
    finally:
        worker.terminate()
        worker.wait(30)


def test_plan_dry_runs_a_goal_gdl_declared(db_url: str) -> None:
    assert goalrt(db_url, "migrate").returncode == 0
    unknown = goalrt(db_url, "plan", "checkout", "o=o1")
    assert unknown.returncode == 1 and "unknown goal type 'checkout'" in unknown.stderr
    assert goalrt(db_url, "gdl", "load", str(SHOP)).returncode == 0
    for path, value in (("orders.o1.amount", "12"), ("orders.o1.status", '"created"')):
        assert goalrt(db_url, "state", "set", path, value).returncode == 0
    planned = goalrt(db_url, "plan", "checkout", "o=o1")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout == "plan (cost 4): payment.card(o1), warehouse.pack(o1), label.print(o1), carrier.ship(o1)\n"
    # As it was before the status was set: no plan, and why, in one line on stderr.
    before = goalrt(db_url, "plan", "checkout", "o=o1", "--at", "1")
    assert before.returncode == 1 and before.stderr.count("\n") == 1 and "no plan for checkout" in before.stderr
    nope = goalrt(db_url, "plan", "nope")
    assert nope.returncode == 1 and "known: checkout, fulfill" in nope.stderr


def test_loading_another_workspace_is_refused_unless_replace(db_url: str, tmp_path: Path) -> None:
    assert goalrt(db_url, "init", "other", cwd=tmp_path).returncode == 0
    assert goalrt(db_url, "migrate").returncode == 0
    assert goalrt(db_url, "gdl", "load", str(SHOP)).returncode == 0
    refused = goalrt(db_url, "gdl", "load", str(tmp_path / "other"))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "the database runs workspace shop (version 1); loading other would replace" in refused.stderr
    assert goalrt(db_url, "gdl", "status").stdout.startswith("shop version 1 ")
    assert goalrt(db_url, "gdl", "load", str(tmp_path / "other"), "--replace").returncode == 0
    assert goalrt(db_url, "gdl", "status").stdout.startswith("other version 2 ")
    # The demo would replace it too: refused before it loads or submits anything.
    demo = goalrt(db_url, "demo")
    assert demo.returncode == 1 and "the database runs workspace other (version 2)" in demo.stderr, demo.stderr
    assert demo.stderr.count("\n") == 1
    assert goalrt(db_url, "list", "--json").stdout == ""  # no goal submitted
