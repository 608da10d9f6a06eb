"""Goals over asyncpg: the same operations as ``goalrt.goals.goals.Goals``.

    async with await AsyncGoals.connect() as goals:
        submitted = await goals.submit("checkout", {"order": "o1", "amount": 20})
        info = await goals.get(submitted.id)

Both clients run the same named queries (sql/queries/goals.sql).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from goalrt.db.resources import MAIN_SCHEMA, queries
from goalrt.errors import GoalNotFoundError, InvalidGoalError, translated
from goalrt.goals.goals import (
    GoalInfo,
    GoalSpec,
    GoalStatus,
    GoalSummary,
    Submitted,
    prepared_items,
    prepared_params,
    submit_options,
)
from goalrt.goals.registry import Registry
from goalrt.state import forks

if TYPE_CHECKING:
    import asyncpg


class AsyncGoals:
    """Submit and inspect goals over one asyncpg connection (main line or a fork)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        *,
        schema: str = MAIN_SCHEMA,
        owns_connection: bool = False,
        registry: Registry | None = None,
    ) -> None:
        self._conn = conn
        self.schema = schema
        self.registry = registry
        self._owns = owns_connection
        self._q = queries("goals", schema)

    @classmethod
    async def connect(
        cls, url: str | None = None, *, fork: str | None = None, registry: Registry | None = None
    ) -> AsyncGoals:
        conn, schema = await forks.open_connection_async(url, fork)
        return cls(conn, schema=schema, owns_connection=True, registry=registry)

    @property
    def connection(self) -> asyncpg.Connection:
        return self._conn

    async def close(self) -> None:
        if self._owns:
            await self._conn.close()

    async def __aenter__(self) -> AsyncGoals:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _fetch(self, name: str, *args: Any) -> builtins.list[Any]:
        with translated():
            rows: builtins.list[Any] = await self._conn.fetch(self._q[name], *args)
        return rows

    async def register(self, registry: Registry | None = None) -> builtins.list[str]:
        registry = registry or self.registry
        names = sorted(registry.goal_types) if registry else []
        if registry:
            for name in names:
                await self._fetch("goal_type_register", name, registry.goal_types[name].params_schema())
        return names

    async def submit(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        at: datetime | str | None = None,
        delay: float | None = None,
        key: str | None = None,
        parent: int | None = None,
        partition_key: str | None = None,
        deadline: datetime | str | float | timedelta | None = None,
    ) -> Submitted:
        options = submit_options(
            priority=priority,
            at=at,
            delay=delay,
            key=key,
            parent=parent,
            partition_key=partition_key,
            deadline=deadline,
        )
        rows = await self._fetch("goal_submit", name, prepared_params(self.registry, name, params), options)
        return Submitted(int(rows[0][0]), bool(rows[0][1]))

    async def submit_many(self, goals: Iterable[GoalSpec]) -> builtins.list[Submitted]:
        rows = await self._fetch("goals_submit", prepared_items(self.registry, goals))
        return [Submitted(int(r[0]), bool(r[1])) for r in rows]

    async def get(self, goal_id: int) -> GoalInfo:
        row = await self._fetch("goal_get", goal_id)
        if not row:
            raise GoalNotFoundError(f"goal {goal_id} does not exist")
        if not self._conn.is_in_transaction():
            await self._fetch("clock_tick")
        return GoalInfo.from_rows(
            tuple(row[0]),
            [tuple(s) for s in await self._fetch("goal_steps", goal_id)],
            [tuple(e) for e in await self._fetch("goal_events", goal_id)],
        )

    async def list(
        self, *, status: str | None = None, name: str | None = None, limit: int = 50
    ) -> builtins.list[GoalSummary]:
        if status is not None and status not in GoalStatus.__members__.values():
            raise InvalidGoalError(f"unknown status {status!r}: use one of {', '.join(GoalStatus)}")
        return [GoalSummary.from_row(tuple(r)) for r in await self._fetch("goals_list", status, name, limit)]

    async def cancel(self, goal_id: int, reason: str | None = None) -> None:
        await self._fetch("goal_cancel", goal_id, reason)

    async def resume(self, goal_id: int, data: Mapping[str, Any], *, actor: str | None = None) -> str:
        """Answer a goal waiting at an ``ask`` step (see ``Goals.resume``)."""
        rows = await self._fetch("goal_resume", goal_id, dict(data), actor)
        return str(rows[0][1])


__all__ = ["AsyncGoals"]
