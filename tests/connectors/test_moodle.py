"""Moodle: webhook verification and events, and web-service polling diffed against snapshots."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl

import pytest
import responses

from bridge.domain.events import LearningEvent
from connectors import BadSignature, Malformed, PlatformStopped, PollOptions
from connectors.moodle import MoodleConnector
from tests.connectors.support import MOODLE_SECRET, MOODLE_URL, fixture, moodle_config

SERVER = f"{MOODLE_URL}/webservice/rest/server.php"
COMPLETED, MODULE, QUIZ, GRADED = fixture("moodle", "webhook_events")


def moodle_site(answers: dict[str, Any]) -> list[dict[str, str]]:
    """A fake web-service endpoint answering each function from ``answers`` (a value or a callable)."""
    asked: list[dict[str, str]] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        form = dict(parse_qsl(request.body))
        asked.append(form)
        found = answers.get(form["wsfunction"])
        body = found(form) if callable(found) else found
        return 200, {"Content-Type": "application/json"}, json.dumps(body)  # errors come with a 200 too

    responses.add_callback(responses.POST, SERVER, callback=answer)
    return asked


def course_42(**changes: Any) -> dict[str, Any]:
    answers: dict[str, Any] = {
        "core_enrol_get_enrolled_users": fixture("moodle", "ws_core_enrol_get_enrolled_users"),
        "gradereport_user_get_grade_items": fixture("moodle", "ws_gradereport_user_get_grade_items"),
        "core_completion_get_course_completion_status": fixture(
            "moodle", "ws_core_completion_get_course_completion_status"
        ),
        "core_completion_get_activities_completion_status": fixture(
            "moodle", "ws_core_completion_get_activities_completion_status"
        ),
    }
    answers.update(changes)
    return answers


def poll(
    connector: MoodleConnector, cursors: dict[str, Any] | None = None
) -> tuple[list[LearningEvent], dict]:
    cursors = dict(cursors or {})
    events: list[LearningEvent] = []
    problems: list[str] = []
    for page in connector.poll("42", cursors, PollOptions()):
        events.extend(page.events)
        problems.extend(page.problems)
        cursors[page.stream] = page.cursor
    cursors["problems"] = problems
    return events, cursors


def keys(events: list[LearningEvent]) -> list[str]:
    return sorted(event.event_key for event in events)


# --- webhooks ---------------------------------------------------------------------------------------


def test_the_four_events_become_learning_events_for_the_related_user() -> None:
    connector = MoodleConnector(moodle_config())
    [completed] = connector.parse_webhook(COMPLETED)
    assert (completed.kind, completed.learner, completed.course) == ("course_completed", "311", "42")
    [module] = connector.parse_webhook(MODULE)
    assert (module.kind, module.item, module.data["passed"]) == ("activity_completed", "977", True)
    [quiz] = connector.parse_webhook(QUIZ)
    assert (quiz.kind, quiz.event_key) == ("quiz_submitted", "quiz_submitted:42:4410")
    assert connector.parse_webhook(GRADED) == []  # its grade's range comes from the web service
    assert connector.parse_webhook(fixture("moodle", "webhook_course_viewed")) == []


def test_ids_may_be_strings_or_integers() -> None:
    as_strings = {k: str(v) if isinstance(v, int) else v for k, v in COMPLETED.items()}
    connector = MoodleConnector(moodle_config())
    assert connector.parse_webhook(as_strings) == connector.parse_webhook(COMPLETED)


def test_un_completion_is_its_own_event_and_a_failed_completion_is_neither() -> None:
    connector = MoodleConnector(moodle_config())
    undone = copy.deepcopy(MODULE)
    undone["other"]["completionstate"] = 0
    [event] = connector.parse_webhook(undone)
    assert event.kind == "activity_uncompleted" and event.item == "977"
    undone["other"]["completionstate"] = 3
    assert connector.parse_webhook(undone) == []
    del undone["other"]["completionstate"]
    with pytest.raises(Malformed, match="completionstate"):
        connector.parse_webhook(undone)


def test_the_shared_token_in_the_body_must_match() -> None:
    connector = MoodleConnector(moodle_config())
    assert connector.verify_webhook({}, json.dumps(COMPLETED).encode())["eventname"] == COMPLETED["eventname"]
    with pytest.raises(BadSignature, match="token"):
        connector.verify_webhook({}, json.dumps({**COMPLETED, "token": "guess"}).encode())
    with pytest.raises(BadSignature, match="token"):
        connector.verify_webhook({}, json.dumps({**COMPLETED, "token": None}).encode())
    with pytest.raises(Malformed):
        connector.verify_webhook({}, b"[1, 2")


def hmac_headers(body: bytes, secret: str = MOODLE_SECRET, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Moodle-Signature": f"sha256={digest}", "X-Moodle-Timestamp": stamp}


def test_an_hmac_signed_body_is_checked_within_the_replay_window() -> None:
    connector = MoodleConnector(moodle_config(webhook_auth="hmac"))
    body = json.dumps({**COMPLETED, "token": ""}).encode()
    assert connector.verify_webhook(hmac_headers(body), body)["courseid"] == 42
    with pytest.raises(BadSignature, match="does not match"):
        connector.verify_webhook(hmac_headers(body, secret="wrong"), body)
    with pytest.raises(BadSignature, match="does not match"):
        connector.verify_webhook(hmac_headers(body), body.replace(b"311", b"312"))
    with pytest.raises(BadSignature, match="replay window"):
        connector.verify_webhook(hmac_headers(body, at=int(time.time()) - 3600), body)
    with pytest.raises(BadSignature, match="Unix seconds"):
        connector.verify_webhook({}, body)


@responses.activate
def test_a_grading_or_quiz_attempt_reads_its_grade_with_the_key_the_poll_uses() -> None:
    asked = moodle_site(course_42())
    connector = MoodleConnector(moodle_config())
    [graded] = connector.fetch_for_webhook(GRADED)
    assert (graded.kind, graded.score, graded.item) == ("quiz_graded", pytest.approx(0.82), "977")
    assert asked[0]["courseid"] == "42" and asked[0]["userid"] == "311" and asked[0]["wstoken"] == "ws-token"
    assert asked[0]["moodlewsrestformat"] == "json"
    [quiz] = connector.fetch_for_webhook(QUIZ)
    assert quiz.event_key == graded.event_key
    polled, _ = poll(connector)
    assert graded.event_key in keys(polled)


# --- polling ----------------------------------------------------------------------------------------


@responses.activate
def test_a_first_poll_reads_enrolment_grades_and_completion() -> None:
    asked = moodle_site(course_42())
    events, _ = poll(MoodleConnector(moodle_config()))
    assert keys(events) == [
        "activity_completed:42:975:311",
        "activity_completed:42:977:311",
        "course_completed:42:311",
        "course_graded:42:311:82.0",
        "enrolled:42:311",
        "quiz_graded:42:501:311:8.2",
    ]
    enrolled = next(form for form in asked if form["wsfunction"] == "core_enrol_get_enrolled_users")
    assert enrolled["options[0][name]"] == "onlyactive" and enrolled["options[0][value]"] == "1"
    grades = next(form for form in asked if form["wsfunction"] == "gradereport_user_get_grade_items")
    assert grades["userid"] == "0"  # the whole course in one call


@responses.activate
def test_the_next_poll_reports_only_what_changed_including_an_un_completion() -> None:
    activities = fixture("moodle", "ws_core_completion_get_activities_completion_status")
    answers = course_42(core_completion_get_activities_completion_status=lambda _form: activities)
    moodle_site(answers)
    connector = MoodleConnector(moodle_config())
    _, cursors = poll(connector)
    assert poll(connector, cursors)[0] == []
    activities["statuses"][1]["state"] = 0  # the page (cmid 975) was marked incomplete again
    events, _ = poll(connector, cursors)
    assert [(e.kind, e.item) for e in events] == [("activity_uncompleted", "975")]


@responses.activate
def test_a_course_without_completion_criteria_is_one_recorded_problem_not_a_failure() -> None:
    nocriteria = fixture("moodle", "ws_errors")[2]
    moodle_site(course_42(core_completion_get_course_completion_status=nocriteria))
    events, cursors = poll(MoodleConnector(moodle_config()))
    assert "course_completed:42:311" not in keys(events)
    assert "activity_completed:42:977:311" in keys(events)
    assert cursors["problems"] == [
        "course 42: core_completion_get_course_completion_status: nocriteriaset: "
        "No criteria set for this course"
    ]


@responses.activate
@pytest.mark.parametrize("error", [0, 1], ids=["invalidtoken", "accessexception"])
def test_token_and_access_errors_stop_the_platform(error: int) -> None:
    moodle_site({"core_enrol_get_enrolled_users": fixture("moodle", "ws_errors")[error]})
    with pytest.raises(PlatformStopped, match="Moodle refused"):
        poll(MoodleConnector(moodle_config()))


@responses.activate
def test_a_course_list_leaves_out_the_site_course() -> None:
    courses = fixture("moodle", "ws_core_course_get_courses_by_field")
    courses["courses"].append({**courses["courses"][0], "id": 1})
    moodle_site({"core_course_get_courses_by_field": courses})
    assert MoodleConnector(moodle_config()).courses() == ["42"]
