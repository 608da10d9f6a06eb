"""The bench's STRIPS tasks in both forms: a goalrt ``Problem`` built by hand and the same task as PDDL.

The domain files under ``pddl/`` are the IPC domains (as pyperplan's
benchmarks ship them); ``problem_pddl`` writes a problem file for the same
instance the goalrt builders in ``domains.py`` and ``strips_domains.py``
build. goalrt has no PDDL importer yet, so the two are kept equal by
construction: both come from one instance description.

Differences in the grounding, none in the tasks: goalrt's ``move(a, b)`` in
gripper and ``stack(b, c)`` in blocks require distinct objects, where the
PDDL domains also ground the self-loops (useless or never applicable).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from domains import _on, blocksworld, gripper, random_towers
from strips_domains import logistics, logistics_instance, miconic, miconic_instance

from goalrt.planner import Problem

PDDL = Path(__file__).resolve().parent / "pddl"


@dataclass(frozen=True)
class StripsTask:
    """One bench task: its domain, name, the goalrt builder and its PDDL problem text."""

    domain: str
    name: str
    build: Callable[[], Problem]
    pddl: Callable[[], str]


def _miconic_pddl(passengers: int, seed: int) -> str:
    spec = miconic_instance(passengers, seed)
    people = sorted(spec.origin)
    init = [f"(above {a} {b})" for i, a in enumerate(spec.floors) for b in spec.floors[i + 1 :]]
    init += [f"(origin {p} {spec.origin[p]})" for p in people]
    init += [f"(destin {p} {spec.destin[p]})" for p in people]
    init.append(f"(lift-at {spec.lift})")
    return (
        f"(define (problem miconic-{passengers}-{seed}) (:domain miconic)\n"
        f"(:objects {' '.join(people)} - passenger {' '.join(spec.floors)} - floor)\n"
        f"(:init {' '.join(init)})\n"
        f"(:goal (and {' '.join(f'(served {p})' for p in people)})))\n"
    )


def _logistics_pddl(packages: int, seed: int, cities: int, size: int) -> str:
    spec = logistics_instance(packages, seed, cities, size)
    places = sorted(spec.city_of)
    others = [p for p in places if p not in spec.airports]
    init = [f"(in-city {loc} {city})" for loc, city in sorted(spec.city_of.items())]
    for group in (spec.trucks, spec.airplanes, spec.packages):
        init += [f"(at {thing} {at})" for thing, at in sorted(group.items())]
    return (
        f"(define (problem logistics-{packages}-{seed}) (:domain logistics)\n"
        f"(:objects {' '.join(spec.airplanes)} - airplane {' '.join(spec.airports)} - airport "
        f"{' '.join(others)} - location {' '.join(sorted(set(spec.city_of.values())))} - city "
        f"{' '.join(spec.trucks)} - truck {' '.join(spec.packages)} - package)\n"
        f"(:init {' '.join(init)})\n"
        f"(:goal (and {' '.join(f'(at {q} {at})' for q, at in sorted(spec.goal.items()))})))\n"
    )


def _gripper_pddl(n: int) -> str:
    balls = [f"b{i}" for i in range(1, n + 1)]
    init = ["(room rooma)", "(room roomb)", "(gripper left)", "(gripper right)", "(at-robby rooma)"]
    init += ["(free left)", "(free right)"] + [f"(ball {b}) (at {b} rooma)" for b in balls]
    return (
        f"(define (problem gripper-{n}) (:domain gripper-strips)\n"
        f"(:objects rooma roomb left right {' '.join(balls)})\n"
        f"(:init {' '.join(init)})\n"
        f"(:goal (and {' '.join(f'(at {b} roomb)' for b in balls)})))\n"
    )


def _blocks_towers(n: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    # The same draws as domains.random_blocksworld.
    rng = random.Random(seed)
    blocks = [f"x{i}" for i in range(1, n + 1)]
    return random_towers(blocks, rng), random_towers(blocks, rng)


def _blocks_pddl(n: int, seed: int) -> str:
    initial, goal = _blocks_towers(n, seed)
    init = ["(handempty)"]
    for block, below in sorted(_on(initial).items()):
        init.append("(ontable " + block + ")" if below == "table" else f"(on {block} {below})")
    init += [f"(clear {tower[-1]})" for tower in initial]
    goals = [f"(on {b} {below})" if below != "table" else f"(ontable {b})" for b, below in sorted(_on(goal).items())]
    return (
        f"(define (problem blocks-{n}-{seed}) (:domain BLOCKS)\n"
        f"(:objects {' '.join(sorted(_on(initial)))} - block)\n"
        f"(:init {' '.join(init)})\n"
        f"(:goal (and {' '.join(goals)})))\n"
    )


def tasks(quick: bool) -> list[StripsTask]:
    """Return the bench's tasks, small to medium (``quick``: the smaller ones)."""
    out: list[StripsTask] = []
    for n in range(4, 7 if quick else 9):
        out.append(StripsTask("gripper", f"gripper-{n}", lambda n=n: gripper(n), lambda n=n: _gripper_pddl(n)))
    for n, seed in [(6, 0), (7, 1), (8, 2)] if quick else [(6, 0), (7, 1), (8, 2), (9, 3), (10, 4)]:
        out.append(
            StripsTask(
                "blocks",
                f"blocks-{n}-{seed}",
                lambda n=n, s=seed: blocksworld(*_blocks_towers(n, s)),
                lambda n=n, s=seed: _blocks_pddl(n, s),
            )
        )
    for n, seed in (
        [(4, 0), (5, 0), (6, 0)] if quick else [(4, 0), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0), (10, 0), (11, 0)]
    ):
        out.append(
            StripsTask(
                "miconic",
                f"miconic-{n}-{seed}",
                lambda n=n, s=seed: miconic(n, s),
                lambda n=n, s=seed: _miconic_pddl(n, s),
            )
        )
    for n, seed in [(3, 0), (4, 0)] if quick else [(3, 0), (4, 0), (5, 1), (6, 1)]:
        out.append(
            StripsTask(
                "logistics",
                f"logistics-{n}-{seed}",
                lambda n=n, s=seed: logistics(n, s),
                lambda n=n, s=seed: _logistics_pddl(n, s, 2, 2),
            )
        )
    return out


def write_all(quick: bool) -> list[tuple[StripsTask, Path, Path]]:
    """Write every task's problem file next to its domain file; return (task, domain file, problem file)."""
    written = []
    for task in tasks(quick):
        problem = PDDL / task.domain / f"{task.name}.pddl"
        text = task.pddl()
        if not problem.exists() or problem.read_text() != text:
            problem.write_text(text)
        written.append((task, PDDL / task.domain / "domain.pddl", problem))
    return written
