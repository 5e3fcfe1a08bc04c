"""A Moodle grade read after a quiz webhook: recorded before the answer, retried, parked, not only logged."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bridge.app import create_app
from bridge.cli import main
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.db.models_webhooks import WebhookFollowUp
from bridge.scheduler import Scheduler
from bridge.services.ingest import Inbox
from bridge.services.queue import failed_events, retry_failed
from bridge.services.sync import Connectors
from bridge.services.sync_webhooks import FOLLOW_UP_JOB, retry_due, schedule_follow_ups
from bridge.settings import Settings
from bridge.web.context import Services
from tests.conftest import PLATFORMS, make_settings, write_config
from tests.connectors.support import MOODLE_SECRET, MOODLE_URL, fixture

WS = f"{MOODLE_URL}/webservice/rest/server.php"
COMPLETED, MODULE, QUIZ, GRADED = fixture("moodle", "webhook_events")
GRADE_KEY = "quiz_graded:42:501:311:8.2"  # the quiz's grade in ws_gradereport_user_get_grade_items
MOODLE = {
    "id": "moodle2",
    "kind": "moodle",
    "base_url": MOODLE_URL,
    "token": "ws",
    "webhook_secret": MOODLE_SECRET,
}


def follow_up_settings(database_url: str, tmp_path: Path, **worker: Any) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        platforms=[*PLATFORMS, MOODLE],
        sync={"attempts": 1},  # one HTTP request per read: the follow-up's own retries are under test
        worker={
            "idle_sleep_seconds": 0.05,
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.05,
            **worker,
        },
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return follow_up_settings(database_url, tmp_path)


def moodle_fails(times: int) -> None:
    """The Moodle web service answers 503 ``times`` times, then the learner's grade items."""
    for _ in range(times):
        responses.post(WS, status=503, body="Service Unavailable")
    responses.post(WS, json=fixture("moodle", "ws_gradereport_user_get_grade_items"))


def keys(database: Database) -> list[str]:
    with database.read() as session:
        return list(session.scalars(select(Event.event_key).order_by(Event.id)))


