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


def test_rows_written_before_the_rules_engine_survive_its_migration(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    upgrade(database, "0001")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO badges (id, name, description, image, tags, criteria, created_at, updated_at)"
                " VALUES ('b', 'B', 'd', 'b.svg', '[]', '{}', :now, :now)"
            ),
            {"now": "2026-11-01 09:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO learners (id, platform, lms_user_id, created_at) VALUES (1, 'demo', '42', :now)"
            ),
            {"now": "2026-11-01 09:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO awards (learner_id, badge_id, tier, criteria_version, awarded_at)"
                " VALUES (1, 'b', '', 1, :now)"
            ),
            {"now": "2026-11-01 09:00:00"},
        )
    upgrade(database)
    with database.engine.connect() as connection:
        award = connection.execute(text("SELECT event_ids, earned_at, awarded_at, points FROM awards")).one()
        learner = connection.execute(text("SELECT pseudonym, leaderboard_opt_out FROM learners")).one()
        badge = connection.execute(text("SELECT tiers, prerequisites, source FROM badges")).one()
    database.dispose()
    assert award.earned_at == award.awarded_at and award.points == 0
    assert award.event_ids in ([], "[]")
    assert learner.pseudonym and not learner.leaderboard_opt_out
    assert badge.source == "file" and badge.tiers in ([], "[]")
