"""Alembic, driven from code: ``badge-bridge db upgrade`` and the embedded default's upgrade on start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bridge.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x62616467  # an arbitrary advisory-lock key for "one migrator at a time"


class SchemaOutOfDate(RuntimeError):
    pass


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> None:
    _migrate(database, command.upgrade, revision)


def downgrade(database: Database, revision: str) -> None:
    """Back to ``revision`` (before deploying an older release on the same database)."""
    _migrate(database, command.downgrade, revision)


def _migrate(database: Database, step: Callable[[Config, str], None], revision: str) -> None:
    config = _config()
    with database.write_connection(foreign_keys=False) as connection:
        if not database.is_sqlite:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        config.attributes["connection"] = connection
        step(config, revision)


def ensure_schema(database: Database, *, auto_upgrade: bool) -> None:
    """Upgrade (embedded default) or refuse to start on a database that is behind the code."""
    current, head = current_revision(database), head_revision()
    if current == head:
        return
    if auto_upgrade:
        upgrade(database)
        return
    raise SchemaOutOfDate(
        f"database schema is at {current or 'nothing'}, the code needs {head}: run 'badge-bridge db upgrade'"
    )
