"""Aggregates and windows: what a requirement measures over its matching events.

An aggregate's value depends only on the set of values added to it, never on their order; a window's
value is its best period so far (badge_templates/README.md, "Requirements" and "Progress, precisely").
"""

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.domain.aggregates import (
    HORIZON_DAYS,
    MICRO,
    Aggregate,
    AllOf,
    Count,
    Distinct,
    EventFacts,
    LateEvent,
    Max,
    Streak,
    Sum,
    Window,
)
from bridge.domain.criteria import Requirement
from bridge.domain.events import LearningEvent

SUNDAY = date(2026, 11, 1)
MONDAY = date(2026, 11, 2)
AUCKLAND = ZoneInfo("Pacific/Auckland")  # UTC+13 in November: 12:00 UTC on Sunday is 01:00 on Monday


def facts(on: date = MONDAY, at: time = time(12), zone: tzinfo = UTC, **fields: Any) -> EventFacts:
    """A module_completed event at ``at`` UTC on ``on``, seen from ``zone``."""
    event = LearningEvent("demo", "k", "module_completed", "7", datetime.combine(on, at, UTC), **fields)
    return EventFacts(event, zone)


def days_after(start: date, *offsets: int) -> list[EventFacts]:
    return [facts(start + timedelta(days=offset)) for offset in offsets]


def fold(aggregate: Aggregate, values: Iterable[Any]) -> Any:
    state = aggregate.empty()
    for value in values:
        state = aggregate.add(state, value)
    return state


def value_of(aggregate: Aggregate, values: Iterable[Any]) -> float:
    return aggregate.measure(fold(aggregate, values))


def requirement(
    aggregate: Aggregate, target: float, *, field: str | None = None, window: Window | None = None
) -> Requirement:
    return Requirement("r", frozenset({"module_completed"}), aggregate, target, field, None, window)


def measured(req: Requirement, events: Sequence[EventFacts]) -> float:
    state = None
    for one in events:
        state = req.advance(state, one)
    return req.measure(state, 0)


# --- count --------------------------------------------------------------------------------------------


def test_count_counts_every_matching_event_whatever_its_value() -> None:
    assert value_of(Count(10), [None, "a", "a"]) == 3


def test_count_stops_at_its_cap() -> None:
    assert value_of(Count(2), [None] * 5) == 2


# --- distinct -----------------------------------------------------------------------------------------


def test_distinct_counts_each_different_value_once() -> None:
    assert value_of(Distinct(10), ["intro", "basics", "intro"]) == 2


def test_distinct_keeps_at_most_cap_values() -> None:
    state = fold(Distinct(2), ["a", "b", "c", "d"])
    assert len(state) == 2 and Distinct(2).measure(state) == 2


def test_distinct_skips_a_missing_value() -> None:
    assert value_of(Distinct(10), ["a", None, None]) == 1


def test_distinct_skips_events_without_the_field() -> None:
    events = [facts(item="intro"), facts(), facts(item="basics"), facts(course="DL101")]
    assert measured(requirement(Distinct(10), 10, field="item"), events) == 2


def test_distinct_measures_a_data_field() -> None:
    events = [facts(data={"room": "a"}), facts(data={"room": "b"}), facts(data={"room": "a"}), facts()]
    assert measured(requirement(Distinct(10), 10, field="data.room"), events) == 2


def test_distinct_days_counts_days_of_activity_not_events() -> None:
    events = [facts(MONDAY, time(8)), facts(MONDAY, time(20)), facts(MONDAY + timedelta(days=3))]
    assert measured(requirement(Distinct(10), 10, field="day"), events) == 2


def test_distinct_weeks_counts_the_calendar_weeks_with_activity() -> None:
    events = [facts(MONDAY), facts(MONDAY + timedelta(days=6)), facts(MONDAY + timedelta(days=7))]
    assert measured(requirement(Distinct(10), 10, field="week"), events) == 2


