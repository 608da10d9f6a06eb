"""A committed event as read back from the log (a plain dataclass: reading events needs no pydantic)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from goalrt.db.jsontext import UnreadableJson

log = logging.getLogger("goalrt.log")


@dataclass(frozen=True, slots=True)
class Event:
    """A committed event with its position on the global clock.

    ``db_role`` is the login role of the session that appended it, recorded
    by the database (``None`` for events appended before goalrt recorded it);
    ``metadata["actor"]``, if any, is what the caller chose to say.
    """

    pos: int
    id: int
    stream: str
    type: str
    data: Any
    metadata: dict[str, Any]
    recorded_at: datetime
    prev_hash: bytes
    hash: bytes
    db_role: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Event:
        pos, id_, stream, type_, data, metadata, recorded_at, prev_hash, hash_, db_role = row
        # A value Python cannot decode (see goalrt.db.jsontext) arrives as a marker: the reader goes on past it.
        if isinstance(data, UnreadableJson):
            log.warning("event at pos %s: data is unreadable JSON: %s", pos, data.reason)
        if isinstance(metadata, UnreadableJson):
            log.warning("event at pos %s: metadata is unreadable JSON: %s", pos, metadata.reason)
            metadata = {"unreadable": str(metadata)}
        return cls(
            int(pos),
            int(id_),
            stream,
            type_,
            data,
            dict(metadata),
            recorded_at,
            bytes(prev_hash),
            bytes(hash_),
            db_role,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "pos": self.pos,
            "id": self.id,
            "stream": self.stream,
            "type": self.type,
            "data": str(self.data) if isinstance(self.data, UnreadableJson) else self.data,
            "metadata": self.metadata,
            "recorded_at": self.recorded_at.isoformat(),
            "db_role": self.db_role,
            "hash": self.hash.hex(),
        }
