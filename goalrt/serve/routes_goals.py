"""The goal endpoints: submit (one or a batch), list, get, wait, tree, cancel, resume, retry; as the CLI's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from goalrt import tracing
from goalrt.durations import parse_duration
from goalrt.errors import InvalidGoalError
from goalrt.goals.model import submit_options
from goalrt.goals.status import GoalStatus
from goalrt.serve.context import CallerDep, GoalrtRoute, JsonOut

router = APIRouter(route_class=GoalrtRoute, tags=["goals"])

FORK = Query(None, description="Act on this fork instead of the main line.")
TRACEPARENT = Header(
    None, description="A W3C traceparent: the workers' spans for the goal(s) continue the caller's trace."
)


def traceparent_of(header: str | None) -> str | None:
    """Return the ``traceparent`` request header checked (a malformed one is a 400 naming it)."""
    if header is None:
        return None
    problem = tracing.traceparent_problem(header, "the traceparent header")
    if problem is not None:
        raise InvalidGoalError(problem)
    return header


class SubmitRequest(BaseModel):
    """A goal to submit, with the options of `goalrt submit`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The goal type.")
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(None, description="Higher runs first (default 0).")
    at: datetime | None = Field(None, description="Not before this time (no zone means UTC).")
    delay: float | str | None = Field(None, description="Not before this long from now: seconds, or e.g. '30s'.")
    key: str | None = Field(None, description="Idempotency key: the same key returns the same goal.")
    deadline: datetime | float | str | None = Field(
        None, description="Fail with deadline_exceeded if not done by then: a time, or seconds (or '1h') from now."
    )
    partition_key: str | None = None

    def keywords(self, what: str) -> dict[str, Any]:
        """Return the keyword arguments of ``submit`` (``what`` prefixes a field's name in an error)."""
        delay = parse_duration(self.delay, what=f"{what}delay") if isinstance(self.delay, str) else self.delay
        deadline: datetime | float | None
        if isinstance(self.deadline, str):
            try:
                deadline = datetime.fromisoformat(self.deadline)
            except ValueError:
                deadline = parse_duration(self.deadline, what=f"{what}deadline")
        else:
            deadline = self.deadline
        return {
            "priority": self.priority,
            "at": self.at,
            "delay": delay,
            "key": self.key,
            "deadline": deadline,
            "partition_key": self.partition_key,
        }


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goals: list[SubmitRequest] = Field(min_length=1, max_length=10_000)


class Submitted(BaseModel):
    id: int
    created: bool = Field(description="False when the idempotency key named a goal submitted before.")


class BatchSubmitted(BaseModel):
    goals: list[Submitted]


class Goals(BaseModel):
    goals: list[dict[str, Any]]


class Nodes(BaseModel):
    nodes: list[dict[str, Any]]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, description="Why (recorded in the goal.cancelled event).")


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(description="The answer to the goal's ask step.")
    by: str | None = Field(None, description="Who answers (recorded in goal.resumed).")


class Outcome(BaseModel):
    id: int
    outcome: str


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_step: int | None = Field(None, ge=1, description="Run again from this step (default: the first not done).")
    reason: str | None = Field(None, description="Why (recorded in the goal.retried event).")


class Retried(BaseModel):
    id: int
    outcome: str
    first_step: int | None = Field(description="The first step of the new plan (None: the goal is planned anew).")


# The longest a request may wait for a goal's end (a client waits again for longer).
MAX_WAIT_S = 300.0


@router.post("/goals", response_model=Submitted, status_code=201, responses={200: {"model": Submitted}})
async def submit(
    body: SubmitRequest, caller: CallerDep, fork: str | None = FORK, traceparent: str | None = TRACEPARENT
) -> Response:
    """Submit a goal (201; 200 when its key named an earlier goal, returned instead)."""
    keywords = body.keywords("")
    carried = traceparent_of(traceparent)
    async with caller.goals(fork) as goals:
        submitted = await goals.submit(body.name, body.params, **keywords, traceparent=carried)
    return JsonOut({"id": submitted.id, "created": submitted.created}, status_code=201 if submitted.created else 200)


