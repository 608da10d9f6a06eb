"""The operator endpoints: limits (set and drop need goalrt_admin), workers, GDL status, plan (a dry run)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from goalrt.errors import ConfigError, InvalidGoalError
from goalrt.serve.context import CallerDep, GoalrtRoute, JsonOut, NotFoundError

router = APIRouter(route_class=GoalrtRoute)

FORK = Query(None, description="Act on this fork instead of the main line.")


class Limits(BaseModel):
    limits: list[dict[str, Any]]


class Workers(BaseModel):
    workers: list[dict[str, Any]]


class LimitRequest(BaseModel):
    """A limit on an action, as `goalrt limits set` takes it."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1, description="At most this many running at once.")
    rate: int | None = Field(None, ge=1, description="At most this many starts per `per` seconds.")
    per: float | None = Field(None, gt=0, description="The rate's interval (s).")
    burst: int | None = Field(None, ge=1, description="The token bucket's size (default rate).")
    key: str | None = Field(None, description="A separate limit for each value of this argument.")


class PlanRequest(BaseModel):
    """A goal to plan without running anything, as `goalrt plan NAME --params ... [--at ...]`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    at: str | None = Field(None, description="Plan from the state as it was here (a position or time).")


@router.get("/limits", response_model=Limits, tags=["limits"])
async def list_limits(caller: CallerDep, fork: str | None = FORK) -> Response:
    """List the limits, with how many steps hold a slot and how many goals are parked on each."""
    async with caller.goals(fork) as goals:
        rows = await goals.limits()
    return JsonOut({"limits": [r.to_json() for r in rows]})


@router.put("/limits/{action}", response_model=dict[str, Any], tags=["limits"])
async def set_limit(action: str, body: LimitRequest, caller: CallerDep, fork: str | None = FORK) -> Response:
    """Set a limit on an action, enforced across every worker (goalrt_admin only: 403 otherwise)."""
    async with caller.goals(fork) as goals:
        limit = await goals.set_limit(action, **body.model_dump())
    return JsonOut(limit.to_json())


@router.delete("/limits/{action}", response_model=dict[str, Any], tags=["limits"])
async def drop_limit(
    action: str,
    caller: CallerDep,
    key: str | None = Query(None, description="The per-argument limit to drop."),
    fork: str | None = FORK,
) -> Response:
    """Remove a limit (goalrt_admin only); 404 if there is none."""
    async with caller.goals(fork) as goals:
        dropped = await goals.drop_limit(action, key)
    if not dropped:
        raise NotFoundError(f"no limit on {action}" + (f" per {key}" if key else ""))
    return JsonOut({"action": action, "key": key, "dropped": True})


@router.get("/workers", response_model=Workers, tags=["workers"])
async def list_workers(caller: CallerDep, fork: str | None = FORK) -> Response:
    """List registered worker processes and when each was last seen."""
    async with caller.goals(fork) as goals:
        rows = await goals.workers()
    return JsonOut({"workers": rows})


@router.get("/gdl", response_model=dict[str, Any], tags=["gdl"])
async def gdl_status(caller: CallerDep, fork: str | None = FORK) -> Response:
    """Return the GDL version loaded in the database (the one workers plan with) and its definitions."""
    from goalrt.db import schemas
    from goalrt.db.connect import connect
    from goalrt.gdl.runtime import current

    def run() -> dict[str, Any]:
        with connect(caller.url) as conn:
            defs = current(conn, schemas.schema_for(conn, fork))
        if defs is None:
            raise NotFoundError("no GDL definitions loaded: run `goalrt gdl load [PATH]`")
        return {
            "workspace": defs.workspace,
            "version": defs.version,
            "content_hash": defs.content_hash,
            "definitions": defs.body,
        }

    return JsonOut(await run_in_threadpool(run))


@router.post("/plan", response_model=dict[str, Any], tags=["goals"])
async def plan(body: PlanRequest, caller: CallerDep, fork: str | None = FORK) -> Response:
    """Plan a goal declared by a condition from the current or a past state; run nothing.

    The goal types are those of the server's ``--handlers``. The answer says
    ``found``; without a plan it holds why.
    """
    from goalrt.goals.registry import default_registry
    from goalrt.planner import NoPlan
    from goalrt.worker.planner_bridge import make_plan, scalar_state

    registry = caller.server.registry or default_registry
    goal_type = registry.goal_types.get(body.name)
    if goal_type is None:
        known = ", ".join(sorted(registry.goal_types)) or "none (start the server with --handlers MODULE)"
        raise InvalidGoalError(f"unknown goal type {body.name!r}: known: {known}")
    if goal_type.achieve is None:
        raise ConfigError(f"goal {body.name} lists its steps; only a goal declared by a condition is planned")
    params = goal_type.normalized(body.params)
    async with caller.state(fork) as state:
        entries = await state.list(at=body.at)
    achieve = goal_type.achieve

    def run() -> Any:
        return make_plan(achieve, registry, params, scalar_state((e.path, e.value) for e in entries))

    result = await run_in_threadpool(run)
    return JsonOut({"name": body.name, "params": params, "found": not isinstance(result, NoPlan), **result.to_json()})