# --- sum ----------------------------------------------------------------------------------------------


def test_sum_is_exact_in_millionths_ten_tenths_make_exactly_one() -> None:
    assert sum([0.1] * 10) != 1.0  # what adding floats would give
    assert value_of(Sum(5 * MICRO), [0.1] * 10) == 1.0


def test_sum_rounds_each_value_to_a_millionth_before_adding_it() -> None:
    assert value_of(Sum(MICRO), [0.0000004, 0.0000004, 0.0000006]) == 0.000001


def test_sum_skips_negative_values() -> None:
    assert value_of(Sum(10 * MICRO), [0.5, -0.3, 0.25]) == 0.75


def test_sum_skips_values_that_are_not_numbers() -> None:
    assert value_of(Sum(10 * MICRO), [1, "2", None, True, 0.5]) == 1.5


def test_sum_stops_at_its_cap() -> None:
    assert value_of(Sum(MICRO), [0.75, 0.75]) == 1.0


def test_sum_measures_a_data_field() -> None:
    events = [facts(data={"points": 3}), facts(data={"points": 4.5}), facts(data={"other": 9})]
    assert measured(requirement(Sum(100 * MICRO), 100, field="data.points"), events) == 7.5


def test_sum_skips_values_that_are_not_finite_numbers() -> None:
    assert value_of(Sum(10 * MICRO), [0.5, float("inf"), float("nan")]) == 0.5


# --- max ----------------------------------------------------------------------------------------------


def test_max_is_the_highest_value() -> None:
    assert value_of(Max(), [0.4, 0.95, 0.7]) == 0.95


def test_max_skips_values_that_are_not_numbers() -> None:
    assert value_of(Max(), ["1.0", None, False, 0.5]) == 0.5


def test_max_of_nothing_is_zero() -> None:
    assert value_of(Max(), []) == 0.0


def test_max_measures_the_best_score_of_the_matching_events() -> None:
    events = [facts(score=0.6), facts(), facts(score=0.9), facts(score=0.75)]
    assert measured(requirement(Max(), 0.95, field="score"), events) == 0.9


def test_max_skips_nan_whatever_the_order() -> None:
    assert {value_of(Max(), [0.5, float("nan")]), value_of(Max(), [float("nan"), 0.5])} == {0.5}


# --- streak -------------------------------------------------------------------------------------------


def test_streak_is_the_longest_run_of_consecutive_days() -> None:
    assert value_of(Streak(), [1, 2, 3, 5, 6, 9]) == 3


def test_streak_counts_a_day_once_however_many_events_it_has() -> None:
    assert value_of(Streak(), [1, 1, 2, 2, 2]) == 2


def test_streak_runs_merge_when_the_gap_between_them_is_filled_late() -> None:
    state = fold(Streak(), [1, 2, 4, 5, 3])
    assert Streak.runs(state) == [[1, 5]]
    assert Streak().measure(state) == 5


def test_a_streak_keeps_the_days_within_the_horizon_and_only_the_best_run_before_it() -> None:
    state = fold(Streak(), [1, 2, 3, 10, 11, 10 + HORIZON_DAYS, 11 + HORIZON_DAYS + 1])
    assert Streak.runs(state) == [[10, 11], [10 + HORIZON_DAYS, 10 + HORIZON_DAYS], [12 + HORIZON_DAYS] * 2]
    assert (state["best"], Streak().measure(state)) == (3, 3)
    assert Streak().measure(Streak().add(state, 11 + HORIZON_DAYS)) == 3  # joins two runs: 3 days


def test_a_day_before_the_streaks_horizon_is_a_late_event() -> None:
    state = fold(Streak(), [1, 100])
    with pytest.raises(LateEvent):
        Streak().add(state, 100 - HORIZON_DAYS - 1)
    assert Streak().measure(Streak().add(state, 100 - HORIZON_DAYS)) == 1


