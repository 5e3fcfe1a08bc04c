"""Badge analytics: completion among eligible learners, time to earn, awards per week, tier funnels, CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.services.analytics import (
    CSV_COLUMNS,
    BadgeReport,
    TimeToEarn,
    awards_per_week,
    badge_report,
    badges_csv,
    tier_funnel,
    time_to_earn,
)
from bridge.settings import Settings
from tests.services.test_leaderboards import act, add_award, process, reports_settings, revoke


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return reports_settings(database_url, tmp_path)


def school(database: Database, settings: Settings) -> None:
    """Platform demo: ana holds first-steps, graduate (C1) and module-master (C1, in 4 hours); ben holds
    first-steps and explorer bronze + silver (C2); cal completed C1 without first-steps, so graduate waits,
    and holds explorer bronze (C1). Platform moodle1: dee holds first-steps. Course C1: ana and cal."""
    process(
        database,
        settings,
        act("login-ana", "login", "ana"),
        act("done-ana", "course_completed", "ana", course="C1", hours=8),
        act("mod-ana-1", "module_completed", "ana", course="C1", hours=1),
        act("mod-ana-2", "module_completed", "ana", course="C1", hours=5),
        act("login-ben", "login", "ben"),
        *(
            act(f"act-ben-{i}", "activity_completed", "ben", course="C2", hours=h)
            for i, h in enumerate((0, 10, 30))
        ),
        act("done-cal", "course_completed", "cal", course="C1"),
        act("act-cal", "activity_completed", "cal", course="C1"),
        act("login-dee", "login", "dee", platform="moodle1"),
    )


@pytest.fixture
def world(database: Database, settings: Settings) -> Database:
    school(database, settings)
    return database


def completion(reports: list[BadgeReport]) -> dict[str, tuple[int, int, float | None]]:
    return {r.badge_id: (r.eligible, r.earned, r.completion_rate) for r in reports}


def test_completion_counts_only_learners_holding_the_prerequisites_as_eligible(world: Database) -> None:
    assert completion(badge_report(world, platform="demo")) == {
        "explorer": (3, 2, 0.6667),
        "first-steps": (3, 2, 0.6667),
        "graduate": (2, 1, 0.5),  # cal completed the course but lacks first-steps: not eligible
        "module-master": (3, 1, 0.3333),
    }


def test_completion_by_course_counts_its_members(world: Database) -> None:
    assert completion(badge_report(world, course="C1")) == {
        "explorer": (2, 1, 0.5),
        "first-steps": (2, 1, 0.5),
        "graduate": (1, 1, 1.0),
        "module-master": (2, 1, 0.5),
    }


def test_completion_without_a_scope_counts_every_platform(world: Database) -> None:
    assert completion(badge_report(world))["graduate"] == (3, 1, 0.3333)
    assert completion(badge_report(world, platform="moodle1"))["first-steps"] == (1, 1, 1.0)
    assert completion(badge_report(world, course="none")) == {
        badge: (0, 0, None) for badge in ("explorer", "first-steps", "graduate", "module-master")
    }


def test_revoked_awards_neither_qualify_nor_count(world: Database) -> None:
    revoke(world, "ana", "first-steps")  # ana keeps graduate but no longer holds its prerequisite
    assert completion(badge_report(world, platform="demo"))["graduate"] == (1, 0, 0.0)
    assert completion(badge_report(world, platform="demo"))["first-steps"] == (3, 1, 0.3333)


def test_the_report_names_badges_and_counts_awards_of_the_last_four_weeks(world: Database) -> None:
    add_award(world, "cal", "module-master", 0, awarded_at=utcnow() - timedelta(days=27))
    add_award(world, "ben", "module-master", 0, awarded_at=utcnow() - timedelta(days=29))
    reports = {r.badge_id: r for r in badge_report(world, platform="demo")}
    master = reports["module-master"]
    assert (master.name, master.enabled, master.prerequisites) == ("Module Master", True, [])
    assert master.awards_last_4_weeks == 2  # ana's (just now) and cal's, not ben's
    assert reports["graduate"].prerequisites == ["first-steps"]
    assert reports["explorer"].awards_last_4_weeks == 3  # every tier award counts


def spans(database: Database, settings: Settings, hours: list[float]) -> None:
    """One learner per value, earning module-master that many hours after their first module."""
    events = []
    for i, h in enumerate(hours):
        events += [
            act(f"m{i}a", "module_completed", f"t{i}", course="C9"),
            act(f"m{i}b", "module_completed", f"t{i}", course="C9", hours=h),
        ]
    process(database, settings, *events)


def test_time_to_earn_runs_from_the_first_counted_event_to_the_award(
    database: Database, settings: Settings
) -> None:
    spans(database, settings, [2, 48, 168, 240, 1080, 2880, 5])
    revoke(database, "t6", "module-master")  # the 5 hours: revoked, not counted
    add_award(database, "t0", "graduate", 0)  # given by hand, with no progress: nothing to measure
    result = time_to_earn(database)
    assert set(result) == {"module-master"}
    assert result["module-master"] == TimeToEarn(
        count=6,
        median_hours=204.0,  # between 168 and 240
        p90_hours=1980.0,  # 1080 + 0.5 * (2880 - 1080), interpolated between the closest ranks
        histogram={
            "under_1_day": 1,
            "1_to_7_days": 1,
            "7_to_30_days": 2,  # 7 days exactly starts this bucket
            "30_to_90_days": 1,
            "90_days_or_more": 1,
        },
    )


def test_time_to_earn_per_tier_and_by_scope(world: Database) -> None:
    result = time_to_earn(world, platform="demo")
    assert (result["module-master"].count, result["module-master"].median_hours) == (1, 4.0)
    assert result["explorer"].count == 3  # ben's bronze (at once) and silver (30 hours), cal's bronze
    assert result["explorer"].p90_hours == 24.0  # values 0, 0, 30: 0 + 0.8 * 30
    assert "explorer" not in time_to_earn(world, platform="moodle1")
    report = {r.badge_id: r for r in badge_report(world, platform="demo")}
    assert report["first-steps"].time_to_earn.median_hours == 0.0
    assert report["graduate"].time_to_earn.count == 1


def mondays(zone_settings: Settings, weeks: int) -> list[datetime]:
    today = utcnow().astimezone(zone_settings.zone).date()
    this_monday = today - timedelta(days=today.weekday())
    return [
        datetime.combine(this_monday - timedelta(weeks=back), time(0), tzinfo=zone_settings.zone)
        for back in range(weeks - 1, -1, -1)
    ]


def test_awards_per_week_are_zero_filled_calendar_weeks_in_the_time_zone(
    database_url: str, tmp_path: Path
) -> None:
    settings = reports_settings(database_url, tmp_path, timezone="America/New_York")
    database = open_database(settings)
    process(database, settings, act("l1", "login", "w1"), act("l2", "login", "w2"))  # 2 awards this week
    starts = mondays(settings, 4)
    add_award(database, "w1", "graduate", 0, awarded_at=starts[0])  # the first moment of the oldest week
    add_award(database, "w1", "module-master", 0, awarded_at=starts[2] + timedelta(hours=1))
    add_award(database, "w2", "graduate", 0, awarded_at=starts[2] + timedelta(hours=2))
    add_award(database, "w2", "module-master", 0, awarded_at=starts[2] + timedelta(hours=3), revoked=True)
    add_award(database, "w1", "explorer", 0, tier="bronze", awarded_at=starts[0] - timedelta(minutes=1))

    weeks = awards_per_week(database, zone=settings.zone, weeks=4)
    assert [w.week_start for w in weeks] == [s.date() for s in starts]
    assert all(w.week_start.weekday() == 0 for w in weeks)
    assert [w.awards for w in weeks] == [1, 0, 2, 2]
    assert [w.awards for w in awards_per_week(database, zone=settings.zone, weeks=4, badge="graduate")] == [
        1,
        0,
        1,
        0,
    ]
    assert [w.awards for w in awards_per_week(database, zone=settings.zone, weeks=4, platform="moodle1")] == [
        0
    ] * 4
    assert len(awards_per_week(database, zone=settings.zone)) == 12
    database.dispose()


def test_the_tier_funnel_follows_the_tiers_in_order(world: Database) -> None:
    [funnel] = tier_funnel(world, platform="demo")
    assert (funnel.badge_id, funnel.name, funnel.started) == ("explorer", "Explorer", 2)
    assert [(t.tier, t.target, t.reached, t.rate) for t in funnel.tiers] == [
        ("bronze", 1, 2, 1.0),
        ("silver", 3, 1, 0.5),
        ("gold", 5, 0, 0.0),
    ]
    revoke(world, "cal", "explorer", "bronze")
    [funnel] = tier_funnel(world, platform="demo")
    assert [t.reached for t in funnel.tiers] == [1, 1, 0]
    [in_course] = tier_funnel(world, course="C1")
    assert (in_course.started, [t.reached for t in in_course.tiers]) == (1, [0, 0, 0])
    [elsewhere] = tier_funnel(world, platform="moodle1")
    assert (elsewhere.started, elsewhere.tiers[0].rate) == (0, None)


def test_the_csv_has_a_header_and_one_row_per_badge(world: Database) -> None:
    text = badges_csv(badge_report(world, platform="demo"))
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["badge_id"] for r in rows] == ["explorer", "first-steps", "graduate", "module-master"]
    assert rows[3] == {
        "badge_id": "module-master",
        "name": "Module Master",
        "eligible": "3",
        "earned": "1",
        "completion_rate": "0.3333",
        "median_hours_to_earn": "4.0",
        "awards_last_4_weeks": "1",
    }
    empty = list(csv.DictReader(io.StringIO(badges_csv(badge_report(world, course="none")))))
    assert (empty[0]["completion_rate"], empty[0]["median_hours_to_earn"]) == ("", "")


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_defused() -> None:
    report = BadgeReport(
        badge_id="x",
        name='=HYPERLINK("http://evil")',
        enabled=True,
        prerequisites=[],
        eligible=1,
        earned=0,
        completion_rate=0.0,
        time_to_earn=TimeToEarn(0, None, None, {}),
        awards_last_4_weeks=0,
    )
    [row] = list(csv.DictReader(io.StringIO(badges_csv([report]))))
    assert row["name"] == '\'=HYPERLINK("http://evil")'
