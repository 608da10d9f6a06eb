"""Turn a GDL action's ``with { ... }`` into the arguments its built-in runs with, when the step runs.

The compiler checks the block against the built-in's contract and stores it
as JSON (``call.args``); strings are templates:

- ``{o}``: the action's parameter ``o`` (the object's key); in an argument of
  type ``url`` it is percent-encoded, so a key cannot change the host or path;
- ``{state:orders.{o}.amount}``: the state's value at the path, as text;
- ``{secret.NAME}``: a secret (goalrt.actions.secrets), put in last;
- ``{{`` and ``}}``: a literal brace.

``state(PATH)`` (stored as ``{"$state": PATH}``) is the state's JSON value itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote

from goalrt.actions.secrets import Secrets

_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"
# One template piece: an escaped brace, a secret, a state read (one level of {param} holes inside) or a parameter.
TEMPLATE = re.compile(
    rf"\{{\{{|\}}\}}|\{{secret\.(?P<secret>[A-Za-z_][A-Za-z0-9_]*)\}}"
    rf"|\{{state:(?P<state>(?:[^{{}}\s]|\{{{_IDENT}\}})+)\}}|\{{(?P<param>{_IDENT})\}}"
)
_HOLE = re.compile(rf"\{{({_IDENT})\}}")
STATE_KEY = "$state"


def params_in_path(path: str) -> list[str]:
    """Return the ``{param}`` holes of a state path template."""
    return _HOLE.findall(path)


def fill_path(path: str, args: Mapping[str, Any]) -> str:
    """Return the path with its holes replaced by the step's arguments."""
    return _HOLE.sub(lambda m: str(args[m.group(1)]), path)


class Renderer:
    """Render one step's ``with`` arguments: parameters, state reads and secrets."""

    def __init__(self, args: Mapping[str, Any], ctx: Any, secrets: Secrets) -> None:
        self.args = args
        self.ctx = ctx
        self.secrets = secrets

    async def _state(self, path: str) -> Any:
        return await self.ctx.state.value(fill_path(path, self.args))

    async def text(self, template: str, *, url: bool = False) -> str:
        out: list[str] = []
        last = 0
        for match in TEMPLATE.finditer(template):
            out.append(template[last : match.start()])
            last = match.end()
            piece = match.group(0)
            if piece in ("{{", "}}"):
                out.append(piece[0])
            elif match.group("secret"):
                out.append(self.secrets.get(match.group("secret")))
            elif match.group("state"):
                value = await self._state(match.group("state"))
                text = value if isinstance(value, str) else json.dumps(value)
                out.append(quote(text, safe="") if url else text)
            else:
                text = str(self.args[match.group("param")])
                out.append(quote(text, safe="") if url else text)
        out.append(template[last:])
        return "".join(out)

    async def value(self, value: Any, *, url: bool = False) -> Any:
        if isinstance(value, str):
            return await self.text(value, url=url)
        if isinstance(value, list):
            return [await self.value(v) for v in value]
        if isinstance(value, dict):
            if set(value) == {STATE_KEY}:
                return await self._state(value[STATE_KEY])
            return {await self.text(k): await self.value(v) for k, v in value.items()}
        return value

    async def render(self, with_args: Mapping[str, Any], urls: Collection[str]) -> dict[str, Any]:
        """Return the built-in's arguments; those named in ``urls`` percent-encode what they substitute."""
        return {key: await self.value(v, url=key in urls) for key, v in with_args.items()}


__all__ = ["STATE_KEY", "TEMPLATE", "Renderer", "fill_path", "params_in_path"]
