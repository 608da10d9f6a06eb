"""The configuration of the built-in actions and plugins: ``goalrt.toml`` sections and ``GOALRT_*`` variables.

A worker reads it once, from the ``goalrt.toml`` of the folder it starts in
(or the nearest parent holding one), the same file that names its handler
modules. An environment variable, where one exists, wins over the file::

    [actions.http]
    allow_hosts = ["api.example.com"]     # GOALRT_HTTP_ALLOW_HOSTS="api.example.com,other.example"
    max_body = 65536                      # the most of a response body kept in the result (bytes)

    [actions.email]                       # GOALRT_SMTP_HOST, _PORT, _USERNAME, _FROM, _STARTTLS
    host = "smtp.example.com"
    port = 587
    username = "goalrt"
    password_secret = "SMTP_PASSWORD"     # a secret's name, never the password
    from = "goalrt@example.com"
    starttls = true

    [actions.notification]
    webhook_url = "https://hooks.example.com/services/{secret.HOOK}"   # GOALRT_NOTIFY_WEBHOOK_URL

    [actions.db]                          # GOALRT_DB_MAX_ROWS, _TIMEOUT, _WRITABLE="reports,other"
    max_rows = 1000
    timeout = 30                          # seconds: the statement timeout
    writable = ["reports"]                # the databases a workspace may write to (with write = true)
    [actions.db.databases]                # GOALRT_DB_REPORTS="postgresql://..."
    reports = "postgresql://reader:{secret.REPORTS_PASSWORD}@db.example.com/reports"

    [actions.file]                        # GOALRT_FILE_ROOT, _SOURCES, _MAX_SIZE
    root = "files"                        # relative to the goalrt.toml
    sources = ["/srv/exports"]            # the folders file.upload may copy a source file from

    [actions.ai]                          # GOALRT_AI_BASE_URL, _MODEL, _API_KEY_SECRET, _CACHE_DIR, _TIMEOUT
    base_url = "https://api.openai.com/v1"
    model = "gpt-4o-mini"
    api_key_secret = "OPENAI_API_KEY"     # a secret's name, never the key
    cache_dir = ".goalrt/ai-cache"        # relative to the goalrt.toml

    [secrets]
    file = "secrets.toml"                 # GOALRT_SECRETS_FILE; relative to the goalrt.toml

    [plugins.example]                     # a plugin's settings; GOALRT_PLUGIN_EXAMPLE_GREETING=...
    greeting = "Hello"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goalrt.errors import ConfigError

_MANIFEST = "goalrt.toml"

# Environment variables -> (section of [actions], key, how to read the text).
_ENV: dict[str, tuple[str, str, str]] = {
    "GOALRT_HTTP_ALLOW_HOSTS": ("http", "allow_hosts", "list"),
    "GOALRT_HTTP_MAX_BODY": ("http", "max_body", "int"),
    "GOALRT_SMTP_HOST": ("email", "host", "str"),
    "GOALRT_SMTP_PORT": ("email", "port", "int"),
    "GOALRT_SMTP_USERNAME": ("email", "username", "str"),
    "GOALRT_SMTP_PASSWORD_SECRET": ("email", "password_secret", "str"),
    "GOALRT_SMTP_FROM": ("email", "from", "str"),
    "GOALRT_SMTP_STARTTLS": ("email", "starttls", "bool"),
    "GOALRT_NOTIFY_WEBHOOK_URL": ("notification", "webhook_url", "str"),
    "GOALRT_DB_MAX_ROWS": ("db", "max_rows", "int"),
    "GOALRT_DB_TIMEOUT": ("db", "timeout", "float"),
    "GOALRT_DB_WRITABLE": ("db", "writable", "list"),
    "GOALRT_FILE_ROOT": ("file", "root", "str"),
    "GOALRT_FILE_SOURCES": ("file", "sources", "list"),
    "GOALRT_FILE_MAX_SIZE": ("file", "max_size", "int"),
    "GOALRT_AI_BASE_URL": ("ai", "base_url", "str"),
    "GOALRT_AI_MODEL": ("ai", "model", "str"),
    "GOALRT_AI_API_KEY_SECRET": ("ai", "api_key_secret", "str"),
    "GOALRT_AI_CACHE_DIR": ("ai", "cache_dir", "str"),
    "GOALRT_AI_TIMEOUT": ("ai", "timeout", "float"),
}
# GOALRT_DB_<NAME> names a database for db.query, except these (its settings above).
_DB_PREFIX = "GOALRT_DB_"


@dataclass(frozen=True, slots=True)
class ActionsConfig:
    """The ``[actions.*]``, ``[secrets]`` and ``[plugins.*]`` settings, environment applied."""

    actions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    secrets_file: Path | None = None
    # The folder of the goalrt.toml read (None: none was): relative paths of the settings are relative to it.
    base: Path | None = None

    def section(self, name: str) -> Mapping[str, Any]:
        """Return ``[actions.NAME]`` (empty when absent)."""
        return self.actions.get(name, {})

    def plugin(self, name: str) -> Mapping[str, Any]:
        """Return ``[plugins.NAME]`` with the ``GOALRT_PLUGIN_NAME_KEY`` variables over it (keys lower case)."""
        out = dict(self.plugins.get(name, {}))
        prefix = f"GOALRT_PLUGIN_{name.upper().replace('-', '_')}_"
        for key, value in os.environ.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                out[key[len(prefix) :].lower()] = value
        return out

    def allow_hosts(self) -> frozenset[str]:
        """Return the hosts the configuration names for outgoing calls (lower case)."""
        hosts = self.section("http").get("allow_hosts", [])
        return frozenset(str(h).strip().lower() for h in hosts if str(h).strip())

    def path(self, value: str | Path) -> Path:
        """Return a configured path, relative ones taken from the goalrt.toml's folder (else the current one)."""
        return (self.base or Path.cwd()) / Path(value).expanduser()

    def databases(self) -> dict[str, str]:
        """Return db.query's databases by name (lower case): ``[actions.db.databases]`` and ``GOALRT_DB_<NAME>``."""
        found = self.section("db").get("databases", {})
        if not isinstance(found, dict):
            raise ConfigError("[actions.db.databases] must be a table of NAME = URL")
        return {str(name).lower(): str(url) for name, url in found.items()}

    @classmethod
    def load(cls, start: str | Path | None = None, environ: Mapping[str, str] | None = None) -> ActionsConfig:
        """Read ``goalrt.toml`` in ``start`` (default: the current folder) or its nearest parent, then the environment.

        No file is no error: the defaults hold (no host allowed, console notifications).
        """
        env = os.environ if environ is None else environ
        folder = Path(start or os.getcwd()).resolve()
        manifest = next((d / _MANIFEST for d in (folder, *folder.parents) if (d / _MANIFEST).is_file()), None)
        data: dict[str, Any] = {}
        if manifest is not None:
            try:
                data = tomllib.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"{manifest}: {exc}") from None
        actions = {k: dict(v) for k, v in _table(data, "actions", manifest).items()}
        plugins = {k: dict(v) for k, v in _table(data, "plugins", manifest).items()}
        for variable, (section, key, kind) in _ENV.items():
            if env.get(variable):
                actions.setdefault(section, {})[key] = _parse(variable, env[variable], kind)
        for variable, url in env.items():
            if variable.startswith(_DB_PREFIX) and variable not in _ENV and url and len(variable) > len(_DB_PREFIX):
                databases = actions.setdefault("db", {}).setdefault("databases", {})
                if not isinstance(databases, dict):
                    raise ConfigError(f"{manifest}: [actions.db.databases] must be a table of NAME = URL")
                databases[variable[len(_DB_PREFIX) :].lower()] = url
        secrets = _table(data, "secrets", manifest, nested=False).get("file")
        secrets_file = None
        if env.get("GOALRT_SECRETS_FILE"):
            secrets_file = Path(env["GOALRT_SECRETS_FILE"])
        elif isinstance(secrets, str) and manifest is not None:
            secrets_file = manifest.parent / secrets
        return cls(actions, plugins, secrets_file, manifest.parent if manifest is not None else None)


def _table(data: Mapping[str, Any], name: str, where: Path | None, *, nested: bool = True) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict) or (nested and not all(isinstance(v, dict) for v in table.values())):
        raise ConfigError(f"{where}: [{name}] must be a table{' of tables' if nested else ''}")
    return table


def _parse(variable: str, text: str, kind: str) -> Any:
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{variable} must be an integer, got {text!r}") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{variable} must be a number, got {text!r}") from None
    if kind == "bool":
        return text.strip().lower() in ("1", "true", "yes", "on")
    return text


__all__ = ["ActionsConfig"]
