"""The migrations build exactly the schema the models describe, and start-up checks the revision."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from bridge.db.engine import Database
from bridge.db.migrate import (
    SchemaOutOfDate,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)
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


def test_progress_rows_become_one_document_of_states_per_learner_and_back(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    upgrade(database, "0005")
    now = "2026-11-01 09:00:00"
    with database.engine.begin() as connection:
        for badge in ("a", "b"):
            connection.execute(
                text(
                    "INSERT INTO badges (id, name, description, image, tags, criteria, created_at,"
                    " updated_at, tiers, prerequisites, definition, criteria_since)"
                    " VALUES (:id, 'B', 'd', 'b.svg', '[]', '{}', :now, :now, '[]', '[]', '{}', :now)"
                ),
                {"id": badge, "now": now},
            )
        connection.execute(
            text(
                "INSERT INTO learners (id, platform, lms_user_id, pseudonym, created_at)"
                " VALUES (1, 'demo', '42', 'p', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO progress (learner_id, badge_id, criteria_version, state, value, target,"
                " complete, saturated, tier, started_at, updated_at) VALUES"
                " (1, 'a', 2, '{\"r\": 3}', 3, 5, false, false, '', '2026-11-01 08:00:00.000001', :now),"
                " (1, 'b', 1, '{\"r\": 1}', 1, 1, true, true, '', NULL, :now)"
            ),
            {"now": now},
        )
    upgrade(database)
    with database.engine.connect() as connection:
        (states,) = connection.execute(text("SELECT states FROM learner_states WHERE learner_id = 1")).one()
        reports = connection.execute(
            text("SELECT badge_id, criteria_version, complete, tier FROM progress ORDER BY badge_id")
        ).all()
    states = json.loads(states) if isinstance(states, str) else states
    started = (datetime(2026, 11, 1, 8, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    assert states == {"a": [2, {"r": 3}, started, False, "", False], "b": [1, {"r": 1}, None, True, "", True]}
    assert [tuple(r) for r in reports] == [("a", 2, False, ""), ("b", 1, True, "")]
    downgrade(database, "0005")
    with database.engine.connect() as connection:
        back = connection.execute(text("SELECT badge_id, state FROM progress ORDER BY badge_id")).all()
    database.dispose()
    decoded = [(badge, json.loads(s) if isinstance(s, str) else s) for badge, s in back]
    assert decoded == [("a", {"r": 3}), ("b", {"r": 1})]
