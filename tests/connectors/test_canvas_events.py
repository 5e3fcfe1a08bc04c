"""Canvas Live Events: signed and unsigned delivery, and what each event type becomes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import responses

from connectors import BadSignature, Malformed
from connectors.canvas import CanvasConnector
from tests.connectors.support import JWKS_URL, canvas_config, fixture, jwks, signed


def parse(name: str) -> list[Any]:
    return CanvasConnector(canvas_config()).parse_webhook(fixture("canvas", name))


def test_course_completed_names_the_learner_and_course_by_local_id() -> None:
    [event] = parse("live_course_completed")
    assert (event.kind, event.learner, event.course, event.score) == ("course_completed", "123", "565", 1.0)
    assert event.event_key == "course_completed:565:123"
    assert event.occurred_at.isoformat() == "2019-11-05T13:38:00.218000+00:00"
    assert event.data["requirement_count"] == 6


def test_course_progress_is_the_share_of_requirements_met() -> None:
    [event] = parse("live_course_progress")
    assert (event.kind, event.learner, event.course) == ("course_progress", "1122", "1234567")
    assert event.event_key == "course_progress:1234567:1122:101"
    assert event.score == pytest.approx(101 / 123)


def test_a_grade_change_is_an_assignment_graded_with_global_ids_made_local() -> None:
    [event] = parse("live_grade_change")
    assert (event.kind, event.learner, event.course, event.item) == ("assignment_graded", "48", "565", "355")
    assert event.event_key == "assignment_graded:355:48:5.0"
    assert event.score == 1.0  # 5 points of 1 possible: extra credit is capped, the points are kept
    assert event.data["points"] == 5.0


def test_an_unposted_grade_is_not_revealed() -> None:
    payload = fixture("canvas", "live_grade_change")
    payload["body"]["muted"] = True
    assert CanvasConnector(canvas_config()).parse_webhook(payload) == []


def test_a_course_grade_change_carries_the_current_score_as_a_fraction() -> None:
    [event] = parse("live_course_grade_change")
    assert (event.kind, event.learner, event.course) == ("course_graded", "2", "2")
    assert event.score == pytest.approx(0.1731)
    assert event.event_key == "course_graded:2:2:17.31"


def test_submissions_quizzes_and_enrollments() -> None:
    [submitted] = parse("live_submission_created")
    assert (submitted.kind, submitted.learner, submitted.item) == ("assignment_submitted", "14012", "1234012")
    assert submitted.event_key == "assignment_submitted:1234012:14012:12"
    [quiz] = parse("live_quiz_submitted")
    assert (quiz.kind, quiz.learner, quiz.course, quiz.item) == (
        "quiz_submitted",
        "987123",
        "100123",
        "2223333",
    )
    [enrolled] = parse("live_enrollment_created")
    assert (enrolled.kind, enrolled.learner, enrolled.course) == ("enrolled", "20064", "565")
    assert parse("live_enrollment_updated")[0].event_key == enrolled.event_key  # the same fact


def test_other_event_types_are_accepted_and_ignored() -> None:
    assert parse("live_asset_accessed") == []


def test_a_payload_without_metadata_and_body_is_malformed() -> None:
    with pytest.raises(Malformed):
        CanvasConnector(canvas_config()).parse_webhook({"event": "x"})
    broken = fixture("canvas", "live_grade_change")
    broken["body"]["assignment_id"] = "not-an-id"
    with pytest.raises(Malformed, match="expected a Canvas id"):
        CanvasConnector(canvas_config()).parse_webhook(broken)


# --- signed delivery --------------------------------------------------------------------------------


@responses.activate
def test_a_signed_live_event_is_verified_against_the_jwks_which_is_then_cached() -> None:
    responses.get(JWKS_URL, json=jwks("test-key-1"))
    connector = CanvasConnector(canvas_config())
    event = fixture("canvas", "live_course_completed")
    assert connector.verify_webhook({}, signed(event)) == event
    assert connector.verify_webhook({}, signed(event)) == event
    assert len(responses.calls) == 1


@responses.activate
def test_an_unknown_kid_refetches_the_jwks_once_then_waits_before_asking_again() -> None:
    responses.get(JWKS_URL, json=jwks("test-key-1"))
    responses.get(JWKS_URL, json=jwks("test-key-1", "rotated-key"))
    connector = CanvasConnector(canvas_config(jwks_refetch_seconds=3600))
    event = fixture("canvas", "live_grade_change")
    connector.verify_webhook({}, signed(event))
    assert connector.verify_webhook({}, signed(event, kid="rotated-key")) == event  # Canvas rotated its key
    with pytest.raises(BadSignature, match="no key 'forged'"):
        connector.verify_webhook({}, signed(event, kid="forged"))
    with pytest.raises(BadSignature, match="no key 'forged-again'"):
        connector.verify_webhook({}, signed(event, kid="forged-again"))
    assert len(responses.calls) == 2  # the forged kids did not make it fetch again


@responses.activate
def test_a_token_signed_by_another_key_expired_or_from_another_issuer_is_refused() -> None:
    listed = jwks("test-key-1")
    listed["keys"][0]["n"] = jwks("other-key")["keys"][0]["n"]  # test-key-1 names someone else's key
    responses.get(JWKS_URL, json=listed)
    event = fixture("canvas", "live_course_completed")
    with pytest.raises(BadSignature, match="does not verify"):
        CanvasConnector(canvas_config()).verify_webhook({}, signed(event))
    responses.replace(responses.GET, JWKS_URL, json=jwks("test-key-1"))
    with pytest.raises(BadSignature, match="expired"):
        CanvasConnector(canvas_config()).verify_webhook({}, signed(event, exp=int(time.time()) - 3600))
    strict = CanvasConnector(canvas_config(jwt_issuer="https://live-events.canvas.instructure.com"))
    with pytest.raises(BadSignature, match="issuer"):
        strict.verify_webhook({}, signed(event, iss="https://attacker.test"))


def test_unsigned_json_is_refused_unless_the_platform_is_configured_unsigned() -> None:
    body = json.dumps(fixture("canvas", "live_course_completed")).encode()
    with pytest.raises(BadSignature, match="only signed"):
        CanvasConnector(canvas_config()).verify_webhook({}, body)
    unsigned = CanvasConnector(canvas_config(webhook_auth="unsigned"))
    assert unsigned.verify_webhook({}, body)["metadata"]["event_name"] == "course_completed"
    with pytest.raises(Malformed):
        unsigned.verify_webhook({}, b"{not json")
    with pytest.raises(Malformed, match="neither a JWT nor JSON"):
        CanvasConnector(canvas_config()).verify_webhook({}, b"garbage")
