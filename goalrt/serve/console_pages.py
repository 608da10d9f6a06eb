"""The console's read-only pages: overview, goals, events (live), state (with time travel), workers, limits,
waiting goals; and the login form (GDL: console_gdl).

Each page calls the same async clients as the JSON API (``AsyncGoals``,
``AsyncEventLog``, ``AsyncState``), on the caller's database role.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from goalrt.errors import GoalNotFoundError
from goalrt.goals.health import WORKER_ALIVE_S, alive_workers
from goalrt.goals.status import GoalStatus
from goalrt.serve.access import find_token
from goalrt.serve.console_access import (
    COOKIE,
    ConsoleCaller,
    ConsoleRoute,
    form_of,
    local_path,
    page,
)
from goalrt.serve.console_charts import latency_chart, throughput_chart
from goalrt.serve.context import server_of

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
# Goals are listed newest first by fetching the pages before the one shown: no deeper than this.
MAX_OFFSET = 10_000
# The charts: the last this many minutes, counting among the newest this many goals (Goals.per_minute).
CHART_MINUTES, CHART_GOALS = 60, 10_000
EVENTS_SHOWN = 50
# A live update sends at most this many new events (the newest).
LIVE_MAX = 200
# A search by idempotency key reads goal.submitted events in pages of this many, at most this many pages.
KEY_PAGE, KEY_PAGES = 1_000, 100


@router.get("/")
async def overview(request: Request, caller: ConsoleCaller) -> Response:
    async with caller.goals() as goals:
        counts = await goals.counts()
        workers = await goals.workers()
    async with caller.log() as log:
        head = await log.tick()
        recent = await log.read(max(0, head - 10), 10)
    return page(
        request,
        "overview.html",
        counts={s.value: counts.get(s.value, 0) for s in GoalStatus},
        total=sum(counts.values()),
        alive=alive_workers(workers),
        workers=len(workers),
        head=head,
        recent=list(reversed(recent)),
        **await _charts(caller),
    )


@router.get("/overview/charts")
async def overview_charts(request: Request, caller: ConsoleCaller) -> Response:
    """Return the overview's charts again (htmx swaps them in every 10 seconds)."""
    return page(request, "_charts.html", **await _charts(caller))


async def _charts(caller: Any) -> dict[str, Any]:
    async with caller.goals() as goals:
        history = await goals.per_minute(CHART_MINUTES, CHART_GOALS)
    minutes = history.minutes
    return {
        "throughput": throughput_chart(minutes),
        "latency": latency_chart(minutes),
        "ended": {s: sum(m.ended.get(s, 0) for m in minutes) for s in ("complete", "failed", "cancelled")},
        "until": minutes[-1].start if minutes else datetime.now(UTC),
        "chart_goals": CHART_GOALS,
        "cut_at": history.since if history.cut else None,
    }


@router.get("/goals")
async def goal_list(
    request: Request,
    caller: ConsoleCaller,
    status: str = "",
    name: str = "",
    q: str = "",
    page_no: int = Query(1, alias="page", ge=1, le=MAX_OFFSET // PAGE_SIZE),
) -> Response:
    q = q.strip()
    if q:
        found = await _search(caller, q)
        if found is not None:
            return RedirectResponse(f"/goals/{found}", status_code=303)
        return page(
            request,
            "goals.html",
            http_status=404,
            **_filters(status, name, q),
            rows=[],
            page_no=1,
            more=False,
            missing=f"no goal has the id or idempotency key {q!r}",
        )
    offset = (page_no - 1) * PAGE_SIZE
    async with caller.goals() as goals:
        rows = await goals.list(status=status or None, name=name.strip() or None, limit=offset + PAGE_SIZE + 1)
    shown = rows[offset : offset + PAGE_SIZE]
    return page(
        request,
        "goals.html",
        **_filters(status, name, q),
        rows=shown,
        page_no=page_no,
        more=len(rows) > offset + PAGE_SIZE and page_no < MAX_OFFSET // PAGE_SIZE,
        missing=None,
    )


def _filters(status: str, name: str, q: str) -> dict[str, Any]:
    return {"status": status, "name": name, "q": q, "statuses": [s.value for s in GoalStatus]}


async def _search(caller: Any, q: str) -> int | None:
    """Return the goal ``q`` names: its id, else its idempotency key (from the goal.submitted events)."""
    if q.isdigit():
        async with caller.goals() as goals:
            try:
                return int((await goals.get(int(q))).id)
            except GoalNotFoundError:
                pass
    async with caller.log() as log:
        after = 0
        for _ in range(KEY_PAGES):
            events = await log.read(after, KEY_PAGE, type="goal.submitted")
            for e in events:
                if isinstance(e.data, dict) and e.data.get("key") == q:
                    return int(e.data["goal_id"])
            if len(events) < KEY_PAGE:
                return None
            after = events[-1].pos
    return None


@router.get("/events")
async def events(request: Request, caller: ConsoleCaller, type: str = "") -> Response:
    async with caller.log() as log:
        head = await log.tick()
        rows = await log.read(max(0, head - EVENTS_SHOWN), EVENTS_SHOWN, type=type.strip() or None)
    return page(request, "events.html", rows=list(reversed(rows)), after=head, type=type.strip())


@router.get("/events/rows")
async def event_rows(request: Request, caller: ConsoleCaller, after: int = Query(0, ge=0), type: str = "") -> Response:
    """Return the events after ``after`` (newest first) and the poller that asks for the next ones."""
    async with caller.log() as log:
        head = await log.tick()
        rows = await log.read(max(after, head - LIVE_MAX), LIVE_MAX, type=type.strip() or None)
    last = max([after, *(e.pos for e in rows)])
    return page(request, "_event_rows.html", rows=list(reversed(rows)), after=last, type=type.strip())


@router.get("/state")
async def state(request: Request, caller: ConsoleCaller, prefix: str = "", at: str = "") -> Response:
    async with caller.log() as log:
        head = await log.tick()
    async with caller.state() as st:
        entries = await st.list(prefix.strip() or None, at=at.strip() or None)
        position = await st.position(at.strip()) if at.strip() else head
    return page(
        request, "state.html", entries=entries, prefix=prefix.strip(), at=at.strip(), head=head, position=position
    )


@router.get("/workers")
async def workers(request: Request, caller: ConsoleCaller) -> Response:
    async with caller.goals() as goals:
        rows = await goals.workers()
    return page(request, "workers.html", rows=rows, alive_s=WORKER_ALIVE_S)


@router.get("/limits")
async def limits(request: Request, caller: ConsoleCaller) -> Response:
    async with caller.goals() as goals:
        rows = await goals.limits()
    return page(request, "limits.html", rows=rows)


@router.get("/waiting")
async def waiting(request: Request, caller: ConsoleCaller) -> Response:
    async with caller.goals() as goals:
        rows = await goals.waiting(limit=500)
    return page(request, "waiting.html", rows=rows)


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> Response:
    if server_of(request).tokens is None:
        return RedirectResponse(local_path(next), status_code=303)
    return page(request, "login.html", next=local_path(next), failed=False)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a token and keep it in an HttpOnly, SameSite=Strict cookie."""
    tokens = server_of(request).tokens
    form = await form_of(request)
    target = local_path(form.get("next"))
    if tokens is None:
        return RedirectResponse(target, status_code=303)
    token = form.get("token", "").strip()
    if not token or find_token(tokens, token) is None:
        return page(request, "login.html", http_status=401, next=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login" if server_of(request).tokens else "/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