def test_a_streak_stored_as_a_list_of_runs_is_still_read() -> None:
    assert Streak().measure([[1, 3], [5, 5]]) == 3
    assert Streak().measure(Streak().add([[1, 3], [5, 5]], 4)) == 5


def test_streak_of_nothing_is_zero_and_of_one_day_is_one() -> None:
    assert (value_of(Streak(), []), value_of(Streak(), [7])) == (0, 1)


def test_streak_follows_local_calendar_days() -> None:
    streak = requirement(Streak(), 7)
    events = [facts(SUNDAY, time(23)), facts(MONDAY, time(1)), facts(MONDAY + timedelta(days=1), time(1))]
    assert measured(streak, events) == 3


# --- all ----------------------------------------------------------------------------------------------


def test_all_counts_only_the_listed_items_each_once() -> None:
    assert value_of(AllOf(frozenset({"intro", "basics", "project"})), ["intro", "other", "intro"]) == 1


def test_all_measures_the_item_field_of_events() -> None:
    path = requirement(AllOf(frozenset({"intro", "basics"})), 2, field="item")
    events = [facts(item="basics"), facts(item="extra"), facts(), facts(item="intro")]
    assert measured(path, events) == 2


# --- order and duplicates -----------------------------------------------------------------------------

ORDERED_CASES = [
    pytest.param(Count(3), ["a", "b", "c", "d", "e"], 3, id="count"),
    pytest.param(Distinct(3), ["a", "b", "a", "c", "d"], 3, id="distinct"),
    pytest.param(Sum(2 * MICRO), [0.1, 0.7, -1, 0.35, 0.9], 2.0, id="sum"),
    pytest.param(Sum(5 * MICRO), [0.1, 0.7, 0.333333, 0.35, 0.9], 2.383333, id="sum-uncapped"),
    pytest.param(Max(), [0.2, "x", 0.9, None, 0.4], 0.9, id="max"),
    pytest.param(Streak(), [10, 12, 11, 14, 11, 15], 3, id="streak"),
    pytest.param(AllOf(frozenset({"a", "b", "c"})), ["c", "z", "a", "c", "b"], 3, id="all"),
]


@pytest.mark.parametrize(("aggregate", "values", "expected"), ORDERED_CASES)
def test_every_order_of_the_same_values_gives_the_same_measure(
    aggregate: Aggregate, values: list[Any], expected: float
) -> None:
    measures = {value_of(aggregate, order) for order in itertools.permutations(values)}
    assert measures == {expected}


@pytest.mark.parametrize(
    ("aggregate", "values", "expected"),
    [case for case in ORDERED_CASES if case.id != "streak"],
)
def test_merging_states_measures_as_adding_all_their_values_to_one(
    aggregate: Aggregate, values: list[Any], expected: float
) -> None:
    halves = [fold(aggregate, values[:2]), fold(aggregate, values[2:])]
    assert aggregate.measure(aggregate.merge(halves)) == expected


def test_a_streak_cannot_be_merged_as_it_takes_no_window() -> None:
    with pytest.raises(TypeError):
        Streak().merge([[[1, 2]], [[4, 4]]])


# --- event facts --------------------------------------------------------------------------------------


def test_event_facts_give_the_local_date_in_the_configured_time_zone() -> None:
    sunday_noon_utc = facts(SUNDAY, time(12), AUCKLAND)
    assert sunday_noon_utc.local_date == MONDAY
    assert facts(SUNDAY, time(12), UTC).local_date == SUNDAY


def test_event_facts_name_a_week_by_its_monday() -> None:
    assert facts(MONDAY + timedelta(days=6)).week == MONDAY.toordinal()
    assert facts(SUNDAY).week == (MONDAY - timedelta(days=7)).toordinal()


