"""A learner's ledger: progress records, awards, approvals and points as their events are observed.

badge_templates/README.md, "Progress, precisely": a badge is awarded when it is complete (for tiers: each
tier reached), the learner holds its prerequisites, achievements are enabled and it does not require
approval; awards are never taken back by later events, only revoked by a person.
"""

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.domain.aggregates import HORIZON_DAYS, Count, EventFacts, Max, Streak
from bridge.domain.criteria import Criteria, Progress, Requirement, Tier, retired
from bridge.domain.evaluation import AwardPolicy, AwardsOf, Earned, LearnerLedger
from bridge.domain.events import LearningEvent
from bridge.domain.records import BadgeRecord, micros
from bridge.domain.rules import ActiveBadge, RuleBook
from bridge.domain.templates import level_tiers

NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------------------

_keys = iter(range(1_000_000))


def facts(kind: str = "login", *, day: int = 0, **fields: Any) -> EventFacts:
    """A new event (its own event_key) of ``kind``, ``day`` days after NOW."""
    event = LearningEvent("demo", f"e{next(_keys)}", kind, "7", NOW + timedelta(days=day), **fields)
    return EventFacts(event, UTC)


def counting(kind: str, target: int = 1) -> Requirement:
    """A count of ``kind`` events, its state kept under its shape's key, as templates make it."""
    return keyed(Requirement("", frozenset({kind}), Count(target), float(target)))


def keyed(requirement: Requirement) -> Requirement:
    return replace(requirement, key=requirement.shape)


def badge(
    badge_id: str,
    *requirements: Requirement,
    points: int = 0,
    version: int = 1,
    tiers: tuple[Tier, ...] = (),
    **options: Any,
) -> ActiveBadge:
    """A badge of one group: met by any one of ``requirements`` (default: one login)."""
    group = requirements or (counting("login"),)
    return ActiveBadge(badge_id, version, points, Criteria(groups=(group,), tiers=tiers), **options)


def either_login_or_purchase(badge_id: str, **options: Any) -> ActiveBadge:
    """Complete on the first login; a purchase afterwards still changes its state."""
    return badge(badge_id, counting("login"), counting("purchase"), **options)


def levels(thresholds: list[int], points: int) -> ActiveBadge:
    """A level badge: tiers on the learner's points, as ``tiers = "badge_level_threshold"`` makes them."""
    tiers = tuple(Tier(t["name"], float(t["target"]), t["points"]) for t in level_tiers(thresholds, points))
    on_points = Requirement("p", frozenset(), None, float(thresholds[-1]))
    return badge("levels", on_points, points=points, tiers=tiers)


def ledger(
    *,
    points: int = 0,
    records: dict[str, BadgeRecord] | None = None,
    awarded: Iterable[tuple[str, str]] = (),
    held: Iterable[str] = (),
    requested: Iterable[tuple[str, str]] = (),
    policy: AwardPolicy = AwardPolicy(),  # noqa: B008 - immutable
    has_history: bool = False,
    **options: Any,
) -> LearnerLedger:
    """A learner's ledger; by default a learner first seen now (no earlier events, so no history)."""
    return LearnerLedger(
        points=points,
        records=dict(records or {}),
        awarded=set(awarded),
        held=set(held),
        requested=set(requested),
        policy=policy,
        **({"first_seen": datetime(2020, 1, 1, tzinfo=UTC) if has_history else None} | options),
    )


def no_history(kinds: frozenset[str]) -> list[EventFacts]:
    raise AssertionError(
        f"{sorted(kinds)}: replayed, but only a stale or missing record of a known learner is"
    )


def observe(book: LearnerLedger, rules: RuleBook, *events: EventFacts) -> list[Earned]:
    """What the events earn, in order."""
    before = len(book.earned)
    for one in events:
        book.observe(one, rules, no_history)
    return book.earned[before:]


def record_of(badge: ActiveBadge, states: dict[str, Any], points: int = 0) -> BadgeRecord:
    """A record of ``badge`` where ``states`` (to be the ledger's) leave it."""
    return BadgeRecord(badge.criteria_version, NOW, *badge.criteria.standing(states, points))


def state_of_login(badge: ActiveBadge, value: Any) -> dict[str, Any]:
    """The learner's states with ``value`` for the badge's requirement on logins."""
    return {next(r.key for group in badge.criteria.groups for r in group if "login" in r.kinds): value}


def state_of(badge: ActiveBadge, value: Any) -> dict[str, Any]:
    """The learner's states with ``value`` for the badge's one requirement on events."""
    (key,) = badge.criteria.state_keys
    return {key: value}


def progress_of(book: LearnerLedger, badge: ActiveBadge) -> Progress:
    found = book.progress_of(badge)
    assert found is not None, f"no record of {badge.id}"
    return found


