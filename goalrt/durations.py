"""Parse durations written the way people write them: ``30s``, ``250ms``, ``5m``, ``1h30m``, ``2d``, ``1.5``."""

from __future__ import annotations

import re

from goalrt.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def _shown(text: object) -> str:
    """Return ``text`` quoted for a message, cut to about 100 characters."""
    shown = repr(text)
    return shown if len(shown) <= 100 else f"{shown[:99]}… ({len(str(text))} characters)"


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Return seconds; a bare number is seconds. Raise ``ConfigError`` naming ``what`` otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        try:
            seconds = float(value)
        except ValueError:
            parts = _PART.findall(value)
            if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
                raise ConfigError(
                    f"invalid {what} {_shown(text)}: use a number of seconds or e.g. 250ms, 30s, 5m, 1h30m, 2d"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(f"invalid {what} {_shown(text)}: must be a finite number of seconds >= 0")
    return seconds


__all__ = ["parse_duration"]
