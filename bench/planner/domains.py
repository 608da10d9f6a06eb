"""Classic planning domains built through the public API: for the planner's tests and benchmark.

Not part of the runtime package: ``bench/planner/planner_bench.py`` imports it as
its sibling, the tests as ``bench.planner.domains`` (pytest puts the repository
root on the path).

- ``gripper(n)``: a robot with two grippers carries n balls from room a to room b.
- ``blocksworld(initial, goal)`` and ``random_blocksworld(n, seed)``: stack blocks with one hand.
- ``fulfillment(orders)``: a GOAP-style order-fulfillment domain (payments, a picking robot
  moving between zones, packing, gift wrap, a truck, stock counts that restocking increments).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from goalrt.planner import ActionSchema, And, Eq, Increment, ObjectType, Problem, Set, Var, cond
from goalrt.planner.values import Scalar


def gripper(n: int) -> Problem:
    """Return gripper with ``n`` balls in room a, to be carried to room b (optimal cost 2n + 2*ceil(n/2) - 1)."""
    balls = [f"b{i}" for i in range(1, n + 1)]
    state: dict[str, Scalar] = {"robot.at": "rooma", "grippers.left.free": True, "grippers.right.free": True}
    state.update({f"balls.{b}.at": "rooma" for b in balls})
    return Problem(
        types=[ObjectType("Ball", "balls"), ObjectType("Room"), ObjectType("Gripper", "grippers")],
        objects={"Room": ["rooma", "roomb"]},
        state=state,
        actions=[
            ActionSchema(
                "move", {"a": "Room", "b": "Room"}, cond("robot.at == {a} and {a} != {b}"), [Set("robot.at", Var("b"))]
            ),
            ActionSchema(
                "pick",
                {"ball": "Ball", "r": "Room", "g": "Gripper"},
                cond("balls.{ball}.at == {r} and robot.at == {r} and grippers.{g}.free == true"),
                [Set("balls.{ball}.at", Var("g")), Set("grippers.{g}.free", False)],
            ),
            ActionSchema(
                "drop",
                {"ball": "Ball", "r": "Room", "g": "Gripper"},
                cond("balls.{ball}.at == {g} and robot.at == {r}"),
                [Set("balls.{ball}.at", Var("r")), Set("grippers.{g}.free", True)],
            ),
        ],
        goal=And(*(Eq(f"balls.{b}.at", "roomb") for b in balls)),
    )


Towers = Sequence[Sequence[str]]


def _on(towers: Towers) -> dict[str, str]:
    """Return what each block stands on: the block below it, or ``table``."""
    return {block: (tower[i - 1] if i else "table") for tower in towers for i, block in enumerate(tower)}


def blocksworld(initial: Towers, goal: Towers) -> Problem:
    """Return blocksworld (pickup, putdown, stack, unstack; cost 1 each) from towers listed bottom first."""
    on = _on(initial)
    tops = {tower[-1] for tower in initial if tower}
    state: dict[str, Scalar] = {"hand.empty": True}
    for block in sorted(on):
        state[f"blocks.{block}.on"] = on[block]
        state[f"blocks.{block}.clear"] = block in tops
    return Problem(
        types=[ObjectType("Block", "blocks")],
        state=state,
        actions=[
            ActionSchema(
                "pickup",
                {"b": "Block"},
                cond("blocks.{b}.on == 'table' and blocks.{b}.clear == true and hand.empty == true"),
                [Set("blocks.{b}.on", "hand"), Set("blocks.{b}.clear", False), Set("hand.empty", False)],
            ),
            ActionSchema(
                "putdown",
                {"b": "Block"},
                cond("blocks.{b}.on == 'hand'"),
                [Set("blocks.{b}.on", "table"), Set("blocks.{b}.clear", True), Set("hand.empty", True)],
            ),
            ActionSchema(
                "stack",
                {"b": "Block", "c": "Block"},
                cond("blocks.{b}.on == 'hand' and blocks.{c}.clear == true and {b} != {c}"),
                [
                    Set("blocks.{b}.on", Var("c")),
                    Set("blocks.{c}.clear", False),
                    Set("blocks.{b}.clear", True),
                    Set("hand.empty", True),
                ],
            ),
            ActionSchema(
                "unstack",
                {"b": "Block", "c": "Block"},
                cond("blocks.{b}.on == {c} and blocks.{b}.clear == true and hand.empty == true and {b} != {c}"),
                [
                    Set("blocks.{b}.on", "hand"),
                    Set("blocks.{c}.clear", True),
                    Set("blocks.{b}.clear", False),
                    Set("hand.empty", False),
                ],
            ),
        ],
        goal=And(*(Eq(f"blocks.{b}.on", below) for b, below in sorted(_on(goal).items()))),
    )


def random_towers(blocks: Sequence[str], rng: random.Random) -> list[list[str]]:
    """Return the blocks shuffled into a random number of towers."""
    order = list(blocks)
    rng.shuffle(order)
    towers: list[list[str]] = []
    for block in order:
        if towers and rng.random() < 0.6:
            rng.choice(towers).append(block)
        else:
            towers.append([block])
    return towers


def random_blocksworld(n: int, seed: int) -> Problem:
    """Return a blocksworld instance with ``n`` blocks, random initial and goal towers drawn from ``seed``."""
    rng = random.Random(seed)
    blocks = [f"x{i}" for i in range(1, n + 1)]
    return blocksworld(random_towers(blocks, rng), random_towers(blocks, rng))


ZONES = ("z1", "z2", "z3", "z4")


def fulfillment(orders: int = 3, gift: Sequence[int] = (1,), risky: Sequence[int] = (2,)) -> Problem:
    """Return the order-fulfillment domain: every order must end up shipped.

    Order i (1-based) waits in zone ``ZONES[i % 4]`` for sku ``s{i % 3}``; orders in
    ``gift`` need wrapping, orders in ``risky`` a fraud check before a card charge.
    """
    state: dict[str, Scalar] = {"robot.at": "z1", "packer.free": True, "truck.at": "depot"}
    for i in range(1, orders + 1):
        o = f"o{i}"
        state[f"orders.{o}.status"] = "created"
        state[f"orders.{o}.zone"] = ZONES[i % len(ZONES)]
        state[f"orders.{o}.sku"] = f"s{i % 3}"
        state[f"orders.{o}.gift"] = i in gift
        state[f"orders.{o}.wrapped"] = False
        state[f"orders.{o}.risk"] = "high" if i in risky else "low"
        state[f"orders.{o}.checked"] = False
    for s in range(3):
        state[f"stock.s{s}"] = 1 if s else 0
    actions = [
        ActionSchema(
            "fraud.check",
            {"o": "Order"},
            cond("orders.{o}.risk == 'high' and orders.{o}.checked == false"),
            [Set("orders.{o}.checked", True)],
            cost=2,
        ),
        ActionSchema(
            "payment.card",
            {"o": "Order"},
            cond("orders.{o}.status == 'created' and (orders.{o}.risk == 'low' or orders.{o}.checked == true)"),
            [Set("orders.{o}.status", "paid")],
        ),
        ActionSchema(
            "payment.invoice",
            {"o": "Order"},
            cond("orders.{o}.status == 'created'"),
            [Set("orders.{o}.status", "paid")],
            cost=4,
        ),
        ActionSchema(
            "robot.move",
            {"a": "Zone", "b": "Zone"},
            cond("robot.at == {a} and {a} != {b}"),
            [Set("robot.at", Var("b"))],
            cost=1.5,
        ),
        ActionSchema(
            "robot.pick",
            {"o": "Order", "z": "Zone", "s": "Sku"},
            cond(
                "orders.{o}.status == 'paid' and orders.{o}.zone == {z} and robot.at == {z} "
                "and orders.{o}.sku == {s} and stock.{s} >= 1"
            ),
            [Set("orders.{o}.status", "picked"), Increment("stock.{s}", -1)],
        ),
        ActionSchema("stock.restock", {"s": "Sku"}, cond("stock.{s} < 2"), [Increment("stock.{s}", 1)], cost=3),
        ActionSchema(
            "packing.pack",
            {"o": "Order"},
            cond("orders.{o}.status == 'picked' and packer.free == true"),
            [Set("orders.{o}.status", "packed")],
        ),
        ActionSchema(
            "packing.wrap",
            {"o": "Order"},
            cond("orders.{o}.gift == true and orders.{o}.status == 'packed' and orders.{o}.wrapped == false"),
            [Set("orders.{o}.wrapped", True)],
            cost=2,
        ),
        ActionSchema("truck.call", {}, cond("truck.at == 'depot'"), [Set("truck.at", "dock")], cost=3),
        ActionSchema(
            "shipping.standard",
            {"o": "Order"},
            cond(
                "orders.{o}.status == 'packed' and truck.at == 'dock' "
                "and (orders.{o}.gift == false or orders.{o}.wrapped == true)"
            ),
            [Set("orders.{o}.status", "shipped")],
            cost=2,
        ),
        ActionSchema(
            "shipping.express",
            {"o": "Order"},
            cond("orders.{o}.status == 'packed' and (orders.{o}.gift == false or orders.{o}.wrapped == true)"),
            [Set("orders.{o}.status", "shipped")],
            cost=6,
        ),
    ]
    return Problem(
        types=[ObjectType("Order", "orders"), ObjectType("Zone"), ObjectType("Sku", "stock")],
        objects={"Zone": list(ZONES)},
        state=state,
        actions=actions,
        goal=And(*(Eq(f"orders.o{i}.status", "shipped") for i in range(1, orders + 1))),
    )


PLACES = ("armory", "base", "field", "forest", "market", "camp")
ITEMS = ("axe", "rifle", "ammo", "knife", "bandage", "rope")


def soldier(enemy_at: str = "camp", coins: int = 0) -> Problem:
    """Return a GOAP-style game-AI domain: an agent must neutralize an enemy and be back at base.

    It can shoot (a rifle, loaded with ammo bought at the market for coins
    earned in the field), stab a sleeping enemy (a knife, after a long wait),
    or tie it up (a rope, made from wood chopped with an axe). About a hundred
    ground actions; the cheapest plan is 10 to 15 steps.
    """
    state: dict[str, Scalar] = {
        "agent.at": "base",
        "agent.coins": coins,
        "agent.wood": 0,
        "enemy.at": enemy_at,
        "enemy.alive": True,
        "enemy.awake": True,
        "rifle.loaded": False,
        "items.axe.at": "forest",
        "items.rifle.at": "armory",
        "items.ammo.at": "shop",
        "items.knife.at": "armory",
        "items.bandage.at": "shop",
        "items.rope.at": "nowhere",
    }
    has = "items.{i}.at == 'agent'"
    actions = [
        ActionSchema(
            "move", {"a": "Place", "b": "Place"}, cond("agent.at == {a} and {a} != {b}"), [Set("agent.at", Var("b"))], 2
        ),
        ActionSchema(
            "pickup",
            {"i": "Item", "p": "Place"},
            cond("items.{i}.at == {p} and agent.at == {p}"),
            [Set("items.{i}.at", "agent")],
        ),
        ActionSchema(
            "drop", {"i": "Item", "p": "Place"}, cond(f"{has} and agent.at == {{p}}"), [Set("items.{i}.at", Var("p"))]
        ),
        ActionSchema(
            "buy",
            {"i": "Item"},
            cond("agent.at == 'market' and items.{i}.at == 'shop' and agent.coins >= 2"),
            [Set("items.{i}.at", "agent"), Increment("agent.coins", -2)],
        ),
        ActionSchema("work", {}, cond("agent.at == 'field' and agent.coins < 4"), [Increment("agent.coins", 1)], 2),
        ActionSchema(
            "chop",
            {},
            cond("agent.at == 'forest' and items.axe.at == 'agent' and agent.wood < 3"),
            [Increment("agent.wood", 1)],
            2,
        ),
        ActionSchema(
            "make_rope",
            {},
            cond("agent.wood >= 2 and items.rope.at == 'nowhere' and agent.at in ['base', 'camp']"),
            [Set("items.rope.at", "agent"), Increment("agent.wood", -2)],
            3,
        ),
        ActionSchema(
            "load",
            {},
            cond("items.rifle.at == 'agent' and items.ammo.at == 'agent' and rifle.loaded == false"),
            [Set("rifle.loaded", True), Set("items.ammo.at", "used")],
        ),
        ActionSchema(
            "shoot",
            {"p": "Place"},
            cond("rifle.loaded == true and agent.at == {p} and enemy.at == {p} and enemy.alive == true"),
            [Set("enemy.alive", False), Set("rifle.loaded", False)],
        ),
        ActionSchema("wait_for_night", {}, cond("enemy.awake == true"), [Set("enemy.awake", False)], 12),
        ActionSchema(
            "stab",
            {"p": "Place"},
            cond(
                "items.knife.at == 'agent' and agent.at == {p} and enemy.at == {p} "
                "and enemy.awake == false and enemy.alive == true"
            ),
            [Set("enemy.alive", False)],
        ),
        ActionSchema(
            "tie_up",
            {"p": "Place"},
            cond("items.rope.at == 'agent' and agent.at == {p} and enemy.at == {p} and enemy.alive == true"),
            [Set("enemy.alive", False), Set("items.rope.at", "used")],
            2,
        ),
    ]
    return Problem(
        types=[ObjectType("Place"), ObjectType("Item", "items")],
        objects={"Place": list(PLACES)},
        state=state,
        actions=actions,
        goal=cond("enemy.alive == false and agent.at == 'base'"),
    )
