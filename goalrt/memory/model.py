"""What memory search returns, the checks of its input, and its one-time notes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from goalrt.errors import InvalidQueryError
from goalrt.memory.text import MAX_CHARS, is_secret_key

log = logging.getLogger("goalrt.memory")

# The longest query searched (memory_search refuses longer ones too).
MAX_QUERY = 4000
MAX_LIMIT = 1000

_said: set[str] = set()
_said_lock = threading.Lock()


def say_once(key: str, message: str) -> bool:
    """Log ``message`` as a warning the first time ``key`` is said in this process; return whether it was now."""
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
    log.warning("%s", message)
    return True


def check_search(query: Any, since: Any, limit: Any) -> tuple[str, datetime | None]:
    """Return the query and since as searched, or raise ``InvalidQueryError`` naming the problem."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidQueryError("the query must not be empty")
    if "\x00" in query:
        raise InvalidQueryError("the query must not contain NUL characters")
    if len(query) > MAX_QUERY:
        raise InvalidQueryError(f"the query is {len(query)} characters long; at most {MAX_QUERY}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    if since is not None and not isinstance(since, datetime):
        raise InvalidQueryError(f"since must be a datetime, not {type(since).__name__}")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return query, since


def vector_text(vector: list[float]) -> str:
    """Return a vector as pgvector's text (``[0.1,-0.2,...]``), 6 significant digits.

    Sent inside the indexer's JSON as one string: goalrt's exact JSON
    encoder takes about a second for 256,000 numbers, the formatting here a
    tenth of that, and float4 keeps no more digits anyway.
    """
    return "[" + ",".join(f"{x:.6g}" for x in vector) + "]"


def parse_since(text: str) -> datetime:
    """Return the time an ISO 8601 text names (no zone means UTC), or raise ``InvalidQueryError``."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidQueryError(f"since {text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def note_data(text: Any, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the data of a ``memory.noted`` event: ``text`` and the caller's other fields."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidQueryError("a note's text must not be empty")
    if len(text) > MAX_CHARS:
        raise InvalidQueryError(f"a note is {len(text)} characters long; at most {MAX_CHARS}")
    extra = dict(data or {})
    if "text" in extra:
        raise InvalidQueryError("data must not hold a field named text (the note's text)")
    secret = next((key for key in extra if is_secret_key(str(key))), None)
    if secret is not None:
        # A note is an event: a secret in it would be in the log for good (and never indexed).
        raise InvalidQueryError(f"a note's field {secret!r} is named like a secret; notes never hold secrets")
    return {"text": text, **extra}


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """One event memory search found: where it is in the log, its text, and how it ranked."""

    pos: int
    event_id: int
    stream: str
    type: str
    recorded_at: datetime
    text: str
    score: float
    # Its rank by words and by meaning (None: not among that ranking's candidates).
    text_rank: int | None
    vector_rank: int | None

    @classmethod
    def from_row(cls, row: Any) -> MemoryHit:
        pos, event_id, stream, type, recorded_at, body, score, text_rank, vector_rank = row
        return cls(
            int(pos),
            int(event_id),
            stream,
            type,
            recorded_at,
            body,
            float(score),
            None if text_rank is None else int(text_rank),
            None if vector_rank is None else int(vector_rank),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "pos": self.pos,
            "event_id": self.event_id,
            "stream": self.stream,
            "type": self.type,
            "recorded_at": self.recorded_at.isoformat(),
            "text": self.text,
            "score": self.score,
            "text_rank": self.text_rank,
            "vector_rank": self.vector_rank,
        }


@dataclass(frozen=True, slots=True)
class MemoryStatus:
    """Whether memory has vectors, the indexer's position against the log's head, and the embedder of its vectors."""

    vectors: bool
    cursor_pos: int
    head: int
    entries: int
    embedder: str | None
    dims: int | None

    @classmethod
    def from_row(cls, row: Any) -> MemoryStatus:
        vectors, cursor_pos, head, entries, embedder, dims = row
        return cls(bool(vectors), int(cursor_pos), int(head), int(entries), embedder, dims)

    def to_json(self) -> dict[str, Any]:
        return {
            "vectors": self.vectors,
            "cursor_pos": self.cursor_pos,
            "head": self.head,
            "behind": max(self.head - self.cursor_pos, 0),
            "entries": self.entries,
            "embedder": self.embedder,
            "dims": self.dims,
        }


__all__ = [
    "MAX_QUERY",
    "MemoryHit",
    "MemoryStatus",
    "check_search",
    "note_data",
    "parse_since",
    "say_once",
    "vector_text",
]
