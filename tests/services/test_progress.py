"""A learner's progress on every badge, as the API, the CLI and the LTI views show it."""

import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Badge, LearnerState
from bridge.services.progress import learner_progress
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import count_badge_template, learning_event, store


def logins_badges(database_url: str, tmp_path: Path) -> tuple[Database, Settings]:
    count_badge_template(tmp_path / "t", "two-logins", "login", 2)
    count_badge_template(tmp_path / "t", "five-logins", "login", 5)
    settings = make_settings(database_url, tmp_path, badge_templates_dir=tmp_path / "t")
    return open_database(settings), settings


def shown(database: Database, settings: Settings) -> dict[str, tuple[float, bool, str]]:
    views = learner_progress(database, settings, "demo", "42")
    return {view.badge_id: (view.value, view.complete, view.sentence) for view in views}


def test_a_badge_on_its_way_shows_the_progress_of_the_states_it_shares(
    database_url: str, tmp_path: Path
) -> None:
    database, settings = logins_badges(database_url, tmp_path)
    with database.write() as session:  # the steady state: the rules came long before the learner
        session.execute(update(Badge).values(criteria_since=utcnow() - timedelta(days=30)))
    store(database, *(learning_event(f"l{n}", minutes=n) for n in range(3)))
    Worker(database, settings).run(threading.Event(), drain=True)
    with database.read() as session:
        (document,) = session.scalars(select(LearnerState.states)).all()
    assert list(document["records"]) == ["two-logins"]  # complete; five-logins on its way keeps none
    assert shown(database, settings)["five-logins"] == (3, False, "3 of 5 sign-ins")
    assert shown(database, settings)["two-logins"] == (2, True, "Complete: 2 sign-ins")


def test_a_learner_seen_just_after_the_rules_changed_shows_the_same_progress(
    database_url: str, tmp_path: Path
) -> None:
    database, settings = logins_badges(database_url, tmp_path)  # criteria changed just now
    store(database, *(learning_event(f"l{n}", minutes=n) for n in range(3)))
    Worker(database, settings).run(threading.Event(), drain=True)
    with database.read() as session:
        (document,) = session.scalars(select(LearnerState.states)).all()
    assert sorted(document["records"]) == ["five-logins", "two-logins"]  # records of these criteria
    assert shown(database, settings)["five-logins"] == (3, False, "3 of 5 sign-ins")


def test_a_learner_with_no_events_has_zero_progress_everywhere(database_url: str, tmp_path: Path) -> None:
    database, settings = logins_badges(database_url, tmp_path)
    assert shown(database, settings) == {
        "two-logins": (0, False, "0 of 2 sign-ins"),
        "five-logins": (0, False, "0 of 5 sign-ins"),
    }
