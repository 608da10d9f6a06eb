"""What one run of the demo is: the orders it creates, its tag, its goals and the log positions it spans."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Say = Callable[[str], None]

# Seconds the goals may take, all together, before the demo gives up on them.
GOALS_TIMEOUT = 30.0
# The answer a person would give: `goalrt resume ID --data '{"approved": true, "by": "ann"}'`.
ANSWER = {"approved": True, "by": "ann"}


@dataclass(frozen=True, slots=True)
class Order:
    short: str
    amount: int
    declined: bool
    story: str


ORDERS = (
    Order("o1", 120, False, "checkout: pays by card; refunded later, once a person approves"),
    Order("o2", 50, True, "checkout: the card is declined, so the planner re-plans to an invoice"),
    Order("o3", 15, False, "fulfill: started by an order.created event"),
)


@dataclass(slots=True)
class Run:
    """What one run of the demo did: its tag, its goals and the log positions it spans."""

    url: str
    tag: str
    start: int
    started_at: float
    goals: dict[int, str] = field(default_factory=dict)
    own_positions: set[int] = field(default_factory=set)
    goals_seconds: float = 0.0

    def order(self, short: str) -> str:
        return f"{short}-{self.tag}"
