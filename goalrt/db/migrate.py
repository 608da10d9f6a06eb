"""Apply goalrt's alembic migrations, from the CLI or from Python.

An empty database is built from the files of ``sql/schema`` (the current
schema) and stamped at head; a database at a revision runs the delta
migrations after it: revisions in ``migrations/versions`` (shipped in the
wheel), each applying SQL kept in ``sql/migrations``. Both happen in
``migrations/env.py``, under an advisory lock that serialises concurrent
``migrate`` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from goalrt.db.connect import connect
from goalrt.db.resources import migrations_dir
from goalrt.errors import DatabaseError, MigrationError, NotMigratedError, translated

VERSION_TABLE = "alembic_version"
VERSION_SCHEMA = "goalrt"


def alembic_config(url: str) -> Config:
    """Return an alembic Config that targets ``url`` without needing alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["goalrt_url"] = url
    return config


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    assert head is not None, "goalrt has no migrations"
    return head


def current_revision(url: str) -> str | None:
    """Return the revision the database is at (None for an empty database)."""
    with connect(url, autocommit=False, raw=False) as conn, translated():
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{VERSION_SCHEMA}.{VERSION_TABLE}",)).fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(f"SELECT version_num FROM {VERSION_SCHEMA}.{VERSION_TABLE}").fetchone()
        return row[0] if row else None


def check_migrated(url: str) -> None:
    """Raise ``NotMigratedError`` unless the database is at this goalrt's head revision (or a newer one).

    A revision this goalrt does not know is newer (a later goalrt migrated
    it): its functions keep the versions older workers call.
    """
    current = current_revision(url)
    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    if current == head:
        return
    known = {rev.revision for rev in script.walk_revisions()}
    if current is None or current in known:
        at = "has no goalrt schema" if current is None else f"is at revision {current}, goalrt needs {head}"
        raise NotMigratedError(f"the database {at}: not migrated; run `goalrt migrate`")


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str
    # For upgrade/downgrade: the revision found under the migration lock.
    before: str | None = None
    # For upgrade/downgrade: the WARNINGs the migration's SQL raised, in order.
    warnings: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(url: str) -> MigrationStatus:
    return MigrationStatus(current_revision(url), head_revision())


def upgrade(url: str, revision: str = "head") -> MigrationStatus:
    """Upgrade the database to ``revision`` (idempotent)."""
    return _run(command.upgrade, url, revision)


def downgrade(url: str, revision: str = "base") -> MigrationStatus:
    """Downgrade the database to ``revision``."""
    return _run(command.downgrade, url, revision)


def _run(fn: Callable[[Config, str], None], url: str, revision: str) -> MigrationStatus:
    config = alembic_config(url)
    try:
        with translated():
            fn(config, revision)
    except DatabaseError as exc:
        # An error raised by a migration's SQL (through the raw psycopg connection).
        raise MigrationError(f"migration failed: {exc}") from exc
    except Exception as exc:
        if exc.__class__.__module__.startswith(("alembic", "sqlalchemy")):
            raise MigrationError(f"migration failed: {str(exc).splitlines()[0]}") from exc
        raise
    return MigrationStatus(
        current_revision(url),
        head_revision(),
        config.attributes.get("goalrt_before"),
        tuple(config.attributes.get("goalrt_warnings", ())),
    )


__all__ = ["MigrationStatus", "downgrade", "head_revision", "status", "upgrade"]
