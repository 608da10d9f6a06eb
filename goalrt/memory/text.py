"""What memory indexes of an event: the text made of its type, stream and data (docs/memory.md, "What is indexed").

The text is the type and the stream (each also split into words, so
``payment.failed`` is found by "payment failed"), then each scalar field of
the data as ``key: value`` (nested keys joined by dots), depth first in the
data's order, until ``MAX_CHARS``. A field whose name says it holds a
secret (password, token, api key, authorization, cookie, secret...) is left
out with everything under it: http.call keeps secrets out of events
already, and this keeps a handler's careless field out of the index too.
"""

from __future__ import annotations

import re
from typing import Any

# The most characters of an event's text (the table's CHECK allows 8000).
MAX_CHARS = 2000
# Deeper data is not walked.
_MAX_DEPTH = 6
_SECRET = re.compile(r"pass(word|wd|phrase)?|secret|token|api[_-]?key|authori[sz]ation|cookie|credential|private", re.I)
_SPLIT = re.compile(r"[._:/\-]+")
_ID = re.compile(r"\d")


def is_secret_key(key: str) -> bool:
    """Return whether a data field's name says it holds a secret (it is never indexed)."""
    return bool(_SECRET.search(key))


def _words(name: str) -> str:
    return " ".join(part for part in _SPLIT.split(name) if part)


def _fields(value: Any, prefix: str, depth: int, out: list[str], budget: list[int]) -> None:
    if budget[0] <= 0 or depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_key(str(key)):
                continue
            _fields(item, f"{prefix}.{key}" if prefix else str(key), depth + 1, out, budget)
    elif isinstance(value, list):
        for item in value:
            _fields(item, prefix, depth + 1, out, budget)
    elif value is not None:
        text = f"{prefix}: {value}" if prefix else str(value)
        out.append(text)
        budget[0] -= len(text) + 1


def meaning_text(type: str, data: Any) -> str:
    """Return the text an event's embedding is made of: its type in words and its fields' values.

    Not the stream, the field names nor any word with a digit in it: ids
    (``order:o-5521``), keys and numbers are the same kind of token in every
    event, and an embedding that averages its tokens (wordllama's) would be
    pulled towards all the others by them.
    """
    out: list[str] = []
    _fields(data, "", 0, out, [MAX_CHARS])
    values = [_prose(line.split(": ", 1)[-1]) for line in out]
    return ". ".join([_words(type), *(v for v in values if v)])[:MAX_CHARS]


def _prose(value: str) -> str:
    # Ids, numbers and flags (o-5521, 1299, True) mean nothing to an embedding, and every
    # event has its own: they would make each routine event a vector of its own among which
    # the one event that matters drowns. The words find them.
    return " ".join(w for w in value.split() if not _ID.search(w) and w not in ("True", "False"))


def event_text(type: str, stream: str, data: Any) -> str:
    """Return the text memory indexes for an event (at most ``MAX_CHARS`` characters)."""
    head = f"{type} ({_words(type)}) {stream} ({_words(stream)})"
    out: list[str] = [head]
    _fields(data, "", 0, out, [MAX_CHARS - len(head)])
    return "\n".join(out)[:MAX_CHARS]


__all__ = ["MAX_CHARS", "event_text", "is_secret_key", "meaning_text"]
