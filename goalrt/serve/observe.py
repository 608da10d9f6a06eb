"""Health and metrics: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus text), and the request counter.

The database figures of ``/metrics`` (goals by status, the log's head,
workers alive) come from one cheap query each, cached for a few seconds,
so that scrapes never load the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goalrt.errors import GoalrtError
from goalrt.goals.async_goals import AsyncGoals
from goalrt.goals.health import WORKER_ALIVE_S, alive_workers
from goalrt.goals.status import GoalStatus
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.serve.context import API, JsonOut, server_of

router = APIRouter(tags=["health"])


class Figures(Collector):
    """The database's figures, as gauges: refreshed by ``/metrics`` when older than the server's ``figures_ttl``."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.head: int | None = None
        self.workers_alive: int | None = None
        self.taken_at = float("-inf")

    def stale(self, ttl: float) -> bool:
        return time.monotonic() - self.taken_at >= ttl

    def collect(self) -> Iterator[GaugeMetricFamily]:
        goals = GaugeMetricFamily("goalrt_goals", "Goals by status (from the database).", labels=["status"])
        for status in GoalStatus:
            goals.add_metric([status.value], float(self.counts.get(status.value, 0)))
        yield goals
        if self.head is not None:
            yield GaugeMetricFamily("goalrt_log_head_position", "The last position the log handed out.", self.head)
        if self.workers_alive is not None:
            yield GaugeMetricFamily(
                "goalrt_workers_alive", f"Workers seen in the last {WORKER_ALIVE_S:g}s.", self.workers_alive
            )


class Metrics:
    """The server's Prometheus registry: HTTP requests by route, and the database's figures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "goalrt_http_requests", "HTTP requests served.", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "goalrt_http_request_duration_seconds",
            "Time to answer an HTTP request (for a stream: how long it stayed open).",
            ["method", "route"],
            registry=self.registry,
        )
        self.figures = Figures()
        self.registry.register(self.figures)


class CountRequests:
    """ASGI middleware: count each HTTP request and time it, labelled by its route's template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = _route_of(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status[0])).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    """Return the template of the route that answered (``/api/v1/goals/{goal_id}``), or ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return "unmatched"
    # Depending on FastAPI's version, a route of an included router names its path with or without the prefix.
    if str(scope.get("path", "")).startswith(API + "/") and not path.startswith(API + "/"):
        return API + path
    return path


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer while the process is alive (no database call)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: the reason."}})
async def readyz(request: Request) -> Response:
    """Answer 200 when the database is reachable, migrated to this goalrt's head and its clock ticks; else 503."""
    server = server_of(request)
    checks: dict[str, Any] = {}
    try:
        async with server.pools.connection(server.default_url) as (conn, schema):
            checks["database"] = "ok"
            checks["revision"] = await _check_revision(conn, request.app.state.goalrt_head)
            checks["head"] = await AsyncEventLog(conn, schema=schema).tick(wait_ms=1000)
    except GoalrtError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return JsonOut({"status": "unavailable", "reason": reason, **checks}, status_code=503)
    return JsonOut({"status": "ready", **checks})


async def _check_revision(conn: Any, head: tuple[str, frozenset[str]]) -> str:
    """Return the database's revision; raise ``NotMigratedError`` unless it is head (or newer than this goalrt)."""
    from goalrt.db.migrate import VERSION_SCHEMA, VERSION_TABLE
    from goalrt.errors import NotMigratedError, translated

    table = f"{VERSION_SCHEMA}.{VERSION_TABLE}"
    with translated():
        current = None
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            current = await conn.fetchval(f"SELECT version_num FROM {table}")
    want, known = head
    if current is None or (current != want and current in known):
        at = "has no goalrt schema" if current is None else f"is at revision {current}, goalrt needs {want}"
        raise NotMigratedError(f"the database {at}: not migrated; run `goalrt migrate`")
    return str(current)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Return the metrics in Prometheus' text format."""
    server = server_of(request)
    state: Metrics = request.app.state.goalrt_metrics
    figures = state.figures
    if figures.stale(server.figures_ttl):
        try:
            async with server.pools.connection(server.default_url) as (conn, schema):
                goals = AsyncGoals(conn, schema=schema)
                figures.counts = await goals.counts()
                figures.workers_alive = alive_workers(await goals.workers())
                figures.head = await AsyncEventLog(conn, schema=schema).head()
            figures.taken_at = time.monotonic()
        except GoalrtError:
            figures.head = figures.workers_alive = None  # the HTTP figures are still worth a scrape
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)
