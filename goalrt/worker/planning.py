"""Where the worker decides a goal's plan: the first one, before each step, and after a failure.

The pure search is ``goalrt.planner``; turning the registry and the state
into its problems and its plans into steps is ``goalrt.worker.planner_bridge``.
This module decides, with the database's state and the goal's plan history:

- **A goal type that lists its steps** (``@goalrt.goal``): its function gives
  them; a step naming an action this worker lacks fails the goal.
- **First plan** (a goal declared by a condition): read the state, plan
  from it (in a thread: the search is CPU work), and send the steps with what ``goal.planned`` records (cost,
  ground actions, the versions of the paths the plan reads). No plan: the
  goal fails with the planner's explanation.
- **Before each step**: read the state again. The goal's condition already
  holds: the goal completes at once (an empty plan, reason ``achieved``).
  The plan was made with another GDL version than the worker's: re-plan
  under the worker's (reason ``definitions``; not one of ``max_replans``).
  The step's precondition no longer holds: re-plan from the current state
  (reason ``drift``).
- **A step that failed for good**: its ground action is excluded and the
  goal re-planned (``step_failed``), at most ``max_replans`` times; then, or
  when no other plan exists, the goal fails with the reason of each attempt.

Each read is one statement over the paths these decisions can depend on
(``goalrt.worker.state_reads``), never the whole state. Before a step it is
first only the goal's paths and the step's; when they call for a re-plan,
the decision is made again from one read of everything the planner needs, so
each decision is the one a read of the whole state at that moment gives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from goalrt.db.connect import dumps
from goalrt.db.resources import queries
from goalrt.errors import GoalrtError
from goalrt.goals.conditions import Achieve
from goalrt.goals.registry import GoalType, Registry
from goalrt.planner import NoPlan, Plan
from goalrt.worker.dispatcher import StepRun
from goalrt.worker.planner_bridge import (
    RECHECK,
    goal_holds,
    ground_op_name,
    make_plan,
    plan_detail,
    plan_steps,
    precondition_holds,
    scalar_state,
    watch_steps,
)
from goalrt.worker.protocol import PlanItem, PlanReason
from goalrt.worker.state_reads import Reads, domain_reads, goal_paths, step_paths

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("goalrt.planning")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state as the planner sees it (scalar values) and each path's version."""

    values: dict[str, Any]
    versions: dict[str, int]


@dataclass(frozen=True, slots=True)
class Decision:
    """A plan to store (its steps, maybe none), or fail the goal with ``error``.

    ``reason`` is None for a goal type that lists its steps (nothing recorded beside them).
    """

    steps: list[dict[str, Any]] | None
    detail: dict[str, Any] | None
    reason: PlanReason | None
    error: str | None = None

    def item(self, goal_id: int, epoch: int, *, replan: bool = False) -> PlanItem:
        """Return the plan as ``plan_goals_v1`` takes it."""
        return PlanItem(goal_id, epoch, self.steps or [], self.reason, self.detail, replan)


