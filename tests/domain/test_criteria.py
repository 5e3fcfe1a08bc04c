"""Criteria: requirements in groups, every group met (AND) by any one of its requirements (OR).

badge_templates/README.md, "Progress, precisely": a requirement's value is capped at its target; a
group's best requirement has the highest value / target (the first on a tie); the badge's value and
target are the sums over the groups; a tiered badge's target is its top tier's.
"""

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.domain.aggregates import Count, EventFacts
from bridge.domain.criteria import Criteria, Part, Progress, Requirement, Tier
from bridge.domain.events import LearningEvent
from bridge.domain.expressions import EventFilter

BRONZE, SILVER, GOLD = Tier("bronze", 10, 5), Tier("silver", 25, 10), Tier("gold", 50, 20)


def facts(kind: str, **fields: Any) -> EventFacts:
    return EventFacts(LearningEvent("demo", "k", kind, "7", datetime(2026, 11, 2, tzinfo=UTC), **fields), UTC)


def counting(key: str, kind: str, target: int, filter: str | None = None) -> Requirement:
    """``target`` events of ``kind`` (that pass ``filter``)."""
    return Requirement(
        key, frozenset({kind}), Count(target), float(target), filter=EventFilter(filter) if filter else None
    )


def on_points(key: str, target: int) -> Requirement:
    return Requirement(key, frozenset(), None, float(target))