def test_event_facts_skip_a_field_the_event_does_not_carry() -> None:
    bare = facts()
    assert (bare.field("score"), bare.field("item"), bare.field("data.points")) == (None, None, None)
    full = facts(score=0.5, item="quiz-1", data={"points": 4, "nested": {"a": 1}})
    assert (full.field("score"), full.field("item"), full.field("data.points")) == (0.5, "quiz-1", 4)
    assert full.field("data.nested") is None  # only strings and numbers are measured


# --- windows: calendar periods ------------------------------------------------------------------------


def test_per_day_takes_the_best_day() -> None:
    events = [facts(MONDAY, time(8)), facts(MONDAY, time(20)), facts(MONDAY + timedelta(days=1))]
    assert measured(requirement(Count(5), 5, window=Window(period="day")), events) == 2


def test_per_week_weeks_run_monday_to_sunday() -> None:
    weekly = requirement(Count(5), 5, window=Window(period="week"))
    assert measured(weekly, [facts(SUNDAY), facts(MONDAY)]) == 1  # Sunday ends the week before
    assert measured(weekly, [facts(MONDAY), facts(MONDAY + timedelta(days=6))]) == 2  # Monday to Sunday


def test_per_month_months_are_calendar_months() -> None:
    monthly = requirement(Count(5), 5, window=Window(period="month"))
    assert measured(monthly, [facts(date(2026, 10, 31)), facts(date(2026, 11, 1))]) == 1
    assert measured(monthly, [facts(date(2026, 11, 1)), facts(date(2026, 11, 30))]) == 2


def test_a_windows_value_is_its_best_period_so_far() -> None:
    weekly = requirement(Count(5), 5, window=Window(period="week"))
    busy_week = [facts(MONDAY), facts(MONDAY + timedelta(days=1)), facts(MONDAY + timedelta(days=2))]
    quiet_week_after = [facts(MONDAY + timedelta(days=7))]
    assert measured(weekly, busy_week + quiet_week_after) == 3
    assert measured(weekly, quiet_week_after + busy_week) == 3


def test_a_different_time_zone_moves_an_event_to_another_day() -> None:
    daily = requirement(Count(5), 5, window=Window(period="day"))
    for zone, expected in ((UTC, 2), (AUCKLAND, 1)):
        events = [facts(SUNDAY, time(9), zone), facts(SUNDAY, time(12), zone)]  # 22:00 and 01:00 in Auckland
        assert measured(daily, events) == expected, zone


def test_a_different_time_zone_moves_an_event_to_another_week() -> None:
    weekly = requirement(Count(5), 5, window=Window(period="week"))
    for zone, expected in ((UTC, 1), (AUCKLAND, 2)):
        events = [facts(SUNDAY, time(12), zone), facts(MONDAY, time(12), zone)]
        assert measured(weekly, events) == expected, zone


def test_windows_combine_with_distinct_sum_max_and_all() -> None:
    week = Window(period="week")
    next_week = MONDAY + timedelta(days=7)
    items = [facts(MONDAY, item="a"), facts(next_week, item="b"), facts(next_week, item="c")]
    assert measured(requirement(Distinct(5), 5, field="item", window=week), items) == 2
    scores = [facts(MONDAY, score=0.5), facts(MONDAY, score=0.25), facts(next_week, score=0.5)]
    assert measured(requirement(Sum(5 * MICRO), 5, field="score", window=week), scores) == 0.75
    assert measured(requirement(Max(), 1, field="score", window=week), scores) == 0.5
    path = AllOf(frozenset({"a", "b", "c"}))
    assert measured(requirement(path, 3, field="item", window=week), items) == 2


def test_a_window_leaves_its_state_as_it_is_once_a_period_reaches_the_cap() -> None:
    daily = requirement(Count(2), 2, window=Window(period="day"))
    state = None
    for one in [facts(MONDAY, time(8)), facts(MONDAY, time(9))]:
        state = daily.advance(state, one)
    assert daily.advance(state, facts(MONDAY, time(10))) is state


