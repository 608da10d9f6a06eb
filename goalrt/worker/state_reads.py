"""Which paths of the state a planned goal reads: those its condition and its actions can read, for its params.

The worker reads the state before every step of a goal declared by a
condition, and to plan it; reading the whole state made each step cost as
much as everyone's state. What the decisions need is narrower:

- **the goal's condition**, bound with the goal's params: exact paths;
- **the step's precondition**, bound with the step's args: exact paths;
- **the planner** (a first plan, a re-plan): the paths of the preconditions
  and effects of the actions the goal plans with (``planned_actions``), whose
  ``{param}`` holes range over objects; and the objects themselves, the keys
  found under the ``keys_under`` prefixes of the types those actions take.

A path with holes is read as a range of the C-collated path index (its text
before the first hole) and a regular expression (a hole is one or more
characters of a segment); a ``keys_under`` prefix as the range of every path
beneath it. Planner conditions have no wildcards: ``cond()`` refuses ``*``.
The part that depends only on the registry (``domain_reads``) is computed
once per goal type and registry (``goalrt.worker.planning`` keeps it).

A path that does not exist is simply not returned, so it reads as absent,
exactly as in a read of the whole state; which paths exist changes nothing
about which paths are asked for. A condition that cannot be bound (an
unknown parameter) adds no path: its evaluation raises the same error
whatever the state holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from goalrt.errors import PlanningError
from goalrt.goals.conditions import Achieve
from goalrt.goals.registry import Registry
from goalrt.planner import And, Compare, Condition, Exists, In, Not, Or, Path
from goalrt.planner.conditions import bind
from goalrt.worker.planner_bridge import SCALARS, bound, planned_actions

_HOLE: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_-]*\}")
# Every byte a valid path holds ([A-Za-z0-9_:@-] and '.') sorts before '{': the end of a range from ''.
_PAST_EVERY_PATH: Final = "{"


@dataclass(frozen=True, slots=True)
class Reads:
    """Paths to read: exact ``paths``, and ``ranges`` ``[low, high)`` of paths matching a regex (None: all)."""

    paths: frozenset[str] = frozenset()
    ranges: tuple[tuple[str, str, str | None], ...] = ()

    def with_paths(self, paths: Iterable[str]) -> Reads:
        """Return these reads and the exact ``paths``."""
        return Reads(self.paths | frozenset(paths), self.ranges)

    def arguments(self) -> tuple[list[str], list[str], list[str], list[str | None]]:
        """Return the parameters of the ``state_read_paths`` query, less what a whole range already reads."""
        whole = [low for low, _, regex in self.ranges if regex is None]
        ranges = [r for r in self.ranges if r[2] is None or not _within(r[0], whole)]
        paths = sorted(p for p in self.paths if not _within(p, whole))
        return paths, [r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges]


def _within(text: str, lows: list[str]) -> bool:
    return any(text.startswith(low) for low in lows)


def _after(prefix: str) -> str:
    """Return the least string above every string that starts with ``prefix`` (in byte order)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else _PAST_EVERY_PATH


def _templates(condition: Condition) -> Iterator[str]:
    """Yield the path templates a condition reads (an ``in`` lists no paths: its options are values)."""
    if isinstance(condition, Compare):
        yield from (t.template for t in (condition.left, condition.right) if isinstance(t, Path))
    elif isinstance(condition, In):
        if isinstance(condition.left, Path):
            yield condition.left.template
    elif isinstance(condition, Exists):
        yield condition.path.template
    elif isinstance(condition, Not):
        yield from _templates(condition.arg)
    else:
        assert isinstance(condition, And | Or)
        for arg in condition.args:
            yield from _templates(arg)


def _condition_paths(condition: Condition, bindings: Mapping[str, Any]) -> set[str]:
    """Return the exact paths ``condition`` reads once bound (none if it cannot be bound)."""
    try:
        return set(_templates(bind(condition, bindings)))
    except PlanningError:
        return set()


def goal_paths(achieve: Achieve, params: Mapping[str, Any]) -> set[str]:
    """Return the paths the goal's condition reads with ``params`` (bound as ``goal_holds`` binds them)."""
    return _condition_paths(achieve.condition, {k: v for k, v in params.items() if isinstance(v, SCALARS)})


def step_paths(registry: Registry, action: str, args: Mapping[str, Any]) -> set[str]:
    """Return the paths a step's precondition reads (as ``precondition_holds`` binds it)."""
    known = registry.actions.get(action)
    if known is None or known.schema is None:
        return set()
    bindings = bound(known.schema, args)
    return set() if bindings is None else _condition_paths(known.schema.pre, bindings)


def domain_reads(achieve: Achieve, registry: Registry) -> Reads:
    """Return what planning the goal type reads beside its own condition, whatever its params."""
    actions = planned_actions(achieve, registry)
    templates: set[str] = set()
    for schema in actions:
        templates.update(_templates(schema.pre))
        templates.update(e.path.template for e in schema.effects)
    exact = {t for t in templates if "{" not in t}
    # A range per text before the first hole, with one regular expression for all its templates.
    patterns: dict[str, set[str]] = {}
    for template in templates - exact:
        low = template[: template.index("{")]
        segments = (_HOLE.sub("[^.]+", s) for s in template.split("."))
        patterns.setdefault(low, set()).add(r"\.".join(segments))
    ranges: list[tuple[str, str, str | None]] = [
        (low, _after(low), "^(?:" + "|".join(sorted(bodies)) + ")$") for low, bodies in patterns.items()
    ]
    # The planner draws objects of the types its actions take from the keys under their prefixes.
    used = {t for schema in actions for _, t in schema.params}
    parents = {t.name: t.parent for t in achieve.types}
    for object_type in achieve.types:
        # A subtype's objects are its parents' too (a cycle is refused where the planner's Problem is built).
        line: set[str] = set()
        name: str | None = object_type.name
        while name is not None and name not in line:
            line.add(name)
            name = parents.get(name)
        if line & used:
            ranges += [(prefix + ".", prefix + "/", None) for prefix in object_type.keys_under]
    return Reads(frozenset(exact), tuple(sorted(set(ranges), key=lambda r: (r[0], r[2] or ""))))


__all__ = ["Reads", "domain_reads", "goal_paths", "step_paths"]
