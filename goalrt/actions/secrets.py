"""Secrets by name: looked up when a step runs, and kept out of everything goalrt records.

A workspace writes ``{secret.NAME}`` in a built-in's string argument (a
header, a URL, a body); the worker replaces it just before the call with the
value from the secrets file (``[secrets] file`` in ``goalrt.toml`` or
``$GOALRT_SECRETS_FILE``: a TOML file of ``NAME = "value"`` lines), else from
the environment variable ``GOALRT_SECRET_NAME``. Only variables with that
prefix can be read, so a workspace cannot name ``GOALRT_DATABASE_URL`` or
any other variable of the worker's.

The step's arguments as stored keep the reference, never the value; and
before a result or an error leaves the built-in, every secret value it used
is replaced by ``[secret NAME]`` (a server that echoes the Authorization
header does not put the token into the events).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goalrt.errors import ConfigError, PermanentError

SECRET = re.compile(r"\{secret\.([A-Za-z_][A-Za-z0-9_]*)\}")
# Shorter values are not redacted: replacing every "a" in a result would say which letter the secret was.
_MIN_REDACTED = 4


class Secrets:
    """Resolve secrets by name for one call, remembering each value used so it can be redacted."""

    def __init__(self, file: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self._file = file
        self._environ = os.environ if environ is None else environ
        self._from_file: dict[str, Any] | None = None
        self.used: dict[str, str] = {}

    def _file_values(self) -> dict[str, Any]:
        if self._from_file is None:
            self._from_file = {}
            if self._file is not None:
                try:
                    self._from_file = tomllib.loads(self._file.read_text(encoding="utf-8"))
                except (OSError, tomllib.TOMLDecodeError) as exc:
                    raise ConfigError(f"secrets file {self._file}: {exc}") from None
        return self._from_file

    def get(self, name: str) -> str:
        """Return the secret's value; a missing one fails the step for good (a retry would not find it either)."""
        value = self._file_values().get(name)
        if value is None:
            value = self._environ.get(f"GOALRT_SECRET_{name}")
        if value is None:
            raise PermanentError(f"secret {name} is not set (add it to the secrets file or set GOALRT_SECRET_{name})")
        text = str(value)
        self.used[name] = text
        return text

    def substitute(self, text: str) -> str:
        """Return ``text`` with each ``{secret.NAME}`` replaced by its value."""
        return SECRET.sub(lambda m: self.get(m.group(1)), text)

    def substitute_all(self, value: Any) -> Any:
        """Return a JSON value with ``{secret.NAME}`` replaced in every string (keys too)."""
        if isinstance(value, str):
            return self.substitute(value)
        if isinstance(value, list):
            return [self.substitute_all(v) for v in value]
        if isinstance(value, dict):
            return {self.substitute(str(k)): self.substitute_all(v) for k, v in value.items()}
        return value

    def redact(self, value: Any) -> Any:
        """Return a JSON value with every secret value used so far replaced by ``[secret NAME]``."""
        if not self.used:
            return value
        if isinstance(value, str):
            for name, secret in sorted(self.used.items(), key=lambda item: -len(item[1])):
                if len(secret) >= _MIN_REDACTED:
                    value = value.replace(secret, f"[secret {name}]")
            return value
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        if isinstance(value, dict):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        return value


__all__ = ["SECRET", "Secrets"]
