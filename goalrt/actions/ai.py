"""``ai.call``: one chat completion from an OpenAI-compatible endpoint, paid for once per step if at all possible.

Arguments (gdl/builtin/ai.gdl): ``prompt`` (the user message; a template in
GDL: ``"Summarise order {o}: {state:orders.{o}.notes}"``) or ``messages``
(``[{role, content}, ...]``), ``system`` (a system message put first),
``model`` (default ``[actions.ai] model``), ``temperature``, ``max_tokens``,
``response_format`` and ``timeout`` (seconds; default ``[actions.ai]
timeout``, else 60). The endpoint is ``[actions.ai] base_url`` +
``/chat/completions``; its host is allowed because the configuration names
it. The key is the secret ``[actions.ai] api_key_secret`` names, sent as
``Authorization: Bearer``.

The result is ``{"content", "finish_reason", "model", "usage", "cached"}``,
``usage`` being the endpoint's token counts (``prompt_tokens``,
``completion_tokens``, ``total_tokens``).

Paying once: a step's completion commits only after the handler returns, so
a worker that dies in between leaves the step to run again. Two things keep
that re-run from paying again:

- the request carries ``Idempotency-Key: <goal>:<step>``, the same for every
  attempt, so an endpoint (or a gateway in front of it) that honours it
  answers the second request from the first;
- the answer is written to a cache file (``[actions.ai] cache_dir``, default
  ``.goalrt/ai-cache`` beside the goalrt.toml; ``""`` turns it off), named by
  the idempotency key, synced to disk before the handler returns. A run of
  the same step that sends the same request (same endpoint, model, messages
  and options) reads it instead of calling, and its result says ``"cached":
  true``. A request that differs (the state it was built from changed) is a
  new question and is sent.

What this does not cover: a worker that dies while the request is in flight
or after the answer arrives but before the file is written; on another host
than the one that has the file (share ``cache_dir`` between workers to cover
that); an endpoint that ignores ``Idempotency-Key``. There, the re-run asks
again and is paid for again.

Failures: 408, 409, 425, 429 and 5xx, a timeout and a connection error are
retryable; any other 4xx (a bad key, a bad request) and an answer without a
message fail the step for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx

from goalrt.actions.config import ActionsConfig
from goalrt.actions.http import RETRYABLE_STATUSES, http_client
from goalrt.errors import ActionFailedError, PermanentError

DEFAULT_TIMEOUT = 60.0
DEFAULT_CACHE_DIR = ".goalrt/ai-cache"
_ARGS = frozenset({"prompt", "system", "messages", "model", "temperature", "max_tokens", "response_format", "timeout"})
_OPTIONS = ("temperature", "max_tokens", "response_format")


def _messages(args: dict[str, Any]) -> list[dict[str, Any]]:
    prompt, messages, system = args.get("prompt"), args.get("messages"), args.get("system")
    if (prompt is None) == (messages is None):
        raise PermanentError("ai.call: give prompt or messages (one of them)")
    out: list[dict[str, Any]] = []
    if system is not None:
        if not isinstance(system, str):
            raise PermanentError("ai.call: system must be a string")
        out.append({"role": "system", "content": system})
    if prompt is not None:
        if not isinstance(prompt, str):
            raise PermanentError("ai.call: prompt must be a string")
        return [*out, {"role": "user", "content": prompt}]
    if not isinstance(messages, list) or not messages:
        raise PermanentError("ai.call: messages must be a non-empty list of {role, content}")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise PermanentError(f"ai.call: each message needs a role and a content, got {message!r}")
    return [*out, *messages]


def _cache_file(config: ActionsConfig, key: str) -> Path | None:
    folder = config.section("ai").get("cache_dir", DEFAULT_CACHE_DIR)
    if not folder:
        return None
    return config.path(str(folder)) / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def _cached(path: Path | None, request: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # none yet, or unreadable: ask
    if not isinstance(entry, dict) or entry.get("request") != request or not isinstance(entry.get("result"), dict):
        return None
    return dict(entry["result"])


def _keep(path: Path, key: str, request: str, result: dict[str, Any]) -> None:
    """Write the cache entry atomically and durably (temporary file, fsync, rename, fsync of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps({"key": key, "request": request, "result": result})
    try:
        with open(temp, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _answer(data: Any) -> dict[str, Any]:
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise PermanentError(f"ai.call: the endpoint's answer has no message: {json.dumps(data)[:200]}") from None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return {
        "content": content,
        "finish_reason": choice.get("finish_reason"),
        "model": data.get("model"),
        "usage": {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens") if k in usage},
    }


async def ai_call(args: dict[str, Any], ctx: Any, call: Any) -> dict[str, Any]:
    """Run one ``ai.call`` step (see the module's docstring)."""
    unknown = sorted(set(args) - _ARGS)
    if unknown:
        raise PermanentError(f"ai.call: unknown argument {unknown[0]}")
    settings = call.config.section("ai")
    base_url, model = settings.get("base_url"), args.get("model") or settings.get("model")
    if not base_url:
        raise PermanentError("ai.call: no endpoint: set [actions.ai] base_url or GOALRT_AI_BASE_URL")
    if not model:
        raise PermanentError("ai.call: no model: give model, or set [actions.ai] model")
    body: dict[str, Any] = {"model": model, "messages": _messages(args)}
    body.update({k: args[k] for k in _OPTIONS if args.get(k) is not None})
    timeout = float(args.get("timeout") or settings.get("timeout", DEFAULT_TIMEOUT))
    url = httpx.URL(str(base_url).rstrip("/") + "/chat/completions")
    request = hashlib.sha256(json.dumps({"url": str(url), "body": body}, sort_keys=True).encode()).hexdigest()
    cache = _cache_file(call.config, ctx.idempotency_key)
    hit = _cached(cache, request)
    if hit is not None:
        return {**hit, "cached": True}
    headers = {"Idempotency-Key": ctx.idempotency_key}
    if settings.get("api_key_secret"):
        headers["Authorization"] = f"Bearer {call.secrets.get(str(settings['api_key_secret']))}"
    try:
        response = await http_client().post(url, json=body, headers=headers, timeout=httpx.Timeout(timeout))
    except httpx.TimeoutException:
        raise ActionFailedError(f"ai.call {url.host}: timed out after {timeout:g}s") from None
    except httpx.TransportError as exc:
        raise ActionFailedError(f"ai.call {url.host}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    if status >= 300:
        error = ActionFailedError if status in RETRYABLE_STATUSES | {409} or status >= 500 else PermanentError
        raise error(f"ai.call {url.host}{url.path}: HTTP {status}: {response.text[:200]}")
    try:
        data = response.json()
    except ValueError:
        raise PermanentError(f"ai.call: the endpoint's answer is not JSON: {response.text[:200]}") from None
    result = _answer(data)
    if cache is not None:
        try:
            _keep(cache, ctx.idempotency_key, request, result)
        except OSError as exc:
            # The answer is paid for: return it rather than fail and ask again; say what the re-run would do.
            ctx.log.warning("ai.call: cannot keep the answer in %s (%s): a re-run would ask again", cache, exc)
    return {**result, "cached": False}


__all__ = ["DEFAULT_CACHE_DIR", "ai_call"]