@router.post("/goals/batch", response_model=BatchSubmitted)
async def submit_batch(
    body: BatchRequest, caller: CallerDep, fork: str | None = FORK, traceparent: str | None = TRACEPARENT
) -> Response:
    """Submit goals in one transaction: all or none; each key names at most one goal."""
    carried = traceparent_of(traceparent)
    specs = [
        (g.name, g.params, submit_options(**g.keywords(f"goals[{i}]."), traceparent=carried))
        for i, g in enumerate(body.goals)
    ]
    async with caller.goals(fork) as goals:
        submitted = await goals.submit_many(specs)
    return JsonOut({"goals": [{"id": s.id, "created": s.created} for s in submitted]})


@router.get("/goals", response_model=Goals)
async def list_goals(
    caller: CallerDep,
    status: GoalStatus | None = None,
    name: str | None = Query(None, description="Only goals of this type."),
    waiting: bool = Query(False, description="Only waiting goals, with what each waits for."),
    limit: int = Query(50, ge=1, le=100_000),
    fork: str | None = FORK,
) -> Response:
    """List goals, newest first (as `goalrt list`)."""
    if waiting and (status is not None or name is not None):
        raise InvalidGoalError("waiting lists every waiting goal: leave out status and name")
    async with caller.goals(fork) as goals:
        if waiting:
            return JsonOut({"goals": [w.to_json() for w in await goals.waiting(limit=limit)]})
        rows = await goals.list(status=None if status is None else status.value, name=name, limit=limit)
    return JsonOut({"goals": [r.to_json() for r in rows]})


@router.get("/goals/{goal_id}", response_model=dict[str, Any])
async def get_goal(goal_id: int, caller: CallerDep, fork: str | None = FORK) -> Response:
    """Return a goal with its steps and its events (as `goalrt get --json`)."""
    async with caller.goals(fork) as goals:
        info = await goals.get(goal_id)
    return JsonOut(info.to_json())


@router.get("/goals/{goal_id}/wait", response_model=dict[str, Any])
async def wait_goal(
    goal_id: int,
    caller: CallerDep,
    timeout: float = Query(30.0, ge=0, le=MAX_WAIT_S, description="Seconds to wait at most (408 when it passes)."),
    fork: str | None = FORK,
) -> Response:
    """Wait until a goal has ended, then return it as `get` does (as `goalrt submit --wait`); 408 on timeout."""
    async with caller.goals(fork) as goals:
        info = await goals.wait(goal_id, timeout=timeout)
    return JsonOut(info.to_json())


@router.get("/goals/{goal_id}/tree", response_model=Nodes)
async def goal_tree(goal_id: int, caller: CallerDep, fork: str | None = FORK) -> Response:
    """Return the goal and its descendants, depth first."""
    async with caller.goals(fork) as goals:
        nodes = await goals.tree(goal_id)
    return JsonOut({"nodes": [n.to_json() for n in nodes]})


@router.post("/goals/{goal_id}/cancel", response_model=Outcome)
async def cancel(
    goal_id: int, caller: CallerDep, body: CancelRequest | None = None, fork: str | None = FORK
) -> Response:
    """Cancel a goal that has not finished (409 for a finished one)."""
    async with caller.goals(fork) as goals:
        await goals.cancel(goal_id, body.reason if body else None)
    return JsonOut({"id": goal_id, "outcome": "cancelled"})


@router.post("/goals/{goal_id}/resume", response_model=Outcome)
async def resume(goal_id: int, body: ResumeRequest, caller: CallerDep, fork: str | None = FORK) -> Response:
    """Answer a goal waiting at an ask step; a wrong answer is refused (400) and the goal keeps waiting."""
    async with caller.goals(fork) as goals:
        outcome = await goals.resume(goal_id, body.data, actor=body.by)
    return JsonOut({"id": goal_id, "outcome": outcome})


@router.post("/goals/{goal_id}/retry", response_model=Retried)
async def retry(goal_id: int, caller: CallerDep, body: RetryRequest | None = None, fork: str | None = FORK) -> Response:
    """Run a failed or cancelled goal again from a step (as `goalrt retry`); 409 for any other goal."""
    request = body or RetryRequest(from_step=None, reason=None)
    async with caller.goals(fork) as goals:
        first = await goals.retry(goal_id, from_step=request.from_step, reason=request.reason)
    return JsonOut({"id": goal_id, "outcome": "pending", "first_step": first})
