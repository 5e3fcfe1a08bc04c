"""LMS webhooks given what no LMS sends: too deep, numbers JSON has not, times out of range, tokens and
signatures that are not text. Each is refused like any malformed body (400) or wrong secret (401), stores
nothing, and is never a 500."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.db.engine import Database
from bridge.settings import Settings
from tests.conftest import make_settings
from tests.web.test_webhooks import COMPLETED, LMS_PLATFORMS, MODULE, assert_error, count, fixture

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, platforms=LMS_PLATFORMS)


def moodle_signed(client: FlaskClient, body: bytes, stamp: str, signature: str | None = None) -> Any:
    digest = hmac.new(b"k", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Moodle-Signature": signature or f"sha256={digest}", "X-Moodle-Timestamp": stamp}
    return client.post(
        "/webhooks/moodle/moodle-signed", data=body, headers=headers, content_type="application/json"
    )


def grade_change(**metadata: Any) -> dict[str, Any]:
    event = fixture("canvas", "live_grade_change")
    event["metadata"].update(metadata)
    return event


@pytest.mark.parametrize("body", [DEEP, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_json_nested_deeper_than_the_parser_goes_is_a_400(
    client: FlaskClient, database: Database, body: str
) -> None:
    for path in ("/webhooks/moodle/moodle2", "/webhooks/canvas/canvas-open"):
        response = client.post(path, data=body, content_type="application/json")
        assert_error(response, 400, "malformed_webhook")
        assert "nested too deeply" in response.get_json()["error"]["message"]
    stamp = str(int(time.time()))
    assert_error(moodle_signed(client, body.encode(), stamp), 400, "malformed_webhook")
    assert count(database) == 0


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_numbers_json_has_not_are_a_400(client: FlaskClient, database: Database, number: str) -> None:
    grade = json.dumps(fixture("canvas", "live_grade_change")).replace('"score": 5', f'"score": {number}')
    assert number in grade
    response = client.post("/webhooks/canvas/canvas-open", data=grade, content_type="application/json")
    assert_error(response, 400, "malformed_webhook")
    assert number in response.get_json()["error"]["message"]
    assert count(database) == 0


def test_a_canvas_score_too_large_for_a_float_is_a_400(client: FlaskClient, database: Database) -> None:
    grade = json.dumps(fixture("canvas", "live_grade_change")).replace('"score": 5', f'"score": {10**400}')
    response = client.post("/webhooks/canvas/canvas-open", data=grade, content_type="application/json")
    assert_error(response, 400, "malformed_webhook")
    assert count(database) == 0


@pytest.mark.parametrize(
    "timecreated", [10**20, "1" + "0" * 20, 1e300, pytest.param("9" * 5000, id="5000 nines")]
)
def test_a_moodle_time_out_of_range_is_a_400(
    client: FlaskClient, database: Database, timecreated: Any
) -> None:
    for event in (COMPLETED, MODULE):
        body = {**copy.deepcopy(event), "timecreated": timecreated}
        response = client.post("/webhooks/moodle/moodle2", json=body)
        assert_error(response, 400, "malformed_webhook")
        assert "1970-01-01 to 9998-12-31" in response.get_json()["error"]["message"]
    assert count(database) == 0


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "9999-06-01T00:00:00Z",
        "1969-07-20T20:17:00Z",
    ],
)
def test_a_canvas_time_out_of_range_is_a_400(client: FlaskClient, database: Database, moment: str) -> None:
    response = client.post("/webhooks/canvas/canvas-open", json=grade_change(event_time=moment))
    assert_error(response, 400, "malformed_webhook")
    assert moment in response.get_json()["error"]["message"]
    enrolled = fixture("canvas", "live_enrollment_created")
    enrolled["body"]["created_at"] = moment
    assert_error(client.post("/webhooks/canvas/canvas-open", json=enrolled), 400, "malformed_webhook")
    assert count(database) == 0


@pytest.mark.parametrize("token", ["\ud800", "\udfff", "s3cr3t-shared-token\udc80", "\x00"])
def test_a_moodle_token_that_is_not_text_is_a_401_like_any_wrong_token(
    client: FlaskClient, database: Database, token: str
) -> None:
    # json.dumps writes a lone surrogate as a \u escape, which json.loads reads back as that surrogate.
    body = json.dumps({**COMPLETED, "token": token})
    response = client.post("/webhooks/moodle/moodle2", data=body, content_type="application/json")
    assert_error(response, 401, "bad_signature")
    assert count(database) == 0


@pytest.mark.parametrize(
    ("stamp", "signature"),
    [
        pytest.param("9" * 400, None, id="400 nines"),  # a timestamp too large to compare as a float
        pytest.param("-" + "9" * 400, None, id="minus 400 nines"),
        (None, "sha256=\u00e9" * 3),  # a signature with characters hmac.compare_digest refuses in str
        (None, "\u00ff"),
    ],
)
def test_moodle_signature_headers_that_cannot_match_are_a_401(
    client: FlaskClient, database: Database, stamp: str | None, signature: str | None
) -> None:
    body = json.dumps(COMPLETED).encode()
    response = moodle_signed(client, body, stamp or str(int(time.time())), signature)
    assert_error(response, 401, "bad_signature")
    assert count(database) == 0
