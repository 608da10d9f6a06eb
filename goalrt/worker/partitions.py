"""The partitions a worker serves (``goalrt worker --partitions 0,1/4``): affinity by partition key."""

from __future__ import annotations

from dataclasses import dataclass

from goalrt.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Partitions:
    """The partitions a worker serves: some buckets of ``count`` (``goalrt worker --partitions 0,1/4``)."""

    buckets: tuple[int, ...]
    count: int

    @classmethod
    def parse(cls, spec: str) -> Partitions:
        """Parse ``"B,B,.../N"`` (buckets of N; ranges like ``0-3/16`` too)."""
        try:
            left, count_text = spec.split("/")
            count = int(count_text)
            buckets: set[int] = set()
            for part in left.split(","):
                lo, _, hi = part.strip().partition("-")
                buckets.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ConfigError(f"--partitions {spec!r}: expected buckets/count, e.g. 0,1/4 or 0-3/16") from None
        if count < 1 or not buckets or min(buckets) < 0 or max(buckets) >= count:
            raise ConfigError(f"--partitions {spec!r}: buckets must be within 0..count-1 (count >= 1)")
        return cls(tuple(sorted(buckets)), count)


__all__ = ["Partitions"]
