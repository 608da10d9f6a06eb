"""The demo shop workspace (gdl/examples/shop) compiles, has the shape the demo relies on, and plans as told."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from goalrt.gdl import CompiledWorkspace, check
from goalrt.gdl.graph import mermaid
from goalrt.goals.registry import default_registry
from goalrt.planner import Budget, GoalParam, Plan, Problem, plan
from goalrt.planner.values import Scalar
from goalrt.worker.definitions import registry_for

SHOP = Path(__file__).resolve().parents[2] / "gdl" / "examples" / "shop"
ACTIONS = ("carrier.ship", "label.print", "payment.card", "payment.invoice", "payment.refund", "warehouse.pack")
# What checkout and fulfill plan with: the actions the contracts export (payment.refund stays in its app).
PLANNED = ("carrier.ship", "label.print", "payment.card", "payment.invoice", "warehouse.pack")
PURE = ("label.print",)  # declared with effects, no Python handler


@pytest.fixture(scope="module")
def shop() -> CompiledWorkspace:
    return check(SHOP)


def plan_steps(shop: CompiledWorkspace, goal_name: str, state: dict[str, Scalar], *, without: str = "") -> list[str]:
    goal = shop.goals[goal_name]
    assert goal.achieve is not None
    problem = Problem(
        types=goal.achieve.types,
        state=state,
        actions=[shop.actions[n].schema for n in goal.actions if n != without],
        goal=goal.achieve.condition,
        goal_params=[GoalParam("o", "o1", "Order")],
    )
    result = plan(problem, Budget(max_expansions=10_000))
    assert isinstance(result, Plan), result
    return [s.name for s in result.steps]


def test_workspace_has_three_apps_and_a_shared_order_type(shop: CompiledWorkspace) -> None:
    assert (shop.name, shop.version) == ("shop", "1")
    assert sorted(shop.apps) == ["fulfillment", "orders", "payments"]
    order = shop.types["Order"]
    assert order.app == "shared" and order.object_type.keys_under == ("orders",)
    assert {n: e.app for n, e in shop.events.items()} == {
        "order.created": "orders",
        "payment.completed": "payments",
        "payment.refunded": "payments",
        "shipment.dispatched": "fulfillment",
    }


def test_actions_and_their_runtime_options(shop: CompiledWorkspace) -> None:
    assert tuple(shop.actions) == ACTIONS
    card, invoice = shop.actions["payment.card"], shop.actions["payment.invoice"]
    # Same effect on the status, different cost: the card is planned first.
    assert card.schema.cost < invoice.schema.cost
    assert (card.retry.max_attempts, card.retry.backoff, card.retry.factor, card.timeout) == (2, 0.1, 1.0, 10.0)
    assert shop.actions["warehouse.pack"].concurrency == 2
    assert shop.actions["carrier.ship"].rate == (5, 1.0)
    assert all(a.handler == n for n, a in shop.actions.items())


def test_goals_plan_with_actions_exported_by_contracts(shop: CompiledWorkspace) -> None:
    checkout, fulfill = shop.goals["checkout"], shop.goals["fulfill"]
    assert (checkout.app, checkout.priority, checkout.deadline, checkout.triggers) == ("orders", 5, 3600.0, ())
    assert (fulfill.app, fulfill.priority, fulfill.deadline) == ("fulfillment", 1, 86400.0)
    assert [t.to_json() for t in fulfill.triggers] == [
        {"event": "order.created", "params": {"o": {"field": "order_id"}}}
    ]
    # The orders app declares no action: every one comes through a contract.
    assert checkout.actions == fulfill.actions == PLANNED
    assert {c.name: c.app for c in shop.contracts.values()} == {
        "Fulfillment": "fulfillment",
        "Orders": "orders",
        "Payments": "payments",
    }


def test_policy_ranges_over_every_order(shop: CompiledWorkspace) -> None:
    policy = shop.policies["positive_amounts"]
    assert policy.wildcards == (("_1", "orders"),)
    assert str(policy.condition) == "orders.{_1}.amount > 0"


def test_tests_cover_card_invoice_simulate_and_event(shop: CompiledWorkspace) -> None:
    tests = shop.tests
    assert len(tests) >= 4
    happy = tests["checkout_pays_by_card_and_ships"]
    assert happy.given == (("orders.o1.amount", 120), ("orders.o1.status", "created"))
    assert happy.when == {"goal": "checkout", "params": {"o": "o1"}}
    assert "payment.completed" in {e.event for e in happy.expects}
    declined = tests["declined_card_is_paid_by_invoice"]
    assert ("cards.o1", "declined") in declined.given
    assert any("orders.o1.paid_by == 'invoice'" in str(e.condition) for e in declined.expects if e.kind == "state")
    assert tests["simulated_payments_check_the_plan_alone"].simulate == ("payment.card", "payment.invoice")
    event = tests["order_created_event_starts_fulfill"]
    assert event.when == {"event": "order.created", "data": {"order_id": "o2", "amount": 40}}
    # Every test sets an order's amount with its status: the policy holds after the givens.
    for test in tests.values():
        if any(e.kind == "refused" for e in test.expects):
            continue  # tests/policies.gdl: what the policy must refuse
        given = dict(test.given)
        for path in given:
            if path.startswith("orders.") and path.endswith(".status"):
                assert isinstance(given[path.replace(".status", ".amount")], int | float), test.name


def test_checkout_plans_card_first_and_invoice_without_the_card(shop: CompiledWorkspace) -> None:
    created: dict[str, Scalar] = {"orders.o1.amount": 120, "orders.o1.status": "created"}
    rest = ["warehouse.pack(o1)", "label.print(o1)", "carrier.ship(o1)"]
    assert plan_steps(shop, "checkout", created) == ["payment.card(o1)", *rest]
    # What the re-plan after a declined card sees: the card is out.
    assert plan_steps(shop, "checkout", created, without="payment.card") == ["payment.invoice(o1)", *rest]
    assert plan_steps(shop, "fulfill", {"orders.o1.amount": 5, "orders.o1.status": "paid"}) == rest


def test_worker_module_registers_every_handler_but_the_pure_actions(shop: CompiledWorkspace) -> None:
    importlib.import_module("workers.shop")
    registered = default_registry.actions
    for name, action in shop.actions.items():
        if name in PURE:
            assert action.handler not in registered
        else:
            assert action.handler in registered, name
            # GDL gives the schema and options: the handler is registered bare.
            assert registered[action.handler].schema is None
    # The refund is GDL: its steps, filled in by the worker (an ask, then payment.refund, whose handler is here).
    assert "refund" not in default_registry.goal_types
    refund = registry_for(shop.to_json(), default_registry).goal_types["refund"]
    steps = refund.plan({"o": "o1"})
    assert [(s.kind, s.label) for s in steps] == [("ask", "approval"), ("action", None)]
    assert steps[0].args["prompt"] == "Approve refund of order o1?" and steps[0].args["timeout"] == 86400
    assert steps[1].action == "payment.refund" and "payment.refund" in registered
    assert shop.actions["payment.refund"].emit[0]["event"] == "payment.refunded"


def test_graph_shows_every_goal_and_action(shop: CompiledWorkspace) -> None:
    text = mermaid(shop)
    for name in (*ACTIONS, "checkout", "fulfill"):
        assert name in text
    assert "|starts|" in text
