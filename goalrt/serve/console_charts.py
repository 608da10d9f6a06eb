"""The overview's charts, drawn by the server as SVG: goals ended per minute by status, and how long they took.

Pure functions of ``Goals.per_minute``'s answer (one ``Minute`` each,
oldest first): the templates lay out the numbers these return, so the
browser needs no script and no charting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from goalrt.goals.health import Minute

# The plot: its size, and the margins that hold the axes' labels.
WIDTH, HEIGHT = 720, 170
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 22
# Statuses stacked in each minute's bar, bottom first.
STACKED = ("complete", "failed", "cancelled")
# A time label under every this many minutes.
LABEL_EVERY = 10


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    status: str


@dataclass(frozen=True, slots=True)
class Column:
    """One minute's bar: its parts (one per status with goals), the whole slot and what its tooltip says."""

    x: float
    width: float
    parts: tuple[Rect, ...]
    label: str


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Series:
    """A line: its points, and the polylines joining points of consecutive minutes."""

    name: str
    points: tuple[Point, ...]
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # y for the value axis, x for the time axis
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    right: int  # x where the plot ends
    bottom: int  # y of the time axis
    columns: tuple[Column, ...]
    series: tuple[Series, ...]
    values: tuple[Tick, ...]
    times: tuple[Tick, ...]


def throughput_chart(minutes: Sequence[Minute]) -> Chart:
    """Return one stacked bar a minute: the goals that completed, failed and were cancelled in it."""
    totals = [sum(m.ended.get(s, 0) for s in STACKED) for m in minutes]
    top = _nice(max(totals, default=0))
    slot = _slot(minutes)
    columns = []
    for i, m in enumerate(minutes):
        x = LEFT + i * slot
        parts, base = [], 0
        for status in STACKED:
            n = m.ended.get(status, 0)
            if n:
                y0, y1 = _y(base, top), _y(base + n, top)
                parts.append(Rect(round(x + 1, 2), round(y1, 2), round(slot - 2, 2), round(y0 - y1, 2), status))
                base += n
        said = ", ".join(f"{m.ended[s]} {s}" for s in STACKED if m.ended.get(s)) or "none ended"
        columns.append(Column(round(x, 2), round(slot, 2), tuple(parts), f"{m.start:%H:%M} UTC: {said}"))
    values = tuple(Tick(round(_y(v, top), 2), f"{v:g}") for v in (0, top / 2, top))
    return _chart(minutes, columns=tuple(columns), values=values)


def latency_chart(minutes: Sequence[Minute]) -> Chart:
    """Return two lines, p50 and p95 of the seconds from submit to end of the goals that completed in each minute."""
    top = _nice(max((m.p95 or 0.0 for m in minutes), default=0.0))
    slot = _slot(minutes)
    series = []
    for name in ("p95", "p50"):
        points: list[Point | None] = []
        for i, m in enumerate(minutes):
            value = m.p50 if name == "p50" else m.p95
            if value is None:
                points.append(None)
                continue
            label = f"{m.start:%H:%M} UTC: {name} {_duration(value)} ({m.ended.get('complete', 0)} complete)"
            points.append(Point(round(LEFT + (i + 0.5) * slot, 2), round(_y(value, top), 2), label))
        series.append(Series(name, tuple(p for p in points if p is not None), _lines(points)))
    values = tuple(Tick(round(_y(v, top), 2), _duration(v)) for v in (0, top / 2, top))
    return _chart(minutes, series=tuple(series), values=values)


def _chart(
    minutes: Sequence[Minute],
    *,
    columns: tuple[Column, ...] = (),
    series: tuple[Series, ...] = (),
    values: tuple[Tick, ...] = (),
) -> Chart:
    slot = _slot(minutes)
    times = tuple(
        Tick(round(LEFT + i * slot, 2), f"{m.start:%H:%M}")
        for i, m in enumerate(minutes)
        if m.start.minute % LABEL_EVERY == 0
    )
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, columns, series, values, times)


def _slot(minutes: Sequence[Minute]) -> float:
    return (WIDTH - LEFT - RIGHT) / max(1, len(minutes))


def _y(value: float, top: float) -> float:
    inner = HEIGHT - TOP - BOTTOM
    return HEIGHT - BOTTOM - (inner * value / top if top else 0.0)


def _nice(peak: float) -> float:
    """Return the smallest of 1, 2 or 5 times a power of ten that is at least ``peak`` (1 for nothing)."""
    if peak <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(peak))
    return next(f * power for f in (1, 2, 5, 10) if f * power >= peak)


def _lines(points: Sequence[Point | None]) -> tuple[str, ...]:
    """Return a polyline per run of consecutive points (a minute without goals breaks the line)."""
    runs: list[list[Point]] = [[]]
    for p in points:
        if p is None:
            runs.append([])
        else:
            runs[-1].append(p)
    return tuple(" ".join(f"{p.x},{p.y}" for p in run) for run in runs if len(run) > 1)


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min"


__all__ = ["Chart", "latency_chart", "throughput_chart"]
