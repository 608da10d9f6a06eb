"""The log and state endpoints: events (list, live stream), state (get, list, history, at), snapshots, forks.

The live stream is Server-Sent Events: each event is sent with its position
as the SSE ``id``, so a client that reconnects with ``Last-Event-ID`` gets
every later event once, in log order. The streams of one database role and
fork share one reader of the log (``goalrt.serve.fanout``): one LISTEN
connection per process, not one per subscriber.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from goalrt.db.jsontext import render
from goalrt.errors import OutOfRangeError
from goalrt.log.committed import Event
from goalrt.serve.context import BadRequestError, CallerDep, GoalrtRoute, JsonOut
from goalrt.serve.fanout import subscribe
from goalrt.state.model import check_path

router = APIRouter(route_class=GoalrtRoute)

FORK = Query(None, description="Act on this fork instead of the main line.")
AT = Query(None, description="A past position (e.g. 120) or time (ISO 8601; no zone means UTC).")
# An idle stream sends a comment this often, so proxies keep it open and a gone client is noticed.
KEEPALIVE_S = 15.0


class Events(BaseModel):
    events: list[dict[str, Any]]


class Entries(BaseModel):
    entries: list[dict[str, Any]]


class History(BaseModel):
    history: list[dict[str, Any]]


class Snapshots(BaseModel):
    snapshots: list[dict[str, Any]]


class Forks(BaseModel):
    forks: list[dict[str, Any]]


@router.get("/events", response_model=Events, tags=["events"])
async def list_events(
    caller: CallerDep,
    after: int = Query(0, ge=0, description="Start after this position."),
    limit: int = Query(100, ge=1, le=10_000),
    stream: str | None = Query(None, description="Only this stream."),
    type: str | None = Query(None, description="Only types matching this glob (order.*)."),
    fork: str | None = FORK,
) -> Response:
    """List committed events in log order (as `goalrt events list`)."""
    async with caller.log(fork) as log:
        rows = await log.read(after, limit, stream=stream, type=type)
    return JsonOut({"events": [e.to_json() for e in rows]})


def _resume_point(after: int, last_event_id: str | None) -> int:
    if last_event_id is None or not last_event_id.strip():
        return after
    text = last_event_id.strip()
    if not text.isdigit():
        raise BadRequestError(f"invalid Last-Event-ID {text[:40]!r}: give the position of the last event received")
    return int(text)


@router.get(
    "/events/stream",
    tags=["events"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "One SSE message per event."}},
)
async def stream_events(
    caller: CallerDep,
    after: int = Query(0, ge=0, description="Start after this position (Last-Event-ID wins)."),
    stream: str | None = Query(None, description="Only this stream."),
    type: str | None = Query(None, description="Only types matching this glob (order.*)."),
    fork: str | None = FORK,
    last_event_id: str | None = Header(None, description="Resume after this position (sent by EventSource)."),
) -> StreamingResponse:
    """Stream events as they commit, as Server-Sent Events whose id is the position."""
    start = _resume_point(after, last_event_id)
    # The server's one reader of the log for this role and fork (opened by its first subscriber).
    stack = contextlib.AsyncExitStack()
    try:
        hub = await stack.enter_async_context(caller.server.hubs.hub(caller.url, fork))
    except BaseException:
        await stack.aclose()
        raise

    async def read(after: int, limit: int, stream: str | None, type: str | None) -> list[Event]:
        async with caller.log(fork) as log:
            return await log.read(after, limit, stream=stream, type=type)

    return StreamingResponse(
        _sse(subscribe(hub, read, start, stream, type, KEEPALIVE_S), stack),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(events: AsyncGenerator[Event | None, None], stack: contextlib.AsyncExitStack) -> AsyncIterator[str]:
    try:
        yield ": following the log\n\n"
        try:
            async for item in events:
                if item is None:
                    yield ": keepalive\n\n"
                else:
                    yield f"id: {item.pos}\ndata: {render(item.to_json(), ensure_ascii=False)}\n\n"
        except Exception as exc:
            message = (str(exc).strip().splitlines() or [type_name(exc)])[0]
            yield f"event: error\ndata: {render({'error': {'code': 'stream', 'message': message}})}\n\n"
    finally:
        # Starlette cancels a stream whose client left through an anyio scope, which cancels every
        # await under it again: the clean-up is shielded, or the hub would be left open.
        with anyio.CancelScope(shield=True):
            await events.aclose()
            await stack.aclose()


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


@router.get("/state", response_model=Entries, tags=["state"])
async def list_state(
    caller: CallerDep,
    pattern: str | None = Query(None, description="Paths under this pattern (orders.o1, orders.*.status)."),
    at: str | None = AT,
    fork: str | None = FORK,
) -> Response:
    """List the state's paths (as `goalrt state list`), now or at a past position or time."""
    async with caller.state(fork) as state:
        entries = await state.list(pattern, at=at)
    return JsonOut({"entries": [e.to_json() for e in entries]})


@router.get("/state/{path}", response_model=dict[str, Any], tags=["state"])
async def get_state(path: str, caller: CallerDep, at: str | None = AT, fork: str | None = FORK) -> Response:
    """Return the value of a path (404 if it does not exist), now or at a past position or time."""
    check_path(path)
    async with caller.state(fork) as state:
        entry = await state.get(path, at=at)
    if entry is None:
        raise OutOfRangeError(f"path {path} does not exist" + (f" at {at}" if at is not None else ""))
    return JsonOut(entry.to_json())


@router.get("/state/{path}/history", response_model=History, tags=["state"])
async def state_history(path: str, caller: CallerDep, fork: str | None = FORK) -> Response:
    """Return every value a path has held, oldest first."""
    check_path(path)
    async with caller.state(fork) as state:
        rows = await state.history(path)
    return JsonOut({"history": [h.to_json() for h in rows]})


# Snapshots and forks have only the synchronous API (psycopg): they run in a thread, on a connection of their own.


@router.get("/snapshots", response_model=Snapshots, tags=["state"])
async def list_snapshots(
    caller: CallerDep, auto: bool = Query(False, description="Include the automatic ones."), fork: str | None = FORK
) -> Response:
    """List the named snapshots (with auto, the automatic ones too)."""
    from goalrt.state import snapshots
    from goalrt.state.state import State

    def run() -> list[dict[str, Any]]:
        with State.connect(caller.url, fork=fork) as st:
            return [s.to_json() for s in snapshots.list_snapshots(st, include_auto=auto)]

    return JsonOut({"snapshots": await run_in_threadpool(run)})


@router.get("/snapshots/{name}", response_model=dict[str, Any], tags=["state"])
async def show_snapshot(
    name: str, caller: CallerDep, pattern: str | None = Query(None), fork: str | None = FORK
) -> Response:
    """Return a snapshot and the state it holds (under pattern)."""
    from goalrt.state import snapshots
    from goalrt.state.state import State

    def run() -> dict[str, Any]:
        with State.connect(caller.url, fork=fork) as st:
            snap = snapshots.get(st, name)
            entries = snapshots.contents(st, snap, pattern)
        return {**snap.to_json(), "state": [e.to_json() for e in entries]}

    return JsonOut(await run_in_threadpool(run))


@router.get("/forks", response_model=Forks, tags=["state"])
async def list_forks(caller: CallerDep) -> Response:
    """List the forks."""
    from goalrt.state import forks
    from goalrt.state.state import State

    def run() -> list[dict[str, Any]]:
        with State.connect(caller.url) as st:
            return [f.to_json() for f in forks.list_forks(st.connection)]

    return JsonOut({"forks": await run_in_threadpool(run)})
