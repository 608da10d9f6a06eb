"""`goalrt plan` (dry runs and what-ifs) and planned goals run by a worker process, from the CLI."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.test_cli import goalrt
from tests.acceptance.test_coordination_cli import wait_until
from tests.acceptance.test_goals_cli import one_line_error, worker_process

HANDLERS = "workers.fulfillment"


def setup_state(db_url: str, *pairs: tuple[str, str]) -> None:
    for path, value in pairs:
        assert goalrt(db_url, "state", "set", path, value).returncode == 0


def test_plan_is_a_dry_run_now_and_in_the_past(db_url: str) -> None:
    setup_state(db_url, ("truck.at", '"dock"'))
    before = goalrt(db_url, "events", "list", "--json").stdout.splitlines()
    pos = json.loads(before[-1])["pos"]
    setup_state(db_url, ("orders.o1.status", '"created"'))
    out = goalrt(db_url, "plan", "deliver", "order=o1", "--handlers", HANDLERS)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "plan (cost 2): pay.card(o1), ship(o1)"
    explained = goalrt(db_url, "plan", "deliver", "order=o1", "--handlers", HANDLERS, "--explain").stdout
    assert "2 steps, cost 2 (minimum)" in explained and "orders.o1.status = 'paid'" in explained
    as_json = json.loads(goalrt(db_url, "plan", "deliver", "order=o1", "--handlers", HANDLERS, "--json").stdout)
    assert as_json["found"] is True and [s["name"] for s in as_json["steps"]] == ["pay.card(o1)", "ship(o1)"]
    # What if: the state before the order existed has no plan; exit 1 with why.
    past = goalrt(db_url, "plan", "deliver", "order=o1", "--handlers", HANDLERS, "--at", str(pos))
    assert past.returncode == 1
    assert "orders.o1.status == 'shipped'" in past.stdout
    assert past.stderr.strip().startswith("goalrt: error: no plan for deliver:")
    assert goalrt(db_url, "list", "--json").stdout == ""  # nothing was submitted or run


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["plan", "nope", "--handlers", HANDLERS], 1, "unknown goal type 'nope'"),
        (["plan", "checkout", "--handlers", "workers.checkout"], 1, "goal checkout lists its steps"),
        (["plan", "deliver", "--handlers", HANDLERS], 1, "params.order"),
        (["plan", "deliver", "order=o1", "colour=red", "--handlers", HANDLERS], 1, "params.colour is not a parameter"),
    ],
)
def test_plan_bad_input_is_one_line(db_url: str, args: list[str], code: int, fragment: str) -> None:
    one_line_error(goalrt(db_url, *args), code, fragment)


def test_a_worker_re_plans_a_declined_card_and_get_shows_the_plans(db_url: str) -> None:
    setup_state(db_url, ("truck.at", '"dock"'), ("orders.o2.status", '"created"'), ("cards.o2", '"declined"'))
    with worker_process(db_url, HANDLERS):
        gid = goalrt(db_url, "submit", "deliver", "order=o2", "--handlers", HANDLERS).stdout.strip()
        info = wait_until(db_url, gid, lambda i: i["status"] in ("complete", "failed"))
        assert info["status"] == "complete", info
        text = goalrt(db_url, "get", gid).stdout
        assert "plan 1 (initial): cost 2: pay.card(o2), ship(o2)" in text, text
        assert (
            "plan 2 (step_failed) - pay.card(o2) failed: pay.card: card declined: cost 4: pay.invoice(o2), ship(o2)"
            in (text)
        ), text
        state = json.loads(goalrt(db_url, "state", "get", "orders.o2.status", "--json").stdout)
        assert state["value"] == "shipped"
