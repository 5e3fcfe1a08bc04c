"""The migrations build exactly the schema the models describe, and start-up checks the revision."""

import importlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from bridge.db.engine import Database
from bridge.db.migrate import (
    MIGRATIONS,
    SchemaOutOfDate,
    current_revision,
    downgrade,
    ensure_schema,
    head_by_file_name,
    head_revision,
    upgrade,
)
from bridge.db.models import Base
from bridge.services.badges import load_template_files, shipped_templates_dir
from bridge.settings import Settings
from tests.conftest import on_postgres

SHARED_STATES = importlib.import_module("bridge.db.migrations.versions.0007_shared_requirement_states")


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
def test_the_start_up_check_reads_the_same_head_as_alembic_from_the_file_names() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    assert head_by_file_name() == head_revision() == scripts.get_current_head()
    for script in scripts.walk_revisions():  # NNNN_what.py holds revision NNNN after NNNN - 1
        assert Path(script.path).name.startswith(f"{script.revision}_")
        expected_down = None if script.revision == "0001" else f"{int(script.revision) - 1:04d}"
        assert script.down_revision == expected_down


def test_an_empty_database_has_no_revision(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    assert current_revision(database) is None
    database.dispose()


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
    upgrade(database, "0006")
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


def test_the_migration_to_shared_states_keys_requirements_as_the_templates_parser_does() -> None:
    defaults = Settings()
    templates = load_template_files(
        shipped_templates_dir(), defaults.track_event_types, defaults.badge_level_threshold
    ).templates
    found = 0
    for template in templates:
        raw_groups = template.raw_criteria["groups"]
        for raw_group, group in zip(raw_groups, template.criteria.groups, strict=True):
            for raw, requirement in zip(raw_group["requirements"], group, strict=True):
                if not requirement.on_points:
                    assert SHARED_STATES._shape_key(raw) == requirement.key, (template.id, raw)
                    found += 1
    assert found >= 20


def _insert(connection: Any, sql: str, **values: Any) -> None:
    connection.execute(text(sql), values)


def _insert_badges_and_learner(connection: Any, badges: dict[str, tuple[str, int]], now: str) -> None:
    """Badges as the schema of 0006 to 0008 holds them, ``{id: (criteria, criteria_version)}``, and
    learner 1."""
    for badge_id, (criteria, version) in badges.items():
        _insert(
            connection,
            "INSERT INTO badges (id, name, description, image, tags, criteria, created_at, updated_at,"
            " tiers, prerequisites, definition, criteria_since, criteria_version)"
            " VALUES (:id, 'B', 'd', 'b.svg', '[]', :criteria, :now, :now, '[]', '[]', '{}', :now,"
            " :version)",
            id=badge_id, criteria=criteria, now=now, version=version,
        )  # fmt: skip
    _insert(
        connection,
        "INSERT INTO learners (id, platform, lms_user_id, pseudonym, created_at)"
        " VALUES (1, 'demo', '42', 'p', :now)",
        now=now,
    )


def test_states_move_to_one_per_requirement_shape_and_back(empty_database_url: str) -> None:
    """0006 kept each badge's states; 0007 keeps one per shape, the one of the highest target."""
    database = Database(empty_database_url)
    upgrade(database, "0006")
    now = "2026-11-01 09:00:00"
    login_count = '{"groups": [{"requirements": [{"kinds": ["login"], "target": %d}]}]}'
    badges = {
        "few": (login_count % 3, 1),
        "many": (login_count % 10, 1),
        "changed": (login_count % 20, 2),  # its learner's record is of version 1: no state is kept
    }
    with database.engine.begin() as connection:
        _insert_badges_and_learner(connection, badges, now)
        old = {
            "few": [1, {}, 5, True, "", True],  # saturated: 0006 kept no state
            "many": [1, {"g0r0": 7}, 5, False, "", False],
            "changed": [1, {"g0r0": 4}, None, False, "", False],
        }
        _insert(
            connection,
            "INSERT INTO learner_states (learner_id, states, updated_at) VALUES (1, :states, :now)",
            states=json.dumps(old), now=now,
        )  # fmt: skip
    upgrade(database, "0007")
    key = SHARED_STATES._shape_key({"kinds": ["login"], "target": 3})
    assert _document(database) == {
        "records": {
            "few": [1, 5, True, "", True],
            "many": [1, 5, False, "", False],
            "changed": [1, None, False, "", False],
        },
        "states": {key: 7},
    }
    downgrade(database, "0006")
    back = _document(database)
    database.dispose()
    assert back == {
        "few": [1, {}, 5, True, "", True],
        "many": [1, {"g0r0": 7}, 5, False, "", False],
        "changed": [1, {}, None, False, "", False],  # rebuilt from history by the evaluator, as before
    }


def test_documents_gain_when_each_state_first_changed_and_saturated_records_shrink_and_back(
    empty_database_url: str,
) -> None:
    """0008 adds ``since`` per state and keeps a saturated record as its version alone; going back, the
    records come back whole (from the progress report) and the evaluator's retired states go."""
    database = Database(empty_database_url)
    upgrade(database, "0007")
    now = "2026-11-01 09:00:00"
    login_count = '{"groups": [{"requirements": [{"kinds": ["login"], "target": %d}]}]}'
    purchase_count = '{"groups": [{"requirements": [{"kinds": ["purchase"], "target": 2}]}]}'
    badges = {"few": (login_count % 3, 1), "many": (login_count % 10, 1), "buyer": (purchase_count, 1)}
    logins = SHARED_STATES._shape_key({"kinds": ["login"], "target": 3})
    purchases = SHARED_STATES._shape_key({"kinds": ["purchase"], "target": 2})
    with database.engine.begin() as connection:
        _insert_badges_and_learner(connection, badges, now)
        _insert(
            connection,
            "INSERT INTO progress (learner_id, badge_id, criteria_version, complete, tier, started_at,"
            " updated_at) VALUES (1, 'few', 1, true, '', :started, :now)",
            started="2026-10-01 08:00:00.000005", now=now,
        )  # fmt: skip
        started = 1_790_841_600_000_005  # 2026-10-01 08:00:00.000005 UTC, in microseconds
        before = {
            "records": {
                "few": [1, started, True, "", True],
                "many": [1, started + 7, False, "", False],
            },
            "states": {logins: 7},
        }
        _insert(
            connection,
            "INSERT INTO learner_states (learner_id, states, updated_at) VALUES (1, :states, :now)",
            states=json.dumps(before), now=now,
        )  # fmt: skip
    upgrade(database, "0008")
    assert _document(database) == {
        "records": {"few": 1, "many": [1, started + 7, False, "", False]},
        "states": {logins: 7},
        "since": {logins: started},  # the earliest start of the records reading it
    }
    with database.engine.begin() as connection:  # what the evaluator writes from now on
        after = {
            "records": {"few": 1},  # "many" on its way keeps no record
            "states": {logins: 7, purchases: "=2.0"},  # retired: every badge reading it saturated
            "since": {logins: started},
        }
        connection.execute(text("UPDATE learner_states SET states = :states"), {"states": json.dumps(after)})
    downgrade(database, "0007")
    back = _document(database)
    database.dispose()
    assert back == {
        "records": {
            "few": [1, started, True, "", True],  # start and tier from its report
            "many": [1, started, False, "", False],  # on its way again, from when its state began
        },
        "states": {logins: 7},
    }


def _document(database: Database) -> Any:
    with database.engine.connect() as connection:
        (states,) = connection.execute(text("SELECT states FROM learner_states WHERE learner_id = 1")).one()
    return json.loads(states) if isinstance(states, str) else states
