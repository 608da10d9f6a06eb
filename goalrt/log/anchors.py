"""Anchors for the hash chain: a position and the hash the log had there, kept outside the database.

    anchor = log.head_anchor()              # Anchor(pos=42, hash='5f1c...')
    anchor.append_to("anchors.txt")         # one line, "42:5f1c..."
    log.verify_or_raise(anchors=Anchor.read("anchors.txt"))

A log that recomputes cleanly (``goalrt.verify_chain``) and still holds an
anchor's hash at its position holds exactly the prefix the anchor was taken
from (docs/event-log.md, "Anchors"). This module imports no driver.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from goalrt.errors import InvalidAnchorError

_ANCHOR = re.compile(r"([0-9]{1,19}):([0-9a-fA-F]{64})")
_MAX_POS = 2**63 - 1
_ECHO_CHARS = 100


def _echo(text: str) -> str:
    """Quote ``text`` for a message, cut to about 100 characters."""
    if len(text) <= _ECHO_CHARS:
        return repr(text)
    return f"{text[: _ECHO_CHARS - 1]!r}… ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class Anchor:
    """A position of the log and its hash (64 lowercase hex digits); ``str()`` is ``POS:HASH``."""

    pos: int
    hash: str

    def __str__(self) -> str:
        return f"{self.pos}:{self.hash}"

    @property
    def hash_bytes(self) -> bytes:
        """Return the hash as 32 bytes."""
        return bytes.fromhex(self.hash)

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """Return the anchor ``POS:HASH`` (surrounding spaces ignored); raise ``InvalidAnchorError`` on other text."""
        match = _ANCHOR.fullmatch(text.strip())
        if match is None or int(match.group(1)) > _MAX_POS:
            raise InvalidAnchorError(
                f"bad anchor {_echo(text)}: expected POS:HASH, a position and its 64-hex-digit hash"
                " (as `goalrt head` prints it)"
            )
        return cls(int(match.group(1)), match.group(2).lower())

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> list[Anchor]:
        """Return the anchors in a file, one per line; blank lines and ``#`` comments are skipped.

        Raise ``InvalidAnchorError`` naming ``file:line`` for a bad line, or
        the file when it cannot be read or holds no anchor.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InvalidAnchorError(f"cannot read anchors from {_echo(os.fspath(path))}: {reason}") from None
        anchors: list[Anchor] = []
        for number, line in enumerate(text.splitlines(), start=1):
            content = line.split("#", 1)[0].strip()
            if not content:
                continue
            try:
                anchors.append(cls.parse(content))
            except InvalidAnchorError as exc:
                raise InvalidAnchorError(f"{os.fspath(path)}:{number}: {exc}") from None
        if not anchors:
            raise InvalidAnchorError(f"no anchors in {_echo(os.fspath(path))}")
        return anchors

    def append_to(self, path: str | os.PathLike[str]) -> None:
        """Append this anchor to a file as one line (starting a new line if the file does not end with one)."""
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            start = b""
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    start = b"\n"
            f.write(start + f"{self}\n".encode("ascii"))
