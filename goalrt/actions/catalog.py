"""The built-in actions a worker can run: goalrt's own and the installed plugins', with their configuration.

``Catalog.handler(name, call)`` returns an ordinary async handler
``(args, ctx)`` for the registry: for a GDL action it renders the action's
``with`` block (goalrt.actions.binding) from the step's arguments and the
state; for a Python step (``goalrt.Step("http.call", {...})``) it takes the
arguments as given, with ``{secret.NAME}`` replaced. Either way the secrets
it used are redacted from the result and from the error, and an exception
that is neither ``PermanentError`` nor ``ActionFailedError`` becomes a
retryable ``ActionFailedError`` naming its type.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goalrt.actions.binding import Renderer
from goalrt.actions.config import ActionsConfig
from goalrt.actions.plugins import Plugin, Provider, Run, discover
from goalrt.actions.secrets import Secrets
from goalrt.errors import ActionFailedError, ConfigError, PermanentError
from goalrt.goals.registry import Action, Registry, Result

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def builtin_contracts_dir() -> Path:
    """Return the folder of the built-ins' GDL contracts (``goalrt/builtin`` in a wheel, ``gdl/builtin`` in a clone)."""
    for candidate in (_PACKAGE_DIR / "builtin", _PACKAGE_DIR.parent / "gdl" / "builtin"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"goalrt is installed without its built-in contracts (looked beside {_PACKAGE_DIR})")


@dataclass(frozen=True, slots=True)
class GdlCall:
    """A GDL action's ``with`` block as stored: the arguments, the hosts it names, the arguments that are URLs."""

    args: Mapping[str, Any]
    hosts: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> GdlCall:
        return cls(dict(spec.get("args") or {}), frozenset(spec.get("hosts") or ()), frozenset(spec.get("urls") or ()))


@dataclass(frozen=True, slots=True)
class Call:
    """What a built-in gets besides its arguments and the ActionContext."""

    config: ActionsConfig
    secrets: Secrets
    # The hosts it may call: those the configuration names and those the GDL action's arguments name.
    hosts: frozenset[str]
    # The plugin's settings ([plugins.NAME] and GOALRT_PLUGIN_NAME_*); empty for goalrt's own built-ins.
    settings: Mapping[str, Any]
    providers: Mapping[str, Provider] = field(default_factory=dict)

    def check_host(self, host: str, what: str = "request") -> None:
        """Raise ``PermanentError`` unless ``host`` is on the allow-list."""
        if host.lower() not in self.hosts:
            named = ", ".join(sorted(self.hosts)) or "none"
            raise PermanentError(
                f"{what} to {host} refused: the host is not on the allow-list (allowed: {named}; "
                "name it in the action's url or in [actions.http] allow_hosts)"
            )


class Catalog:
    """Built-in actions by name, the plugin of each, notification providers, and the configuration."""

    def __init__(self, config: ActionsConfig | None = None, plugins: Iterable[Plugin] | None = None) -> None:
        from goalrt.actions.core import core

        self.config = config or ActionsConfig()
        self.plugins: list[Plugin] = [core, *(discover() if plugins is None else plugins)]
        self.actions: dict[str, tuple[Plugin, Run]] = {}
        self.providers: dict[str, Provider] = {}
        for plugin in self.plugins:
            for name, run in plugin.actions.items():
                if name in self.actions:
                    other = self.actions[name][0].name
                    raise ConfigError(f"action {name} is contributed by plugins {other} and {plugin.name}")
                self.actions[name] = (plugin, run)
            for name, provider in plugin.providers.items():
                self.providers[name] = self._provider(plugin, provider)

    def _settings(self, plugin: Plugin) -> Mapping[str, Any]:
        return self.config.plugin(plugin.name) if plugin.name != "goalrt" else {}

    def _provider(self, plugin: Plugin, provider: Provider) -> Provider:
        """Return the provider run with its own plugin's settings (notification.push's call has goalrt's)."""
        settings = self._settings(plugin)

        async def send(message: dict[str, Any], call: Call) -> Any:
            return await provider(message, dataclasses.replace(call, settings=settings))

        return send

    def handler(self, name: str, gdl: GdlCall | None = None) -> Any:
        """Return the async handler ``(args, ctx)`` of built-in ``name`` (for a GDL action: with its ``with`` block)."""
        plugin, run = self.actions[name]
        settings = self._settings(plugin)
        allowed = self.config.allow_hosts() | (gdl.hosts if gdl is not None else frozenset())

        async def handle(args: Mapping[str, Any], ctx: Any) -> Any:
            secrets = Secrets(self.config.secrets_file)
            call = Call(self.config, secrets, allowed, settings, self.providers)
            try:
                if gdl is None:
                    real = secrets.substitute_all(dict(args))
                else:
                    real = await Renderer(args, ctx, secrets).render(gdl.args, gdl.urls)
                result = await run(real, ctx, call)
            except PermanentError as exc:
                raise PermanentError(secrets.redact(str(exc))) from None
            except ActionFailedError as exc:
                raise ActionFailedError(secrets.redact(str(exc))) from None
            except Exception as exc:
                raise ActionFailedError(secrets.redact(f"{name}: {type(exc).__name__}: {exc}")) from None
            if isinstance(result, Result):
                return Result(secrets.redact(result.value), result.changes, secrets.redact(list(result.events)))
            return secrets.redact(result)

        handle.__name__ = handle.__qualname__ = name.replace(".", "_")
        return handle

    def install(self, registry: Registry, names: Collection[str] | None = None) -> Registry:
        """Register the built-ins (all, or ``names``) in ``registry`` for Python steps; return it."""
        for name in sorted(self.actions if names is None else names):
            registry.add_action(Action(name, self.handler(name)))
        return registry


@functools.cache
def default_catalog() -> Catalog:
    """Return the installed plugins' catalog, configured by the current folder's goalrt.toml and the environment."""
    return Catalog(ActionsConfig.load())


def contract_sources() -> list[tuple[str, str]]:
    """Return (label, text) of every built-in contract: goalrt's (gdl/builtin) and the installed plugins'."""
    folder = builtin_contracts_dir()
    out = [(f"builtin/{p.name}", p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.gdl"))]
    for plugin in discover():
        out.extend(plugin.contract_sources())
    return out


__all__ = ["Call", "Catalog", "GdlCall", "builtin_contracts_dir", "contract_sources", "default_catalog"]
