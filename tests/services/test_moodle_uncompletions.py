"""What a Moodle un-completion does (as the README says): stored, taking back no progress and no award."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.worker import Worker
from tests.conftest import PLATFORMS, make_settings
from tests.connectors.support import MOODLE_SECRET, MOODLE_URL, fixture
from tests.helpers import awards_of, count_badge_template, progress_values, statuses

MODULE = fixture("moodle", "webhook_events")[1]  # activity 977 of course 42 completed (with a pass)
MOODLE = {"id": "moodle2", "kind": "moodle", "base_url": MOODLE_URL, "webhook_secret": MOODLE_SECRET}


def completion(cmid: int, state: int, log_id: int, at: int) -> dict:
    return {
        **MODULE,
        "objectid": log_id,
        "contextinstanceid": cmid,
        "timecreated": at,
        "other": {**MODULE["other"], "completionstate": state},
    }


@pytest.fixture
def moodle(database_url: str, tmp_path: Path) -> tuple[FlaskClient, Database, Worker]:
    templates = tmp_path / "templates"
    count_badge_template(templates, "two-activities", "activity_completed", 2)
    settings = make_settings(
        database_url, tmp_path, platforms=[*PLATFORMS, MOODLE], badge_templates_dir=templates
    )
    database = open_database(settings)
    return create_app(settings, database).test_client(), database, Worker(database, settings)


def test_an_uncompletion_leaves_progress_and_awards_as_they_were(moodle: tuple) -> None:
    client, database, worker = moodle
    for hook in (completion(977, 2, 1, 1717430400), completion(978, 1, 2, 1717430500)):
        assert client.post("/webhooks/moodle/moodle2", json=hook).status_code == 202
    worker.run_once()
    assert awards_of(database) == [("311", "two-activities")]
    assert progress_values(database, "two-activities") == {"311": 2}

    # The teacher marks activity 977 incomplete again: stored as its own event, processed, and nothing
    # taken back.
    undone = client.post("/webhooks/moodle/moodle2", json=completion(977, 0, 3, 1717430600))
    assert undone.get_json()["accepted"] == 1
    worker.run_once()
    assert statuses(database) == {"done": 3}
    assert awards_of(database) == [("311", "two-activities")]
    assert progress_values(database, "two-activities") == {"311": 2}

    # Completed again: the same fact as the first completion, so a duplicate that counts nothing twice.
    again = client.post("/webhooks/moodle/moodle2", json=completion(977, 1, 4, 1717430700))
    assert again.get_json() == {**again.get_json(), "accepted": 0, "duplicates": 1}
    assert progress_values(database, "two-activities") == {"311": 2}


def test_an_uncompletion_before_the_target_does_not_lower_progress(moodle: tuple) -> None:
    client, database, worker = moodle
    client.post("/webhooks/moodle/moodle2", json=completion(977, 2, 1, 1717430400))
    client.post("/webhooks/moodle/moodle2", json=completion(977, 0, 2, 1717430500))
    worker.run_once()
    assert progress_values(database, "two-activities") == {"311": 1}
    # Completing another activity still makes two: the first completion still counts.
    client.post("/webhooks/moodle/moodle2", json=completion(978, 1, 3, 1717430600))
    worker.run_once()
    assert awards_of(database) == [("311", "two-activities")]
