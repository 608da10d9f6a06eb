"""The overview's charts: bars stacked by status, latency points and lines, scales (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from goalrt.goals.health import History, Minute, history_of
from goalrt.serve.console_charts import latency_chart, throughput_chart

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _hour() -> list[Minute]:
    rows: list[tuple[object, ...]] = []
    for i in range(60):
        minute = START + timedelta(minutes=i)
        if i in (10, 11, 12, 40):
            rows.append((minute, "complete", i, 0.5 * i, 0.9 * i, None))
        if i in (12, 30):
            rows.append((minute, "failed", 2, 9.0, 9.0, None))
        if not any(r[0] == minute for r in rows):
            rows.append((minute, None, 0, None, None, None))
    return list(history_of(rows).minutes)


def test_history_of_keeps_every_minute_and_the_complete_goals_latency() -> None:
    minutes = _hour()
    assert len(minutes) == 60 and minutes[0].start == START
    assert minutes[12].ended == {"complete": 12, "failed": 2} and minutes[12].p95 == 0.9 * 12
    assert minutes[30].ended == {"failed": 2} and minutes[30].p50 is None
    assert minutes[0].ended == {}


def test_throughput_stacks_statuses_on_a_round_scale() -> None:
    chart = throughput_chart(_hour())
    assert len(chart.columns) == 60
    parts = [p for c in chart.columns for p in c.parts]
    assert [p.status for p in parts] == ["complete", "complete", "complete", "failed", "failed", "complete"]
    stacked = chart.columns[12].parts
    assert stacked[1].y + stacked[1].height == stacked[0].y  # failed sits on complete
    assert [t.label for t in chart.values] == ["0", "25", "50"]  # the tallest minute has 42: the scale ends at 50
    assert [t.label for t in chart.times] == ["12:00", "12:10", "12:20", "12:30", "12:40", "12:50"]
    assert chart.columns[12].label == "12:12 UTC: 12 complete, 2 failed"
    assert chart.columns[0].label == "12:00 UTC: none ended"


def test_latency_has_a_point_per_minute_with_completions_and_breaks_lines_at_gaps() -> None:
    chart = latency_chart(_hour())
    p95, p50 = chart.series
    assert (p95.name, p50.name) == ("p95", "p50")
    assert len(p50.points) == len(p95.points) == 4
    assert len(p50.lines) == 1 and p50.lines[0].count(",") == 3  # minutes 10-12 joined; 40 stands alone
    assert all(a.y >= b.y for a, b in zip(p50.points, p95.points, strict=True))  # p95 is drawn higher
    assert chart.values[-1].label == "50 s"  # p95 peaks at 36 s
    assert latency_chart([]).series[0].points == ()


def test_history_says_when_the_bound_on_goals_cut_the_window() -> None:
    minutes = _hour()
    assert not History(minutes, None).cut
    assert not History(minutes, START - timedelta(minutes=5)).cut  # the goals looked at go back before the window
    assert History(minutes, START + timedelta(minutes=20)).cut
    assert not History([], START).cut
