"""The nightly sync against a fake Canvas on 127.0.0.1 that is slow and fails in every way Canvas and
the network do: it ends with the right events, each stored exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bridge.bootstrap import open_database
from bridge.db.models import Event
from bridge.scheduler import Scheduler
from bridge.services.sync import SyncService
from tests.conftest import make_settings
from tests.e2e.fake_lms import FakeCanvas
from tests.helpers import count_badge_template

pytestmark = pytest.mark.slow


def test_a_nightly_sync_through_throttling_errors_and_timeouts_stores_each_fact_once(
    database_url: str, tmp_path: Path
) -> None:
    # 150 students x 4 assignments: two student chunks, several pages each, so failures land mid-list.
    fake = FakeCanvas(course="101", students=150, assignments=4, latency=0.005, timeout_sleep=1.0)
    fake.faults = {
        "enrollments": ["429", "invalid_json"],
        "bulk_user_progress": ["403", "timeout"],
        "submissions": ["500", "timeout", "invalid_json"],
    }
    fake.break_later_pages = True  # tonight, every submissions page after the first fails
    templates = tmp_path / "badges"
    count_badge_template(templates, "grader", "assignment_graded", 3)  # no module items: 1 call per list page
    with fake.running() as base_url:
        settings = make_settings(
            database_url,
            tmp_path,
            badge_templates_dir=templates,
            platforms=[
                {"id": "canvas1", "kind": "canvas", "base_url": base_url, "token": "t", "courses": ["101"]}
            ],
            sync={
                "timeout_seconds": 0.5,
                "attempts": 4,
                "backoff_base_seconds": 0.01,
                "backoff_max_seconds": 0.05,
                "concurrency": 2,
                "pace_below": 1.0,
            },
        )
        database = open_database(settings)
        scheduler = Scheduler(database, settings)
        service = SyncService(database, settings)
        started = time.monotonic()

        assert scheduler.run_now("nightly-sync:canvas1")
        [tonight] = service.runs()
        assert tonight.trigger == "schedule" and tonight.status == "partial"
        assert tonight.problems and all("server error 500" in problem for problem in tonight.problems)
        assert not any(fake.faults.values())  # every injected fault was met, and recovered from

        fake.break_later_pages = False  # the next night Canvas is well again
        assert scheduler.run_now("nightly-sync:canvas1")
        following = service.runs()[0]
        assert following.status == "succeeded", following.problems

        with database.read() as session:
            keys = list(session.scalars(select(Event.event_key)))
            learners = session.scalar(select(func.count(func.distinct(Event.learner))))
        assert len(keys) == len(set(keys))  # each fact once
        assert set(keys) == fake.expected_keys()
        assert learners == 150
        assert tonight.events + following.events == len(keys)

        # A third night finds nothing new: only the overlap re-read, recognised as already stored.
        assert scheduler.run_now("nightly-sync:canvas1")
        third = service.runs()[0]
        assert (third.status, third.events) == ("succeeded", 0)
        elapsed = time.monotonic() - started
        database.dispose()
    assert elapsed < 30  # bounded: small backoffs, 5 ms latency