def earned(
    badge: ActiveBadge, tier: Tier, event: EventFacts | None, *, points: int, approval: bool = False
) -> Earned:
    at = NOW if event is None else event.event.occurred_at
    return Earned(badge, tier, None if event is None else event.event, at, approval, points)


# --- records ------------------------------------------------------------------------------------------


def test_a_badge_on_its_way_keeps_no_record_its_progress_is_in_the_states() -> None:
    welcome = badge("welcome", counting("login", 2))
    book = ledger()
    login = facts("login", day=1)
    assert observe(book, RuleBook([welcome]), login) == []
    assert (book.states, book.states_changed) == (state_of(welcome, 1), True)
    assert book.since == {next(iter(welcome.criteria.state_keys)): micros(login.event.occurred_at)}
    progress = progress_of(book, welcome)
    assert (progress.value, progress.target, progress.complete) == (1, 2, False)
    assert book.records == {} and book.dirty == set() and book.reported == set()


def test_a_record_is_kept_once_the_badge_completes_started_at_its_first_event() -> None:
    welcome = badge("welcome", counting("login", 2))
    book = ledger()
    first, second = facts("login", day=1), facts("login", day=2)
    observe(book, RuleBook([welcome]), first, second)
    record = book.records["welcome"]
    assert (record.criteria_version, record.started_at, record.complete) == (1, first.event.occurred_at, True)
    assert book.dirty == {"welcome"} and book.reported == {"welcome"}


def test_a_badge_with_tiers_keeps_a_record_from_its_first_step() -> None:
    tiers = (Tier("bronze", 2, 0), Tier("silver", 4, 0))
    tiered = badge("tiered", counting("login", 4), tiers=tiers)
    book = ledger()
    login = facts("login", day=1)
    observe(book, RuleBook([tiered]), login)
    assert book.records["tiered"].started_at == login.event.occurred_at
    assert book.reported == {"tiered"}  # the tier funnel counts who started


def test_a_learner_seen_just_after_new_criteria_keeps_records_of_them() -> None:
    since = NOW - timedelta(days=1)
    welcome = badge("welcome", counting("login", 5), criteria_since=since)
    lag = timedelta(minutes=2)
    soon_after = ledger(seen_now=since + timedelta(minutes=1), rules_lag=lag)
    observe(soon_after, RuleBook([welcome]), facts("login"))
    # Some of their events may have been evaluated with the criteria before: the record says these are
    # of the new ones, so their next event does not rebuild them from history.
    assert soon_after.records["welcome"].criteria_version == 1
    long_after = ledger(seen_now=since + timedelta(minutes=3), rules_lag=lag)
    observe(long_after, RuleBook([welcome]), facts("login"))
    assert long_after.records == {}


# --- the progress report: what the sweep and analytics read -----------------------------------------


def test_completing_a_badge_reports_it_and_further_steps_do_not() -> None:
    regular = either_login_or_purchase("regular")
    book = ledger()
    observe(book, RuleBook([regular]), facts("login"))
    assert book.reported == {"regular"} and book.records["regular"].complete
    book.reported.clear()
    observe(book, RuleBook([regular]), facts("purchase"))
    assert (book.dirty, book.reported) == ({"regular"}, set())


def test_every_record_of_a_tiered_badge_is_reported_from_its_start_and_at_each_tier() -> None:
    tiered = badge("tiered", counting("login", 3), tiers=(Tier("bronze", 2, 1), Tier("silver", 3, 1)))
    book = ledger()
    reported = []
    for _ in range(3):
        observe(book, RuleBook([tiered]), facts("login"))
        reported.append((sorted(book.reported), book.records["tiered"].tier))
        book.reported.clear()
    assert reported == [(["tiered"], ""), (["tiered"], "bronze"), (["tiered"], "silver")]


def test_a_saturated_record_shows_full_progress_whatever_the_states() -> None:
    twice = badge("twice", counting("login", 2))
    book = ledger()
    observe(book, RuleBook([twice]), facts("login"), facts("login"))
    record = book.records["twice"]
    assert (record.saturated, record.complete) == (True, True)
    book.states.clear()  # rebuilt for another badge, say: what this record met stays met
    assert progress_of(book, twice) == twice.criteria.full_progress()
    assert progress_of(book, twice).value == 2


def test_badges_whose_requirements_differ_only_in_target_share_one_state() -> None:
    few, many = badge("few", counting("login", 2)), badge("many", counting("login", 4))
    book = ledger()
    rules = RuleBook([few, many])
    observe(book, rules, *(facts("login", day=day) for day in range(3)))
    assert book.states == state_of(many, 3) == state_of(few, 3)  # one state, counted up to 4
    assert (book.records["few"].complete, progress_of(book, many).value) == (True, 3)
    observe(book, rules, facts("login"))
    assert book.records["many"].saturated
    # Every badge reading the state is saturated: it is retired, to what it measured.
    assert book.states == state_of(many, retired(4.0)) and book.since == {}
    assert progress_of(book, many).value == progress_of(book, few).value * 2 == 4
    observe(book, rules, facts("login"))
    assert book.states == state_of(many, retired(4.0))  # nothing more to count, or to write


