"""Leaderboards: who ranks where, by what, over which period, and under which name.

The builders here are shared by the analytics, API and CLI tests of the reports.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award, Learner
from bridge.domain.events import LearningEvent
from bridge.services.audit import audit_log
from bridge.services.leaderboards import (
    Leaderboard,
    UnknownLearner,
    leaderboard,
    leaderboard_preference,
    set_leaderboard_preference,
)
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import START, store

_REQUIREMENT = (
    '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["{kind}"]\naggregate = "count"\n'
)
TEMPLATES = {
    "first-steps": ("login", "points = 10\n", "target = 1\n"),
    "module-master": ("module_completed", "points = 25\n", "target = 2\n"),
    "graduate": ("course_completed", 'points = 50\nprerequisites = ["first-steps"]\n', "target = 1\n"),
    "explorer": (
        "activity_completed",
        "points = 0\n"
        + "".join(
            f'[[tiers]]\nname = "{name}"\ntarget = {target}\npoints = {points}\n'
            for name, target, points in (("bronze", 1, 5), ("silver", 3, 10), ("gold", 5, 20))
        ),
        "",
    ),
}


def write_templates(directory: Path) -> Path:
    """Four badges: first-steps (1 login, 10 points), module-master (2 modules, 25), graduate (a course
    completion, 50, needs first-steps) and explorer (activities; bronze 1 / silver 3 / gold 5 = 5/10/20)."""
    directory.mkdir(parents=True, exist_ok=True)
    for badge_id, (kind, head, target) in TEMPLATES.items():
        (directory / f"{badge_id}.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        (directory / f"{badge_id}.toml").write_text(
            f'id = "{badge_id}"\nname = "{badge_id.replace("-", " ").title()}"\ndescription = "Test"\n'
            f'image = "{badge_id}.svg"\n{head}' + _REQUIREMENT.format(kind=kind) + target
        )
    return directory


def reports_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    templates = write_templates(tmp_path / "report-templates")
    return make_settings(database_url, tmp_path, badge_templates_dir=templates, **overrides)


def act(
    key: str,
    kind: str,
    learner: str,
    *,
    course: str | None = None,
    section: str | None = None,
    platform: str = "demo",
    hours: float = 0,
) -> LearningEvent:
    return LearningEvent(
        platform=platform,
        event_key=key,
        kind=kind,
        learner=learner,
        occurred_at=START + timedelta(hours=hours),
        course=course,
        data={"section": section} if section else {},
    )


def process(database: Database, settings: Settings, *events: LearningEvent) -> None:
    store(database, *events)
    Worker(database, settings).run(threading.Event(), drain=True)


def learner_pk(database: Database, lms_user_id: str, platform: str = "demo") -> int:
    with database.read() as session:
        found = session.scalar(
            select(Learner.id).where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
        )
    assert found is not None, lms_user_id
    return found


def add_award(
    database: Database,
    lms_user_id: str,
    badge_id: str,
    points: int,
    *,
    tier: str = "",
    course: str | None = None,
    awarded_at: datetime | None = None,
    earned_at: datetime | None = None,
    revoked: bool = False,
    platform: str = "demo",
) -> None:
    """An award the worker would not make: at a chosen time, or already revoked."""
    awarded_at = awarded_at or utcnow()
    with database.write() as session:
        session.add(
            Award(
                learner_id=learner_pk(database, lms_user_id, platform),
                badge_id=badge_id,
                tier=tier,
                criteria_version=1,
                event_ids=[],
                points=points,
                course=course,
                earned_at=earned_at or awarded_at,
                awarded_at=awarded_at,
                granted_by="tests",
                revoked_at=utcnow() if revoked else None,
            )
        )


def revoke(database: Database, lms_user_id: str, badge_id: str, tier: str = "") -> None:
    with database.write() as session:
        session.execute(
            update(Award)
            .where(
                Award.learner_id == learner_pk(database, lms_user_id),
                Award.badge_id == badge_id,
                Award.tier == tier,
            )
            .values(revoked_at=utcnow(), revoked_by="tests")
        )


def name(database: Database, names: dict[str, str | None], platform: str = "demo") -> None:
    with database.write() as session:
        for lms_user_id, display_name in names.items():
            session.execute(
                update(Learner)
                .where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
                .values(display_name=display_name)
            )


def campus(database: Database, settings: Settings) -> None:
    """Five learners of platform demo, through the real worker. Points overall (badges):

    ana 35 (2) first-steps + module-master in C1 · ben 15 (2) first-steps + explorer bronze in C1 ·
    cal 15 (2) first-steps + explorer bronze in C2 · dee 10 (1) first-steps · eve 0 (0), enrolled in C1.
    Course C1: ana (section A) 25, ben (section B) 5, eve (section A) 0. Names: ana "Ana", ben "Bea",
    cal "Abe" (before Bea although cal's id is higher), dee none, eve "Eve".
    """
    process(
        database,
        settings,
        *(act(f"login-{who}", "login", who) for who in ("ana", "ben", "cal", "dee")),
        act("enrol-ana", "enrolled", "ana", course="C1", section="A"),
        act("enrol-ben", "enrolled", "ben", course="C1", section="B"),
        act("enrol-eve", "enrolled", "eve", course="C1", section="A"),
        act("mod-ana-1", "module_completed", "ana", course="C1", hours=1),
        act("mod-ana-2", "module_completed", "ana", course="C1", hours=2),
        act("act-ben-1", "activity_completed", "ben", course="C1", hours=1),
        act("act-cal-1", "activity_completed", "cal", course="C2", hours=1),
    )
    name(database, {"ana": "Ana", "ben": "Bea", "cal": "Abe", "eve": "Eve"})


def table(board: Leaderboard) -> list[tuple[int, str, int]]:
    return [(s.rank, s.name, s.score) for s in board.entries]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return reports_settings(database_url, tmp_path)


@pytest.fixture
def world(database: Database, settings: Settings) -> Database:
    campus(database, settings)
    return database


def test_ties_share_a_rank_and_the_next_rank_skips(world: Database, settings: Settings) -> None:
    board = leaderboard(world, settings, "demo")
    assert table(board) == [
        (1, "Ana", 35),
        (2, "Abe", 15),
        (2, "Bea", 15),
        (4, "Learner dee", 10),
        (5, "Eve", 0),
    ]
    assert board.total == 5 and board.you is None


def test_learners_with_nothing_still_appear_after_everyone_else(world: Database, settings: Settings) -> None:
    board = leaderboard(world, settings, "demo", course="C1")
    assert table(board)[-1] == (3, "Eve", 0)


def test_the_badges_metric_counts_awards(world: Database, settings: Settings) -> None:
    board = leaderboard(world, settings, "demo", metric="badges")
    assert table(board) == [(1, "Abe", 2), (1, "Ana", 2), (1, "Bea", 2), (4, "Learner dee", 1), (5, "Eve", 0)]


def test_equal_names_are_ordered_by_id(world: Database, settings: Settings) -> None:
    name(world, {"ben": "Sam", "cal": "Sam"})
    board = leaderboard(world, settings, "demo")
    assert [(s.name, s.learner) for s in board.entries[1:3]] == [("Sam", "ben"), ("Sam", "cal")]


def test_a_course_board_ranks_its_members_by_that_courses_awards(world: Database, settings: Settings) -> None:
    add_award(world, "ana", "graduate", 100, course="C2")  # another course's award does not count in C1
    add_award(world, "cal", "graduate", 100, course="C1")  # cal is no member of C1: not on its board
    assert table(leaderboard(world, settings, "demo", course="C1")) == [
        (1, "Ana", 25),
        (2, "Bea", 5),
        (3, "Eve", 0),
    ]
    # An award in C2 does not make ana a member of C2; cal is, with explorer bronze.
    assert table(leaderboard(world, settings, "demo", course="C2")) == [(1, "Abe", 5)]
    assert leaderboard(world, settings, "demo", course="nope").entries == []


def test_a_section_narrows_a_course_board(world: Database, settings: Settings) -> None:
    board = leaderboard(world, settings, "demo", course="C1", section="A")
    assert table(board) == [(1, "Ana", 25), (2, "Eve", 0)]
    assert board.total == 2


def test_a_platform_board_holds_only_that_platforms_learners(world: Database, settings: Settings) -> None:
    process(world, settings, act("login-x", "login", "ana", platform="moodle1"))
    assert table(leaderboard(world, settings, "moodle1")) == [(1, "Learner ana", 10)]


def test_revoked_awards_never_count(world: Database, settings: Settings) -> None:
    revoke(world, "ana", "module-master")
    add_award(world, "eve", "graduate", 500, course="C1", revoked=True)
    assert table(leaderboard(world, settings, "demo"))[0] == (1, "Abe", 15)
    assert ("Ana", 10) in [(s.name, s.score) for s in leaderboard(world, settings, "demo").entries]
    assert table(leaderboard(world, settings, "demo", course="C1")) == [
        (1, "Bea", 5),
        (2, "Ana", 0),
        (2, "Eve", 0),
    ]
    assert table(leaderboard(world, settings, "demo", metric="badges"))[-1] == (5, "Eve", 0)


def week_and_month_start(settings: Settings) -> tuple[datetime, datetime]:
    today = utcnow().astimezone(settings.zone).date()
    monday = today - timedelta(days=today.weekday())
    at_midnight = datetime.min.time()
    return (
        datetime.combine(monday, at_midnight, tzinfo=settings.zone),
        datetime.combine(today.replace(day=1), at_midnight, tzinfo=settings.zone),
    )


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
def test_week_and_month_count_awards_since_monday_and_the_first_in_the_time_zone(
    database_url: str, tmp_path: Path, zone: str
) -> None:
    settings = reports_settings(database_url, tmp_path, timezone=zone)
    database = open_database(settings)
    process(database, settings, *(act(f"login-{who}", "login", who) for who in "abcd"))  # 10 each, now
    week, month = week_and_month_start(settings)
    add_award(database, "a", "graduate", 100, awarded_at=utcnow() - timedelta(minutes=1))
    add_award(database, "b", "graduate", 100, awarded_at=week - timedelta(minutes=1))
    add_award(database, "c", "graduate", 100, awarded_at=month - timedelta(minutes=1))
    add_award(database, "d", "graduate", 100, awarded_at=utcnow() - timedelta(days=400))
    add_award(database, "d", "module-master", 1, awarded_at=week)  # the start itself belongs to the period

    def scores(period: Any) -> dict[str, int]:
        board = leaderboard(database, settings, "demo", period=period)
        return {str(s.learner): s.score for s in board.entries}

    assert scores("all") == {"d": 111, "a": 110, "b": 110, "c": 110}
    this_week = scores("week")
    assert this_week == {"a": 110, "c": 110 if month - timedelta(minutes=1) >= week else 10, "d": 11, "b": 10}
    this_month = scores("month")
    assert this_month["a"] == 110 and this_month["c"] == 10
    assert this_month["b"] == (110 if week - timedelta(minutes=1) >= month else 10)
    assert this_month["d"] == (11 if week >= month else 10)
    assert leaderboard(database, settings, "demo", period="week").since == week
    database.dispose()


def test_the_week_starts_at_local_midnight_across_a_daylight_saving_change(
    database_url: str, tmp_path: Path
) -> None:
    settings = reports_settings(database_url, tmp_path, timezone="Europe/Berlin")
    database = open_database(settings)
    process(database, settings, act("login-a", "login", "a"), act("login-b", "login", "b"))
    revoke(database, "a", "first-steps")
    revoke(database, "b", "first-steps")
    # Clocks went forward on Sunday 29 March 2026; Monday 30 March 00:00 CEST is 29 March 22:00 UTC.
    add_award(database, "a", "graduate", 7, awarded_at=datetime(2026, 3, 29, 22, 0, tzinfo=UTC))
    add_award(database, "b", "graduate", 9, awarded_at=datetime(2026, 3, 29, 21, 59, tzinfo=UTC))
    now = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    board = leaderboard(database, settings, "demo", period="week", now=now)
    assert [(s.learner, s.score) for s in board.entries] == [("a", 7), ("b", 0)]
    assert board.since is not None and board.since.astimezone(UTC) == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    database.dispose()


def test_opted_out_learners_appear_under_their_pseudonym_but_see_themselves(
    world: Database, settings: Settings
) -> None:
    assert set_leaderboard_preference(world, "demo", "ben", True, actor="admin")
    pseudonym = world_pseudonym(world, "ben")
    others = leaderboard(world, settings, "demo", learner="ana")
    ben = next(s for s in others.entries if s.name == pseudonym)
    assert (ben.rank, ben.score, ben.learner, ben.you) == (2, 15, None, False)
    own = leaderboard(world, settings, "demo", learner="ben")
    assert own.you is not None and (own.you.name, own.you.learner, own.you.you) == ("Bea", "ben", True)
    assert [s.name for s in own.entries if s.you] == ["Bea"]


def world_pseudonym(database: Database, lms_user_id: str) -> str:
    with database.read() as session:
        found = session.scalar(select(Learner.pseudonym).where(Learner.lms_user_id == lms_user_id))
    assert found
    return found


def test_anonymised_boards_show_everyone_but_the_asker_by_pseudonym(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    campus(database, reports_settings(database_url, tmp_path))
    anonymous = reports_settings(database_url, tmp_path, leaderboard={"anonymise": True})
    board = leaderboard(database, anonymous, "demo", learner="dee")
    pseudonyms = {who: world_pseudonym(database, who) for who in ("ana", "ben", "cal", "eve")}
    tied = sorted([pseudonyms["ben"], pseudonyms["cal"]], key=str.lower)  # 15 points each
    assert [s.name for s in board.entries if not s.you] == [pseudonyms["ana"], *tied, pseudonyms["eve"]]
    assert all(s.learner is None for s in board.entries if not s.you)
    assert board.you is not None and (board.you.name, board.you.learner, board.you.rank) == (
        "Learner dee",
        "dee",
        4,
    )


def test_the_asker_gets_their_rank_outside_the_top(world: Database, settings: Settings) -> None:
    board = leaderboard(world, settings, "demo", limit=2, learner="eve")
    assert table(board) == [(1, "Ana", 35), (2, "Abe", 15)]
    assert board.you is not None and (board.you.rank, board.you.name, board.you.score) == (5, "Eve", 0)
    inside = leaderboard(world, settings, "demo", limit=2, learner="ana")
    assert inside.you == inside.entries[0] and len(inside.entries) == 2


def test_the_size_defaults_to_the_setting(database: Database, database_url: str, tmp_path: Path) -> None:
    small = reports_settings(database_url, tmp_path, leaderboard={"size": 3})
    campus(database, small)
    assert len(leaderboard(database, small, "demo").entries) == 3


def test_an_asker_outside_the_scope_has_no_standing_and_an_unknown_one_is_an_error(
    world: Database, settings: Settings
) -> None:
    assert leaderboard(world, settings, "demo", course="C1", learner="dee").you is None
    with pytest.raises(UnknownLearner):
        leaderboard(world, settings, "demo", learner="nobody")
    with pytest.raises(UnknownLearner):
        leaderboard(world, settings, "moodle1", learner="ana")


def test_preferences_opt_out_and_back_in_and_set_the_name(world: Database) -> None:
    assert set_leaderboard_preference(world, "demo", "dee", True, actor="admin", display_name="Dee D.")
    found = leaderboard_preference(world, "demo", "dee")
    assert found is not None and (found.leaderboard_opt_out, found.display_name) == (True, "Dee D.")
    assert set_leaderboard_preference(world, "demo", "dee", False, actor="admin")  # the name is kept
    found = leaderboard_preference(world, "demo", "dee")
    assert found is not None and (found.leaderboard_opt_out, found.display_name) == (False, "Dee D.")
    assert set_leaderboard_preference(world, "demo", "dee", False, actor="admin", display_name=None)
    assert (found := leaderboard_preference(world, "demo", "dee")) is not None and found.display_name is None
    entries = audit_log(world, learner="dee")[:2]  # the latest first
    assert {(e.actor, e.action, e.learner) for e in entries} == {("admin", "leaderboard_preference", "dee")}
    assert [e.details["display_name_changed"] for e in entries] == [True, False]
    assert not set_leaderboard_preference(world, "demo", "nobody", True, actor="admin")
    assert not set_leaderboard_preference(world, "moodle1", "dee", True, actor="admin")
    assert leaderboard_preference(world, "demo", "nobody") is None