def follow_ups(database: Database) -> list[tuple[str, int, str | None]]:
    with database.read() as session:
        rows = session.execute(
            select(WebhookFollowUp.status, WebhookFollowUp.attempts, WebhookFollowUp.last_error).order_by(
                WebhookFollowUp.id
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def retry(database: Database, settings: Settings) -> int:
    """What the scheduler's job does each minute, in a process of its own."""
    return retry_due(database, Inbox(database), Connectors(settings), settings)


def answered_at_once(app: Flask, client: FlaskClient) -> None:
    response = client.post("/webhooks/moodle/moodle2", json=QUIZ)
    assert response.status_code == 202 and response.get_json()["fetching"] is True
    services: Services = app.extensions["bridge"]
    services.webhook_fetches.wait()


def health(client: FlaskClient) -> dict[str, int]:
    response = client.get("/healthz")
    assert response.status_code == 200  # a follow-up waiting or parked does not make the service unhealthy
    return response.get_json()["webhook_follow_ups"]


@responses.activate
def test_a_failed_grade_read_is_retried_with_backoff_until_moodle_answers(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    moodle_fails(2)
    answered_at_once(app, client)
    assert keys(database) == ["quiz_submitted:42:4410"]  # the grade is not in yet
    [(status, attempts, error)] = follow_ups(database)
    assert (status, attempts) == ("pending", 1) and "503" in (error or "")
    assert health(client) == {"pending": 1, "failed": 0}

    time.sleep(0.06)  # past the backoff
    assert retry(database, settings) == 1
    assert follow_ups(database)[0][:2] == ("pending", 2)

    time.sleep(0.06)
    assert retry(database, settings) == 1
    assert keys(database) == ["quiz_submitted:42:4410", GRADE_KEY]
    assert follow_ups(database) == []  # done: nothing left to read
    assert health(client) == {"pending": 0, "failed": 0}
    assert len(responses.calls) == 3


@responses.activate
def test_one_pass_reads_a_follow_up_once_however_short_its_backoff(database_url: str, tmp_path: Path) -> None:
    # A read that fails again is due again after its backoff; a pass that outlasts a short backoff (a slow
    # LMS, a busy machine) must leave it to the next pass rather than read it twice.
    settings = follow_up_settings(
        database_url, tmp_path, backoff_base_seconds=0.001, backoff_max_seconds=0.001
    )
    app = create_app(settings)
    moodle_fails(3)
    answered_at_once(app, app.test_client())
    database: Database = app.extensions["bridge"].database
    time.sleep(0.01)
    assert retry(database, settings) == 1
    assert follow_ups(database)[0][:2] == ("pending", 2)
    time.sleep(0.01)
    assert retry(database, settings) == 1
    assert follow_ups(database)[0][:2] == ("pending", 3)


@responses.activate
def test_a_follow_up_is_not_read_again_before_its_backoff_is_over(database_url: str, tmp_path: Path) -> None:
    settings = follow_up_settings(database_url, tmp_path, backoff_base_seconds=0.5, backoff_max_seconds=1.0)
    app = create_app(settings)
    moodle_fails(1)
    answered_at_once(app, app.test_client())
    database: Database = app.extensions["bridge"].database
    assert retry(database, settings) == 0  # due in 0.25 to 0.5 s
    time.sleep(0.55)
    assert retry(database, settings) == 1
    assert keys(database)[-1] == GRADE_KEY


@responses.activate
def test_a_read_out_of_attempts_is_parked_counted_listed_and_retried_from_the_cli(
    database_url: str, tmp_path: Path
) -> None:
    settings = follow_up_settings(database_url, tmp_path, max_attempts=2)
    app = create_app(settings)
    client = app.test_client()
    database: Database = app.extensions["bridge"].database
    moodle_fails(2)
    answered_at_once(app, client)
    time.sleep(0.06)
    assert retry(database, settings) == 1
    assert follow_ups(database)[0][:2] == ("failed", 2)
    assert health(client) == {"pending": 0, "failed": 1}
    time.sleep(0.06)
    assert retry(database, settings) == 0  # parked: not retried by itself

    [parked] = failed_events(database)
    assert parked.id < 0 and parked.source == "webhook_follow_up"
    assert parked.platform == "moodle2" and parked.kind == QUIZ["eventname"]
    assert parked.attempts == 2 and "503" in parked.last_error

    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    listed = run(config, "events", "failed").output
    assert listed.startswith(f"{parked.id}\tmoodle2\twebhook_follow_up:") and "503" in listed
    as_json = json.loads(run(config, "events", "failed", "--json").output)
    assert as_json["source"] == "webhook_follow_up" and as_json["id"] == parked.id
    assert run(config, "events", "retry", "--", str(parked.id)).output.strip() == "1 event(s) queued again"
    assert health(client) == {"pending": 1, "failed": 0}

    assert retry(database, settings) == 1  # Moodle answers now
    assert keys(database)[-1] == GRADE_KEY
    assert failed_events(database) == []


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


@responses.activate
def test_retry_all_queues_parked_follow_ups_and_events_alike(database_url: str, tmp_path: Path) -> None:
    settings = follow_up_settings(database_url, tmp_path, max_attempts=1)
    app = create_app(settings)
    database: Database = app.extensions["bridge"].database
    moodle_fails(1)
    answered_at_once(app, app.test_client())
    assert follow_ups(database)[0][:2] == ("failed", 1)
    assert retry_failed(database, [1]) == 0  # a positive id names an event, not the follow-up
    assert retry_failed(database) == 1
    assert follow_ups(database)[0][:2] == ("pending", 0)


@responses.activate
def test_a_follow_up_recorded_before_the_process_stopped_is_read_after_a_restart(
    database_url: str, tmp_path: Path, settings: Settings
) -> None:
    moodle_fails(0)
    app = create_app(settings)
    services: Services = app.extensions["bridge"]
    services.webhook_fetches.close()  # the process stops right after answering
    response = app.test_client().post("/webhooks/moodle/moodle2", json=QUIZ)
    assert response.status_code == 202
    services.database.dispose()

    restarted = Database(database_url)  # nothing shared with the process that stopped
    assert follow_ups(restarted) == [("pending", 0, None)]
    assert retry(restarted, settings) == 0  # still claimed by the read that never ran
    with restarted.write() as session:  # ... until its claim runs out
        session.execute(update(WebhookFollowUp).values(next_attempt_at=utcnow()))
    assert retry(restarted, settings) == 1
    assert keys(restarted)[-1] == GRADE_KEY and follow_ups(restarted) == []
    restarted.dispose()


@responses.activate
def test_the_scheduler_job_reads_due_follow_ups(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    moodle_fails(1)
    answered_at_once(app, client)
    time.sleep(0.06)
    scheduler = Scheduler(database, settings)
    if FOLLOW_UP_JOB not in scheduler.job_ids():  # until bridge/scheduler.py adds it itself
        schedule_follow_ups(scheduler, database, settings)
    assert scheduler.run_now(FOLLOW_UP_JOB) is True  # under the job's lease
    assert keys(database)[-1] == GRADE_KEY


def test_the_scheduler_schedules_the_follow_up_job(database: Database, settings: Settings) -> None:
    assert FOLLOW_UP_JOB in Scheduler(database, settings).job_ids()


@responses.activate
def test_a_payload_the_connector_cannot_read_is_parked_at_once_and_its_secret_not_stored(
    app: Flask, client: FlaskClient, database: Database
) -> None:
    bad = {**GRADED, "courseid": "not-a-number"}  # user_graded is only read when its grade is fetched
    assert client.post("/webhooks/moodle/moodle2", json=bad).status_code == 202
    app.extensions["bridge"].webhook_fetches.wait()
    [(status, attempts, error)] = follow_ups(database)
    assert (status, attempts) == ("failed", 1) and "Malformed" in (error or "")
    with database.read() as session:
        stored = json.loads(session.scalars(select(WebhookFollowUp.payload)).one())
    assert "token" not in stored and stored["courseid"] == "not-a-number"
    assert len(responses.calls) == 0
