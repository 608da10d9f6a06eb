"""The goal type the schedules' acceptance test fires: one step that does nothing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import goalrt


class Beat(BaseModel):
    pass


@goalrt.goal("beat", params=Beat)
def beat(_p: Beat) -> list[goalrt.Step]:
    return [goalrt.Step("beat.noop", {})]


@goalrt.action("beat.noop")
def noop(_args: dict[str, Any], _ctx: goalrt.ActionContext) -> None:
    return None