def test_a_state_a_badge_on_its_way_reads_is_not_retired() -> None:
    few, many = badge("few", counting("login", 2)), badge("many", counting("login", 4))
    book = ledger()
    observe(book, RuleBook([few, many]), facts("login"), facts("login"))
    assert book.records["few"].saturated and book.states == state_of(many, 2)


def test_a_state_a_disabled_badge_reads_is_kept_for_when_it_is_enabled_again() -> None:
    few, disabled = badge("few", counting("login", 2)), badge("disabled", counting("login", 4))
    book = ledger()
    observe(
        book, RuleBook([few], read_elsewhere=disabled.criteria.state_keys), facts("login"), facts("login")
    )
    assert book.states == state_of(few, 2)
    ignorant = ledger()  # the book cannot tell what badges outside it read
    observe(ignorant, RuleBook([few], read_elsewhere=None), facts("login"), facts("login"))
    assert ignorant.states == state_of(few, 2)


def test_a_badge_needing_more_of_a_retired_state_rebuilds_it_from_history() -> None:
    few, more = badge("few", counting("login", 2)), badge("more", counting("login", 3))
    book = ledger()
    earlier = [facts("login", day=1), facts("login", day=2)]
    observe(book, RuleBook([few]), *earlier)
    assert book.states == state_of(few, retired(2.0))
    # A worker whose rule book has a badge the learner's states came before (in the minute or so a
    # new badge takes to reach every worker): the retired state cannot take the event.
    asked: list[frozenset[str]] = []

    def history(kinds: frozenset[str]) -> list[EventFacts]:
        asked.append(kinds)
        return earlier

    book.observe(facts("login", day=3), RuleBook([few, more]), history)
    assert asked == [frozenset({"login"})]
    assert book.states == state_of(more, retired(3.0)) and book.records["more"].complete


def test_a_step_on_the_way_changes_the_states_but_not_the_record() -> None:
    welcome = badge("welcome", counting("login", 3))
    book = ledger()
    observe(book, RuleBook([welcome]), facts("login", day=1))
    book.dirty.clear()
    observe(book, RuleBook([welcome]), facts("login", day=2))
    assert (book.dirty, book.states_changed, book.states) == (set(), True, state_of(welcome, 2))


def test_a_complete_record_replaced_by_an_incomplete_one_of_new_criteria_is_reported() -> None:
    old, new = badge("regular", version=1), badge("regular", counting("login", 3), version=2)
    states = state_of(old, 1)
    book = ledger(
        records={"regular": record_of(old, states)},
        states=states,
        awarded={("regular", "")},
        held={"regular"},
    )
    assert book.records["regular"].complete
    book.observe(facts("login"), RuleBook([new]), lambda _kinds: [])
    assert (book.reported, book.records["regular"].complete) == ({"regular"}, False)


def test_a_complete_record_earns_nothing_more_from_events_that_leave_it_complete() -> None:
    regular = either_login_or_purchase("regular")
    asked: list[str] = []
    book = ledger(
        records={"regular": record_of(regular, state_of_login(regular, 1))},
        states=state_of_login(regular, 1),
        awards_known=set(),
        load_awards=awards_from({"regular": AwardsOf(("",), (), True)}, asked),
    )
    assert observe(book, RuleBook([regular]), facts("purchase")) == []
    assert asked == []  # its awards are not even looked at: they were settled when it completed


def test_an_event_no_badge_listens_to_leaves_the_ledger_as_it_is() -> None:
    book = ledger()
    observe(book, RuleBook([badge("welcome")]), facts("purchase"))
    assert (book.records, book.dirty, book.earned) == ({}, set(), [])


def test_an_event_that_changes_no_state_leaves_the_record_clean() -> None:
    welcome = badge("welcome", counting("login", 2))
    states = state_of(welcome, 2)
    book = ledger(
        records={"welcome": record_of(welcome, states)},
        states=states,
        awarded={("welcome", "")},
        held={"welcome"},
    )
    observe(book, RuleBook([welcome]), facts("login"))
    assert (book.dirty, book.states_changed) == (set(), False)


def test_a_record_starts_at_its_earliest_event_whatever_the_arrival_order() -> None:
    welcome = badge("welcome", counting("login", 3))
    book = ledger()
    late, early, last = facts("login", day=3), facts("login", day=1), facts("login", day=4)
    observe(book, RuleBook([welcome]), late, early, last)
    assert book.records["welcome"].started_at == early.event.occurred_at


