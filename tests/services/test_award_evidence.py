"""An award records the events that earned it (its provenance): latest first, up to 100, only those
its requirements accept, whether they were evaluated in earlier batches or in the awarding one."""

import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award, Event
from bridge.services.effects import EVIDENCE_LIMIT
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import count_badge_template, learning_event, store


def drain(database: Database, settings: Settings) -> None:
    Worker(database, settings).run(threading.Event(), drain=True)


def evidence_keys(database: Database, badge_id: str) -> list[str]:
    """The event keys an award of ``badge_id`` names, in the order it names them."""
    with database.read() as session:
        (event_ids,) = session.scalars(select(Award.event_ids).where(Award.badge_id == badge_id)).all()
        keys = dict(session.execute(select(Event.id, Event.event_key)).all())
    return [keys[event_id] for event_id in event_ids]


def logins_badge(
    database_url: str, tmp_path: Path, badge_id: str, target: int, event_filter: str | None = None
) -> tuple[Database, Settings]:
    """A database whose one badge counts ``target`` logins (those ``event_filter`` accepts, if given)."""
    directory = tmp_path / "t"
    count_badge_template(directory, badge_id, "login", target)
    if event_filter is not None:
        template = directory / f"{badge_id}.toml"
        template.write_text(template.read_text() + f"filter = '{event_filter}'\n")
    settings = make_settings(database_url, tmp_path, badge_templates_dir=directory)
    return open_database(settings), settings


def test_evidence_is_the_counted_events_latest_first_across_batches(
    database_url: str, tmp_path: Path
) -> None:
    database, settings = logins_badge(database_url, tmp_path, "four-logins", 4)
    store(database, learning_event("a", minutes=1), learning_event("b", minutes=2))
    store(database, learning_event("purchase", kind="purchase", minutes=3))  # not what the badge counts
    drain(database, settings)
    store(database, learning_event("c", minutes=4), learning_event("d", minutes=5))
    drain(database, settings)
    assert evidence_keys(database, "four-logins") == ["d", "c", "b", "a"]


def test_events_of_the_awarding_batch_and_earlier_ones_are_named_in_time_order(
    database_url: str, tmp_path: Path
) -> None:
    database, settings = logins_badge(database_url, tmp_path, "four-logins", 4)
    store(database, learning_event("first", minutes=1), learning_event("third", minutes=5))
    drain(database, settings)
    # The nightly sync brings one that happened between the two, and a new one completes the badge.
    store(database, learning_event("second", minutes=3), learning_event("fourth", minutes=10))
    drain(database, settings)
    assert evidence_keys(database, "four-logins") == ["fourth", "third", "second", "first"]


def test_evidence_ends_when_the_badge_was_earned(database_url: str, tmp_path: Path) -> None:
    database, settings = logins_badge(database_url, tmp_path, "three-logins", 3)
    store(database, learning_event("early", minutes=1), learning_event("later", minutes=30))
    drain(database, settings)
    # A synced event from in between completes the badge: earned then, with what came before it.
    store(database, learning_event("synced", minutes=10))
    drain(database, settings)
    assert evidence_keys(database, "three-logins") == ["synced", "early"]


def test_only_events_the_filter_accepts_are_evidence(database_url: str, tmp_path: Path) -> None:
    database, settings = logins_badge(database_url, tmp_path, "dl-logins", 2, 'course == "DL101"')
    in_dl101 = [replace(learning_event(f"dl{n}", minutes=n), course="DL101") for n in (1, 3)]
    elsewhere = [replace(learning_event(f"other{n}", minutes=n), course="HS100") for n in (2, 4)]
    store(database, in_dl101[0], elsewhere[0])
    drain(database, settings)
    store(database, elsewhere[1], in_dl101[1])
    drain(database, settings)
    assert evidence_keys(database, "dl-logins") == ["dl3", "dl1"]


def test_evidence_names_at_most_the_latest_hundred(database_url: str, tmp_path: Path) -> None:
    target = EVIDENCE_LIMIT + 20
    database, settings = logins_badge(database_url, tmp_path, "many-logins", target)
    store(database, *(learning_event(f"l{n:03}", minutes=n) for n in range(target - 1)))
    drain(database, settings)
    store(database, learning_event(f"l{target - 1:03}", minutes=target - 1))
    drain(database, settings)
    expected = [f"l{n:03}" for n in range(target - 1, target - 1 - EVIDENCE_LIMIT, -1)]
    assert evidence_keys(database, "many-logins") == expected


@pytest.mark.parametrize("filtered", [False, True], ids=["kinds only", "with a filter"])
def test_events_not_yet_evaluated_are_not_evidence(database_url: str, tmp_path: Path, filtered: bool) -> None:
    event_filter = 'kind == "login"' if filtered else None
    database, settings = logins_badge(database_url, tmp_path, "three-logins", 3, event_filter)
    store(database, learning_event("a", minutes=1))
    drain(database, settings)
    parked, waiting = store(
        database, learning_event("parked", minutes=2), learning_event("waiting", minutes=3)
    )
    with database.write() as session:
        # One gave up on (failed for good), one waiting for its retry: neither was counted.
        session.execute(update(Event).where(Event.id == parked).values(status="failed", attempts=5))
        session.execute(
            update(Event).where(Event.id == waiting).values(next_attempt_at=utcnow() + timedelta(hours=1))
        )
    store(database, learning_event("b", minutes=4), learning_event("c", minutes=5))
    drain(database, settings)
    assert evidence_keys(database, "three-logins") == ["c", "b", "a"]
