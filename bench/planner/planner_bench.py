"""Planner: milliseconds per optimal plan and expansions per second on GOAP-sized and classic domains.

What it measures
----------------
Every figure is for a whole ``goalrt.planner.plan(problem)`` call: grounding,
compiling, the heuristic's set-up (LM-cut on the initial state) and the A*
search, from a ``Problem`` already built (building it is not timed). Each
case runs ``--repeat`` times after one warm-up run; the table shows the
median time, plans per second (1 / median), the expansions and generations
of the search (the same in every run: the planner is deterministic) and
expansions per second (expansions / median).

1. **GOAP-sized domains** (``domains.py`` next to this script): ``soldier`` (a game-AI
   agent, ~115 ground actions: move between 6 places, pick up, drop, buy,
   work, chop, make rope, load, shoot, stab, tie up) in four variants, and
   ``fulfillment`` (order processing with payments, fraud checks, a picking
   robot in 4 zones, stock that restocking increments, packing, gift wrap, a
   truck) with 1, 2 and 3 orders.
2. **Gripper**, n = 4..8 balls (optimal 2n + 2*ceil(n/2) - 1 steps).
3. **Blocksworld**, 5, 6 and 7 blocks, random towers from seeds 0..2, and two
   structured 7-block cases: reverse one tower; one tower into two.
4. **Miconic** (``strips_domains.py``), 4..8 passengers (4..6 with ``--quick``),
   and **logistics**, 3..5 packages in two cities.

``--heuristics auto,landmarks,lmcut`` runs every case under each heuristic
(default: auto; ``landmarks`` was the default before per-state LM-cut).
``pyperplan_compare.py`` puts the STRIPS tasks beside pyperplan. ``--quick`` runs
fewer repeats and skips the largest cases. ``--json`` prints one JSON object per
case instead of the tables. No pass/fail: the figures are for reading.

Run: ``.venv/bin/python bench/planner/planner_bench.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from domains import blocksworld, fulfillment, gripper, random_blocksworld, soldier
from strips_domains import logistics, miconic

from goalrt.planner import Budget, Plan, Problem, plan
from goalrt.planner.task import compile_task

BUDGET = Budget(max_expansions=2_000_000)


@dataclass
class Row:
    group: str
    case: str
    heuristic: str
    ground_actions: int
    steps: int
    cost: float
    expanded: int
    generated: int
    ms: float
    plans_per_s: float
    expansions_per_s: float


def measure(group: str, case: str, build: Callable[[], Problem], heuristic: str, repeat: int) -> Row:
    problem = build()
    first = plan(problem, BUDGET, heuristic=heuristic)
    if not isinstance(first, Plan):
        raise SystemExit(f"{case}: no plan ({first.reason}): {first.message}")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        plan(problem, BUDGET, heuristic=heuristic)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return Row(
        group=group,
        case=case,
        heuristic=heuristic,
        ground_actions=len(compile_task(problem).ops),
        steps=first.length,
        cost=first.cost,
        expanded=first.expanded,
        generated=first.generated,
        ms=median * 1000,
        plans_per_s=1 / median,
        expansions_per_s=first.expanded / median,
    )


def cases(quick: bool) -> list[tuple[str, str, Callable[[], Problem], int]]:
    """Return (group, case, problem builder, repeats)."""
    few = 3 if quick else 10
    many = 10 if quick else 50
    out: list[tuple[str, str, Callable[[], Problem], int]] = [
        ("goap", "soldier enemy@camp coins=4", lambda: soldier("camp", 4), many),
        ("goap", "soldier enemy@market coins=4", lambda: soldier("market", 4), many),
        ("goap", "soldier enemy@camp coins=2", lambda: soldier("camp", 2), many),
        ("goap", "soldier enemy@camp coins=0", lambda: soldier("camp", 0), many),
        ("goap", "soldier enemy@forest coins=0", lambda: soldier("forest", 0), few),
        ("goap", "fulfillment 1 order", lambda: fulfillment(1), many),
        ("goap", "fulfillment 2 orders", lambda: fulfillment(2), many),
        ("goap", "fulfillment 3 orders", lambda: fulfillment(3), many),
    ]
    for n in range(4, 7 if quick else 9):
        out.append(("gripper", f"gripper n={n}", lambda n=n: gripper(n), few))
    for n in (5, 6) if quick else (5, 6, 7):
        for seed in range(3):
            out.append(("blocksworld", f"blocks n={n} seed={seed}", lambda n=n, s=seed: random_blocksworld(n, s), few))
    if not quick:
        blocks = [f"x{i}" for i in range(1, 8)]
        out.append(("blocksworld", "blocks n=7 reverse a tower", lambda: blocksworld([blocks], [blocks[::-1]]), few))
        out.append(
            ("blocksworld", "blocks n=7 tower to two", lambda: blocksworld([blocks], [blocks[0::2], blocks[1::2]]), few)
        )
    for n in range(4, 7 if quick else 9):
        out.append(("miconic", f"miconic p={n} seed=0", lambda n=n: miconic(n, 0), few))
    for n, seed in ((3, 0), (4, 0)) if quick else ((3, 0), (4, 0), (5, 1)):
        out.append(("logistics", f"logistics n={n} seed={seed}", lambda n=n, s=seed: logistics(n, s), few))
    return out


def table(rows: list[Row]) -> str:
    header = (
        f"{'case':<30} {'h':<9} {'actions':>7} {'steps':>5} {'cost':>6} {'expanded':>9} {'generated':>9} "
        f"{'ms/plan':>9} {'plans/s':>8} {'exp/s':>9}"
    )
    lines = [header, "-" * len(header)]
    group = None
    for r in rows:
        if r.group != group and group is not None:
            lines.append("")
        group = r.group
        lines.append(
            f"{r.case:<30} {r.heuristic:<9} {r.ground_actions:>7} {r.steps:>5} {r.cost:>6g} {r.expanded:>9,} "
            f"{r.generated:>9,} {r.ms:>9.2f} {r.plans_per_s:>8,.0f} {r.expansions_per_s:>9,.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller cases")
    parser.add_argument("--heuristics", default="auto", help="comma-separated heuristic names (default: auto)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per case")
    args = parser.parse_args()
    rows = []
    for group, case, build, repeat in cases(args.quick):
        for heuristic in args.heuristics.split(","):
            row = measure(group, case, build, heuristic, repeat)
            rows.append(row)
            if args.json:
                print(json.dumps(asdict(row)), flush=True)
    if not args.json:
        print(f"goalrt planner bench: Python {platform.python_version()} on {platform.machine()}, medians of runs\n")
        print(table(rows))


if __name__ == "__main__":
    main()
