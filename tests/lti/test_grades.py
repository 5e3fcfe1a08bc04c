"""Badge points to the LMS gradebook (LTI AGS 2.0) against the fake platform over real HTTP: off until
allowed and enabled, one "Badge points" column made once, each member's points posted under their LTI
user id, only when changed, one post at a time, and failures counted, never raised. Plus the jobs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update

from bridge.db.engine import Database
from bridge.db.models import AuditEntry, Learner
from bridge.db.models_lti import LtiContext
from bridge.db.models_lti_grades import LtiGradePost
from bridge.issuing.keys import SigningKey
from bridge.lti.advantage import LINEITEM_SCOPE, NRPS_SCOPE, AccessTokenCache
from bridge.lti.grades import GradePushResult, Grades, set_grade_sync
from bridge.lti.jobs import schedule_lti_jobs
from bridge.scheduler import Scheduler
from bridge.services.errors import Invalid, NotFound
from bridge.settings import Settings
from tests.conftest import PLATFORMS, make_settings
from tests.lti.platform import FakePlatform
from tests.lti.platform_support import RecordedRequest, Reply, error_reply
from tests.lti.test_roster import LEARNERS, POLICY, connect, rosters, start_platform

MAXIMUM = 500  # the top of the default badge_level_threshold


@pytest.fixture(scope="module")
def tool_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey("rsa-test-lti", "RS256", datetime.now(UTC), True, private)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, platforms=[*PLATFORMS, {"id": "canvas1", "kind": "canvas"}])


@pytest.fixture(params=["moodle", "canvas"])
def platform(request: pytest.FixtureRequest, tool_key: SigningKey) -> Iterator[FakePlatform]:
    running = start_platform(request.param, tool_key)
    yield running
    running.stop()


def course_with_learners(
    database: Database, settings: Settings, platform: FakePlatform, key: SigningKey, **context: Any
) -> tuple[int, str, list[str]]:
    """A course whose roster was read (two learners), with 120 and 40 points; returns the LTI subs."""
    registration_id, context_id = connect(database, platform, **context)
    rosters(database, settings, key).refresh(registration_id, context_id)
    first, second = LEARNERS[platform.kind]
    set_points(database, {first: 120, second: 40})
    return registration_id, context_id, [m["user_id"] for m in platform.members()[:2]]


def set_points(database: Database, points: dict[str, int]) -> None:
    with database.write() as session:
        for lms_user_id, value in points.items():
            session.execute(update(Learner).where(Learner.lms_user_id == lms_user_id).values(points=value))


def line_items(platform: FakePlatform) -> dict[int, dict[str, Any]]:
    """The platform's line items of the course (its AGS URLs name the course by the LMS's own id)."""
    url = platform.claims()["https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"]["lineitems"]
    return platform.lineitems(urlsplit(url).path.split("/")[2])


def grades(database: Database, settings: Settings, key: SigningKey) -> Grades:
    return Grades(database, settings, lambda: key, AccessTokenCache(), policy=POLICY)


def posted(platform: FakePlatform) -> list[tuple[str, float, float]]:
    return [
        (s["score"]["userId"], s["score"]["scoreGiven"], s["score"]["scoreMaximum"]) for s in platform.scores
    ]


def test_grade_sync_is_refused_where_the_platform_cannot_take_grades(
    database: Database, settings: Settings, tool_key: SigningKey
) -> None:
    with pytest.raises(NotFound):
        set_grade_sync(database, 1, "nope", True, "teacher@example.edu")
    with FakePlatform("moodle") as moodle, FakePlatform("canvas") as canvas:
        no_service = connect(database, moodle, lineitems_url=None)
        sync_only = connect(database, canvas, ags_scopes=[LINEITEM_SCOPE, NRPS_SCOPE])  # no score scope
        with pytest.raises(Invalid, match="no gradebook service"):
            set_grade_sync(database, *no_service, True, "teacher@example.edu")
        with pytest.raises(Invalid, match="score"):
            set_grade_sync(database, *sync_only, True, "teacher@example.edu")
        assert grades(database, settings, tool_key).push() == GradePushResult()
        assert set_grade_sync(database, *sync_only, False, "teacher@example.edu").enabled is False
    with database.read() as session:
        assert not any(c.grade_sync for c in session.scalars(select(LtiContext)))
        actions = [
            a.action for a in session.scalars(select(AuditEntry).where(AuditEntry.action.like("lti.grade%")))
        ]
    assert actions == ["lti.grade_sync_off"]  # refusals change nothing and leave no entry
    assert moodle.requests == [] and canvas.requests == []


def test_nothing_is_posted_until_grade_sync_is_on(
    database: Database, settings: Settings, platform: FakePlatform, tool_key: SigningKey
) -> None:
    course_with_learners(database, settings, platform, tool_key)
    assert grades(database, settings, tool_key).push() == GradePushResult()
    assert platform.requests_to("/ags/") == [] and platform.scores == []


def test_points_are_posted_to_one_column_and_only_when_they_change(
    database: Database, settings: Settings, platform: FakePlatform, tool_key: SigningKey
) -> None:
    registration_id, context_id, subs = course_with_learners(database, settings, platform, tool_key)
    sync = set_grade_sync(database, registration_id, context_id, True, "teacher@example.edu")
    assert sync.enabled and sync.line_item_url is None
    service = grades(database, settings, tool_key)

    first = service.push()

    assert first == GradePushResult(contexts=1, line_items=1, posted=2)
    columns = [line for line in line_items(platform).values() if line.get("tag") == "badge-points"]
    assert columns == [{"label": "Badge points", "tag": "badge-points", "scoreMaximum": MAXIMUM}]
    assert sorted(posted(platform)) == sorted([(subs[0], 120, MAXIMUM), (subs[1], 40, MAXIMUM)])
    with database.read() as session:
        context = session.get(LtiContext, (registration_id, context_id))
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "lti.grade_sync_on")).one()
    assert context is not None and context.line_item_url is not None
    assert all(s["lineitem_url"] == context.line_item_url for s in platform.scores)
    assert audit.actor == "teacher@example.edu" and audit.details["context"] == context_id

    requests_before = len(platform.requests)
    assert service.push() == GradePushResult(contexts=1, unchanged=2)
    assert len(platform.requests) == requests_before  # unchanged points cost no request at all

    set_points(database, {LEARNERS[platform.kind][0]: 130})
    assert grades(database, settings, tool_key).push() == GradePushResult(contexts=1, posted=1, unchanged=1)
    assert posted(platform)[-1] == (subs[0], 130, MAXIMUM) and len(platform.scores) == 3
    assert len(platform.requests_to("/ags/", "POST")) == 1 + 3  # one column made, three scores

    # The stored column lost (say, an older backup): found again by its tag, not made twice.
    with database.write() as session:
        session.execute(update(LtiContext).values(line_item_url=None))
        session.execute(update(LtiGradePost).values(points=0))
    assert service.push() == GradePushResult(contexts=1, line_items=1, posted=2)
    assert len([line for line in line_items(platform).values() if line.get("tag")]) == 1


class FlakyScores(FakePlatform):
    """A platform that answers some learners' scores with a given status."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing: dict[str, int] = {}
        self.in_flight = self.most_in_flight = 0
        self.delay = 0.0

    def _score(self, request: RecordedRequest, context: str, item: int) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            status = self.failing.get(request.json().get("userId"))
            if status is not None:
                return error_reply(status, "failed", "on purpose")
            return super()._score(request, context, item)
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture(params=["moodle", "canvas"])
def flaky(request: pytest.FixtureRequest, tool_key: SigningKey) -> Iterator[FlakyScores]:
    running = start_platform(request.param, tool_key, FlakyScores)
    assert isinstance(running, FlakyScores)
    yield running
    running.stop()


