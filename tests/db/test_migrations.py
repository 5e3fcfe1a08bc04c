"""The migrations build exactly the schema the models describe, and start-up checks the revision."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from bridge.db.engine import Database
from bridge.db.migrate import SchemaOutOfDate, current_revision, ensure_schema, head_revision, upgrade
from bridge.db.models import Base
from tests.conftest import on_postgres


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_the_database_is_at_the_head_revision(database_url: str) -> None:
    database = Database(database_url)
    assert current_revision(database) == head_revision()
    ensure_schema(database, auto_upgrade=False)  # nothing to do, nothing raised
    database.dispose()


@pytest.mark.skipif(on_postgres(), reason="an empty SQLite file is the embedded default's first start")
def test_the_embedded_default_upgrades_itself(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'new' / 'bridge.sqlite3'}")
    ensure_schema(database, auto_upgrade=True)
    assert current_revision(database) == head_revision()
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    database.dispose()


def test_a_database_behind_the_code_refuses_to_start_without_auto_upgrade(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with pytest.raises(SchemaOutOfDate, match="run 'badge-bridge db upgrade'"):
        ensure_schema(database, auto_upgrade=False)
    upgrade(database)
    ensure_schema(database, auto_upgrade=False)
    database.dispose()
