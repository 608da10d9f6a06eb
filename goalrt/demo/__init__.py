"""``goalrt demo``: goalrt's main job end to end, on the shop workspace (gdl/examples/shop).

On the default database (the embedded server unless GOALRT_DATABASE_URL names
one) the demo migrates, compiles and loads the shop workspace, and starts a
worker in this process with its handlers (workers/shop.py). It creates a few
orders, whose ids carry a tag of the run so that the demo can run again on
the same database, and shows the policy refusing an order with amount -1.
Then it submits ``checkout`` for an order paid by card and for one whose card
is declined (the planner re-plans to the invoice), appends an
``order.created`` event (its trigger submits ``fulfill``) and submits a
``refund`` that waits for a person's answer, which it gives. Once every goal
has finished it prints what happened as read back from the event log, a
summary, the SQL that shows the same history in psql, and the check of the
hash chain.

The workspace and its handlers are found inside the package in a wheel
(``goalrt/examples/shop``, handlers in its ``workers/shop.py``; see
pyproject.toml) and at the top of a clone (``gdl/examples/shop`` and
``workers/shop.py``).
"""

from __future__ import annotations

from goalrt.demo.main import run
from goalrt.demo.workspace import import_handlers, shop_handlers, shop_workspace

__all__ = ["import_handlers", "run", "shop_handlers", "shop_workspace"]
