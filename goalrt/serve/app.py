"""The ASGI app of ``goalrt serve``, and running it with uvicorn.

FastAPI, because its typed request and response models (pydantic, already
goalrt's) validate input before anything is written and give the OpenAPI
document (``/api/v1/openapi.json``) for free; uvicorn serves it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from goalrt import __version__
from goalrt.errors import ConfigError
from goalrt.serve import (
    console_gdl,
    console_goal,
    console_pages,
    observe,
    routes_goals,
    routes_log,
    routes_memory,
    routes_ops,
)
from goalrt.serve.console_access import HERE as CONSOLE_FILES
from goalrt.serve.context import API, EXCEPTION_HANDLERS, JsonOut, Server

if TYPE_CHECKING:
    import uvicorn


def create_app(server: Server) -> FastAPI:
    """Return the app serving ``server``'s database (and tokens): the API, the console, health checks, metrics."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await server.hubs.close()
            await server.pools.close()

    app = FastAPI(
        title="goalrt",
        version=__version__,
        description="The goalrt HTTP API: the CLI's commands over HTTP (docs/operations.md).",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
        default_response_class=JsonOut,
        lifespan=lifespan,
    )
    app.state.goalrt = server
    app.state.goalrt_head = _head_revision()
    metrics = observe.Metrics()
    app.state.goalrt_metrics = metrics
    for router in (routes_goals.router, routes_log.router, routes_memory.router, routes_ops.router):
        app.include_router(router, prefix=API)
    app.include_router(observe.router)
    # The web console (server-rendered HTML with htmx) under /, its files under /static.
    app.include_router(console_goal.router)
    app.include_router(console_pages.router)
    app.include_router(console_gdl.router)
    app.mount("/static", StaticFiles(directory=CONSOLE_FILES / "static"), name="static")
    for kind, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_middleware(observe.CountRequests, metrics=metrics)
    return app


def _head_revision() -> tuple[str, frozenset[str]]:
    """Return this goalrt's head revision and every revision it knows (a newer database is ready too)."""
    from alembic.script import ScriptDirectory

    from goalrt.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    assert head is not None, "goalrt has no migrations"
    return head, frozenset(rev.revision for rev in script.walk_revisions())


def is_loopback(host: str) -> bool:
    """Return whether ``host`` is a loopback address (or localhost): only such a bind may go without tokens."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: dict[str, str] | None) -> None:
    """Refuse to listen beyond this machine without tokens."""
    if tokens is None and not is_loopback(host):
        raise ConfigError(f"listening on {host} needs --tokens FILE (bearer tokens mapped to database roles)")


def uvicorn_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """Return a uvicorn server for ``app`` (``serve()`` runs it; tests run it in a thread)."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5, lifespan="on"
    )
    return uvicorn.Server(config)
