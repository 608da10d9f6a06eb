"""``goalrt init NAME``: a new workspace with a small working example (an order checkout)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from goalrt.errors import ConfigError

_APP: Final = "shop"

FILES: Final[dict[str, str]] = {
    "goalrt.toml": """\
# The workspace: its name and version are stored with the compiled definitions.
name = "{name}"
version = "0.1.0"
apps = ["shop"]
# Modules that register the action handlers (`goalrt test` and `goalrt worker` started here import them).
handlers = ["workers.shop"]
""",
    "apps/shop/types.gdl": """\
# The objects goals and actions talk about. The keys under `orders` in the
# state are Orders: orders.o1.status makes o1 an Order.
type Order under orders {
  amount: number
  status: string
}
""",
    "apps/shop/events.gdl": """\
event order.created { order_id: string  amount: number }
""",
    "apps/shop/actions.gdl": """\
# The handler of payment.charge is in workers/shop.py (@goalrt.action).
action payment.charge(o: Order) {
  require orders.{o}.status == "created" and orders.{o}.amount > 0
  effect  orders.{o}.status = "paid"
  cost 1  retry 3 backoff exponential 1s  timeout 30s  concurrency 5
}

# shipping.ship has no handler: `pure` makes its effect the whole action. (An
# action with neither runs nowhere: its goals wait for a worker with a handler.)
action shipping.ship(o: Order) {
  require orders.{o}.status == "paid"
  effect  orders.{o}.status = "shipped"
  timeout 1m
  pure
}
""",
    "apps/shop/goals.gdl": """\
goal checkout(o: Order) {
  achieve orders.{o}.status == "shipped"
  priority 5  deadline 1h
  on event order.created as e { o = e.order_id }
}
""",
    "apps/shop/contracts.gdl": """\
# What other apps of this workspace may use.
contract Shop {
  type Order
  event order.created
}
""",
    "apps/shop/policies.gdl": """\
# Refused: any state change that would leave an order with an amount <= 0.
policy positive_amounts {
  require not exists(orders.*.amount) or orders.*.amount > 0
}
""",
    "shared/shared.gdl": """\
# Declarations in shared/ are visible to every app.
""",
    "tests/checkout.gdl": """\
test checkout_ships_a_created_order {
  given orders.o1.status = "created"
  given orders.o1.amount = 20
  simulate shipping.ship
  when goal checkout(o = "o1")
  expect goal complete
  expect state orders.o1.status == "shipped"
}
""",
    "workers/__init__.py": '''\
"""Action handlers of this workspace: `goalrt worker` started in it imports those goalrt.toml lists."""
''',
    "workers/shop.py": '''\
"""Handlers of the shop app's actions (declared in apps/shop/actions.gdl)."""

from __future__ import annotations

from typing import Any

import goalrt


@goalrt.action("payment.charge")
async def charge(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, Any]:
    # Call the payment provider here; pass ctx.idempotency_key so a retried charge is charged once.
    return {"order": args["o"], "reference": ctx.idempotency_key}
''',
}

_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def scaffold(target: str | Path) -> list[Path]:
    """Create a workspace in ``target`` (a new or empty folder); return the files written."""
    folder = Path(target)
    if not _NAME.fullmatch(folder.name):
        raise ConfigError(f"invalid workspace name {folder.name!r}: use letters, digits, _ . -")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{target} already exists and is not an empty folder")
    written = []
    for rel, text in FILES.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{name}", folder.name) if rel == "goalrt.toml" else text, encoding="utf-8")
        written.append(path)
    return written


__all__ = ["FILES", "scaffold"]
