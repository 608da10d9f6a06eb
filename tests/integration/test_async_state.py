"""The async state API runs the same queries and gives the same answers."""

from __future__ import annotations

import asyncio

import pytest

from goalrt.errors import InvalidStateChangeError, VersionConflictError
from goalrt.state import forks
from goalrt.state.async_state import AsyncState
from goalrt.state.state import Change, State


def test_async_state_round_trip(db_url: str) -> None:
    async def main() -> None:
        async with await AsyncState.connect(db_url) as st:
            assert await st.set("a.x", {"k": [1]}) == 1
            assert await st.increment("a.n", 2.5) == 2.5
            result = await st.change([Change.inc("a.n", 1), Change.delete("a.gone")])
            assert result.versions == {"a.n": 2, "a.gone": 1}
            with pytest.raises(VersionConflictError):
                await st.set("a.x", 0, expect_version=5)
            with pytest.raises(InvalidStateChangeError, match="not a valid path"):
                await st.change([{"op": "set", "path": "a..b", "value": 1}])
            entry = await st.get("a.n")
            assert entry is not None and entry.value == 3.5 and entry.pos is not None
            assert [e.path for e in await st.list("a")] == ["a.n", "a.x"]
            assert [h.value for h in await st.history("a.n")] == [2.5, 3.5]
            assert await st.value("a.n", at=1) is None
            assert await st.value("a.n", at=2) == 2.5
            assert await st.version("a.gone") == 1

            # many concurrent increments over one connection pool's worth of connections
            async def bump() -> None:
                async with await AsyncState.connect(db_url) as s:
                    for _ in range(20):
                        await s.increment("a.counter", 1)

            await asyncio.gather(*(bump() for _ in range(5)))
            assert await st.value("a.counter") == 100

    asyncio.run(main())
    with State.connect(db_url) as sync:
        assert sync.value("a.counter") == 100


def test_async_state_on_a_fork(db_url: str) -> None:
    with State.connect(db_url) as main:
        main.set("f.x", 1)
        forks.create(main.connection, "af")

    async def run() -> None:
        async with await AsyncState.connect(db_url, fork="af") as st:
            await st.set("f.x", 2)
            assert await st.value("f.x") == 2

    asyncio.run(run())
    with State.connect(db_url) as main:
        assert main.value("f.x") == 1
