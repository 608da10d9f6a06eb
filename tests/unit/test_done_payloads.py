"""The goalrt_done payloads: every id once, in order, each payload under NOTIFY's 8000-byte limit."""

from __future__ import annotations

from goalrt.goals.done import done_channel, done_payloads


def test_ids_are_split_into_payloads_under_the_limit_and_none_is_lost() -> None:
    ids = list(range(10**12, 10**12 + 3000))
    payloads = done_payloads(ids)
    assert len(payloads) > 1 and all(len(p.encode()) <= 7900 for p in payloads)
    assert [int(x) for p in payloads for x in p.split(",")] == ids
    assert done_payloads([]) == [] and done_payloads([7]) == ["7"]
    assert done_payloads([1, 22, 333], limit=4) == ["1,22", "333"]


def test_a_fork_has_its_own_channel() -> None:
    assert done_channel() == "goalrt_done" and done_channel("goalrt_fork_sim") == "goalrt_fork_sim_done"