def feed(criteria: Criteria, *kinds: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for kind in kinds:
        state = criteria.advance(state, facts(kind)) or state
    return state


# --- advancing the state ------------------------------------------------------------------------------


def test_a_matching_event_advances_its_requirement() -> None:
    criteria = Criteria(groups=((counting("a", "login", 3), counting("b", "purchase", 3)),))
    assert criteria.advance({}, facts("login")) == {"a": 1}
    assert criteria.advance({"a": 1}, facts("purchase")) == {"a": 1, "b": 1}


def test_an_event_of_a_kind_no_requirement_listens_to_changes_nothing() -> None:
    criteria = Criteria(groups=((counting("a", "login", 3),),))
    assert criteria.advance({"a": 1}, facts("purchase")) is None


def test_an_event_the_filter_rejects_changes_nothing() -> None:
    criteria = Criteria(groups=((counting("a", "quiz_graded", 1, filter="score >= 0.9"),),))
    assert criteria.advance({}, facts("quiz_graded", score=0.5)) is None
    assert criteria.advance({}, facts("quiz_graded")) is None  # no score: cannot be evaluated
    assert criteria.advance({}, facts("quiz_graded", score=0.95)) == {"a": 1}


def test_an_event_past_the_target_changes_nothing() -> None:
    criteria = Criteria(groups=((counting("a", "login", 2),),))
    assert criteria.advance({"a": 2}, facts("login")) is None


def test_advance_leaves_the_given_state_untouched() -> None:
    criteria = Criteria(groups=((counting("a", "login", 3),), (counting("b", "login", 3),)))
    before = {"a": 1, "b": 2}
    after = criteria.advance(before, facts("login"))
    assert before == {"a": 1, "b": 2}
    assert after == {"a": 2, "b": 3}


def test_an_event_only_for_a_points_requirement_changes_nothing() -> None:
    criteria = Criteria(groups=((on_points("p", 100),),))
    assert criteria.advance({}, facts("login")) is None


def test_criteria_listen_to_the_kinds_of_all_their_requirements() -> None:
    criteria = Criteria(
        groups=((counting("a", "login", 1), counting("b", "purchase", 1)), (on_points("p", 5),))
    )
    assert criteria.kinds == {"login", "purchase"}
    assert criteria.on_points
    assert not Criteria(groups=((counting("a", "login", 1),),)).on_points


# --- progress -----------------------------------------------------------------------------------------


def test_a_requirements_value_is_capped_at_its_target() -> None:
    progress = Criteria(groups=((counting("a", "login", 2),),)).progress({"a": 9})
    assert (progress.value, progress.target, progress.fraction, progress.complete) == (2, 2, 1.0, True)


def test_no_events_is_no_progress() -> None:
    progress = Criteria(groups=((counting("a", "login", 4),),)).progress({})
    assert (progress.value, progress.target, progress.fraction, progress.complete) == (0, 4, 0.0, False)


def test_a_group_is_met_by_any_one_of_its_requirements() -> None:
    criteria = Criteria(groups=((counting("a", "login", 5), counting("b", "purchase", 2)),))
    progress = criteria.progress(feed(criteria, "purchase", "purchase"))
    assert progress.complete
    assert (progress.value, progress.target) == (2, 2)
    assert progress.parts[0].requirement.key == "b"


def test_a_groups_best_requirement_is_the_one_furthest_towards_its_target_not_the_largest_value() -> None:
    criteria = Criteria(groups=((counting("a", "login", 10), counting("b", "purchase", 2)),))
    progress = criteria.progress({"a": 3, "b": 1})  # 3 of 10 against 1 of 2
    assert progress.parts[0].requirement.key == "b"
    assert (progress.value, progress.target, progress.fraction) == (1, 2, 0.5)


def test_on_a_tie_the_first_requirement_of_the_group_is_the_best() -> None:
    criteria = Criteria(groups=((counting("a", "login", 4), counting("b", "purchase", 2)),))
    progress = criteria.progress({"a": 2, "b": 1})  # both half way
    assert progress.parts[0].requirement.key == "a"
    assert (progress.value, progress.target) == (2, 4)


def test_every_group_must_be_met() -> None:
    criteria = Criteria(groups=((counting("a", "login", 1),), (counting("b", "course_completed", 1),)))
    halfway = criteria.progress(feed(criteria, "login"))
    assert not halfway.complete
    assert criteria.progress(feed(criteria, "login", "course_completed")).complete


def test_the_badges_value_and_target_are_the_sums_over_the_groups_best_requirements() -> None:
    criteria = Criteria(
        groups=(
            (counting("a", "login", 4), counting("b", "purchase", 10)),
            (counting("c", "course_completed", 2),),
        )
    )
    progress = criteria.progress({"a": 3, "b": 1, "c": 5})  # best of the first group: a, 3 of 4
    assert (progress.value, progress.target) == (3 + 2, 4 + 2)
    assert progress.fraction == 5 / 6
    assert not progress.complete
    assert [part.requirement.key for part in progress.parts] == ["a", "c"]
    assert [part.met for part in progress.parts] == [False, True]


def test_a_part_carries_its_requirements_state() -> None:
    requirement = counting("a", "login", 4)
    (part,) = Criteria(groups=((requirement,),)).progress({"a": 3}).parts
    assert part == Part(requirement, 3, 3)


def test_the_fraction_never_exceeds_one() -> None:
    assert Progress(value=5, target=4, complete=True, parts=()).fraction == 1.0
    assert Progress(value=1, target=4, complete=False, parts=()).fraction == 0.25


# --- points -------------------------------------------------------------------------------------------


def test_a_points_requirement_measures_the_points_passed_in() -> None:
    criteria = Criteria(groups=((on_points("p", 100),),))
    assert criteria.progress({}, points=40).value == 40
    assert not criteria.progress({}, points=40).complete
    reached = criteria.progress({}, points=150)
    assert (reached.value, reached.complete) == (100, True)


def test_points_default_to_none_earned() -> None:
    assert Criteria(groups=((on_points("p", 100),),)).progress({}).value == 0


# --- tiers --------------------------------------------------------------------------------------------


def tiered(requirement: Requirement | None = None) -> Criteria:
    return Criteria(
        groups=((requirement or counting("a", "assignment_graded", 50),),), tiers=(BRONZE, SILVER, GOLD)
    )


def test_a_tiered_badge_before_its_first_tier_has_no_tier_and_the_first_next() -> None:
    progress = tiered().progress({"a": 3})
    assert (progress.tier, progress.reached, progress.next_tier) == ("", (), BRONZE)
    assert (progress.value, progress.target, progress.complete) == (3, 50, False)


def test_a_tiered_badges_tier_is_the_highest_reached() -> None:
    progress = tiered().progress({"a": 30})
    assert (progress.tier, progress.reached, progress.next_tier) == ("silver", (BRONZE, SILVER), GOLD)
    assert (progress.value, progress.target) == (30, 50)


def test_a_tier_is_reached_exactly_at_its_target() -> None:
    assert tiered().progress({"a": 10}).tier == "bronze"
    assert tiered().progress({"a": 9}).tier == ""


def test_a_tiered_badge_is_complete_only_at_its_top_tier() -> None:
    assert not tiered().progress({"a": 49}).complete
    top = tiered().progress({"a": 50})
    assert (top.complete, top.tier, top.next_tier, top.reached) == (
        True,
        "gold",
        None,
        (BRONZE, SILVER, GOLD),
    )


def test_a_tiered_points_badge_follows_the_points_and_caps_its_value_at_the_top_tier() -> None:
    levels = tiered(on_points("p", 50))
    progress = levels.progress({}, points=70)
    assert (progress.tier, progress.value, progress.target, progress.complete) == ("gold", 50, 50, True)
    assert levels.progress({}, points=12).tier == "bronze"


# --- standing: progress in brief, for the evaluator -----------------------------------------------------


@given(a=st.integers(0, 4), b=st.integers(0, 4), c=st.integers(0, 4), points=st.integers(0, 60))
def test_standing_and_full_progress_say_what_progress_says(a: int, b: int, c: int, points: int) -> None:
    shapes = [
        Criteria(groups=((counting("a", "login", 3),),)),
        Criteria(
            groups=((counting("a", "login", 3), counting("b", "purchase", 2)), (counting("c", "post", 4),))
        ),
        Criteria(groups=((counting("a", "login", 3),), (on_points("p", 30),))),
        tiered(counting("a", "assignment_graded", 4)),
        tiered(on_points("p", 50)),
    ]
    state = {key: value for key, value in (("a", a), ("b", b), ("c", c)) if value}
    for criteria in shapes:
        progress = criteria.progress(state, points)
        assert criteria.standing(state, points) == (progress.complete, progress.tier, progress.saturated)
        if progress.saturated:  # what a saturated record shows without its state
            without_states = progress._replace(parts=tuple(p._replace(state=None) for p in progress.parts))
            assert criteria.full_progress() == without_states
