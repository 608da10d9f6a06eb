"""Plugins: packages that contribute actions and notification providers through the ``goalrt.plugins`` entry points.

A plugin is a ``Plugin`` object an installed distribution names in its
metadata::

    # pyproject.toml of the plugin
    [project.entry-points."goalrt.plugins"]
    example = "goalrt_example_plugin:plugin"

    # goalrt_example_plugin/__init__.py
    from goalrt.actions import Plugin

    plugin = Plugin("example", contracts=[Path(__file__).with_name("contracts.gdl")])

    @plugin.action("example.greet")
    async def greet(args, ctx, call):          # call.settings: [plugins.example] of goalrt.toml
        return {"greeting": f"{call.settings.get('greeting', 'Hello')}, {args['name']}"}

    @plugin.provider("example")                # notification.push with provider = "example"
    async def push(message, call): ...

Each action needs its contract, a ``builtin`` declaration in one of the
plugin's ``.gdl`` files, which the GDL compiler checks ``with`` blocks
against. goalrt's own built-ins are the plugin ``goalrt``
(``goalrt.actions.core``), with their contracts in ``gdl/builtin/``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from goalrt.errors import ConfigError

GROUP = "goalrt.plugins"

# A built-in's code: (its arguments, the ActionContext, the Call) -> its result.
Run = Callable[[dict[str, Any], Any, Any], Awaitable[Any]]
# A notification provider: (the message: text, title, url and the rest of the arguments, the Call) -> what it did.
Provider = Callable[[dict[str, Any], Any], Awaitable[Any]]


@dataclass
class Plugin:
    """A named set of actions (each with a GDL contract) and notification providers."""

    name: str
    contracts: Sequence[Path] = ()
    description: str = ""
    actions: dict[str, Run] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    # Where it came from: the distribution and version (set by discover()).
    origin: str = ""

    def action(self, name: str) -> Callable[[Run], Run]:
        """Register an async ``fn(args, ctx, call)`` as the built-in action ``name``."""

        def register(fn: Run) -> Run:
            if name in self.actions:
                raise ConfigError(f"plugin {self.name}: action {name} is registered twice")
            self.actions[name] = fn
            return fn

        return register

    def provider(self, name: str) -> Callable[[Provider], Provider]:
        """Register an async ``fn(message, call)`` as the notification provider ``name``."""

        def register(fn: Provider) -> Provider:
            self.providers[name] = fn
            return fn

        return register

    def contract_sources(self) -> list[tuple[str, str]]:
        """Return (label, text) of each contract file."""
        out = []
        for path in self.contracts:
            try:
                out.append((f"{self.name}:{Path(path).name}", Path(path).read_text(encoding="utf-8")))
            except OSError as exc:
                raise ConfigError(f"plugin {self.name}: cannot read its contract {path}: {exc}") from None
        return out


def _load(entry: EntryPoint) -> Plugin:
    origin = f"{entry.dist.name} {entry.dist.version}" if entry.dist is not None else entry.value
    try:
        loaded = entry.load()
    except Exception as exc:
        raise ConfigError(f"plugin {entry.name} ({origin}): cannot load {entry.value}: {exc}") from None
    plugin = loaded() if callable(loaded) and not isinstance(loaded, Plugin) else loaded
    if not isinstance(plugin, Plugin):
        raise ConfigError(f"plugin {entry.name} ({origin}): {entry.value} is not a goalrt.actions.Plugin")
    plugin.origin = origin
    return plugin


def discover() -> list[Plugin]:
    """Return the installed plugins (entry points of group ``goalrt.plugins``), sorted by name."""
    found = [_load(entry) for entry in entry_points(group=GROUP)]
    return sorted(found, key=lambda p: p.name)


__all__ = ["GROUP", "Plugin", "Provider", "Run", "discover"]
