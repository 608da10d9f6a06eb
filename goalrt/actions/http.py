"""``http.call``: one HTTP request with httpx, to a host on the allow-list, with the step's idempotency key.

Arguments (the contract is gdl/builtin/http.gdl): ``url``, ``method``
(GET), ``headers``, ``json`` or ``form`` (a body; not both), ``timeout``
(seconds, 30), ``keep_headers`` (the response headers kept in the result,
by name; default ``content-type``) and ``max_body`` (bytes of the body kept;
default ``[actions.http] max_body``, else 65536).

The request carries ``Idempotency-Key: <goal>:<step>``, the same on every
attempt of the step (a re-run after a crash too), so a server that honours it
does the work once. The result is ``{"status", "headers", "body"}``, the body
parsed as JSON when the response says it is JSON, else text; a body cut to
``max_body`` adds ``"truncated": true``. Statuses: 2xx (and 1xx/3xx that is
not followed) is the result; 408, 425, 429 and 5xx are retryable failures
(the action's retry policy decides); any other 4xx fails the step for good.
A timeout or a connection error is retryable.

Every host the request goes to, the first and each redirect's, must be on the
allow-list: the hosts the workspace names in the action's ``url`` (a literal
host, checked at load) and ``[actions.http] allow_hosts``
(``$GOALRT_HTTP_ALLOW_HOSTS``). Nothing else is contacted: the check is made
on the URL as it will be sent, after templates are filled in, before any
connection; a redirect to an unlisted host fails the step for good.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from goalrt.actions.clients import client_for_loop
from goalrt.errors import ActionFailedError, PermanentError

DEFAULT_MAX_BODY = 65536
_MAX_REDIRECTS = 5
RETRYABLE_STATUSES = frozenset({408, 425, 429})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def http_client() -> httpx.AsyncClient:
    # Redirects are followed here, each hop's host checked; proxies from the environment are not used.
    client: httpx.AsyncClient = client_for_loop(lambda: httpx.AsyncClient(follow_redirects=False, trust_env=False))
    return client


def _arg(args: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = args.get(name, default)
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
        raise PermanentError(f"http.call: {name} must be of type {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


async def _read(response: httpx.Response, max_body: int) -> tuple[bytes, bool]:
    """Read at most ``max_body`` bytes of the body (the rest is never held in memory)."""
    chunks, size = [], 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body:
                break
    finally:
        await response.aclose()
    raw = b"".join(chunks)
    return raw[:max_body], size > max_body


def _body(response: httpx.Response, raw: bytes, truncated: bool) -> tuple[Any, bool]:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not truncated and (kind == "application/json" or kind.endswith("+json")):
        try:
            return json.loads(raw), False
        except ValueError:
            pass
    return raw.decode(response.encoding or "utf-8", errors="replace"), truncated


async def http_call(args: dict[str, Any], ctx: Any, call: Any) -> dict[str, Any]:
    """Run one ``http.call`` step (see the module's docstring)."""
    unknown = sorted(set(args) - {"url", "method", "headers", "json", "form", "timeout", "keep_headers", "max_body"})
    if unknown:
        raise PermanentError(f"http.call: unknown argument {unknown[0]}")
    url = _arg(args, "url", str)
    if not url:
        raise PermanentError("http.call: url is required")
    method = str(_arg(args, "method", str, "GET")).upper()
    if method not in _METHODS:
        raise PermanentError(f"http.call: method {method} is not one of {', '.join(sorted(_METHODS))}")
    headers = {str(k): str(v) for k, v in (_arg(args, "headers", dict) or {}).items()}
    body, form = args.get("json"), _arg(args, "form", dict)
    if body is not None and form is not None:
        raise PermanentError("http.call: give json or form, not both")
    timeout = float(_arg(args, "timeout", (int, float), 30))
    keep = [str(h).lower() for h in _arg(args, "keep_headers", list, ["content-type"])]
    settings = call.config.section("http")
    max_body = int(_arg(args, "max_body", int, settings.get("max_body", DEFAULT_MAX_BODY)))
    headers["Idempotency-Key"] = ctx.idempotency_key
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise PermanentError(f"http.call: invalid url: {exc}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise PermanentError(f"http.call: the url must be http:// or https:// with a host, got {target.scheme}://")
    client = http_client()
    response = None
    try:
        for _hop in range(_MAX_REDIRECTS + 1):
            call.check_host(target.host, f"http.call {method}")
            request = client.build_request(
                method, target, headers=headers, json=body, data=form, timeout=httpx.Timeout(timeout)
            )
            response = await client.send(request, stream=True)
            if not response.is_redirect:
                break
            location = response.headers.get("location", "")
            await response.aclose()
            target = target.join(location)
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, body, form = "GET", None, None
        else:
            raise PermanentError(f"http.call: more than {_MAX_REDIRECTS} redirects")
        assert response is not None
        raw, truncated = await _read(response, max_body)
    except httpx.TimeoutException:
        raise ActionFailedError(f"http.call {method} {target.host}: timed out after {timeout:g}s") from None
    except httpx.TransportError as exc:
        raise ActionFailedError(f"http.call {method} {target.host}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    value, truncated = _body(response, raw, truncated)
    if status in RETRYABLE_STATUSES or status >= 500:
        raise ActionFailedError(f"http.call {method} {target.host}{target.path}: HTTP {status}: {_short(value)}")
    if status >= 400:
        raise PermanentError(f"http.call {method} {target.host}{target.path}: HTTP {status}: {_short(value)}")
    result: dict[str, Any] = {
        "status": status,
        "headers": {name: response.headers[name] for name in keep if name in response.headers},
        "body": value,
    }
    if truncated:
        result["truncated"] = True
    return result


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


__all__ = ["DEFAULT_MAX_BODY", "RETRYABLE_STATUSES", "http_call", "http_client"]
