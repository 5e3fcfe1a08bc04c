"""Polling Canvas: enrollments, bulk progress and bulk submissions, resumable from persisted cursors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.domain.events import LearningEvent
from connectors import PlatformStopped, PollOptions, PollPage, Retryable
from connectors.canvas import CanvasConnector
from tests.connectors.support import CANVAS_URL, canvas_config, fixture

API = f"{CANVAS_URL}/api/v1/courses/565"
SUBMISSIONS = f"{API}/students/submissions"


def collect(
    pages: Iterable[PollPage], cursors: dict[str, Any] | None = None
) -> tuple[list[LearningEvent], dict]:
    """Every event, and each stream's cursor as the sync service would persist it after each page."""
    cursors = dict(cursors or {})
    events: list[LearningEvent] = []
    for page in pages:
        events.extend(page.events)
        cursors[page.stream] = page.cursor
    return events, cursors


def poll(
    connector: CanvasConnector, cursors: dict[str, Any] | None = None, **options: Any
) -> tuple[list, dict]:
    return collect(connector.poll("565", cursors or {}, PollOptions(**options)), cursors)


def submission(**changes: Any) -> dict[str, Any]:
    row = fixture("canvas", "api_student_submissions")[0]
    row.update({"assignment": {"id": row["assignment_id"], "points_possible": 25}, **changes})
    return row


