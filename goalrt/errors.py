"""Exceptions raised by goalrt, and the one place driver errors are translated.

Every goalrt failure is a ``GoalrtError``; the CLI turns one into a one-line
message and a non-zero exit. Database functions raise SQLSTATEs of class
``GR`` (see sql/schema/10_log.sql); ``translate`` maps them, and the driver errors a
user can cause, to the classes below while keeping the original as
``__cause__``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# SQLSTATEs raised by goalrt's SQL functions. Mirrored in sql/schema/10_log.sql.
SQLSTATE_APPEND_ONLY = "GR001"
SQLSTATE_INVALID_EVENT = "GR002"
SQLSTATE_INVALID_STATE_CHANGE = "GR003"
SQLSTATE_VERSION_CONFLICT = "GR004"
SQLSTATE_OUT_OF_RANGE = "GR005"
SQLSTATE_DIRECT_WRITE = "GR006"
SQLSTATE_INVALID_TRANSITION = "GR007"
SQLSTATE_INVALID_GOAL = "GR008"
SQLSTATE_GOAL_NOT_FOUND = "GR009"
SQLSTATE_JSON_TOO_DEEP = "GR010"


class GoalrtError(Exception):
    """Root of every error goalrt raises on purpose."""


class ConfigError(GoalrtError, ValueError):
    """A setting (database URL, data directory, option) is invalid."""


class DatabaseUnavailableError(GoalrtError, ConnectionError):
    """The PostgreSQL server cannot be reached or refused the connection."""


class EmbeddedServerError(GoalrtError):
    """The embedded PostgreSQL server could not be started or stopped."""


class NotMigratedError(GoalrtError):
    """The database has no (or an outdated) goalrt schema."""


class MigrationError(GoalrtError):
    """A migration could not be applied."""


class InvalidEventError(GoalrtError, ValueError):
    """An event to append is malformed; the message names the field."""


class InvalidJsonError(GoalrtError, ValueError):
    """A value is not JSON goalrt can send (too deep, NaN, U+0000, out of jsonb's range); the message says why."""


class AppendOnlyError(GoalrtError):
    """Something tried to change or remove a row of the append-only log."""


class InvalidStateChangeError(GoalrtError, ValueError):
    """A state change, path, pattern or snapshot name is malformed; the message names it."""


class VersionConflictError(GoalrtError):
    """A conditional state change was refused: a path's version had moved."""


class OutOfRangeError(GoalrtError, LookupError):
    """A position, time, snapshot or fork that does not exist here."""


class DirectWriteError(GoalrtError):
    """Something tried to write a table that only goalrt's functions may write."""


class InvalidTransitionError(GoalrtError):
    """A goal was asked to move where its lifecycle does not allow (e.g. cancel a finished goal)."""


class InvalidGoalError(GoalrtError, ValueError):
    """A goal submission is malformed: unknown goal type, bad params or options; the message names the field."""


class GoalNotFoundError(GoalrtError, LookupError):
    """No goal has this id."""


class GoalWaitTimeoutError(GoalrtError, TimeoutError):
    """A goal had not ended when a wait for it timed out (the goal goes on; wait again or cancel it)."""


class PermanentError(GoalrtError):
    """Raise from an action handler to fail the step at once, without retrying."""


class ActionFailedError(GoalrtError):
    """A built-in action failed in a way a later attempt may not (a timeout, a 503): the step is retried."""


class PlanningError(GoalrtError, ValueError):
    """A planning problem is malformed (unknown type, unbound template variable, bad operator); the message names it."""


class ChainBrokenError(GoalrtError):
    """The hash chain over the log does not verify, or the log does not hold an anchor it was checked against.

    ``anchor`` is the anchor (``POS:HASH``) the log does not hold, else None.
    """

    def __init__(self, pos: int, problem: str, *, anchor: str | None = None) -> None:
        if anchor is None:
            super().__init__(f"hash chain broken at pos {pos}: {problem}")
        else:
            super().__init__(f"the log does not hold {problem}")
        self.pos = pos
        self.problem = problem
        self.anchor = anchor


class InvalidQueryError(GoalrtError, ValueError):
    """A memory search was asked something it cannot answer (an empty or too long query, a bad limit or since)."""


class InvalidAnchorError(GoalrtError, ValueError):
    """An anchor is not ``POS:HASH``, or a file of anchors cannot be read; the message names the text or line."""


class DatabaseError(GoalrtError):
    """Any other error reported by PostgreSQL."""


_STATE_ERRORS: dict[str, type[GoalrtError]] = {
    SQLSTATE_INVALID_STATE_CHANGE: InvalidStateChangeError,
    SQLSTATE_VERSION_CONFLICT: VersionConflictError,
    SQLSTATE_OUT_OF_RANGE: OutOfRangeError,
    SQLSTATE_DIRECT_WRITE: DirectWriteError,
    SQLSTATE_INVALID_TRANSITION: InvalidTransitionError,
    SQLSTATE_INVALID_GOAL: InvalidGoalError,
    SQLSTATE_GOAL_NOT_FOUND: GoalNotFoundError,
    SQLSTATE_JSON_TOO_DEEP: InvalidJsonError,
}

_MISSING_OBJECT_STATES = {"3F000", "42P01", "42883"}  # schema, table, function


# A quoted value longer than this is cut in a message (a 100 kB name is never echoed in full).
_ECHO_CHARS = 100
_LONG_QUOTED = re.compile("'([^']{" + str(_ECHO_CHARS + 1) + ",})'")


def _clip_quoted(match: re.Match[str]) -> str:
    text = match.group(1)
    return f"'{text[: _ECHO_CHARS - 1]}…' ({len(text)} characters)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return _LONG_QUOTED.sub(_clip_quoted, line) if len(line) > _ECHO_CHARS else line


def translate(exc: BaseException) -> GoalrtError:
    """Return the goalrt error for a driver exception (psycopg or asyncpg)."""
    if isinstance(exc, GoalrtError):
        return exc
    state = getattr(exc, "sqlstate", None)
    message = _first_line(exc)
    if state == SQLSTATE_APPEND_ONLY:
        err: GoalrtError = AppendOnlyError(message)
    elif state == SQLSTATE_INVALID_EVENT:
        err = InvalidEventError(message)
    elif state in _STATE_ERRORS:
        err = _STATE_ERRORS[state](message)
    elif state in _MISSING_OBJECT_STATES and "goalrt" in message:
        err = NotMigratedError(f"{message}: the database is not migrated; run `goalrt migrate`")
    elif state is not None and state.startswith("08"):
        err = DatabaseUnavailableError(f"lost the database connection: {message}")
    else:
        err = DatabaseError(message)
    err.__cause__ = exc
    return err


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise driver errors raised inside the block as goalrt errors."""
    try:
        yield
    except GoalrtError:
        raise
    except Exception as exc:
        if _is_driver_error(exc):
            raise translate(exc) from exc
        raise


def _is_driver_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("psycopg", "asyncpg"))


class GdlError(GoalrtError):
    """A GDL workspace has problems; ``problems`` holds each one as ``file:line:column: message``, line and caret.

    With one problem the message is that problem; with several it starts with
    ``N problems in the workspace`` and lists them, sorted by file and line.
    """

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = "\n".join([f"{len(self.problems)} problems in the workspace", *self.problems])
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class GdlSyntaxError(GdlError, SyntaxError):
    """A GDL source does not parse (one problem per file that fails); also a ``SyntaxError``."""
