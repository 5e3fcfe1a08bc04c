"""Progress in a sentence a learner understands."""

from datetime import date

from bridge.domain.aggregates import AllOf, Count, Streak
from bridge.domain.criteria import Criteria, Requirement, retired
from bridge.domain.progress_text import describe

TODAY = date(2026, 11, 22).toordinal()


def one(requirement: Requirement) -> Criteria:
    return Criteria(groups=((requirement,),))


def test_a_count_says_how_many_of_how_many() -> None:
    modules = one(Requirement("k", frozenset({"module_completed"}), Count(5), 5.0))
    assert describe(modules.progress({"k": 3}), TODAY) == "3 of 5 modules completed"
    assert describe(modules.progress({"k": 5}), TODAY) == "Complete: 5 modules completed"


def test_a_streak_says_how_many_more_days_in_a_row() -> None:
    streak = one(Requirement("k", frozenset({"login"}), Streak(7), 7.0))
    state = {"runs": [[TODAY - 3, TODAY - 1]], "best": 0, "from": None}
    assert describe(streak.progress({"k": state}), TODAY) == (
        "3-day streak (last active yesterday): 4 more days in a row to earn it"
    )
    broken = {"runs": [[TODAY - 9, TODAY - 5]], "best": 0, "from": None}
    assert describe(streak.progress({"k": broken}), TODAY) == (
        "Longest streak so far 5 of 7 days: start a new one today"
    )


def test_a_set_of_items_names_what_is_still_to_do() -> None:
    items = one(
        Requirement("k", frozenset({"module_completed"}), AllOf(frozenset({"m1", "m2", "m3"})), 3.0, "item")
    )
    assert describe(items.progress({"k": ["m2"]}), TODAY) == "1 of 3 items; still to do: m1, m3"


def test_a_retired_state_says_how_far_it_went_without_its_detail() -> None:
    # Read by a badge that needs more of it than it kept (until its next event rebuilds it).
    streak = one(Requirement("k", frozenset({"login"}), Streak(7), 7.0))
    assert describe(streak.progress({"k": retired(5.0)}), TODAY) == (
        "Longest streak so far 5 of 7 days: start a new one today"
    )
    items = one(
        Requirement("k", frozenset({"module_completed"}), AllOf(frozenset({"m1", "m2", "m3"})), 3.0, "item")
    )
    assert describe(items.progress({"k": retired(2.0)}), TODAY) == "2 of 3 items"
