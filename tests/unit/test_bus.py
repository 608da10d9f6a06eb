from __future__ import annotations

from datetime import UTC, datetime

from goalrt.log.bus import AppendNotifier, FollowPacer, advance
from goalrt.log.event import Event


def _event(pos: int) -> Event:
    return Event(pos, pos, "s", "t", {}, {}, datetime.now(UTC), b"", b"")


def test_notifier_sends_first_then_coalesces_within_interval() -> None:
    n = AppendNotifier(interval=0.05)
    assert n.due(now=10.0)
    assert not n.due(now=10.01)
    assert not n.due(now=10.049)
    assert n.due(now=10.05)
    assert not n.due(now=10.06)


def test_pacer_full_page_reads_on_at_once() -> None:
    p = FollowPacer(idle_poll=0.5, active_poll=0.01, active_window=0.25, coalesce=0.005)
    assert p.wait_after(100, 100, now=1.0) == (0.0, False)


def test_pacer_short_page_coalesces_then_polls_fast_then_idles() -> None:
    p = FollowPacer(idle_poll=0.5, active_poll=0.01, active_window=0.25, coalesce=0.005)
    assert p.wait_after(0, 100, now=0.0) == (0.5, True)  # never active yet
    assert p.wait_after(3, 100, now=1.0) == (0.005, False)
    assert p.wait_after(0, 100, now=1.1) == (0.01, True)
    assert p.wait_after(0, 100, now=1.3) == (0.5, True)


def test_advance_full_page_moves_to_last_event_only() -> None:
    events = [_event(5), _event(6)]
    assert advance(4, events, head=100, limit=2) == 6


def test_advance_short_page_skips_to_head() -> None:
    assert advance(4, [_event(5)], head=100, limit=10) == 100
    assert advance(4, [], head=100, limit=10) == 100


def test_advance_never_goes_backwards() -> None:
    assert advance(50, [], head=10, limit=10) == 50
    assert advance(50, [_event(60)], head=10, limit=10) == 60
