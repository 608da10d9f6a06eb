"""The memory endpoints: search the indexed history, and how far it is indexed (docs/memory.md).

They call the library as `goalrt search` does, under the database role the
request's token maps to, so a caller finds only its own tenant's events.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from goalrt.memory.embedders import embedder_from_env
from goalrt.memory.model import MAX_QUERY, parse_since
from goalrt.serve.context import CallerDep, GoalrtRoute, JsonOut

router = APIRouter(route_class=GoalrtRoute)

FORK = Query(None, description="Act on this fork instead of the main line.")


class Hits(BaseModel):
    events: list[dict[str, Any]]
    mode: str


@router.get("/memory/search", response_model=Hits, tags=["memory"])
async def search_memory(
    caller: CallerDep,
    q: str = Query(..., max_length=MAX_QUERY, description="What to look for, in words."),
    type: str | None = Query(None, description="Only event types matching this glob (goal.*)."),
    since: str | None = Query(None, description="Only events recorded since this ISO 8601 time (UTC if no zone)."),
    limit: int = Query(10, ge=1, le=1000),
    fork: str | None = FORK,
) -> Response:
    """The indexed events closest to `q`, best first (as `goalrt search`); `mode` says words only or hybrid."""
    when = None if since is None else parse_since(since)
    embedder = await run_in_threadpool(embedder_from_env)
    async with caller.memory(fork, embedder) as memory:
        hits = await memory.search(q, type=type, since=when, limit=limit)
    hybrid = any(h.vector_rank is not None for h in hits)
    return JsonOut({"events": [h.to_json() for h in hits], "mode": "hybrid" if hybrid else "text"})


@router.get("/memory/status", tags=["memory"])
async def memory_status(caller: CallerDep, fork: str | None = FORK) -> Response:
    """How far memory is indexed, whether it has vectors, and by which embedder (as `goalrt memory status`)."""
    async with caller.memory(fork) as memory:
        status = await memory.status()
    return JsonOut(status.to_json())
