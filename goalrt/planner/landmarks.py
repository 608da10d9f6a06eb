"""Action landmarks of the initial state from LM-cut, and the path-dependent heuristic they give.

LM-cut (``goalrt.planner.lmcut``) finds disjunctive action landmarks: sets of
operators one of which every plan must use, with costs that partition the
operators' costs. Here they are computed once, for the initial state. A
search node reached by a path that has not used any operator of a landmark
still needs one: every plan through that path must hit it later. So a node's
heuristic is the sum of the costs of the landmarks some known path to it has
not hit (the union over paths: a landmark missed by any path to a state is a
landmark of the state). That keeps the per-node cost to a bit mask operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from goalrt.planner.lmcut import CutGraph, round_down
from goalrt.planner.task import State


@dataclass(frozen=True, eq=False)
class Landmarks:
    """Disjunctive action landmarks (sets of operator indices) with their partitioned costs."""

    costs: tuple[int, ...]  # per landmark, in units of 1/denominator
    denominator: int
    ops: tuple[tuple[int, ...], ...]  # per landmark: the operators that hit it
    keep: tuple[int, ...]  # per operator: mask of the landmarks it does not hit
    full: int  # mask of every landmark
    _values: dict[int, float] = field(default_factory=dict)

    def value(self, mask: int) -> float:
        """Return the sum of the costs of the landmarks in ``mask``, rounded down to a float."""
        cached = self._values.get(mask)
        if cached is None:
            total = sum(cost for i, cost in enumerate(self.costs) if mask >> i & 1)
            cached = self._values[mask] = round_down(total, self.denominator)
        return cached


def lm_cut(cuts: CutGraph, state: State) -> Landmarks | None:
    """Return the LM-cut landmarks of ``state``, or None if the relaxation cannot reach the goal."""
    found: list[tuple[int, tuple[int, ...]]] = []
    if cuts.cut(state, found) is None:
        return None
    full = (1 << len(found)) - 1
    hits = [0] * cuts.count
    for i, (_, ops) in enumerate(found):
        for op in ops:
            hits[op] |= 1 << i
    return Landmarks(
        costs=tuple(m for m, _ in found),
        denominator=cuts.denominator,
        ops=tuple(ops for _, ops in found),
        keep=tuple(full & ~h for h in hits),
        full=full,
    )