def test_a_failed_score_is_counted_the_others_post_and_it_goes_next_time(
    database: Database,
    settings: Settings,
    flaky: FlakyScores,
    tool_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registration_id, context_id, subs = course_with_learners(database, settings, flaky, tool_key)
    set_grade_sync(database, registration_id, context_id, True, "teacher")
    flaky.failing = {min(subs): 500}  # the first one posted
    caplog.set_level(logging.WARNING, logger="bridge.lti")

    result = grades(database, settings, tool_key).push()

    assert result == GradePushResult(contexts=1, line_items=1, posted=1, failed=1)
    assert posted(flaky) == [(max(subs), 120 if max(subs) == subs[0] else 40, MAXIMUM)]
    failures = [r for r in caplog.records if r.getMessage() == "lti.grade_post_failed"]
    assert [(r.registration, r.context, r.sub) for r in failures] == [
        (registration_id, context_id, min(subs))
    ]  # type: ignore[attr-defined]
    assert "HTTP 500" in failures[0].error  # type: ignore[attr-defined]

    flaky.failing = {}
    assert grades(database, settings, tool_key).push() == GradePushResult(contexts=1, posted=1, unchanged=1)
    assert [user for user, _, _ in posted(flaky)] == [max(subs), min(subs)]


def test_a_refused_learner_is_not_offered_the_same_points_again(
    database: Database, settings: Settings, flaky: FlakyScores, tool_key: SigningKey
) -> None:
    registration_id, context_id, subs = course_with_learners(database, settings, flaky, tool_key)
    set_grade_sync(database, registration_id, context_id, True, "teacher")
    flaky.failing = {subs[1]: 422}  # Canvas: "User not found in course or is not a student"
    service = grades(database, settings, tool_key)

    assert service.push() == GradePushResult(contexts=1, line_items=1, posted=1, refused=1, failed=1)
    assert service.push() == GradePushResult(contexts=1, unchanged=2)
    set_points(database, {LEARNERS[flaky.kind][1]: 45})
    assert service.push() == GradePushResult(contexts=1, refused=1, failed=1, unchanged=1)


def test_a_deleted_column_is_made_again(
    database: Database, settings: Settings, platform: FakePlatform, tool_key: SigningKey
) -> None:
    registration_id, context_id, _ = course_with_learners(database, settings, platform, tool_key)
    set_grade_sync(database, registration_id, context_id, True, "teacher")
    service = grades(database, settings, tool_key)
    service.push()
    columns = line_items(platform)
    number = next(n for n, line in columns.items() if line.get("tag") == "badge-points")
    del columns[number]  # an instructor deleted the column in the gradebook
    set_points(database, {LEARNERS[platform.kind][0]: 200})

    assert service.push() == GradePushResult(contexts=1, failed=1, unchanged=1)  # the 404, then stop
    assert service.push() == GradePushResult(contexts=1, line_items=1, posted=2)
    assert [line.get("tag") for line in line_items(platform).values()].count("badge-points") == 1


def test_a_token_failure_is_counted_not_raised(
    database: Database, settings: Settings, tool_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    with FakePlatform("moodle") as platform:
        platform.tool_jwks = {"keys": [tool_key.public_jwk()]}
        registration_id, context_id, _ = course_with_learners(database, settings, platform, tool_key)
        set_grade_sync(database, registration_id, context_id, True, "teacher")
        platform.allowed_scopes = {NRPS_SCOPE}  # the administrator took the gradebook scopes back
        caplog.set_level(logging.WARNING, logger="bridge.lti")

        assert grades(database, settings, tool_key).push() == GradePushResult(contexts=1, failed=2)
    assert [r.getMessage() for r in caplog.records] == ["lti.grades_failed"]
    assert platform.scores == []


def test_score_posts_go_one_at_a_time(database: Database, settings: Settings, tool_key: SigningKey) -> None:
    platform = start_platform("canvas", tool_key, FlakyScores)
    assert isinstance(platform, FlakyScores)
    try:
        registration_id, context_id, _ = course_with_learners(database, settings, platform, tool_key)
        set_grade_sync(database, registration_id, context_id, True, "teacher")
        platform.delay = 0.05
        service = grades(database, settings, tool_key)
        results: list[GradePushResult] = []
        pushes = [threading.Thread(target=lambda: results.append(service.push())) for _ in range(3)]
        for push in pushes:
            push.start()
        for push in pushes:
            push.join(10)
    finally:
        platform.stop()
    assert platform.most_in_flight == 1
    assert len(platform.scores) == 2 and sum(r.posted for r in results) == 2


def test_the_jobs_are_scheduled_and_run_under_their_lease(database: Database, settings: Settings) -> None:
    scheduler = Scheduler(database, settings)
    services = schedule_lti_jobs(scheduler, database, settings)

    assert {"lti-grades", "lti-rosters"} <= set(scheduler.job_ids())
    assert scheduler.run_now("lti-grades") and scheduler.run_now("lti-rosters")
    assert services.grades.push() == GradePushResult()
    assert (settings.data_dir / "keys" / "lti").is_dir()  # the tool's key ring, as the launches use
