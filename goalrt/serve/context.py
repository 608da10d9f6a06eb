"""What every endpoint shares: the server's settings, the caller's clients, JSON in and out, errors as JSON.

Request bodies are parsed as the CLI parses ``--params`` (exact numbers, no
NaN, at most goalrt's depth), responses rendered with exact numbers, and
every error is ``{"error": {"code": ..., "message": ...}}`` with the CLI's
one-line message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from goalrt.db.jsontext import loads, render
from goalrt.errors import (
    DatabaseUnavailableError,
    GoalrtError,
    GoalWaitTimeoutError,
    InvalidTransitionError,
    NotMigratedError,
    VersionConflictError,
)
from goalrt.goals.async_goals import AsyncGoals
from goalrt.goals.registry import Registry
from goalrt.log.async_eventlog import AsyncEventLog
from goalrt.memory.async_memory import AsyncMemory
from goalrt.memory.embedders import Embedder
from goalrt.serve.access import AuthError, Pools, url_of
from goalrt.serve.fanout import Hubs
from goalrt.state.async_state import AsyncState

API = "/api/v1"
SQLSTATE_PERMISSION_DENIED = "42501"

# The HTTP status of each kind of goalrt error (the first match wins); any other is a 500.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (LookupError, 404),  # GoalNotFoundError, OutOfRangeError, NotFoundError
    (GoalWaitTimeoutError, 408),
    (InvalidTransitionError, 409),
    (VersionConflictError, 409),
    (NotMigratedError, 503),
    (DatabaseUnavailableError, 503),
    (ValueError, 400),  # InvalidGoalError, InvalidJsonError, InvalidStateChangeError, ConfigError, PlanningError
)


class NotFoundError(GoalrtError, LookupError):
    """What an endpoint names does not exist (no limit on that action, no GDL loaded): HTTP 404."""


class BadRequestError(GoalrtError, ValueError):
    """A request the API cannot take (a malformed header): HTTP 400."""


@dataclass
class Server:
    """What the app serves with: its own database URL, the token map (None: no tokens), pools, goal types.

    ``figures_ttl`` is how long /metrics reuses the database's figures (seconds).
    """

    default_url: str
    tokens: dict[str, str] | None = None
    pools: Pools = field(default_factory=Pools)
    registry: Registry | None = None
    figures_ttl: float = 5.0
    # The readers of the log the live event streams share.
    hubs: Hubs = field(default_factory=Hubs)


class JsonOut(Response):
    """A JSON response rendered as goalrt renders JSON: numbers exact."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return render(content, ensure_ascii=False).encode()


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JsonOut:
    line = (message.strip().splitlines() or [code])[0]
    return JsonOut({"error": {"code": code, "message": line}}, status_code=status, headers=headers)


def _code(exc: BaseException) -> str:
    name = type(exc).__name__.removesuffix("Error") or "Goalrt"
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def goalrt_error(_: Request, exc: Exception) -> Response:
    """Return a goalrt error as the CLI states it, with an HTTP status for its kind."""
    if getattr(exc.__cause__, "sqlstate", None) == SQLSTATE_PERMISSION_DENIED:
        return error_response(403, "permission_denied", str(exc))
    status = next((s for kind, s in _STATUS if isinstance(exc, kind)), 500)
    return error_response(status, _code(exc), str(exc))


def validation_error(_: Request, exc: Exception) -> Response:
    """Return the first problem of a request that does not fit its model, as one line."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(400, "invalid_request", "invalid request")
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return error_response(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}{more}")


def http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


def auth_error(_: Request, exc: Exception) -> Response:
    return error_response(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})


def internal_error(_: Request, exc: Exception) -> Response:
    return error_response(500, "internal", f"internal error: {type(exc).__name__}")


EXCEPTION_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Response]] = {
    GoalrtError: goalrt_error,
    RequestValidationError: validation_error,
    StarletteHTTPException: http_error,
    AuthError: auth_error,
    Exception: internal_error,
}


class GoalrtRoute(APIRoute):
    """A route that parses a JSON body as goalrt parses JSON (exact numbers, no NaN, bounded depth).

    Text that is not such JSON is one ``invalid_json`` error naming why, as
    ``--params`` is on the command line.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_then_handle(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                body = await request.body()
                if body.strip():
                    request._json = loads(body)  # Request.json() returns it from here on
            return await handler(request)

        return parse_then_handle


class Caller:
    """The clients of one request, on connections of the database role its token maps to."""

    def __init__(self, server: Server, url: str) -> None:
        self.server = server
        self.url = url

    @asynccontextmanager
    async def goals(self, fork: str | None = None) -> AsyncIterator[AsyncGoals]:
        async with self.server.pools.connection(self.url, fork) as (conn, schema):
            yield AsyncGoals(conn, schema=schema, registry=self.server.registry)

    @asynccontextmanager
    async def log(self, fork: str | None = None) -> AsyncIterator[AsyncEventLog]:
        async with self.server.pools.connection(self.url, fork) as (conn, schema):
            yield AsyncEventLog(conn, schema=schema)

    @asynccontextmanager
    async def memory(self, fork: str | None = None, embedder: Embedder | None = None) -> AsyncIterator[AsyncMemory]:
        async with self.server.pools.connection(self.url, fork) as (conn, schema):
            yield AsyncMemory(conn, schema=schema, embedder=embedder)

    @asynccontextmanager
    async def state(self, fork: str | None = None) -> AsyncIterator[AsyncState]:
        async with self.server.pools.connection(self.url, fork) as (conn, schema):
            yield AsyncState(conn, schema=schema)


def server_of(request: Request) -> Server:
    server: Server = request.app.state.goalrt
    return server


def caller(request: Request) -> Caller:
    """Return the request's caller: the server's own URL, or the one its bearer token maps to."""
    server = server_of(request)
    return Caller(server, url_of(server.tokens, server.default_url, request.headers.get("authorization")))


CallerDep = Annotated[Caller, Depends(caller)]