def test_a_badge_sharing_a_state_starts_where_the_state_did() -> None:
    few, many = badge("few", counting("login", 2)), badge("many", counting("login", 3))
    book = ledger()
    first = facts("login", day=1)
    observe(book, RuleBook([few, many]), first, facts("login", day=2))
    assert book.records["few"].started_at == first.event.occurred_at
    # "many" has no record on its way; its first one starts at the first event of the state it
    # shares with "few".
    assert "many" not in book.records
    observe(book, RuleBook([few, many]), facts("login", day=3))
    assert book.records["many"].started_at == first.event.occurred_at


def test_a_record_not_loaded_up_front_is_loaded_on_demand() -> None:
    welcome = badge("welcome", counting("login", 3))
    stored = record_of(welcome, state_of(welcome, 1))
    asked: list[str] = []
    book = ledger(load=lambda badge_id: asked.append(badge_id) or stored, states=state_of(welcome, 1))
    observe(book, RuleBook([welcome]), facts("login"))
    assert asked == ["welcome"]
    assert book.states == state_of(welcome, 2)


# --- awards -------------------------------------------------------------------------------------------


def test_completing_a_badge_awards_it_with_its_points_plus_the_points_per_badge() -> None:
    welcome = either_login_or_purchase("welcome", points=5)
    book = ledger(points=3, policy=AwardPolicy(points_per_badge=2))
    login = facts("login")
    assert observe(book, RuleBook([welcome]), login) == [earned(welcome, Tier("", 1, 5), login, points=7)]
    assert (book.points, book.awarded, book.held) == (10, {("welcome", "")}, {"welcome"})


def test_a_badge_is_awarded_once_however_many_events_complete_it_again() -> None:
    welcome = either_login_or_purchase("welcome", points=5)
    book = ledger()
    rules = RuleBook([welcome])
    observe(book, rules, facts("login"))
    assert observe(book, rules, facts("purchase"), facts("login")) == []
    assert book.records["welcome"].saturated  # progress still moved: both requirements are met now
    assert book.points == 5


def test_an_incomplete_badge_earns_nothing() -> None:
    book = ledger()
    assert observe(book, RuleBook([badge("regular", counting("login", 3))]), facts(), facts()) == []
    assert (book.points, book.awarded) == (0, set())


# --- tiers --------------------------------------------------------------------------------------------

BRONZE, SILVER, GOLD = Tier("bronze", 2, 1), Tier("silver", 4, 2), Tier("gold", 6, 4)


def test_each_tier_is_awarded_once_as_the_learner_reaches_it() -> None:
    achiever = badge("achiever", counting("assignment_graded", 6), tiers=(BRONZE, SILVER, GOLD))
    rules = RuleBook([achiever])
    book = ledger()
    first, second, third, fourth, fifth = (facts("assignment_graded") for _ in range(5))
    assert observe(book, rules, first) == []
    assert observe(book, rules, second) == [earned(achiever, BRONZE, second, points=1)]
    assert observe(book, rules, third) == []
    assert observe(book, rules, fourth) == [earned(achiever, SILVER, fourth, points=2)]
    assert observe(book, rules, fifth) == []
    assert book.awarded == {("achiever", "bronze"), ("achiever", "silver")}
    assert book.points == 3


def test_reaching_silver_at_once_awards_bronze_and_silver() -> None:
    tiers = (Tier("bronze", 0.5, 1), Tier("silver", 0.9, 2), Tier("gold", 1.0, 4))
    best = Requirement("r", frozenset({"quiz_graded"}), Max(), 1.0, "score")
    scholar = badge("scholar", best, tiers=tiers)
    book = ledger()
    quiz = facts("quiz_graded", score=0.95)
    assert observe(book, RuleBook([scholar]), quiz) == [
        earned(scholar, tiers[0], quiz, points=1),
        earned(scholar, tiers[1], quiz, points=2),
    ]
    assert book.points == 3


# --- prerequisites ------------------------------------------------------------------------------------

READY = badge("course-ready", counting("module_completed"), points=10)
GRADUATE = badge("course-graduate", counting("course_completed"), points=20, prerequisites=("course-ready",))


def test_a_complete_badge_is_not_awarded_while_a_prerequisite_is_missing() -> None:
    book = ledger()
    assert observe(book, RuleBook([READY, GRADUATE]), facts("course_completed")) == []
    assert book.records["course-graduate"].complete
    assert book.awarded == set()


def test_a_complete_dependant_is_awarded_with_its_prerequisite() -> None:
    book = ledger()
    rules = RuleBook([GRADUATE, READY])
    observe(book, rules, facts("course_completed"))
    module = facts("module_completed")
    assert observe(book, rules, module) == [
        earned(READY, Tier("", 1, 10), module, points=10),
        earned(GRADUATE, Tier("", 1, 20), module, points=20),
    ]
    assert book.points == 30


