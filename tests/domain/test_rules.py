"""The rule book (active badges indexed for evaluation) and what one active badge decides on its own."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.domain.aggregates import Count
from bridge.domain.criteria import Criteria, Requirement, Tier
from bridge.domain.rules import ActiveBadge, RuleBook

AWARDED_AT = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)
BRONZE, SILVER = Tier("bronze", 10, 5), Tier("silver", 25, 10)


def counting(kind: str, target: int = 1) -> Requirement:
    return Requirement(f"{kind}-{target}", frozenset({kind}), Count(target), float(target))


def badge(badge_id: str, *groups: tuple[Requirement, ...], points: int = 0, **options: object) -> ActiveBadge:
    return ActiveBadge(badge_id, 1, points, Criteria(groups=groups), **options)  # type: ignore[arg-type]


LEVELS = ActiveBadge(
    "levels", 1, 0, Criteria(groups=((Requirement("p", frozenset(), None, 25),),), tiers=(BRONZE, SILVER))
)


def test_the_rule_book_finds_the_badges_listening_to_a_kind_in_their_order() -> None:
    welcome = badge("welcome", (counting("login"),))
    mixed = badge("mixed", (counting("login", 2), counting("purchase")))
    book = RuleBook([welcome, mixed, LEVELS])
    assert book.for_kind("login") == (welcome, mixed)
    assert book.for_kind("purchase") == (mixed,)
    assert book.for_kind("course_completed") == ()
    assert book.kinds == {"login", "purchase"}


def test_a_badge_listens_to_a_kind_once_however_many_requirements_name_it() -> None:
    twice = badge("twice", (counting("login"),), (counting("login", 3),))
    assert RuleBook([twice]).for_kind("login") == (twice,)


def test_the_rule_book_finds_a_badges_dependants() -> None:
    ready = badge("course-ready", (counting("module_completed"),))
    graduate = badge("course-graduate", (counting("course_completed"),), prerequisites=("course-ready",))
    honours = badge("honours", (counting("course_graded"),), prerequisites=("course-ready", "welcome"))
    book = RuleBook([ready, graduate, honours])
    assert book.dependants("course-ready") == (graduate, honours)
    assert book.dependants("welcome") == (honours,)
    assert book.dependants("course-graduate") == ()


def test_the_rule_book_lists_the_badges_on_the_learners_points() -> None:
    welcome = badge("welcome", (counting("login"),))
    book = RuleBook([welcome, LEVELS])
    assert book.on_points == (LEVELS,)
    assert book.by_id == {"welcome": welcome, "levels": LEVELS}


def test_an_award_expires_the_given_number_of_days_after_it_is_made() -> None:
    yearly = badge("safety", (counting("course_graded"),), expires_after_days=365)
    assert yearly.expires_at(AWARDED_AT, UTC) == AWARDED_AT + timedelta(days=365)


def test_an_award_with_a_fixed_expiry_date_expires_at_the_start_of_that_day_in_the_time_zone() -> None:
    fixed = badge("cohort-2027", (counting("login"),), expires_on=date(2027, 7, 31))
    assert fixed.expires_at(AWARDED_AT, UTC) == datetime(2027, 7, 31, tzinfo=UTC)
    # Auckland is UTC+12 in July: its 31 July begins at noon on 30 July, UTC.
    assert fixed.expires_at(AWARDED_AT, ZoneInfo("Pacific/Auckland")) == datetime(2027, 7, 30, 12, tzinfo=UTC)


def test_an_award_without_an_expiry_never_expires() -> None:
    assert badge("welcome", (counting("login"),)).expires_at(AWARDED_AT, UTC) is None


def test_an_untiered_badge_earns_one_unnamed_tier_with_its_points_once_complete() -> None:
    welcome = badge("welcome", (counting("login", 2),), points=5)
    assert welcome.tiers_earned(welcome.criteria.progress({"login-2": 1})) == ()
    assert welcome.tiers_earned(welcome.criteria.progress({"login-2": 2})) == (Tier("", 2, 5),)


def test_a_tiered_badge_earns_every_tier_reached() -> None:
    assert LEVELS.tiers_earned(LEVELS.criteria.progress({}, points=9)) == ()
    assert LEVELS.tiers_earned(LEVELS.criteria.progress({}, points=12)) == (BRONZE,)
    assert LEVELS.tiers_earned(LEVELS.criteria.progress({}, points=30)) == (BRONZE, SILVER)
