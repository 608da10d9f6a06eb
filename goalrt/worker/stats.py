"""What a worker counts while it runs (``Worker.stats``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker since it started."""

    claimed: int = 0
    steps: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    refused: int = 0
    released: int = 0
    reconnects: int = 0
    waiting: int = 0
    blocked: int = 0


__all__ = ["WorkerStats"]
