"""Property: for every position, the state there is the fold of the events up to it.

Hypothesis draws random sequences of change sets (sets, deletes, increments,
stale expectations), interleaved with named snapshots and with automatic
snapshots every few positions. A plain Python fold of the same changes is
the model. At every position of the log, ``state_at`` (snapshot + events)
and the replay (events alone) must equal the model, and at the end the
materialized rows must equal it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goalrt.errors import VersionConflictError
from goalrt.state import replay, snapshots
from goalrt.state.state import Change, State

from ..conftest import create_database, drop_database, with_dbname

PATHS = ["a", "a.x", "a.y", "b.x", "b.y.z", "c"]
DELETED = object()

change = st.one_of(
    st.builds(
        lambda p, v: ("set", p, v),
        st.sampled_from(PATHS),
        st.one_of(st.integers(-5, 5), st.text(st.characters(exclude_characters="\x00"), max_size=3)),
    ),
    st.builds(lambda p: ("delete", p, None), st.sampled_from(PATHS)),
    st.builds(lambda p, by: ("inc", p, by), st.sampled_from(PATHS), st.sampled_from([1, -2, 3, 0.5, -1.5])),
)
step = st.one_of(
    st.lists(change, min_size=1, max_size=4, unique_by=lambda c: c[1]).map(lambda cs: ("change", cs)),
    st.just(("snapshot", None)),
    st.just(("stale", None)),
)


class Model:
    """The obvious fold: path -> (value or DELETED, version, pos)."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[Any, int, int]] = {}
        self.history: list[dict[str, tuple[Any, int, int]]] = [{}]  # state after each pos

    def can_apply(self, changes: list[tuple[str, str, Any]]) -> bool:
        for op, path, _ in changes:
            current = self.paths.get(path, (DELETED, 0, 0))[0]
            if op == "inc" and current is not DELETED and not isinstance(current, (int, float, Decimal)):
                return False
        return True

    def apply(self, changes: list[tuple[str, str, Any]]) -> None:
        pos = len(self.history)
        for op, path, arg in changes:
            value, version, _ = self.paths.get(path, (DELETED, 0, 0))
            if op == "set":
                value = arg
            elif op == "delete":
                value = DELETED
            else:
                value = (Decimal(0) if value is DELETED else Decimal(str(value))) + Decimal(str(arg))
            self.paths[path] = (value, version + 1, pos)
        self.history.append(dict(self.paths))

    @staticmethod
    def live(snapshot: dict[str, tuple[Any, int, int]]) -> dict[str, tuple[Any, int, int]]:
        return {p: (_norm(v), n, pos) for p, (v, n, pos) in snapshot.items() if v is not DELETED}


def _norm(value: Any) -> Any:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return Decimal(str(value))
    return value


def entries(rows: list[Any]) -> dict[str, tuple[Any, int, int]]:
    return {e.path: (_norm(e.value), e.version, e.pos) for e in rows}


@pytest.fixture(scope="module")
def databases(server_url: str, template_db: str) -> Iterator[Iterator[str]]:
    names: list[str] = []

    def fresh() -> Iterator[str]:
        while True:
            name = create_database(server_url, template_db)
            names.append(name)
            yield with_dbname(server_url, name)

    yield fresh()
    for name in names:
        drop_database(server_url, name)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=25), every=st.sampled_from([0, 2, 3, 7]))
def test_state_at_every_position_is_the_fold(databases: Iterator[str], steps: list, every: int) -> None:
    url = next(databases)
    model = Model()
    with State.connect(url) as state:
        snapshots.set_interval(state, every)
        named = 0
        for kind, changes in steps:
            if kind == "snapshot":
                snap = snapshots.create(state, f"s{named}")
                named += 1
                assert snap.pos == len(model.history) - 1
            elif kind == "stale":
                if model.paths:
                    path = sorted(model.paths)[0]
                    with pytest.raises(VersionConflictError):
                        state.set(path, "stale", expect_version=model.paths[path][1] + 1)
            elif model.can_apply(changes):
                state.change([_change(c) for c in changes])
                model.apply(changes)
        head = state.tick()
        assert head == len(model.history) - 1
        for pos in range(head + 1):
            expected = Model.live(model.history[pos])
            assert entries(state.list(at=pos)) == expected, f"state_at({pos})"
            assert entries(state.replayed(pos)) == expected, f"replay to {pos}"
        assert entries(state.list()) == Model.live(model.paths)
        for pattern in ("a", "b.*", "*.x"):
            got = {e.path for e in state.list(pattern, at=head)}
            assert got == {e.path for e in state.list(pattern)}
        report = replay.verify(state)
        assert report.identical and report.pos == head, report.describe()
        for path, (_, version, _) in model.paths.items():
            assert state.version(path) == version
            assert [h.version for h in state.history(path)] == list(range(1, version + 1))


def _change(c: tuple[str, str, Any]) -> Change:
    op, path, arg = c
    if op == "set":
        return Change.set(path, arg)
    if op == "delete":
        return Change.delete(path)
    return Change.inc(path, arg)
