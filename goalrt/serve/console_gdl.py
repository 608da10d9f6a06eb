"""The console's GDL page: the stored versions, and one of them (the current by default) with its graph drawn.

The graph is ``goalrt gdl graph``'s (``goalrt.gdl.graph``), read from the
stored JSON of the version and laid out by ``goalrt.gdl.graph_layout``; the
template draws it as inline SVG, so the browser needs no script for it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from goalrt.errors import GoalrtError
from goalrt.serve.console_access import ConsoleCaller, ConsoleRoute, page
from goalrt.serve.context import NotFoundError

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# The versions listed, newest first.
VERSIONS_SHOWN = 100


@router.get("/gdl")
async def gdl(request: Request, caller: ConsoleCaller, version: int | None = Query(None, ge=1)) -> Response:
    """Show the stored GDL versions and one of them: the newest (what workers plan with), or ``?version=N``."""
    from goalrt.db.connect import connect
    from goalrt.gdl.runtime import current, stored, versions

    def run() -> Any:
        with connect(caller.url) as conn:
            listed = versions(conn, limit=VERSIONS_SHOWN)
            return listed, (current(conn) if version is None else stored(conn, version))

    listed, defs = await run_in_threadpool(run)
    if defs is None and version is not None:
        raise NotFoundError(f"no GDL version {version}")
    body = dict(defs.body) if defs is not None else {}
    drawing, problem = _drawing(body) if defs is not None else (None, None)
    return page(
        request,
        "gdl.html",
        defs=defs,
        versions=listed,
        newest=listed[0].version if listed else None,
        drawing=drawing,
        problem=problem,
        sections={k: v for k, v in body.items() if isinstance(v, dict)},
    )


def _drawing(body: dict[str, Any]) -> tuple[Any, str | None]:
    """Return the laid-out graph of a stored version, or why it cannot be drawn (a shape this code does not read)."""
    from goalrt.gdl.graph import workspace_graph
    from goalrt.gdl.graph_layout import layout

    try:
        return layout(workspace_graph(body)), None
    except (GoalrtError, KeyError, TypeError, ValueError) as exc:
        return None, f"this version's definitions cannot be drawn: {str(exc).splitlines()[0] if str(exc) else exc!r}"
