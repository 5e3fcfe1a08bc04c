"""``current_rulebook``: the pages read the rule book on every request, parsed again only after a badge
changed, and every kind of change is seen at once."""

from __future__ import annotations

from dataclasses import replace

from bridge.db.engine import Database
from bridge.domain.rules import RuleBook
from bridge.services.badge_admin import BadgeAdmin
from bridge.services.badges import (
    current_rulebook,
    load_template_files,
    shipped_templates_dir,
    sync_templates,
)
from bridge.settings import Settings
from tests.web.test_api_rules import a_badge


def read(database: Database, settings: Settings) -> RuleBook:
    with database.read() as session:
        return current_rulebook(session, settings.track_event_types)


def target_of(rules: RuleBook, badge_id: str) -> float:
    [[requirement]] = rules.by_id[badge_id].criteria.groups
    return requirement.target


def test_the_same_rule_book_while_no_badge_changes(database: Database, settings: Settings) -> None:
    first = read(database, settings)
    assert read(database, settings) is first
    assert {badge.id for badge in first.badges} >= {"welcome"}


def test_a_badge_created_updated_disabled_or_enabled_is_seen_on_the_next_read(
    database: Database, settings: Settings
) -> None:
    admin = BadgeAdmin(database, settings)
    read(database, settings)
    admin.create(a_badge(), "tests")
    assert target_of(read(database, settings), "three-logins") == 3
    criteria = {"groups": [{"requirements": [{"kinds": ["login"], "target": 5}]}]}
    admin.update("three-logins", a_badge(criteria=criteria), "tests")
    assert target_of(read(database, settings), "three-logins") == 5
    admin.set_enabled("three-logins", False, "tests")
    assert "three-logins" not in read(database, settings).by_id
    admin.set_enabled("three-logins", True, "tests")
    assert "three-logins" in read(database, settings).by_id


def test_a_template_file_synced_again_with_other_points_is_seen(
    database: Database, settings: Settings
) -> None:
    before = read(database, settings)
    loaded = load_template_files(shipped_templates_dir(), settings.track_event_types, [])
    welcome = next(t for t in loaded.templates if t.id == "welcome")
    sync_templates(database, [replace(welcome, points=welcome.points + 40)])
    after = read(database, settings)
    assert after is not before
    assert after.by_id["welcome"].points == before.by_id["welcome"].points + 40
