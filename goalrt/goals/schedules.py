"""Schedules: when each tick of a cron or ``every`` schedule falls, and which due ticks a worker submits.

A schedule submits its goal at each tick (docs/schedules.md). The ticks:

- ``cron``: a 5-field cron expression (minute hour day-of-month month
  day-of-week, or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
  ``@yearly``), read in the schedule's time zone by ``cronsim`` (the
  evaluator healthchecks.io runs; Debian cron's rules, also across daylight
  saving time changes: a local time that does not exist runs at the first
  minute after the gap, one that happens twice runs once);
- ``every``: whole multiples of the interval since 1970-01-01T00:00Z
  (``every 15m`` ticks at :00, :15, :30 and :45), whatever the time zone.

The next tick is computed here, in Python, and passed to the database
(``goalrt.fire_schedules_v1``), which checks it and submits: one cron
evaluator, the one the GDL compiler and the CLI validate with, rather than
a second dialect in PL/pgSQL.

After downtime, the ticks that fell due while nobody fired them are handled
by the schedule's ``catch_up``: ``all`` submits every one (at most
``MAX_TICKS`` per pass; the next pass goes on), ``latest`` submits only the
newest, ``skip`` submits the newest only if it is at most ``GRACE`` old
(a tick a worker is merely late for) and skips the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from goalrt.errors import InvalidGoalError

CATCH_UP: Final = ("skip", "latest", "all")
# How late a tick may be fired under catch_up skip (a worker's poll, a short restart).
GRACE: Final = timedelta(seconds=60)
# Ticks one pass submits per schedule under catch_up all.
MAX_TICKS: Final = 1000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MACROS: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_SECOND: Final = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule ticks: a cron expression in a time zone, or every so many seconds."""

    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise InvalidGoalError("a schedule needs either cron or every, not both")
        if self.cron is not None:
            cron_problem = check_cron(self.cron)
            if cron_problem:
                raise InvalidGoalError(cron_problem)
        if self.every is not None and (
            not _SECOND <= self.every <= timedelta(days=36500) or self.every % _SECOND != timedelta(0)
        ):
            raise InvalidGoalError(
                f"every must be whole seconds from 1s to 36500d, got {self.every.total_seconds():g}s"
            )
        tz_problem = check_timezone(self.timezone)
        if tz_problem:
            raise InvalidGoalError(tz_problem)

    def after(self, moment: datetime) -> datetime:
        """Return the first tick strictly after ``moment`` (an aware datetime), in UTC."""
        if self.every is not None:
            step = self.every // timedelta(microseconds=1)
            since = (moment - _EPOCH) // timedelta(microseconds=1)
            return _EPOCH + timedelta(microseconds=(since // step + 1) * step)
        assert self.cron is not None
        from cronsim import CronSim  # imported when a cron is read: `goalrt get` loads this module, not cronsim

        try:
            tick = next(CronSim(_expand(self.cron), moment.astimezone(ZoneInfo(self.timezone))))
        except StopIteration:
            raise InvalidGoalError(f"cron {self.cron!r} has no tick in the 50 years after {moment:%Y-%m-%d}") from None
        return tick.astimezone(UTC)

    def latest(self, moment: datetime) -> datetime:
        """Return the last tick at or before ``moment``, in UTC."""
        if self.every is not None:
            step = self.every // timedelta(microseconds=1)
            since = (moment - _EPOCH) // timedelta(microseconds=1)
            return _EPOCH + timedelta(microseconds=(since // step) * step)
        assert self.cron is not None
        from cronsim import CronSim

        # cronsim's reverse search starts one second before where it is put (ticks are whole seconds).
        start = moment.replace(microsecond=0) + _SECOND
        try:
            tick = next(CronSim(_expand(self.cron), start.astimezone(ZoneInfo(self.timezone)), reverse=True))
        except StopIteration:
            raise InvalidGoalError(f"cron {self.cron!r} has no tick in the 50 years before {moment:%Y-%m-%d}") from None
        return tick.astimezone(UTC)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """Return the next ``count`` ticks strictly after ``moment``."""
        ticks: list[datetime] = []
        for _ in range(count):
            moment = self.after(moment)
            ticks.append(moment)
        return ticks

    def describe(self) -> str:
        """Return ``cron 0 9 * * 1-5 (Europe/Paris)`` or ``every 15m``."""
        if self.every is not None:
            return f"every {_duration_text(self.every)}"
        zone = "" if self.timezone == "UTC" else f" ({self.timezone})"
        return f"cron {self.cron}{zone}"


@dataclass(frozen=True, slots=True)
class Due:
    """What one pass does for a schedule: the ticks to submit and the tick to wait for next."""

    ticks: tuple[datetime, ...]
    next_at: datetime
    skipped: int


def due(timing: Timing, catch_up: str, first: datetime, now: datetime) -> Due:
    """Return the ticks from ``first`` (the schedule's next_at, itself a tick) up to ``now`` that ``catch_up`` fires.

    ``skipped`` counts the due ticks not fired (at most ``MAX_TICKS`` are
    counted one by one; a longer gap counts as that many).
    """
    if catch_up not in CATCH_UP:
        raise InvalidGoalError(f"catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}")
    if first > now:
        return Due((), first, 0)
    if catch_up == "all":
        ticks = [first]
        tick = first
        while len(ticks) < MAX_TICKS:
            tick = timing.after(tick)
            if tick > now:
                return Due(tuple(ticks), tick, 0)
            ticks.append(tick)
        return Due(tuple(ticks), timing.after(tick), 0)
    newest = max(first, timing.latest(now))
    following = timing.after(now)
    missed = _count(timing, first, newest)
    if catch_up == "skip" and now - newest > GRACE:
        return Due((), following, missed + 1)
    return Due((newest,), following, missed)


def first_tick(timing: Timing, next_at: datetime | None, anchor: datetime) -> datetime:
    """Return the schedule's next tick: its next_at, or (none computed yet) the first tick after ``anchor``."""
    return next_at if next_at is not None else timing.after(anchor)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as stored (``goalrt.schedules``), with when it runs next."""

    name: str
    goal: str
    params: dict[str, Any]
    timing: Timing
    catch_up: str
    enabled: bool
    # The next tick (None: the next worker computes it, from updated_at).
    next_at: datetime | None
    last_tick: datetime | None
    last_goal_id: int | None
    fired: int
    skipped: int
    last_error: str | None
    # The GDL version that installed it (None: set by hand).
    gdl_version: int | None
    updated_at: datetime
    # The database's time when the row was read.
    read_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Schedule:
        """Build it from a row of the schedules_list (or schedule_set) query."""
        every = None if row[4] is None else timedelta(seconds=row[4])
        timing = Timing(cron=row[3], every=every, timezone=row[5])
        return cls(row[0], row[1], dict(row[2]), timing, *row[6:])

    def next_runs(self, count: int = 3) -> list[datetime]:
        """Return the next ``count`` ticks (from ``next_at``, or after the last change when not computed yet)."""
        if not self.enabled or count < 1:
            return []
        first = first_tick(self.timing, self.next_at, self.updated_at)
        return [first, *self.timing.upcoming(first, count - 1)]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "goal": self.goal,
            "params": self.params,
            "cron": self.timing.cron,
            "every": None if self.timing.every is None else self.timing.every.total_seconds(),
            "timezone": self.timing.timezone,
            "catch_up": self.catch_up,
            "enabled": self.enabled,
            "next_runs": [t.isoformat() for t in self.next_runs()],
            "last_tick": None if self.last_tick is None else self.last_tick.isoformat(),
            "last_goal_id": self.last_goal_id,
            "fired": self.fired,
            "skipped": self.skipped,
            "last_error": self.last_error,
            "source": "manual" if self.gdl_version is None else f"gdl version {self.gdl_version}",
        }


def schedule_options(
    *,
    cron: str | None,
    every: float | timedelta | None,
    timezone: str,
    catch_up: str,
    enabled: bool,
    next_at: datetime | None,
) -> dict[str, Any]:
    """Return the options goalrt.set_schedule takes, checked here first (the cron by cronsim)."""
    span = timedelta(seconds=every) if isinstance(every, int | float) and not isinstance(every, bool) else every
    if span is not None and not isinstance(span, timedelta):
        raise InvalidGoalError(f"every must be seconds or a timedelta, got {every!r}")
    Timing(cron=cron, every=span, timezone=timezone)
    if catch_up not in CATCH_UP:
        raise InvalidGoalError(f"catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}")
    options: dict[str, Any] = {"timezone": timezone, "catch_up": catch_up, "enabled": enabled}
    if cron is not None:
        options["cron"] = cron
    if span is not None:
        options["every"] = int(span.total_seconds())
    if next_at is not None:
        if next_at.tzinfo is None:
            raise InvalidGoalError("next_at must be an aware datetime (with a time zone)")
        options["next_at"] = next_at.isoformat()
    return options


def check_cron(expr: str) -> str | None:
    """Return why ``expr`` is not a cron expression goalrt runs, or None."""
    from cronsim import CronSim, CronSimError

    text = _expand(expr)
    fields = text.split()
    if len(fields) != 5:
        return (
            f"invalid cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or @hourly, @daily, @weekly, @monthly, @yearly; got {len(fields)}"
        )
    try:
        next(CronSim(text, datetime(2000, 1, 1, tzinfo=UTC)))
    except CronSimError as exc:
        return f"invalid cron {expr!r}: {str(exc).lower()}"
    except StopIteration:
        return f"invalid cron {expr!r}: it never fires"
    return None


def check_timezone(name: str) -> str | None:
    """Return why ``name`` is not a time zone (an IANA name such as Europe/Paris, or UTC), or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris"
    return None


def tick_key(name: str, tick: datetime) -> str:
    """Return the idempotency key of a tick's goal (the database builds the same one)."""
    return f"schedule:{name}:{tick.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def _expand(expr: str) -> str:
    return _MACROS.get(expr.strip().lower(), expr)


def _count(timing: Timing, first: datetime, newest: datetime) -> int:
    """Return how many ticks fall in [first, newest), at most MAX_TICKS."""
    n = 0
    for _ in _between(timing, first, newest):
        n += 1
        if n >= MAX_TICKS:
            break
    return n


def _between(timing: Timing, first: datetime, end: datetime) -> Iterator[datetime]:
    tick = first
    while tick < end:
        yield tick
        tick = timing.after(tick)


def _duration_text(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or f"{every.total_seconds():g}s"


__all__ = [
    "CATCH_UP",
    "GRACE",
    "MAX_TICKS",
    "Due",
    "Schedule",
    "Timing",
    "check_cron",
    "check_timezone",
    "due",
    "first_tick",
    "schedule_options",
    "tick_key",
]
