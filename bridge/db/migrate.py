"""Alembic, driven from code: ``badge-bridge db upgrade`` and the embedded default's upgrade on start.

Alembic is imported only to migrate or to report: every start checks the schema, and the check reads the
stored revision with one query and the code's from the migration files' names (alembic and its scripts
took ~0.2 s of each start).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from bridge.db.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# Each migration is versions/NNNN_what.py with revision "NNNN" and down_revision the one before it
# (tests/db/test_migrations.py holds alembic's head to this).
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")
_PG_MIGRATION_LOCK = 0x62616467  # an arbitrary advisory-lock key for "one migrator at a time"


class SchemaOutOfDate(RuntimeError):
    pass


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision, as alembic reads the scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def head_by_file_name() -> str:
    """The newest revision, from the migration files' names alone."""
    numbers = [m.group(1) for p in (MIGRATIONS / "versions").iterdir() if (m := _REVISION_FILE.match(p.name))]
    return max(numbers)


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(database: Database, revision: str = "head") -> None:
    from alembic import command

    _migrate(database, command.upgrade, revision)


def downgrade(database: Database, revision: str) -> None:
    """Back to ``revision`` (before deploying an older release on the same database)."""
    from alembic import command

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
    current, head = current_revision(database), head_by_file_name()
    if current == head:
        return
    if auto_upgrade:
        upgrade(database)
        return
    raise SchemaOutOfDate(
        f"database schema is at {current or 'nothing'}, the code needs {head}: run 'badge-bridge db upgrade'"
    )
