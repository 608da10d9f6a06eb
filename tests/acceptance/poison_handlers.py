"""Handlers that misbehave, for the worker process tests: each goal ``poison`` runs the one action its ``kind`` names.

- ``exit_async`` / ``exit_sync``: raise ``SystemExit(3)``;
- ``interrupt``: raise ``KeyboardInterrupt``;
- ``base``: raise a ``BaseException`` of its own;
- ``deep``: return JSON nested 100,000 deep;
- ``stubborn``: an async handler that ignores its cancellation (times out after 0.5 s);
- ``stubborn_forever``: the same without a timeout (only a drain stops the worker waiting for it);
- ``ok``: return ``{"ok": true}``;
- ``permanent``: raise ``goalrt.PermanentError``.

Every action has one attempt, so its goal fails at the first failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

import goalrt

ONCE = goalrt.Retry(max_attempts=1)


class Kind(BaseModel):
    kind: str


class Weird(BaseException):
    """Not an Exception: nothing but a catch of BaseException stops it."""


@goalrt.goal("poison", params=Kind)
def poison_goal(p: Kind) -> list[goalrt.Step]:
    return [goalrt.Step(f"poison.{p.kind}", {})]


@goalrt.action("poison.exit_async", retry=ONCE)
async def exit_async(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    raise SystemExit(3)


@goalrt.action("poison.exit_sync", retry=ONCE)
def exit_sync(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    raise SystemExit(3)


@goalrt.action("poison.interrupt", retry=ONCE)
async def interrupt(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    raise KeyboardInterrupt


@goalrt.action("poison.base", retry=ONCE)
def base(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    raise Weird("odd")


@goalrt.action("poison.deep", retry=ONCE)
def deep(args: dict[str, Any], ctx: goalrt.ActionContext) -> Any:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    return value


async def ignore_cancellation(seconds: float) -> None:
    """Sleep ``seconds`` in small steps, swallowing every cancellation."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue


@goalrt.action("poison.stubborn", timeout=0.5, retry=ONCE)
async def stubborn(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    await ignore_cancellation(3600)


@goalrt.action("poison.stubborn_forever", retry=ONCE)
async def stubborn_forever(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    await ignore_cancellation(3600)


@goalrt.action("poison.ok", retry=ONCE)
def ok(args: dict[str, Any], ctx: goalrt.ActionContext) -> dict[str, bool]:
    return {"ok": True}


@goalrt.action("poison.permanent", retry=ONCE)
def permanent(args: dict[str, Any], ctx: goalrt.ActionContext) -> None:
    raise goalrt.PermanentError("no")