class Planning:
    """Plans and re-plans goals declared by a condition, for one worker."""

    def __init__(
        self, pool: asyncpg.Pool, registry: Registry, executor: Executor, schema: str, gdl_version: int | None = None
    ) -> None:
        self._pool = pool
        # Recorded in every plan's detail: the GDL definitions it was made with.
        self._gdl_version = gdl_version
        self._registry = registry
        self._executor = executor
        self._schema = schema
        self._q = queries("goals", schema)
        self._read_paths = queries("state", schema)["state_read_paths"]
        # Per goal type (its Achieve): the reads that depend on the registry only.
        self._domains: dict[int, tuple[Achieve, Reads]] = {}

    @property
    def registry(self) -> Registry:
        """Return the registry this planning plans (and its goal's steps run) with."""
        return self._registry

    @property
    def gdl_version(self) -> int | None:
        """Return the GDL version this planning's registry was built from (None: no definitions loaded)."""
        return self._gdl_version

    def achieve_of(self, goal_name: str) -> Achieve | None:
        """Return how a goal type is planned from its condition (None: it lists its steps, or is unknown)."""
        goal_type = self._registry.goal_types.get(goal_name)
        return None if goal_type is None else goal_type.achieve

    async def initial(self, goal_name: str, params: Any) -> Decision:
        """Return a newly claimed goal's first plan, or why it has none (never raises for the goal's own faults)."""
        goal_type = self._registry.goal_types.get(goal_name)
        if goal_type is None:
            return _failed(f"unknown goal type {goal_name!r} in this worker")
        try:
            if goal_type.achieve is not None:
                goal_type.validate(params)
                return await self.first(goal_type.achieve, params or {})
            return self._listed(goal_type, params)
        except GoalrtError as exc:
            return _failed(str(exc))
        except Exception as exc:  # a bug in the planner or the goal type's own code: fail the goal, do not loop on it
            return _failed(f"planning goal {goal_name} failed: {type(exc).__name__}: {exc}")

    def _listed(self, goal_type: GoalType, params: Any) -> Decision:
        """Return the steps a goal type's function lists for ``params``."""
        planned = goal_type.plan(params)
        steps = self._with_attempts([step.as_json() for step in planned])
        dumps(steps)
        unknown = [a for step in planned for a in step.actions() if a not in self._registry.actions]
        if unknown:
            known = ", ".join(sorted(self._registry.actions)) or "none"
            return _failed(f"step uses unknown action {unknown[0]!r} (this worker has: {known})")
        return Decision(steps, None, None)

    async def snapshot(self, reads: Reads) -> Snapshot:
        """Return the paths ``reads`` names as they are now, in one statement (one snapshot of the state)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._read_paths, *reads.arguments())
        return Snapshot(scalar_state((r[0], r[1]) for r in rows), {r[0]: int(r[2]) for r in rows})

    def _domain(self, achieve: Achieve) -> Reads:
        """Return what planning ``achieve`` reads whatever its params (computed once per goal type)."""
        known = self._domains.get(id(achieve))
        if known is None or known[0] is not achieve:
            known = self._domains[id(achieve)] = (achieve, domain_reads(achieve, self._registry))
        return known[1]

    def _plan_reads(self, achieve: Achieve, params: Mapping[str, Any], run: StepRun | None = None) -> Reads:
        """Return what deciding a plan reads: the planner's paths, the goal's, and those of ``run``'s precondition."""
        reads = self._domain(achieve).with_paths(goal_paths(achieve, params))
        return reads if run is None else reads.with_paths(step_paths(self._registry, run.action, run.args or {}))

    async def _plan(
        self, achieve: Achieve, params: Mapping[str, Any], snap: Snapshot, exclude: list[str]
    ) -> Plan | NoPlan:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, make_plan, achieve, self._registry, params, snap.values, exclude
        )

    async def _history(self, goal_id: int) -> tuple[int, list[dict[str, Any]]]:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._q["goal_plan_history"], goal_id)
        assert row is not None
        return int(row[0]), list(row[1] or [])

    def _excluded(self, failed: list[dict[str, Any]]) -> list[str]:
        names = []
        for step in failed:
            action = self._registry.actions.get(step["action"])
            if action is not None and action.schema is not None:
                names.append(ground_op_name(action.schema, step["args"] or {}))
        return sorted(set(names))

    def _with_attempts(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return ``steps`` with each action step's ``max_attempts`` (its retry policy), also in ``on_timeout``.

        The database keeps it with the step: a claim that finds the step
        interrupted (its worker died running it) that many times fails the goal.
        """
        out = []
        for step in steps:
            step = dict(step)
            action = self._registry.actions.get(step.get("action", ""))
            if step.get("kind", "action") == "action" and action is not None:
                step["max_attempts"] = action.retry.max_attempts
            args = step.get("args")
            if isinstance(args, dict) and isinstance(args.get("on_timeout"), list):
                step["args"] = {**args, "on_timeout": self._with_attempts(args["on_timeout"])}
            out.append(step)
        return out

    def _stamp(self, detail: dict[str, Any]) -> None:
        if self._gdl_version is not None:
            detail["gdl_version"] = self._gdl_version

    async def first(self, achieve: Achieve, params: Mapping[str, Any]) -> Decision:
        """Return the goal's first plan, or the reason there is none."""
        snap = await self.snapshot(self._plan_reads(achieve, params))
        result = await self._plan(achieve, params, snap, [])
        if isinstance(result, NoPlan):
            return Decision(None, None, PlanReason.NO_PLAN, f"no plan: {result.explain()}")
        detail = plan_detail(result, achieve, params, snap.versions, PlanReason.INITIAL)
        self._stamp(detail)
        return Decision(self._with_attempts(plan_steps(result, achieve, params)), detail, PlanReason.INITIAL)

    async def before(self, achieve: Achieve, run: StepRun, plan_version: int | None) -> Decision | None:
        """Return a new plan when the step should not run as planned, else None.

        It should not when the goal is reached, when its plan was made with
        GDL version ``plan_version`` and this planning has another, or when
        the state drifted from what the step needs.
        """
        params = run.params or {}
        if run.action != RECHECK and plan_version == self._gdl_version:
            # Most steps run as planned, and whether this one does depends on the goal's paths and the
            # step's own alone: read only those. Only a re-plan needs what the planner reads.
            snap = await self.snapshot(Reads().with_paths(self._step_reads(achieve, run)))
            if goal_holds(achieve, params, snap.values):
                return _achieved(achieve, params)
            if self._step_holds(run, snap):
                return None
        # A re-plan is due (or was, a moment ago): decide again on one read of all the planner needs.
        snap = await self.snapshot(self._plan_reads(achieve, params, run))
        if run.action == RECHECK:
            # A maintained goal's watch saw a change: act again if the condition broke.
            why = "a path the condition reads changed"
            return await self._replan(achieve, run, snap, PlanReason.RECHECK, why, [], True)
        if goal_holds(achieve, params, snap.values):
            return _achieved(achieve, params)
        if plan_version != self._gdl_version:
            # The rest of the plan was made with other actions (other effects,
            # maybe gone): it proves nothing under these definitions.
            why = f"GDL version {self._gdl_version} replaced version {plan_version} of the plan"
            return await self._replan(achieve, run, snap, PlanReason.DEFINITIONS, why, [], counted=False)
        if self._step_holds(run, snap):
            return None
        action = self._registry.actions[run.action]
        assert action.schema is not None
        why = f"the precondition of {ground_op_name(action.schema, run.args or {})} no longer holds"
        return await self._replan(achieve, run, snap, PlanReason.DRIFT, why, [])

    def _step_reads(self, achieve: Achieve, run: StepRun) -> set[str]:
        """Return the paths of the goal's condition and of the step's precondition."""
        return goal_paths(achieve, run.params or {}) | step_paths(self._registry, run.action, run.args or {})

    def _step_holds(self, run: StepRun, snap: Snapshot) -> bool:
        """Return whether the step may run as planned in ``snap``: its precondition holds (or it has none)."""
        action = self._registry.actions.get(run.action)
        return action is None or action.schema is None or precondition_holds(action.schema, run.args or {}, snap.values)

    async def after_failure(self, achieve: Achieve, run: StepRun, error: str) -> Decision:
        """Return a plan around a step that failed for good, or the goal's final error."""
        action = self._registry.actions.get(run.action)
        failed_now = []
        if action is not None and action.schema is not None:
            failed_now = [ground_op_name(action.schema, run.args or {})]
        why = f"{failed_now[0] if failed_now else run.action} failed: {error}"
        snap = await self.snapshot(self._plan_reads(achieve, run.params or {}))
        return await self._replan(achieve, run, snap, PlanReason.STEP_FAILED, why, failed_now)

    async def _replan(
        self,
        achieve: Achieve,
        run: StepRun,
        snap: Snapshot,
        reason: PlanReason,
        why: str,
        failed_now: list[str],
        fresh: bool = False,
        counted: bool = True,
    ) -> Decision:
        """Return a new plan from ``snap``.

        ``fresh`` (a maintained goal's recheck) starts a new round of
        re-plans; a re-plan not ``counted`` (new definitions) is made
        whatever the goal's ``max_replans``, and is not one of them.
        """
        plans, failed = await self._history(run.goal_id)
        exclude = [] if fresh else sorted(set(self._excluded(failed)) | set(failed_now))
        reasons = [f"{s['action']} failed: {s['error']}" for s in failed] + [why]
        if counted and not fresh and plans >= 1 + achieve.max_replans and not achieve.maintain:
            return Decision(None, None, reason, f"gave up after {plans} plans: " + "; ".join(reasons))
        result = await self._plan(achieve, run.params or {}, snap, exclude)
        if isinstance(result, NoPlan):
            return Decision(None, None, reason, f"no plan after {why}: {result.explain()}")
        detail = plan_detail(result, achieve, run.params or {}, snap.versions, reason)
        detail["why"] = why
        detail["excluded"] = exclude
        self._stamp(detail)
        return Decision(self._with_attempts(plan_steps(result, achieve, run.params or {})), detail, reason)


def _achieved(achieve: Achieve, params: Mapping[str, Any]) -> Decision:
    """Return the plan of a goal whose condition holds: none, or a maintained goal's watch."""
    why = "the goal's condition already holds"
    steps = watch_steps(achieve, params) if achieve.maintain else []
    return Decision(steps, {"reason": PlanReason.ACHIEVED.value, "why": why}, PlanReason.ACHIEVED)


def _failed(error: str) -> Decision:
    return Decision(None, None, None, error)


__all__ = ["Decision", "Planning", "Snapshot"]
