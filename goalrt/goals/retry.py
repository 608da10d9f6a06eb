"""Retry policy: how many attempts a step gets and how long to wait between them.

The wait is exponential with jitter, and the jitter is *deterministic*: it is
drawn from a hash of (goal id, step, attempt), so a replay or a simulation of
the same goal reproduces the same schedule, while different goals retrying
together still spread out.
"""

from __future__ import annotations

from dataclasses import dataclass

from goalrt.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Retry:
    """At most ``max_attempts`` runs of a step; before attempt n+1 wait about ``backoff * factor**(n-1)`` seconds."""

    max_attempts: int = 3
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 300.0
    # The wait is scaled by a factor drawn from [1 - jitter, 1 + jitter].
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"retry max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if self.backoff < 0 or self.factor < 1 or self.max_backoff < 0:
            raise ConfigError("retry backoff and max_backoff must be >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"retry jitter must be between 0 and 1, got {self.jitter!r}")

    @classmethod
    def of(cls, value: Retry | int | None) -> Retry:
        """Return a policy from what ``@action(retry=...)`` accepts: a Retry, a number of attempts, or None."""
        if value is None:
            return cls()
        if isinstance(value, Retry):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(max_attempts=value)
        raise ConfigError(f"retry must be a goalrt.Retry or a number of attempts, got {value!r}")

    def should_retry(self, attempt: int) -> bool:
        """Whether a step that failed on ``attempt`` (1-based) gets another one."""
        return attempt < self.max_attempts

    def delay(self, goal_id: int, seq: int, attempt: int) -> float:
        """Return the seconds to wait after failed ``attempt`` of step ``seq`` of ``goal_id``."""
        base = min(self.max_backoff, self.backoff * self.factor ** max(attempt - 1, 0))
        return base * (1 - self.jitter + 2 * self.jitter * unit_draw(goal_id, seq, attempt))


def unit_draw(goal_id: int, seq: int, attempt: int) -> float:
    """Return a number in [0, 1) determined by its arguments alone (sha256, not Python's hash)."""
    import hashlib  # here, not at the top: goalrt submit loads this module (the registry's default policy), never this

    digest = hashlib.sha256(f"goalrt-retry:{goal_id}:{seq}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


__all__ = ["Retry", "unit_draw"]