def test_a_complete_dependant_not_loaded_up_front_is_loaded_when_its_prerequisite_is_awarded() -> None:
    stored = record_of(GRADUATE, state_of(GRADUATE, 1))
    book = ledger(
        load=lambda badge_id: stored if badge_id == "course-graduate" else None, states=state_of(GRADUATE, 1)
    )
    module = facts("module_completed")
    assert [e.badge.id for e in observe(book, RuleBook([READY, GRADUATE]), module)] == [
        "course-ready",
        "course-graduate",
    ]


def test_a_prerequisite_held_from_before_lets_its_dependant_be_awarded_at_once() -> None:
    book = ledger(awarded={("course-ready", "")}, held={"course-ready"})
    course = facts("course_completed")
    assert observe(book, RuleBook([READY, GRADUATE]), course) == [
        earned(GRADUATE, Tier("", 1, 20), course, points=20)
    ]


def test_any_tier_of_a_prerequisite_counts_as_holding_it() -> None:
    achiever = badge("achiever", counting("assignment_graded", 6), tiers=(BRONZE, SILVER, GOLD))
    follower = badge("follower", prerequisites=("achiever",))
    book = ledger()
    rules = RuleBook([achiever, follower])
    observe(book, rules, facts("login"))
    earned_now = observe(book, rules, facts("assignment_graded"), facts("assignment_graded"))
    assert [(e.badge.id, e.tier.name) for e in earned_now] == [("achiever", "bronze"), ("follower", "")]


# --- awards read on demand ---------------------------------------------------------------------------


def awards_from(stored: dict[str, AwardsOf], asked: list[str]) -> Any:
    def load(badge_id: str) -> AwardsOf:
        asked.append(badge_id)
        return stored.get(badge_id, AwardsOf((), (), False))

    return load


def test_awards_of_a_badge_not_read_up_front_are_read_before_it_is_awarded() -> None:
    asked: list[str] = []
    book = ledger(awards_known=set(), load_awards=awards_from({"welcome": AwardsOf(("",), (), True)}, asked))
    assert observe(book, RuleBook([badge("welcome", points=5)]), facts("login")) == []
    assert (asked, book.points) == (["welcome"], 0)


def test_a_prerequisite_not_read_up_front_is_read_when_its_dependant_completes() -> None:
    asked: list[str] = []
    book = ledger(
        awards_known=set(), load_awards=awards_from({"course-ready": AwardsOf(("",), (), True)}, asked)
    )
    course = facts("course_completed")
    assert observe(book, RuleBook([READY, GRADUATE]), course) == [
        earned(GRADUATE, Tier("", 1, 20), course, points=20)
    ]
    assert asked == ["course-ready", "course-graduate"]


def test_a_request_not_read_up_front_keeps_a_badge_out_of_the_queue_twice() -> None:
    book = ledger(awards_known=set(), load_awards=awards_from({"mentor": AwardsOf((), ("",), False)}, []))
    assert observe(book, RuleBook([badge("mentor", requires_approval=True)]), facts("login")) == []


def test_awards_of_a_badge_are_read_once() -> None:
    asked: list[str] = []
    book = ledger(awards_known=set(), load_awards=awards_from({}, asked))
    welcome = either_login_or_purchase("welcome")
    observe(book, RuleBook([welcome]), facts("login"), facts("purchase"))
    assert asked == ["welcome"]


def test_badges_read_up_front_are_not_asked_for() -> None:
    book = ledger(awards_known={"welcome"}, load_awards=awards_from({}, asked := []))
    assert [e.badge.id for e in observe(book, RuleBook([badge("welcome")]), facts("login"))] == ["welcome"]
    assert asked == []


# --- revoked awards -----------------------------------------------------------------------------------


def test_a_revoked_award_is_never_made_again() -> None:
    welcome = badge("welcome", points=5)
    book = ledger(awarded={("welcome", "")}, held=set())  # awarded once, then revoked by a person
    assert observe(book, RuleBook([welcome]), facts("login")) == []
    assert book.records["welcome"].complete
    assert (book.points, book.held) == (0, set())


def test_a_revoked_prerequisite_is_not_held() -> None:
    book = ledger(awarded={("course-ready", "")}, held=set())
    rules = RuleBook([READY, GRADUATE])
    assert observe(book, rules, facts("course_completed"), facts("module_completed")) == []


# --- approval -----------------------------------------------------------------------------------------


