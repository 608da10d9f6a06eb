"""The console's plumbing: who a browser acts as, CSRF, and pages and errors as HTML.

A browser acts as the API's callers do: with ``--tokens``, the bearer token
of an ``Authorization`` header, or the one the login form (``/login``) put in
an HttpOnly, SameSite=Strict cookie; it picks the database role, so the
console can do no more than the API with that token. Every POST must come
from the console's own origin (its ``Origin``, or else ``Referer``, names
this host): a page elsewhere cannot make a signed-in browser cancel a goal.

Templates are Jinja2 with autoescaping on, so whatever a goal holds is shown
as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from goalrt.db.jsontext import loads, render
from goalrt.errors import GoalrtError
from goalrt.serve.access import AuthError, url_of
from goalrt.serve.context import Caller, goalrt_error, server_of

COOKIE = "goalrt_token"
HERE = Path(__file__).parent
# What a console page may load: its own scripts and styles only (htmx is served from /static).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

NAV = (
    ("/", "Overview"),
    ("/goals", "Goals"),
    ("/waiting", "Waiting"),
    ("/events", "Events"),
    ("/state", "State"),
    ("/workers", "Workers"),
    ("/limits", "Limits"),
    ("/gdl", "GDL"),
)


def _compact(value: Any, width: int = 120) -> str:
    text = render(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["json"] = lambda v: render(v, ensure_ascii=False)
ENV.filters["compact"] = _compact
ENV.filters["urlq"] = lambda v: quote(str(v), safe="")


class LoginRequired(Exception):
    """The server has tokens and the browser sent none it knows: show the login form."""


class CrossSiteError(Exception):
    """A POST that did not come from the console's own pages (HTTP 403)."""


def token_of(request: Request) -> str | None:
    """Return the ``Authorization`` header a console request acts with: the header, else the login cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        return header
    cookie = request.cookies.get(COOKIE)
    return f"Bearer {cookie}" if cookie else None


def console_caller(request: Request) -> Caller:
    """Return the caller of a console request (as the API's ``caller``, with the login cookie too)."""
    server = server_of(request)
    try:
        url = url_of(server.tokens, server.default_url, token_of(request))
    except AuthError:
        raise LoginRequired() from None
    return Caller(server, url)


ConsoleCaller = Annotated[Caller, Depends(console_caller)]


def same_origin(request: Request) -> bool:
    """Return whether a request names this host as its origin (``Origin``, else ``Referer``)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not source or source == "null" or not host:
        return False
    return urlsplit(source).netloc.lower() == host.lower()


async def form_of(request: Request) -> dict[str, str]:
    """Return an url-encoded form's fields (the first value of each)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def local_path(target: str | None) -> str:
    """Return ``target`` if it is a path on this server (never another site's URL), else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def page(request: Request, template: str, http_status: int = 200, **values: Any) -> HTMLResponse:
    """Render a console page (or fragment) with the navigation and the signed-in state."""
    server = server_of(request)
    html = ENV.get_template(template).render(
        path=request.url.path,
        nav=NAV,
        signed_in=server.tokens is not None and COOKIE in request.cookies,
        **values,
    )
    return HTMLResponse(html, status_code=http_status, headers=SECURITY_HEADERS)


def error_page(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    return page(request, "error.html", status, status_code=status, code=code, message=message)


def goalrt_error_page(request: Request, exc: Exception) -> HTMLResponse:
    """Return the API's answer to a goalrt error (status, code, the CLI's one line) as a page."""
    answer = goalrt_error(request, exc)
    error: Mapping[str, str] = loads(bytes(answer.body))["error"]
    return error_page(request, answer.status_code, error["code"], error["message"])


class ConsoleRoute(APIRoute):
    """A console route: POSTs only from this origin; errors as pages; no token leads to the login form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            try:
                if request.method == "POST" and not same_origin(request):
                    raise CrossSiteError()
                return await handler(request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            except CrossSiteError:
                message = "refused: this form was not sent from the console's own pages (Origin/Referer)"
                return error_page(request, 403, "cross_site", message)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
                return error_page(request, 400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")
            except GoalrtError as exc:
                return goalrt_error_page(request, exc)

        return checked
