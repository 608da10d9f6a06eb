"""When schedules tick, and which due ticks a pass submits (goalrt/goals/schedules.py); no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from goalrt.errors import InvalidGoalError
from goalrt.goals.schedules import GRACE, MAX_TICKS, Timing, check_cron, due, tick_key

PARIS = ZoneInfo("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_every_ticks_at_whole_multiples_since_the_epoch() -> None:
    quarter = Timing(every=timedelta(minutes=15))
    assert quarter.after(utc(2026, 5, 1, 10, 7, 12)) == utc(2026, 5, 1, 10, 15)
    assert quarter.after(utc(2026, 5, 1, 10, 15)) == utc(2026, 5, 1, 10, 30)  # strictly after
    assert quarter.latest(utc(2026, 5, 1, 10, 15)) == utc(2026, 5, 1, 10, 15)  # at or before
    assert quarter.latest(utc(2026, 5, 1, 10, 29, 59, 999999)) == utc(2026, 5, 1, 10, 15)
    # The time zone does not move an interval's ticks.
    assert Timing(every=timedelta(hours=1), timezone="Asia/Kolkata").after(utc(2026, 5, 1, 10, 7)) == utc(
        2026, 5, 1, 11
    )
    assert Timing(every=timedelta(days=1)).upcoming(utc(2026, 5, 1, 10), 2) == [utc(2026, 5, 2), utc(2026, 5, 3)]


def test_cron_ticks_in_its_time_zone() -> None:
    weekdays = Timing(cron="0 9 * * 1-5", timezone="Europe/Paris")
    # Friday 2026-05-01 10:00 Paris (08:00 UTC) -> Monday 09:00 Paris (07:00 UTC, summer time).
    assert weekdays.after(utc(2026, 5, 1, 8)) == utc(2026, 5, 4, 7)
    assert weekdays.latest(utc(2026, 5, 4, 7)) == utc(2026, 5, 4, 7)
    assert weekdays.latest(utc(2026, 5, 4, 6, 59, 59)) == utc(2026, 5, 1, 7)
    assert Timing(cron="@daily").after(utc(2026, 5, 1, 0, 0, 1)) == utc(2026, 5, 2)
    assert Timing(cron="*/10 * * * *").upcoming(utc(2026, 5, 1, 0, 5), 3) == [
        utc(2026, 5, 1, 0, 10),
        utc(2026, 5, 1, 0, 20),
        utc(2026, 5, 1, 0, 30),
    ]


def test_cron_across_daylight_saving_changes_runs_once_each_day() -> None:
    # 2026-03-29: Paris skips 02:00-03:00. A 02:30 job runs at 03:00 local that day (Debian cron's rule).
    at_half_two = Timing(cron="30 2 * * *", timezone="Europe/Paris")
    ticks = at_half_two.upcoming(datetime(2026, 3, 28, 12, tzinfo=PARIS), 3)
    assert [t.astimezone(PARIS).strftime("%d %H:%M") for t in ticks] == ["29 03:00", "30 02:30", "31 02:30"]
    # 2026-10-25: 02:00-03:00 happens twice. The job runs once.
    ticks = at_half_two.upcoming(datetime(2026, 10, 24, 12, tzinfo=PARIS), 3)
    assert [t.astimezone(PARIS).strftime("%d %H:%M") for t in ticks] == ["25 02:30", "26 02:30", "27 02:30"]
    assert len(set(ticks)) == 3


def test_a_pass_under_all_submits_every_due_tick_in_order() -> None:
    hourly = Timing(cron="0 * * * *")
    passed = due(hourly, "all", utc(2026, 5, 1, 1), utc(2026, 5, 1, 4, 30))
    assert passed.ticks == tuple(utc(2026, 5, 1, h) for h in (1, 2, 3, 4))
    assert (passed.next_at, passed.skipped) == (utc(2026, 5, 1, 5), 0)


def test_a_pass_under_all_is_bounded_and_the_next_pass_goes_on() -> None:
    second = Timing(every=timedelta(seconds=1))
    start = utc(2026, 5, 1)
    first = due(second, "all", start, start + timedelta(hours=1))
    assert len(first.ticks) == MAX_TICKS and first.next_at == start + timedelta(seconds=MAX_TICKS)
    rest = due(second, "all", first.next_at, start + timedelta(hours=1))
    assert rest.ticks[0] == first.next_at


def test_a_pass_under_latest_submits_the_newest_due_tick() -> None:
    hourly = Timing(cron="0 * * * *")
    passed = due(hourly, "latest", utc(2026, 5, 1, 1), utc(2026, 5, 1, 4, 30))
    assert passed.ticks == (utc(2026, 5, 1, 4),)
    assert (passed.next_at, passed.skipped) == (utc(2026, 5, 1, 5), 3)


def test_a_pass_under_skip_submits_only_a_tick_that_is_merely_late() -> None:
    hourly = Timing(cron="0 * * * *")
    late = due(hourly, "skip", utc(2026, 5, 1, 4), utc(2026, 5, 1, 4) + GRACE)
    assert late.ticks == (utc(2026, 5, 1, 4),) and late.skipped == 0
    missed = due(hourly, "skip", utc(2026, 5, 1, 1), utc(2026, 5, 1, 4, 30))
    assert missed.ticks == () and (missed.next_at, missed.skipped) == (utc(2026, 5, 1, 5), 4)


def test_nothing_is_due_before_the_next_tick() -> None:
    passed = due(Timing(cron="0 * * * *"), "all", utc(2026, 5, 1, 5), utc(2026, 5, 1, 4, 30))
    assert passed.ticks == () and passed.next_at == utc(2026, 5, 1, 5)


def test_a_next_tick_off_the_grid_runs_as_given_then_on_the_grid() -> None:
    passed = due(Timing(cron="0 * * * *"), "all", utc(2026, 5, 1, 1, 17), utc(2026, 5, 1, 2, 30))
    assert passed.ticks == (utc(2026, 5, 1, 1, 17), utc(2026, 5, 1, 2))


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or @hourly"),
        ("0 0 * * * *", "expected 5 fields"),
        ("61 * * * *", "bad minute"),
        ("0 25 * * *", "bad hour"),
        ("0 0 31 2 *", "bad day-of-month"),
        ("0 0 * 13 *", "bad month"),
        ("0 0 * * 8", "bad day-of-week"),
        ("@sometimes", "expected 5 fields"),
    ],
)
def test_a_bad_cron_is_named_with_its_field(expr: str, problem: str) -> None:
    message = check_cron(expr)
    assert message is not None and message.startswith(f"invalid cron {expr!r}: ") and problem in message
    with pytest.raises(InvalidGoalError, match="invalid cron"):
        Timing(cron=expr)


def test_good_crons_pass() -> None:
    for expr in ("* * * * *", "0 9 * * MON-FRI", "*/5 0-6 1,15 JAN-JUN *", "@hourly", "@weekly", "0 0 L * *"):
        assert check_cron(expr) is None, expr


def test_a_timing_needs_one_kind_and_a_known_zone() -> None:
    with pytest.raises(InvalidGoalError, match="either cron or every"):
        Timing()
    with pytest.raises(InvalidGoalError, match="either cron or every"):
        Timing(cron="* * * * *", every=timedelta(seconds=5))
    with pytest.raises(InvalidGoalError, match="whole seconds from 1s"):
        Timing(every=timedelta(milliseconds=500))
    with pytest.raises(InvalidGoalError, match="unknown time zone 'Europe/Atlantis'"):
        Timing(cron="* * * * *", timezone="Europe/Atlantis")
    with pytest.raises(InvalidGoalError, match="catch_up must be one of skip, latest, all"):
        due(Timing(cron="* * * * *"), "some", utc(2026, 1, 1), utc(2026, 1, 2))


def test_a_ticks_key_is_its_utc_second() -> None:
    assert tick_key("nightly", datetime(2026, 3, 29, 3, 0, tzinfo=PARIS)) == "schedule:nightly:2026-03-29T01:00:00Z"
    assert Timing(every=timedelta(minutes=90)).describe() == "every 1h30m"
    assert Timing(cron="0 9 * * 1", timezone="Europe/Paris").describe() == "cron 0 9 * * 1 (Europe/Paris)"