def test_a_badge_requiring_approval_is_requested_once_and_adds_no_points() -> None:
    mentor = either_login_or_purchase("mentor", points=30, requires_approval=True)
    book = ledger(policy=AwardPolicy(points_per_badge=1))
    rules = RuleBook([mentor])
    login = facts("login")
    assert observe(book, rules, login) == [earned(mentor, Tier("", 1, 30), login, points=31, approval=True)]
    assert observe(book, rules, facts("purchase")) == []
    assert (book.requested, book.awarded, book.held, book.points) == ({("mentor", "")}, set(), set(), 0)


def test_a_badge_already_in_the_approval_queue_is_not_requested_again() -> None:
    mentor = badge("mentor", requires_approval=True)
    book = ledger(requested={("mentor", "")})
    assert observe(book, RuleBook([mentor]), facts("login")) == []


def test_a_badge_waiting_for_approval_does_not_unlock_its_dependants() -> None:
    mentor = badge("mentor", requires_approval=True)
    follower = badge("follower", counting("purchase"), prerequisites=("mentor",))
    book = ledger()
    earned_now = observe(book, RuleBook([mentor, follower]), facts("purchase"), facts("login"))
    assert [(e.badge.id, e.needs_approval) for e in earned_now] == [("mentor", True)]


# --- achievements disabled ----------------------------------------------------------------------------


def test_with_achievements_disabled_progress_is_kept_but_nothing_is_earned() -> None:
    welcome = badge("welcome", points=5)
    book = ledger(policy=AwardPolicy(enabled=False))
    assert observe(book, RuleBook([welcome]), facts("login")) == []
    assert book.records["welcome"].complete
    assert (book.points, book.awarded) == (0, set())


def test_settling_awards_what_was_completed_while_achievements_were_disabled() -> None:
    welcome = badge("welcome", points=5)
    rules = RuleBook([welcome])
    book = ledger(policy=AwardPolicy(enabled=False))
    observe(book, rules, facts("login"))
    book.policy = AwardPolicy(enabled=True, points_per_badge=1)
    book.settle(rules, NOW)
    assert book.earned == [earned(welcome, Tier("", 1, 5), None, points=6)]
    assert book.points == 6


def test_settling_awards_a_dependant_listed_before_its_prerequisite() -> None:
    book = ledger(
        records={
            "course-graduate": record_of(GRADUATE, state_of(GRADUATE, 1)),
            "course-ready": record_of(READY, state_of(READY, 1)),
        }
    )
    book.settle(RuleBook([GRADUATE, READY]), NOW)
    assert [e.badge.id for e in book.earned] == ["course-ready", "course-graduate"]


def test_settling_skips_a_record_of_an_older_criteria_version() -> None:
    welcome = badge("welcome", version=2)
    book = ledger(records={"welcome": record_of(badge("welcome", version=1), state_of(welcome, 1))})
    book.settle(RuleBook([welcome]), NOW)
    assert book.earned == []


# --- points badges ------------------------------------------------------------------------------------


def test_an_award_with_points_moves_the_level_badge() -> None:
    level = levels([10, 20], points=0)
    quiz = badge("quiz", counting("quiz_graded"), points=12)
    book = ledger()
    graded = facts("quiz_graded")
    assert observe(book, RuleBook([quiz, level]), graded) == [
        earned(quiz, Tier("", 1, 12), graded, points=12),
        earned(level, Tier("bronze", 10, 0), graded, points=0),
    ]
    assert (progress_of(book, level).value, book.records["levels"].tier) == (12, "bronze")
    assert "levels" in book.dirty


def test_the_level_badge_records_progress_below_its_first_level() -> None:
    book = ledger()
    level = levels([10, 20], points=0)
    observe(book, RuleBook([badge("welcome", points=4), level]), facts("login"))
    assert progress_of(book, level).value == 4
    assert book.awarded == {("welcome", "")}


def test_a_level_badges_own_points_can_reach_the_next_level() -> None:
    level = levels([10, 15], points=5)
    quiz = badge("quiz", counting("quiz_graded"), points=12)
    book = ledger()
    graded = facts("quiz_graded")
    assert observe(book, RuleBook([quiz, level]), graded) == [
        earned(quiz, Tier("", 1, 12), graded, points=12),
        earned(level, Tier("bronze", 10, 5), graded, points=5),  # 12 + 5 = 17 points: silver
        earned(level, Tier("silver", 15, 5), graded, points=5),
    ]
    assert book.points == 22


def test_points_per_badge_count_towards_levels() -> None:
    book = ledger(policy=AwardPolicy(points_per_badge=10))
    observe(book, RuleBook([badge("welcome", points=0), levels([10, 100], points=0)]), facts("login"))
    assert book.awarded == {("welcome", ""), ("levels", "bronze")}


# --- late events ---------------------------------------------------------------------------------------