def canvas_course(submissions: list[dict[str, Any]] | None = None) -> None:
    responses.get(f"{API}/enrollments", json=fixture("canvas", "api_enrollment"))
    responses.get(f"{API}/bulk_user_progress", json=fixture("canvas", "api_bulk_user_progress"))
    responses.get(SUBMISSIONS, json=[submission()] if submissions is None else submissions)


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def by_kind(events: list[LearningEvent]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for event in events:
        kinds.setdefault(event.kind, []).append(event.event_key)
    return kinds


@responses.activate
def test_a_first_poll_reads_enrollments_progress_and_every_graded_submission() -> None:
    canvas_course()
    events, cursors = poll(CanvasConnector(canvas_config()))
    assert by_kind(events) == {
        "enrolled": ["enrolled:565:20064"],
        "course_graded": ["course_graded:565:20064:35.0"],
        "course_progress": ["course_progress:565:1:1"],
        "course_completed": ["course_completed:565:2"],
        "assignment_graded": ["assignment_graded:356597:1163:20.0"],
    }
    graded = next(e for e in events if e.kind == "assignment_graded")
    assert graded.score == pytest.approx(0.8) and graded.course == "565"
    asked = query(next(c for c in responses.calls if c.request.url.startswith(SUBMISSIONS)))
    assert asked["student_ids[]"] == ["20064"] and asked["order"] == ["graded_at"]
    assert asked["per_page"] == ["100"] and "graded_since" not in asked
    assert cursors["submissions"] == {"watermark": "2021-03-30T16:11:38+00:00"}


@responses.activate
def test_the_next_poll_asks_only_for_grades_since_the_watermark_less_the_overlap_and_reports_changes() -> (
    None
):
    canvas_course()
    connector = CanvasConnector(canvas_config())
    _, cursors = poll(connector)
    responses.calls.reset()
    events, _ = poll(connector, cursors)
    asked = query(next(c for c in responses.calls if c.request.url.startswith(SUBMISSIONS)))
    assert asked["graded_since"] == ["2021-03-30T15:11:38Z"]  # an hour's overlap, Canvas's exact format
    # The same submission read again is no news to the inbox, but snapshots spare it the rest.
    assert by_kind(events) == {"assignment_graded": ["assignment_graded:356597:1163:20.0"]}


@responses.activate
def test_a_full_poll_ignores_cursors() -> None:
    canvas_course()
    connector = CanvasConnector(canvas_config())
    _, cursors = poll(connector)
    events, _ = poll(connector, cursors, full=True)
    assert len(events) == 5


@responses.activate
def test_webhook_and_poll_of_the_same_fact_have_the_same_key() -> None:
    grade = fixture("canvas", "live_grade_change")  # assignment 355, student 48, 5 points
    completed = fixture("canvas", "live_course_completed")  # course 565, user 123
    progress = [{"id": 123, "progress": completed["body"]["progress"]}]
    responses.get(f"{API}/enrollments", json=[])
    responses.get(f"{API}/bulk_user_progress", json=progress)
    connector = CanvasConnector(canvas_config())
    responses.get(SUBMISSIONS, json=[submission(assignment_id=355, user_id=48, score=5.0)])
    polled, _ = poll(connector, {"enrollments": {"snapshot": {"48": None}}})
    hooked = connector.parse_webhook(grade) + connector.parse_webhook(completed)
    assert {e.event_key for e in hooked} <= {e.event_key for e in polled}


@responses.activate
def test_a_poll_that_fails_mid_pagination_resumes_from_the_page_it_stopped_at() -> None:
    page_two = f"{SUBMISSIONS}?page=bookmark:WzJd&per_page=100"
    responses.get(f"{API}/enrollments", json=fixture("canvas", "api_enrollment"))
    responses.get(f"{API}/bulk_user_progress", json=[])
    responses.get(SUBMISSIONS, json=[submission(id=1)], headers={"Link": f'<{page_two}>; rel="next"'})
    responses.get(page_two, status=500)
    connector = CanvasConnector(canvas_config())
    cursors: dict[str, Any] = {}
    events: list[LearningEvent] = []
    with pytest.raises(Retryable):
        for page in connector.poll("565", cursors, PollOptions()):
            events.extend(page.events)
            cursors[page.stream] = page.cursor
    assert cursors["submissions"]["run"]["chunks"][0]["next"] == page_two
    assert "watermark" not in cursors["submissions"] or cursors["submissions"]["watermark"] is None
    responses.replace(
        responses.GET, page_two, json=[submission(id=2, assignment_id=7, graded_at="2021-04-01T08:00:00Z")]
    )
    responses.calls.reset()
    resumed, cursors = poll(connector, cursors)
    fetched = [c.request.url for c in responses.calls if c.request.url.startswith(SUBMISSIONS)]
    assert fetched == [page_two]  # page one is not read again
    assert [e.event_key for e in resumed if e.kind == "assignment_graded"] == [
        "assignment_graded:7:1163:20.0"
    ]
    assert cursors["submissions"] == {"watermark": "2021-04-01T08:00:00+00:00"}


@responses.activate
def test_throttling_by_403_is_retried_and_a_revoked_token_stops_the_platform() -> None:
    responses.get(
        f"{API}/enrollments",
        status=403,
        body="403 Forbidden (Rate Limit Exceeded)\n",
        headers={"X-Rate-Limit-Remaining": "0.0"},
        content_type="text/plain",
    )
    canvas_course()  # after the throttled answer, the retry finds the course
    sleeps: list[float] = []
    connector = CanvasConnector(canvas_config(), sleep=sleeps.append)
    events, _ = poll(connector)
    assert "enrolled" in by_kind(events)
    assert connector.http.retries == 1
    assert max(sleeps) == pytest.approx(10.0, abs=0.1)  # paced: an empty budget refills 100 units at 10/s
    responses.reset()
    responses.get(
        f"{API}/enrollments",
        status=401,
        json=fixture("canvas", "api_errors")["invalid_token_401"],
        headers={"WWW-Authenticate": 'Bearer realm="canvas-lms"'},
    )
    with pytest.raises(PlatformStopped, match="Invalid access token"):
        poll(CanvasConnector(canvas_config()))
    assert len(responses.calls) == 1  # never retried


@responses.activate
def test_module_completion_is_read_per_learner_only_when_criteria_need_items() -> None:
    canvas_course(submissions=[])
    modules = fixture("canvas", "api_modules_with_items")
    responses.get(f"{API}/modules", json=modules)
    connector = CanvasConnector(canvas_config())
    events, cursors = poll(connector)
    assert "module_completed" not in by_kind(events)
    assert not any("/modules" in c.request.url for c in responses.calls)
    events, cursors = poll(connector, cursors, items=True)
    assert by_kind(events) == {
        "module_completed": ["module_completed:565:123:20064"],
        "activity_completed": ["activity_completed:565:768:20064", "activity_completed:565:769:20064"],
    }
    asked = query(next(c for c in responses.calls if "/modules" in c.request.url))
    assert asked["student_id"] == ["20064"] and asked["include[]"] == ["items"]
    again, _ = poll(connector, cursors, items=True)
    assert again == []


@responses.activate
def test_items_canvas_leaves_out_of_a_big_module_are_read_from_its_items_url() -> None:
    canvas_course(submissions=[])
    module = fixture("canvas", "api_modules_with_items")[0]
    items = module.pop("items")
    responses.get(f"{API}/modules", json=[module])
    responses.get(module["items_url"], json=items)
    events, _ = poll(CanvasConnector(canvas_config()), items=True)
    assert len(by_kind(events)["activity_completed"]) == 2


@responses.activate
def test_module_reads_cut_short_resume_with_the_learners_not_yet_read() -> None:
    first, second = (
        fixture("canvas", "api_enrollment")[0],
        {**fixture("canvas", "api_enrollment")[0], "user_id": 30000},
    )
    responses.get(f"{API}/enrollments", json=[first, second])
    responses.get(f"{API}/bulk_user_progress", json=[])
    responses.get(SUBMISSIONS, json=[])
    modules = fixture("canvas", "api_modules_with_items")
    responses.get(
        f"{API}/modules",
        json=modules,
        match=[
            responses.matchers.query_param_matcher(
                {"include[]": "items", "student_id": "20064", "per_page": "100"}
            )
        ],
    )
    responses.get(f"{API}/modules", status=503)  # every other learner's read fails tonight
    connector = CanvasConnector(canvas_config())
    cursors: dict[str, Any] = {}
    with pytest.raises(Retryable):
        for page in connector.poll("565", cursors, PollOptions(items=True)):
            cursors[page.stream] = page.cursor
    assert cursors["modules"]["pending"] == ["30000"]
    responses.replace(responses.GET, f"{API}/modules", json=[])
    responses.calls.reset()
    collect(connector.poll("565", cursors, PollOptions(items=True)), cursors)
    asked = [query(c)["student_id"] for c in responses.calls if "/modules" in c.request.url]
    assert asked == [["30000"]]
