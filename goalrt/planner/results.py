"""What ``plan`` returns: a ``Plan`` (steps, cost, search figures) or a ``NoPlan`` saying why not."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from goalrt.errors import PlanningError
from goalrt.planner.operators import GroundOp

REASONS: Final = ("goal_unreachable", "budget_exhausted", "no_actions")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _timing(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass(frozen=True, slots=True)
class Plan:
    """A minimum-cost sequence of ground actions reaching the goal, and what finding it took."""

    steps: tuple[GroundOp, ...]
    cost: float
    goal: str
    expanded: int
    generated: int
    seconds: float
    # How many ground actions the search could use (after grounding, exclusions and static pruning).
    ground_actions: int = 0

    @property
    def length(self) -> int:
        """Return the number of steps."""
        return len(self.steps)

    def explain(self) -> str:
        """Return a human-readable account: the steps with what each one changes, and the search figures."""
        figures = (
            f"{self.expanded} expanded, {self.generated} generated, {self.ground_actions} ground actions, "
            f"{_timing(self.seconds)}"
        )
        if not self.steps:
            return f"plan: the goal already holds ({self.goal}); {figures}"
        lines = [f"plan: {self.length} steps, cost {_number(self.cost)} (minimum), goal {self.goal}; {figures}"]
        total = 0.0
        width = max(len(op.name) for op in self.steps)
        for number, op in enumerate(self.steps, 1):
            total += op.cost
            changes = ", ".join(str(e) for e in op.effects) or "no change"
            lines.append(
                f"  {number:>2}. {op.name:<{width}}  cost {_number(op.cost)}, total {_number(total)}: {changes}"
            )
        return "\n".join(lines)

    def to_json(self, *, timing: bool = True) -> dict[str, Any]:
        """Return the plan as JSON; ``timing=False`` leaves out ``seconds`` (the only field that varies by run)."""
        out: dict[str, Any] = {
            "steps": [op.to_json() for op in self.steps],
            "cost": self.cost,
            "length": self.length,
            "goal": self.goal,
            "expanded": self.expanded,
            "generated": self.generated,
            "ground_actions": self.ground_actions,
        }
        if timing:
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_json(cls, data: Any) -> Plan:
        """Return the plan a JSON object stands for."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise PlanningError(f"a plan is an object with a list of steps, got {data!r}")
        try:
            return cls(
                steps=tuple(GroundOp.from_json(s) for s in data["steps"]),
                cost=float(data["cost"]),
                goal=str(data["goal"]),
                expanded=int(data["expanded"]),
                generated=int(data["generated"]),
                seconds=float(data.get("seconds", 0.0)),
                ground_actions=int(data.get("ground_actions", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, PlanningError):
                raise
            raise PlanningError(f"malformed plan: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Blocked:
    """A ground action that would make a needed condition true, and its preconditions that cannot be met."""

    op: str
    achieves: str
    missing: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the entry as JSON."""
        return {"op": self.op, "achieves": self.achieves, "missing": list(self.missing)}


@dataclass(frozen=True, slots=True)
class NoPlan:
    """No plan was found; ``reason`` is one of REASONS and the other fields say why.

    ``unreachable``: goal conditions no sequence of actions can make true even
    ignoring every other condition (relaxed reachability). ``blocked``: actions
    that would make one of them true, with the preconditions that stop them.
    ``causes``: the roots of it (a condition nothing can make true, an action
    with no ground instance). ``excluded``: excluded ground actions that would
    have made a needed condition true. ``bound``: with ``budget_exhausted``, a
    lower bound on the cost of any plan (the least f on the open list).
    """

    reason: str
    message: str
    bound: float | None = None
    unreachable: tuple[str, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    causes: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    expanded: int = 0
    generated: int = 0
    seconds: float = 0.0
    ground_actions: int = 0

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise PlanningError(f"unknown no-plan reason {self.reason!r}: use one of {', '.join(REASONS)}")
        if self.bound is not None and not math.isfinite(self.bound):
            raise PlanningError(f"a bound must be finite, got {self.bound!r}")

    def explain(self) -> str:
        """Return a human-readable account of why there is no plan."""
        lines = [f"no plan ({self.reason}): {self.message}"]
        if self.unreachable:
            lines.append("goal conditions no sequence of actions can make true:")
            lines.extend(f"  - {c}" for c in self.unreachable)
        if self.blocked:
            lines.append("actions that would make a needed condition true, and what stops them:")
            for b in self.blocked:
                lines.append(f"  - {b.op} would make {b.achieves} true but needs {' and '.join(b.missing)}")
        if self.causes:
            lines.append("because:")
            lines.extend(f"  - {c}" for c in self.causes)
        if self.excluded:
            lines.append(f"excluded actions that would help: {', '.join(self.excluded)}")
        lines.append(
            f"search: {self.expanded} expanded, {self.generated} generated, {self.ground_actions} ground actions, "
            f"{_timing(self.seconds)}"
        )
        return "\n".join(lines)

    def to_json(self, *, timing: bool = True) -> dict[str, Any]:
        """Return the outcome as JSON; ``timing=False`` leaves out ``seconds``."""
        out: dict[str, Any] = {
            "reason": self.reason,
            "message": self.message,
            "bound": self.bound,
            "unreachable": list(self.unreachable),
            "blocked": [b.to_json() for b in self.blocked],
            "causes": list(self.causes),
            "excluded": list(self.excluded),
            "expanded": self.expanded,
            "generated": self.generated,
            "ground_actions": self.ground_actions,
        }
        if timing:
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_json(cls, data: Any) -> NoPlan:
        """Return the outcome a JSON object stands for."""
        if not isinstance(data, dict) or "reason" not in data:
            raise PlanningError(f"a no-plan outcome is an object with a reason, got {data!r}")
        try:
            return cls(
                reason=str(data["reason"]),
                message=str(data.get("message", "")),
                bound=None if data.get("bound") is None else float(data["bound"]),
                unreachable=tuple(str(c) for c in data.get("unreachable", [])),
                blocked=tuple(
                    Blocked(str(b["op"]), str(b["achieves"]), tuple(str(m) for m in b["missing"]))
                    for b in data.get("blocked", [])
                ),
                causes=tuple(str(c) for c in data.get("causes", [])),
                excluded=tuple(str(c) for c in data.get("excluded", [])),
                expanded=int(data.get("expanded", 0)),
                generated=int(data.get("generated", 0)),
                seconds=float(data.get("seconds", 0.0)),
                ground_actions=int(data.get("ground_actions", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, PlanningError):
                raise
            raise PlanningError(f"malformed no-plan outcome: {exc!r}") from None