def test_an_event_older_than_a_state_keeps_rebuilds_the_state_from_history_in_time_order() -> None:
    streak = keyed(Requirement("", frozenset({"login"}), Streak(), 3.0))
    regular = badge("regular", streak, points=2)
    days_ago = HORIZON_DAYS + 10
    earlier, recent = facts("login", day=-days_ago - 1), facts("login", day=0)
    book = ledger(has_history=True)
    rules = RuleBook([regular])
    book.observe(recent, rules, lambda _kinds: [earlier])  # a new badge for a learner with history
    late = facts("login", day=-days_ago)  # joins ``earlier``: a 2-day streak, long before the horizon
    asked: list[frozenset[str]] = []

    def history(kinds: frozenset[str]) -> list[EventFacts]:
        asked.append(kinds)
        return [recent, earlier]  # as stored: any order

    assert observe_with(book, rules, history, late) == []
    assert asked == [frozenset({"login"})]
    assert progress_of(book, regular).value == 2
    assert book.records["regular"].started_at == earlier.event.occurred_at
    third = facts("login", day=-days_ago + 1)
    assert observe_with(book, rules, lambda _kinds: [recent, earlier, late], third) == [
        earned(regular, Tier("", 3, 2), third, points=2)
    ]


def test_a_rebuild_records_the_history_and_earns_what_it_completes_with_no_event() -> None:
    regular = badge("regular", counting("login", 2), points=3)
    first, second = facts("login", day=-3), facts("login", day=-1)
    book = ledger(has_history=True)
    book.rebuild(regular, RuleBook([regular]), lambda _kinds: [second, first, facts("purchase")], NOW)
    record = book.records["regular"]
    # Both logins counted: complete (a complete record keeps no state), starting at the first.
    assert (record.saturated, record.started_at) == (True, first.event.occurred_at)
    assert "regular" in book.dirty
    assert book.earned == [earned(regular, Tier("", 2, 3), None, points=3)]


def test_a_rebuild_with_nothing_matching_stores_an_empty_record() -> None:
    regular = badge("regular", counting("login", 2))
    book = ledger(has_history=True)
    book.rebuild(regular, RuleBook([regular]), lambda _kinds: [], NOW)
    assert (book.states, progress_of(book, regular).value, book.earned) == ({}, 0, [])
    assert "regular" in book.reported


def observe_with(book: LearnerLedger, rules: RuleBook, history: Any, *events: EventFacts) -> list[Earned]:
    before = len(book.earned)
    for one in events:
        book.observe(one, rules, history)
    return book.earned[before:]


# --- criteria versions --------------------------------------------------------------------------------


def test_a_record_of_an_older_criteria_version_is_rebuilt_from_the_history_and_the_event() -> None:
    old = badge("regular", counting("login", 10), version=1)
    new = badge("regular", counting("login", 3), version=2, points=5)
    first, second, current = facts("login", day=1), facts("login", day=2), facts("login", day=3)
    asked: list[frozenset[str]] = []

    def history(kinds: frozenset[str]) -> list[EventFacts]:
        asked.append(kinds)
        return [first, second, facts("purchase")]

    book = ledger(records={"regular": record_of(old, state_of(old, 9))}, states=state_of(old, 9))
    book.observe(current, RuleBook([new]), history)
    assert asked == [frozenset({"login"})]
    record = book.records["regular"]
    assert (record.criteria_version, record.saturated, record.started_at) == (
        2,
        True,  # the two earlier logins and this one: complete
        first.event.occurred_at,
    )
    assert book.earned == [earned(new, Tier("", 3, 5), current, points=5)]
    assert "regular" in book.dirty


def test_a_record_of_an_older_version_is_rebuilt_even_when_the_event_adds_nothing_to_it() -> None:
    old = badge("regular", counting("login", 2), version=1)
    new = badge("regular", counting("login", 2), version=2)
    book = ledger(records={"regular": record_of(old, state_of(old, 2))}, states=state_of(old, 2))
    book.observe(facts("login"), RuleBook([new]), lambda _kinds: [])
    assert (book.records["regular"].criteria_version, book.states) == (2, state_of(new, 1))


def test_a_badge_new_to_a_learner_with_earlier_events_is_built_from_their_history() -> None:
    regular = badge("regular", counting("login", 3), points=5)
    earlier = [facts("login", day=1), facts("login", day=2)]
    book = ledger(has_history=True)
    current = facts("login", day=3)
    book.observe(current, RuleBook([regular]), lambda _kinds: earlier)
    record = book.records["regular"]
    assert (record.saturated, record.started_at) == (True, earlier[0].event.occurred_at)  # 2 + 1 logins
    assert book.earned == [earned(regular, Tier("", 3, 5), current, points=5)]


