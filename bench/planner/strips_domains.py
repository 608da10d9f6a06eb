"""IPC STRIPS domains (miconic, logistics) built through the public API, from seeded random instances.

Like ``domains.py`` (gripper, blocksworld), each is the IPC domain with its
boolean facts folded into multi-valued paths the way a goalrt user would
write it: a package's ``at`` is a location or a vehicle, not a set of
``at``/``in`` facts; a static relation (``above``, ``in-city``) is a
comparison of object names or a static path, decided when grounding.
``pyperplan_compare.py`` writes the same instances as PDDL.

- ``miconic(passengers, seed)``: an elevator serves passengers between 2n floors.
- ``logistics(packages, seed, cities=2, size=2, airplanes=1)``: trucks within a city, airplanes between airports.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from goalrt.planner import ActionSchema, And, Eq, ObjectType, Problem, Set, Var, cond
from goalrt.planner.values import Scalar


@dataclass(frozen=True)
class Miconic:
    """A miconic instance: floors ``f00``..; each passenger's origin and destination floor."""

    floors: tuple[str, ...]
    origin: dict[str, str]
    destin: dict[str, str]
    lift: str


def miconic_instance(passengers: int, seed: int) -> Miconic:
    """Return a random miconic instance with ``passengers`` passengers and twice as many floors (as in IPC 2000)."""
    rng = random.Random(seed)
    floors = tuple(f"f{i:02d}" for i in range(2 * passengers))
    origin: dict[str, str] = {}
    destin: dict[str, str] = {}
    for i in range(passengers):
        a, b = rng.sample(floors, 2)
        origin[f"p{i}"], destin[f"p{i}"] = a, b
    return Miconic(floors, origin, destin, floors[0])


def miconic(passengers: int, seed: int) -> Problem:
    """Return the miconic (STRIPS) task of ``miconic_instance(passengers, seed)``."""
    spec = miconic_instance(passengers, seed)
    state: dict[str, Scalar] = {"lift.at": spec.lift}
    for p in spec.origin:
        state[f"passengers.{p}.origin"] = spec.origin[p]
        state[f"passengers.{p}.destin"] = spec.destin[p]
        state[f"passengers.{p}.boarded"] = False
        state[f"passengers.{p}.served"] = False
    return Problem(
        types=[ObjectType("Passenger", "passengers"), ObjectType("Floor")],
        objects={"Floor": list(spec.floors)},
        state=state,
        actions=[
            ActionSchema(
                "board",
                {"f": "Floor", "p": "Passenger"},
                cond("lift.at == {f} and passengers.{p}.origin == {f}"),
                [Set("passengers.{p}.boarded", True)],
            ),
            ActionSchema(
                "depart",
                {"f": "Floor", "p": "Passenger"},
                cond("lift.at == {f} and passengers.{p}.destin == {f} and passengers.{p}.boarded == true"),
                [Set("passengers.{p}.boarded", False), Set("passengers.{p}.served", True)],
            ),
            # above(f1, f2) holds when f2 is higher: the zero-padded names order the floors.
            ActionSchema(
                "up", {"a": "Floor", "b": "Floor"}, cond("lift.at == {a} and {a} < {b}"), [Set("lift.at", Var("b"))]
            ),
            ActionSchema(
                "down", {"a": "Floor", "b": "Floor"}, cond("lift.at == {a} and {b} < {a}"), [Set("lift.at", Var("b"))]
            ),
        ],
        goal=And(*(Eq(f"passengers.{p}.served", True) for p in spec.origin)),
    )


@dataclass(frozen=True)
class Logistics:
    """A logistics instance: cities of locations (the first of each an airport), vehicles, packages."""

    city_of: dict[str, str]  # location -> city
    airports: tuple[str, ...]
    trucks: dict[str, str]  # truck -> location (one per city)
    airplanes: dict[str, str]  # airplane -> airport
    packages: dict[str, str]  # package -> location
    goal: dict[str, str]  # package -> location


def logistics_instance(packages: int, seed: int, cities: int = 2, size: int = 2, airplanes: int = 1) -> Logistics:
    """Return a random logistics instance: ``cities`` cities of ``size`` locations, one truck each."""
    rng = random.Random(seed)
    city_of = {f"c{c}l{i}": f"c{c}" for c in range(cities) for i in range(size)}
    locations = sorted(city_of)
    airports = tuple(f"c{c}l0" for c in range(cities))
    trucks = {f"t{c}": rng.choice([loc for loc in locations if city_of[loc] == f"c{c}"]) for c in range(cities)}
    planes = {f"a{i}": rng.choice(airports) for i in range(airplanes)}
    start = {f"q{i}": rng.choice(locations) for i in range(packages)}
    goal = {q: rng.choice([loc for loc in locations if loc != at]) for q, at in start.items()}
    return Logistics(city_of, airports, trucks, planes, start, goal)


def logistics(packages: int, seed: int, cities: int = 2, size: int = 2, airplanes: int = 1) -> Problem:
    """Return the logistics (STRIPS) task of ``logistics_instance(...)`` with the same arguments."""
    spec = logistics_instance(packages, seed, cities, size, airplanes)
    state: dict[str, Scalar] = {}
    for loc, city in spec.city_of.items():
        state[f"locations.{loc}.city"] = city
        state[f"locations.{loc}.airport"] = loc in spec.airports
    state.update({f"trucks.{t}.at": at for t, at in spec.trucks.items()})
    state.update({f"airplanes.{a}.at": at for a, at in spec.airplanes.items()})
    state.update({f"packages.{q}.at": at for q, at in spec.packages.items()})
    return Problem(
        types=[
            ObjectType("Location", "locations"),
            ObjectType("City"),
            ObjectType("Truck", "trucks"),
            ObjectType("Airplane", "airplanes"),
            ObjectType("Package", "packages"),
        ],
        objects={"City": sorted(set(spec.city_of.values()))},
        state=state,
        actions=[
            ActionSchema(
                "load_truck",
                {"p": "Package", "t": "Truck", "l": "Location"},
                cond("trucks.{t}.at == {l} and packages.{p}.at == {l}"),
                [Set("packages.{p}.at", Var("t"))],
            ),
            ActionSchema(
                "load_airplane",
                {"p": "Package", "a": "Airplane", "l": "Location"},
                cond("airplanes.{a}.at == {l} and packages.{p}.at == {l}"),
                [Set("packages.{p}.at", Var("a"))],
            ),
            ActionSchema(
                "unload_truck",
                {"p": "Package", "t": "Truck", "l": "Location"},
                cond("trucks.{t}.at == {l} and packages.{p}.at == {t}"),
                [Set("packages.{p}.at", Var("l"))],
            ),
            ActionSchema(
                "unload_airplane",
                {"p": "Package", "a": "Airplane", "l": "Location"},
                cond("airplanes.{a}.at == {l} and packages.{p}.at == {a}"),
                [Set("packages.{p}.at", Var("l"))],
            ),
            ActionSchema(
                "drive_truck",
                {"t": "Truck", "a": "Location", "b": "Location", "c": "City"},
                cond("trucks.{t}.at == {a} and locations.{a}.city == {c} and locations.{b}.city == {c}"),
                [Set("trucks.{t}.at", Var("b"))],
            ),
            ActionSchema(
                "fly_airplane",
                {"a": "Airplane", "x": "Location", "y": "Location"},
                cond("airplanes.{a}.at == {x} and locations.{y}.airport == true"),
                [Set("airplanes.{a}.at", Var("y"))],
            ),
        ],
        goal=And(*(Eq(f"packages.{q}.at", at) for q, at in sorted(spec.goal.items()))),
    )