# --- windows: within N days ---------------------------------------------------------------------------


def test_a_window_keeps_the_periods_within_the_horizon_and_its_best_value() -> None:
    daily = requirement(Count(10), 10, window=Window(period="day"))
    first = days_after(MONDAY, 0, 0, 0)
    state = None
    for one in [*first, *days_after(MONDAY, 1, HORIZON_DAYS + 5)]:
        state = daily.advance(state, one)
    assert list(state["b"]) == [str(MONDAY.toordinal() + HORIZON_DAYS + 5)]
    assert daily.measure(state, 0) == 3


def test_an_event_before_a_windows_horizon_is_a_late_event() -> None:
    for window in (Window(period="day"), Window(period="week"), Window(days=7)):
        req = requirement(Count(10), 10, window=window)
        state = req.advance(None, days_after(MONDAY, 100)[0])
        with pytest.raises(LateEvent):
            req.advance(state, days_after(MONDAY, 100 - HORIZON_DAYS - 8)[0])
        assert req.measure(req.advance(state, days_after(MONDAY, 100 - HORIZON_DAYS + 1)[0]), 0) >= 1


def test_a_monthly_window_keeps_two_months_back() -> None:
    monthly = requirement(Count(10), 10, window=Window(period="month"))
    state = monthly.advance(None, facts(date(2026, 11, 2)))
    state = monthly.advance(state, facts(date(2026, 9, 30)))
    with pytest.raises(LateEvent):
        monthly.advance(state, facts(date(2026, 8, 31)))


def test_a_span_window_keeps_the_days_a_span_through_the_horizon_needs() -> None:
    sprint = requirement(Count(10), 10, window=Window(days=7))
    state = None
    for one in days_after(MONDAY, 0, 100 - HORIZON_DAYS - 3, 100):
        state = sprint.advance(state, one)
    # Day 100 - HORIZON_DAYS is taken, and a span through it reaches back to the day kept.
    assert sprint.measure(sprint.advance(state, days_after(MONDAY, 100 - HORIZON_DAYS)[0]), 0) == 2


def test_within_days_takes_the_best_span_of_n_consecutive_days() -> None:
    sprint = requirement(Count(10), 10, window=Window(days=7))
    assert measured(sprint, days_after(MONDAY, 0, 1, 2, 10, 20, 21)) == 3


def test_within_days_events_n_days_apart_do_not_combine() -> None:
    sprint = requirement(Count(10), 10, window=Window(days=7))
    assert measured(sprint, days_after(MONDAY, 0, 7)) == 1
    assert measured(sprint, days_after(MONDAY, 0, 6)) == 2


def test_within_days_spans_need_not_be_calendar_weeks() -> None:
    sprint = requirement(Count(10), 10, window=Window(days=7))
    assert measured(sprint, days_after(SUNDAY, 0, 1, 6)) == 3  # Sunday to Saturday


def test_within_days_does_not_depend_on_the_order_events_arrive_in() -> None:
    sprint = requirement(Count(10), 10, window=Window(days=7))
    events = days_after(MONDAY, 0, 1, 7, 8, 9, 20)  # best span: days 3 to 9 (or 7 to 13), with 3 events
    measures = {measured(sprint, list(order)) for order in itertools.permutations(events)}
    assert measures == {3}


def test_within_days_a_late_event_can_join_two_groups_into_one_span() -> None:
    sprint = requirement(Count(10), 10, window=Window(days=3))
    assert measured(sprint, days_after(MONDAY, 0, 2)) == 2
    assert measured(sprint, days_after(MONDAY, 0, 2, 1)) == 3


def test_within_days_combines_with_sum() -> None:
    scores = [facts(MONDAY + timedelta(days=d), score=s) for d, s in ((0, 0.5), (1, 0.5), (2, 0.75))]
    assert measured(requirement(Sum(5 * MICRO), 5, field="score", window=Window(days=2)), scores) == 1.25
