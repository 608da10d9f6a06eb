"""State under concurrency, proven by a test that could fail.

Many connections at once: increments of shared hot paths in multi-path
change sets listed in random order (a deadlock would surface as an error),
optimistic read-modify-write loops with expect_version, deletes, rollbacks
of transactions that changed state, and a snapshot taker and time-travel
reader running alongside. At the end:

- no update is lost: each counter equals the sum of the committed increments;
- every path's versions are 1, 2, ..., n with no gap or repeat, in log order;
- every optimistic writer's successful writes are all there;
- the state at every snapshot position equals the replay of the log;
- the replay of the whole log equals the materialized rows.

GOALRT_STRESS_SECONDS sets how long the writers run (default 8; half here).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter

import psycopg
import pytest

from goalrt.errors import VersionConflictError
from goalrt.state import replay, snapshots
from goalrt.state.state import Change, State

DURATION = float(os.environ.get("GOALRT_STRESS_SECONDS", "8")) / 2
COUNTERS = ["acct.a", "acct.b", "acct.c", "acct.d"]
WORKERS = 8


class Rollback(Exception):
    pass


@pytest.mark.stress
def test_concurrent_increments_and_conditional_sets(db_url: str) -> None:
    stop = threading.Event()
    lock = threading.Lock()
    committed: Counter[str] = Counter()
    cas_wins: Counter[str] = Counter()
    errors: list[BaseException] = []

    def incrementer(seed: int) -> None:
        rng = random.Random(seed)
        with State.connect(db_url) as st:
            while not stop.is_set():
                paths = rng.sample(COUNTERS, rng.randint(1, len(COUNTERS)))  # random order on purpose
                amounts = {p: rng.choice([1, 2, 5, -3]) for p in paths}
                try:
                    if rng.random() < 0.15:
                        with st.connection.transaction():
                            st.change([Change.inc(p, a) for p, a in amounts.items()])
                            time.sleep(rng.random() / 500)
                            raise Rollback
                    else:
                        st.change([Change.inc(p, a) for p, a in amounts.items()])
                        with lock:
                            committed.update(amounts)
                except Rollback:
                    pass

    def optimist(seed: int) -> None:
        rng = random.Random(seed)
        path = "cas.shared"
        with State.connect(db_url) as st:
            while not stop.is_set():
                version = st.version(path)
                current = st.value(path, {"writes": []})
                new = {"writes": [*current["writes"][-50:], seed]}
                try:
                    st.set(path, new, expect_version=version)
                    with lock:
                        cas_wins[f"w{seed}"] += 1
                except VersionConflictError:
                    pass
                if rng.random() < 0.05:
                    st.change([Change.delete("cas.other"), Change.set("cas.flag", rng.randint(0, 9))])

    def snapshotter() -> None:
        with State.connect(db_url) as st:
            n = 0
            while not stop.is_set():
                snapshots.create(st, f"during{n}")
                n += 1
                time.sleep(0.05)

    def guard(fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            stop.set()

    with State.connect(db_url) as st:
        snapshots.set_interval(st, 25)
    threads = [threading.Thread(target=guard, args=(incrementer, i)) for i in range(WORKERS - 3)]
    threads += [threading.Thread(target=guard, args=(optimist, 100 + i)) for i in range(2)]
    threads += [threading.Thread(target=guard, args=(snapshotter,))]
    for t in threads:
        t.start()
    time.sleep(DURATION)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, f"a worker failed: {errors[0]!r}"

    with State.connect(db_url) as st:
        head = st.tick()
        for path in COUNTERS:
            entry = st.get(path)
            assert entry is not None
            assert entry.value == committed[path], f"{path}: lost or extra update"
            versions = [h.version for h in st.history(path)]
            assert versions == list(range(1, entry.version + 1)), f"{path}: versions are not 1..n"
            positions = [h.pos for h in st.history(path)]
            assert positions == sorted(positions)
        cas = st.get("cas.shared")
        assert cas is not None and cas.version == sum(cas_wins.values()) > 0
        assert [h.version for h in st.history("cas.shared")] == list(range(1, cas.version + 1))
        # Each successful conditional write saw the one before it: the list grows by one each time.
        lengths = [len(h.value["writes"]) for h in st.history("cas.shared")]
        assert all(b == min(a + 1, 51) for a, b in itertools.pairwise(lengths))
        taken = snapshots.list_snapshots(st, include_auto=True)
        assert len([s for s in taken if not s.auto]) > 3
        for snap in taken:
            at_snapshot = [(e.path, e.value, e.version, e.pos) for e in st.list(at=snap.pos)]
            replayed = [(e.path, e.value, e.version, e.pos) for e in st.replayed(snap.pos)]
            assert at_snapshot == replayed, f"snapshot at {snap.pos} disagrees with the log"
        report = replay.verify(st)
        assert report.identical, report.describe()
        assert report.pos >= head


def test_replay_verify_does_not_block_writers_while_folding(db_url: str) -> None:
    with State.connect(db_url) as st:
        st.change([Change.set(f"r.k{i}", i) for i in range(2000)])
        for i in range(200):
            st.increment(f"r.k{i}", 1)
    done = threading.Event()
    wrote: list[int] = []

    def writer() -> None:
        with State.connect(db_url) as st:
            while not done.is_set():
                wrote.append(st.increment("r.writer", 1))

    t = threading.Thread(target=writer)
    t.start()
    try:
        with State.connect(db_url) as st:
            for _ in range(3):
                assert replay.verify(st).identical
    finally:
        done.set()
        t.join(timeout=30)
    assert wrote, "the writer made no progress while replay ran"


@pytest.mark.tampers_state
def test_replay_finds_a_tampered_row(db_url: str) -> None:
    with State.connect(db_url) as st:
        st.set("t.a", 1)
        st.set("t.b", 2)
        st.set("t.b", 3)
    with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL goalrt.applying = 'on'")  # what a careless superuser could do
        conn.execute("UPDATE goalrt.state_data SET value = '99' WHERE path = 't.b'")
    with State.connect(db_url) as st:
        report = replay.verify(st)
    assert not report.identical and report.path == "t.b"
    assert report.problem == "value 99 materialized, 3 replayed"
    assert "differs at position 3: path t.b" in report.describe()