def test_a_learner_first_seen_after_a_badge_reached_every_worker_has_nothing_to_replay() -> None:
    since = datetime(2026, 11, 1, tzinfo=UTC)
    regular = badge("regular", counting("login", 3))
    regular = ActiveBadge(regular.id, 1, 0, regular.criteria, criteria_since=since)
    lag = timedelta(minutes=2)
    later = ledger(first_seen=since + timedelta(minutes=3), rules_lag=lag)
    later.observe(facts("login"), RuleBook([regular]), no_history)
    assert later.states == state_of(regular, 1)
    within_the_lag = ledger(first_seen=since + timedelta(minutes=1), rules_lag=lag)
    within_the_lag.observe(facts("login"), RuleBook([regular]), lambda _kinds: [facts("login", day=2)])
    assert within_the_lag.states == state_of(regular, 2)


def test_a_learner_first_seen_now_has_no_history_to_replay() -> None:
    book = ledger(has_history=False)
    regular = badge("regular", counting("login", 3))
    observe(book, RuleBook([regular]), facts("login"))  # no replay
    assert book.states == state_of(regular, 1)


def test_a_new_badge_on_points_and_events_counts_the_learners_earlier_events() -> None:
    veteran = ActiveBadge(
        "veteran",
        1,
        0,
        Criteria(groups=((Requirement("p", frozenset(), None, 10),), (counting("login", 2),))),
    )
    quiz = badge("quiz", counting("quiz_graded"), points=10)
    earlier_logins = [facts("login", day=1), facts("login", day=2)]
    book = ledger(has_history=True, records={"quiz": record_of(quiz, {})})

    def history(kinds: frozenset[str]) -> list[EventFacts]:
        return earlier_logins if "login" in kinds else []

    rules = RuleBook([quiz, veteran])
    book.observe(facts("quiz_graded", day=3), rules, history)  # 10 points: veteran's points group is met
    book.observe(facts("login", day=4), rules, history)  # three logins in all
    assert ("veteran", "") in book.awarded


# --- awards by hand -----------------------------------------------------------------------------------


def test_a_badge_granted_by_hand_is_awarded_without_its_criteria() -> None:
    welcome = badge("welcome", counting("login", 5), points=5)
    book = ledger(policy=AwardPolicy(points_per_badge=1))
    made = book.grant(welcome, Tier("", 5, 5), RuleBook([welcome]), NOW, "teacher", "helped at the open day")
    assert made == Earned(welcome, Tier("", 5, 5), None, NOW, False, 6, "teacher", "helped at the open day")
    assert (book.earned, book.points, book.awarded, book.held) == ([made], 6, {("welcome", "")}, {"welcome"})


def test_a_grant_unlocks_complete_dependants_and_moves_the_levels() -> None:
    book = ledger(records={"course-graduate": record_of(GRADUATE, state_of(GRADUATE, 1))})
    rules = RuleBook([READY, GRADUATE, levels([25], points=0)])
    book.grant(READY, Tier("", 1, 10), rules, NOW, "teacher", "transfer credit")
    assert [(e.badge.id, e.tier.name) for e in book.earned] == [
        ("course-ready", ""),
        ("course-graduate", ""),
        ("levels", "bronze"),
    ]


def test_a_badge_cannot_be_granted_twice_even_after_a_revocation() -> None:
    book = ledger(awarded={("welcome", "")})
    with pytest.raises(ValueError, match="welcome is already awarded"):
        book.grant(badge("welcome"), Tier("", 1, 0), RuleBook([]), NOW, "teacher", "again")


# --- snapshot and restore -----------------------------------------------------------------------------


def test_restoring_a_snapshot_drops_everything_done_after_it() -> None:
    welcome = badge("welcome", counting("login", 2), points=5)
    rules = RuleBook([welcome, levels([5], points=0)])
    book = ledger()
    observe(book, rules, facts("login"))
    saved = book.snapshot()
    before = (
        book.points,
        dict(book.records),
        set(book.awarded),
        set(book.held),
        set(book.dirty),
        list(book.earned),
    )
    assert observe(book, rules, facts("login"))  # awards welcome, then the level badge
    book.restore(saved)
    after = (book.points, book.records, book.awarded, book.held, book.dirty, book.earned)
    assert after == before


def test_restoring_a_snapshot_drops_an_approval_request() -> None:
    rules = RuleBook([badge("mentor", requires_approval=True)])
    book = ledger()
    saved = book.snapshot()
    observe(book, rules, facts("login"))
    book.restore(saved)
    assert (book.requested, book.earned, book.records) == (set(), [], {})


def test_a_snapshot_can_be_restored_more_than_once() -> None:
    rules = RuleBook([badge("welcome", points=5)])
    book = ledger()
    saved = book.snapshot()
    observe(book, rules, facts("login"))
    book.restore(saved)
    observe(book, rules, facts("login"))
    book.restore(saved)
    assert (book.points, book.awarded, book.records) == (0, set(), {})
