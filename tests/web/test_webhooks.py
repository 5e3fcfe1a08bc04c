"""LMS webhooks: verified, parsed, stored once and answered 202; every refusal is JSON and stores nothing."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.settings import Settings
from bridge.web.context import Services
from bridge.web.webhooks import WEBHOOKS_RECEIVED
from tests.conftest import PLATFORMS, make_settings
from tests.connectors.support import CANVAS_URL, JWKS_URL, MOODLE_SECRET, MOODLE_URL, fixture, jwks, signed

LMS_PLATFORMS = [
    *PLATFORMS,
    {"id": "canvas1", "kind": "canvas", "base_url": CANVAS_URL, "token": "t", "jwks_url": JWKS_URL},
    {"id": "canvas-open", "kind": "canvas", "base_url": CANVAS_URL, "webhook_auth": "unsigned"},
    {
        "id": "moodle2",
        "kind": "moodle",
        "base_url": MOODLE_URL,
        "token": "ws",
        "webhook_secret": MOODLE_SECRET,
    },
    {
        "id": "moodle-signed",
        "kind": "moodle",
        "base_url": MOODLE_URL,
        "webhook_secret": "k",
        "webhook_auth": "hmac",
    },
]
COMPLETED, MODULE, QUIZ, GRADED = fixture("moodle", "webhook_events")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, platforms=LMS_PLATFORMS)


def stored_keys(database: Database) -> list[str]:
    with database.read() as session:
        return list(session.scalars(select(Event.event_key).order_by(Event.id)))


def count(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]


def counted(platform: str, outcome: str) -> float:
    return WEBHOOKS_RECEIVED.labels(platform, outcome)._value.get()


@responses.activate
def test_a_signed_canvas_live_event_is_stored_once_and_answered_202(
    client: FlaskClient, database: Database
) -> None:
    responses.get(JWKS_URL, json=jwks("test-key-1"))
    before = counted("canvas1", "accepted")
    body = signed(fixture("canvas", "live_course_completed"))
    first = client.post("/webhooks/canvas/canvas1", data=body, content_type="application/jwt")
    assert first.status_code == 202
    assert first.get_json() == {
        "event_type": "course_completed",
        "accepted": 1,
        "duplicates": 0,
        "fetching": False,
    }
    again = client.post("/webhooks/canvas/canvas1", data=body, content_type="application/jwt")
    assert again.status_code == 202 and again.get_json()["duplicates"] == 1
    assert stored_keys(database) == ["course_completed:565:123"]
    assert counted("canvas1", "accepted") == before + 1


@responses.activate
def test_a_bad_signature_is_a_401_and_stores_nothing(client: FlaskClient, database: Database) -> None:
    responses.get(JWKS_URL, json=jwks("test-key-1"))
    before = counted("canvas1", "bad_signature")
    forged = signed(fixture("canvas", "live_grade_change"), kid="not-canvas")
    assert_error(client.post("/webhooks/canvas/canvas1", data=forged), 401, "bad_signature")
    unsigned = json.dumps(fixture("canvas", "live_grade_change"))
    assert_error(client.post("/webhooks/canvas/canvas1", data=unsigned), 401, "bad_signature")
    assert count(database) == 0
    assert counted("canvas1", "bad_signature") == before + 2


def test_malformed_bodies_are_a_400(client: FlaskClient, database: Database) -> None:
    assert_error(client.post("/webhooks/canvas/canvas1", data=b"not a jwt"), 400, "malformed_webhook")
    assert_error(
        client.post("/webhooks/canvas/canvas-open", data=b'{"metadata": 1}'), 400, "malformed_webhook"
    )
    broken = copy.deepcopy(COMPLETED)
    del broken["relateduserid"], broken["other"]
    assert_error(client.post("/webhooks/moodle/moodle2", json=broken), 400, "malformed_webhook")
    assert_error(client.post("/webhooks/moodle/moodle2", data=b"{"), 400, "malformed_webhook")
    assert count(database) == 0


def test_text_the_inbox_cannot_store_is_a_400_and_stores_nothing(
    client: FlaskClient, database: Database
) -> None:
    grade = fixture("canvas", "live_grade_change")
    grade["body"]["student_id"] = "48\u0000"
    assert_error(client.post("/webhooks/canvas/canvas-open", json=grade), 400, "malformed_webhook")
    assert_error(
        client.post("/webhooks/moodle/moodle2", json={**MODULE, "courseid": "4\n2"}), 400, "malformed_webhook"
    )
    assert count(database) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/canvas/nowhere",
        "/webhooks/canvas/moodle2",
        "/webhooks/moodle/canvas1",
        "/webhooks/moodle/demo",
    ],
)
def test_an_unknown_platform_or_one_of_another_kind_is_a_404(
    client: FlaskClient, database: Database, path: str
) -> None:
    assert_error(client.post(path, json=COMPLETED), 404, "unknown_platform")
    assert count(database) == 0


def test_an_unsigned_canvas_platform_accepts_json_and_ignores_event_types_it_does_not_use(
    client: FlaskClient, database: Database
) -> None:
    grade = client.post("/webhooks/canvas/canvas-open", json=fixture("canvas", "live_grade_change"))
    assert grade.status_code == 202 and grade.get_json()["accepted"] == 1
    accessed = client.post("/webhooks/canvas/canvas-open", json=fixture("canvas", "live_asset_accessed"))
    assert accessed.status_code == 202
    assert accessed.get_json() == {
        "event_type": "asset_accessed",
        "accepted": 0,
        "duplicates": 0,
        "fetching": False,
    }
    assert stored_keys(database) == ["assignment_graded:355:48:5.0"]


def test_a_moodle_event_needs_the_shared_token(client: FlaskClient, database: Database) -> None:
    assert client.post("/webhooks/moodle/moodle2", json=MODULE).status_code == 202
    assert_error(
        client.post("/webhooks/moodle/moodle2", json={**COMPLETED, "token": "guess"}), 401, "bad_signature"
    )
    assert stored_keys(database) == ["activity_completed:42:977:311"]


def test_an_hmac_signed_moodle_event(client: FlaskClient, database: Database) -> None:
    body = json.dumps(COMPLETED).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(b"k", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Moodle-Signature": f"sha256={digest}", "X-Moodle-Timestamp": stamp}
    response = client.post(
        "/webhooks/moodle/moodle-signed", data=body, headers=headers, content_type="application/json"
    )
    assert response.status_code == 202
    headers["X-Moodle-Timestamp"] = str(int(stamp) - 1)
    replayed = client.post("/webhooks/moodle/moodle-signed", data=body, headers=headers)
    assert_error(replayed, 401, "bad_signature")
    assert stored_keys(database) == ["course_completed:42:311"]


@responses.activate
def test_a_moodle_grading_is_answered_at_once_and_its_grade_fetched_afterwards(
    app: Flask, client: FlaskClient, database: Database
) -> None:
    grades = fixture("moodle", "ws_gradereport_user_get_grade_items")
    responses.post(f"{MOODLE_URL}/webservice/rest/server.php", json=grades)
    response = client.post("/webhooks/moodle/moodle2", json=GRADED)
    assert response.status_code == 202
    assert response.get_json() == {
        "event_type": "\\core\\event\\user_graded",
        "accepted": 0,
        "duplicates": 0,
        "fetching": True,
    }
    services: Services = app.extensions["bridge"]
    services.webhook_fetches.wait()
    assert stored_keys(database) == ["quiz_graded:42:501:311:8.2"]
