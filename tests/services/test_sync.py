"""The sync service: runs recorded, cursors persisted per course and stream, resumed after a failure,
one node at a time, and webhook and poll of the same fact stored once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.bootstrap import open_database
from bridge.cli import main
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.db.models_sync import SyncCursor
from bridge.scheduler import Scheduler
from bridge.services import leases
from bridge.services.errors import NotFound
from bridge.services.ingest import Inbox
from bridge.services.sync import Connectors, SyncBusy, SyncService
from bridge.settings import Settings
from tests.conftest import PLATFORMS, make_settings, write_config
from tests.connectors.support import CANVAS_URL, MOODLE_URL, fixture
from tests.connectors.test_moodle import moodle_site
from tests.helpers import count_badge_template

API = f"{CANVAS_URL}/api/v1/courses/565"
SUBMISSIONS = f"{API}/students/submissions"
CANVAS = {"id": "canvas1", "kind": "canvas", "base_url": CANVAS_URL, "token": "t", "courses": ["565"]}
MOODLE = {"id": "moodle2", "kind": "moodle", "base_url": MOODLE_URL, "token": "ws", "courses": ["42"]}
FAST_SYNC = {"attempts": 3, "backoff_base_seconds": 0.001, "backoff_max_seconds": 0.002, "timeout_seconds": 2}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, platforms=[*PLATFORMS, CANVAS, MOODLE], sync=FAST_SYNC)


def submission(**changes: Any) -> dict[str, Any]:
    row = fixture("canvas", "api_student_submissions")[0]
    row.update({"assignment": {"id": row["assignment_id"], "points_possible": 25}, **changes})
    return row


def canvas_course() -> None:
    responses.get(f"{API}/enrollments", json=fixture("canvas", "api_enrollment"))
    responses.get(f"{API}/bulk_user_progress", json=fixture("canvas", "api_bulk_user_progress"))
    responses.get(f"{API}/modules", json=fixture("canvas", "api_modules_with_items"))
    responses.get(SUBMISSIONS, json=[submission()])


def event_keys(database: Database) -> list[str]:
    with database.read() as session:
        return sorted(session.scalars(select(Event.event_key)))


CANVAS_KEYS = [
    "activity_completed:565:768:20064",
    "activity_completed:565:769:20064",
    "assignment_graded:356597:1163:20.0",
    "course_completed:565:2",
    "course_graded:565:20064:35.0",
    "course_progress:565:1:1",
    "enrolled:565:20064",
    "module_completed:565:123:20064",
]


@responses.activate
def test_a_sync_stores_what_it_finds_and_records_the_run(database: Database, settings: Settings) -> None:
    canvas_course()
    run = SyncService(database, settings).run("canvas1")
    assert (run.status, run.courses, run.events, run.duplicates, run.errors) == ("succeeded", 1, 8, 0, 0)
    assert run.calls == 4 and run.finished_at is not None
    assert event_keys(database) == CANVAS_KEYS
    with database.read() as session:
        streams = set(session.scalars(select(SyncCursor.stream).where(SyncCursor.course == "565")))
    assert streams == {"enrollments", "progress", "submissions", "modules"}
    again = SyncService(database, settings).run("canvas1")
    # Snapshots hold back what has not changed; the submission re-read in the overlap is a duplicate.
    assert (again.status, again.events, again.duplicates) == ("succeeded", 0, 1)
    assert [r.id for r in SyncService(database, settings).runs("canvas1")] == [again.id, run.id]


@responses.activate
def test_module_items_are_read_only_when_a_badge_counts_them(database_url: str, tmp_path: Path) -> None:
    templates = tmp_path / "badges"
    count_badge_template(templates, "grader", "assignment_graded", 3)
    settings = make_settings(
        database_url, tmp_path, platforms=[CANVAS], sync=FAST_SYNC, badge_templates_dir=templates
    )
    database = open_database(settings)
    canvas_course()
    run = SyncService(database, settings).run("canvas1")
    assert run.calls == 3 and not any("/modules" in call.request.url for call in responses.calls)
    database.dispose()


@responses.activate
def test_a_webhook_and_the_poll_of_the_same_fact_are_stored_once(
    database: Database, settings: Settings
) -> None:
    canvas_course()
    completed = fixture("canvas", "live_course_completed")
    completed["body"]["user"]["id"] = "2"  # the learner the bulk progress shows as complete
    hooked = Connectors(settings).get("canvas1")
    assert hooked is not None
    Inbox(database).store(hooked.parse_webhook(completed))
    run = SyncService(database, settings).run("canvas1")
    assert (run.events, run.duplicates) == (7, 1)
    assert event_keys(database) == CANVAS_KEYS


@responses.activate
def test_a_sync_that_fails_halfway_resumes_where_it_stopped(database: Database, settings: Settings) -> None:
    page_two = f"{SUBMISSIONS}?page=bookmark:WzJd&per_page=100"
    canvas_course()
    responses.replace(
        responses.GET, SUBMISSIONS, json=[submission()], headers={"Link": f'<{page_two}>; rel="next"'}
    )
    responses.get(page_two, status=500)
    failed = SyncService(database, settings).run("canvas1")
    assert failed.status == "partial" and failed.errors == 1
    assert "course 565" in failed.problems[0] and "server error 500" in failed.problems[0]
    assert "assignment_graded:356597:1163:20.0" in event_keys(database)  # page one's events were kept
    responses.replace(responses.GET, page_two, json=[submission(assignment_id=7)])
    responses.calls.reset()
    resumed = SyncService(database, settings).run("canvas1")
    assert resumed.status == "succeeded"
    assert [c.request.url for c in responses.calls if c.request.url.startswith(SUBMISSIONS)] == [page_two]
    assert "assignment_graded:7:1163:20.0" in event_keys(database)
    assert len(event_keys(database)) == len(set(event_keys(database))) == 9


@responses.activate
def test_a_revoked_token_stops_the_platform_with_a_clear_error(
    database: Database, settings: Settings
) -> None:
    responses.get(
        f"{API}/enrollments",
        status=401,
        json={"errors": [{"message": "Invalid access token."}]},
        headers={"WWW-Authenticate": 'Bearer realm="canvas-lms"'},
    )
    run = SyncService(database, settings).run("canvas1")
    assert run.status == "failed"
    assert run.problems == [
        "Canvas refused the access token (401: Invalid access token.): give the platform a new token"
    ]


@responses.activate
def test_a_moodle_course_without_completion_criteria_is_recorded_and_the_rest_synced(
    database: Database, settings: Settings
) -> None:
    answers = {
        "core_enrol_get_enrolled_users": fixture("moodle", "ws_core_enrol_get_enrolled_users"),
        "gradereport_user_get_grade_items": fixture("moodle", "ws_gradereport_user_get_grade_items"),
        "core_completion_get_course_completion_status": fixture("moodle", "ws_errors")[2],
        "core_completion_get_activities_completion_status": fixture(
            "moodle", "ws_core_completion_get_activities_completion_status"
        ),
    }
    moodle_site(answers)
    run = SyncService(database, settings).run("moodle2")
    assert run.status == "partial" and run.events == 5
    assert run.problems == [
        "course 42: core_completion_get_course_completion_status: nocriteriaset: "
        "No criteria set for this course"
    ]


def test_one_node_at_a_time_syncs_a_platform(database: Database, settings: Settings) -> None:
    assert leases.acquire(database, "sync:canvas1", "another-node", ttl_seconds=60)
    with pytest.raises(SyncBusy, match="already running"):
        SyncService(database, settings).run("canvas1")
    assert SyncService(database, settings).runs() == []
    with pytest.raises(NotFound):
        SyncService(database, settings).run("nowhere")


def test_the_scheduler_runs_each_lms_platform_on_its_cron(database: Database, settings: Settings) -> None:
    assert set(Scheduler(database, settings).job_ids()) == {
        "award-sweep",
        "nightly-sync:canvas1",
        "nightly-sync:moodle2",
        "lti-grades",
        "lti-rosters",
        "webhook-follow-ups",
    }


@responses.activate
def test_runs_are_listed_by_the_api_and_the_cli(
    client: FlaskClient, auth: dict[str, str], database: Database, database_url: str, tmp_path: Path
) -> None:
    canvas_course()
    config = write_config(
        tmp_path / "c.toml",
        database_url,
        tmp_path,
        extra=f'[sync]\nattempts = 2\n\n[[platforms]]\nid = "canvas1"\nkind = "canvas"\n'
        f'base_url = "{CANVAS_URL}"\ntoken = "t"\ncourses = ["565"]\n',
    )
    result = CliRunner().invoke(main, ["--config", str(config), "sync", "--platform", "canvas1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("sync run 1 canvas1: succeeded; 1 course(s), 4 LMS calls, 8 new events")
    listed = CliRunner().invoke(main, ["--config", str(config), "sync", "runs"]).stdout
    assert "sync run 1 canvas1: succeeded" in listed
    response = client.get("/api/v1/sync/runs?platform=canvas1", headers=auth)
    assert response.status_code == 200
    [run] = response.get_json()["runs"]
    assert (run["status"], run["calls"], run["events"], run["trigger"]) == ("succeeded", 4, 8, "cli")
    assert client.get("/api/v1/sync/runs").status_code == 401
    assert client.get("/api/v1/sync/runs?platform=nowhere", headers=auth).status_code == 404


@responses.activate
def test_a_course_the_token_may_not_read_is_skipped_and_the_next_one_synced(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url, tmp_path, platforms=[{**CANVAS, "courses": ["999", "565"]}], sync=FAST_SYNC
    )
    responses.get(
        f"{CANVAS_URL}/api/v1/courses/999/enrollments",
        status=401,
        json=fixture("canvas", "api_errors")["unauthorized_401"],  # no WWW-Authenticate: a permission
    )
    canvas_course()
    run = SyncService(database, settings).run("canvas1")
    assert (run.status, run.courses, run.errors) == ("partial", 2, 1)
    assert run.problems == ["course 999: not permitted (401: user not authorized to perform that action)"]
    assert event_keys(database) == CANVAS_KEYS


@responses.activate
def test_a_learner_moodle_will_not_report_on_is_recorded_and_skipped(
    database: Database, settings: Settings
) -> None:
    not_enrolled = {
        "exception": "moodle_exception",
        "errorcode": "usernotenroled",
        "message": "User is not enrolled",
    }
    answers = {
        "core_enrol_get_enrolled_users": fixture("moodle", "ws_core_enrol_get_enrolled_users"),
        "gradereport_user_get_grade_items": {"usergrades": [], "warnings": []},
        "core_completion_get_course_completion_status": not_enrolled,
        "core_completion_get_activities_completion_status": {"statuses": [], "warnings": []},
    }
    moodle_site(answers)
    run = SyncService(database, settings).run("moodle2")
    assert run.status == "partial"
    assert run.problems == [
        "course 42, learner 311: core_completion_get_course_completion_status: usernotenroled: "
        "User is not enrolled"
    ]
    assert event_keys(database) == ["enrolled:42:311"]


def test_a_run_that_crashes_is_recorded_as_failed_not_left_running(
    database: Database, settings: Settings
) -> None:
    class Broken(Connectors):
        def get(self, platform_id: str) -> Any:
            connector = super().get(platform_id)

            def explode(*_args: Any) -> Any:
                raise RuntimeError("disk full")

            connector.poll = explode  # type: ignore[union-attr]
            return connector

    with pytest.raises(RuntimeError, match="disk full"):
        SyncService(database, settings, Broken(settings)).run("canvas1")
    [run] = SyncService(database, settings).runs()
    assert (run.status, run.problems) == ("failed", ["the sync stopped: RuntimeError: disk full"])
    assert run.finished_at is not None
    assert leases.acquire(database, "sync:canvas1", "another-node", ttl_seconds=60)  # the lease was released
