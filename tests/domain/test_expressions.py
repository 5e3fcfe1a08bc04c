"""Filter expressions: compiled and type-checked once, evaluated per event without ever raising."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.domain.aggregates import EventFacts
from bridge.domain.events import LearningEvent
from bridge.domain.expressions import FILTER_NAMES, EventFilter, ExpressionError


def context(**fields: Any) -> Any:
    """The filter context of a quiz_graded event with the given fields."""
    event = LearningEvent("demo", "k", "quiz_graded", "7", datetime(2026, 11, 2, tzinfo=UTC), **fields)
    return EventFacts(event, UTC).context


def test_a_filter_matches_an_event_that_satisfies_it() -> None:
    ace = EventFilter('course == "DL101" and score >= 0.9')
    assert ace.matches(context(course="DL101", score=0.95))


def test_a_filter_does_not_match_an_event_that_does_not_satisfy_it() -> None:
    ace = EventFilter('course == "DL101" and score >= 0.9')
    assert not ace.matches(context(course="DL101", score=0.85))
    assert not ace.matches(context(course="HS100", score=0.95))


def test_an_event_without_a_score_does_not_match_a_score_comparison() -> None:
    assert not EventFilter("score >= 0.9").matches(context())


def test_a_filter_reads_the_events_data_by_name_in_brackets() -> None:
    generous = EventFilter("data['points'] > 3")
    assert generous.matches(context(data={"points": 4}))
    assert not generous.matches(context(data={"points": 2}))


def test_an_event_without_the_data_field_or_with_a_value_of_another_type_does_not_match() -> None:
    generous = EventFilter("data['points'] > 3")
    assert not generous.matches(context(data={}))
    assert not generous.matches(context(data={"points": "many"}))


def test_a_remembered_data_result_is_told_apart_by_every_key_read_and_its_type() -> None:
    forum = EventFilter('data["activity"] == "forum" and data[\'posts\'] >= 2')
    answers = [
        forum.matches(context(data=data))
        for data in (
            {"activity": "forum", "posts": 2},
            {"activity": "forum", "posts": 1},
            {"activity": "quiz", "posts": 2},
            {"activity": "forum", "posts": 2, "other": [1]},  # a key not read: same answer
            {"activity": "forum"},
            {"activity": "forum", "posts": 2},
        )
    ]
    assert answers == [True, False, False, True, False, True]


def test_a_remembered_data_result_tells_true_from_one() -> None:
    single = EventFilter("data['posts'] == 1")
    assert [single.matches(context(data={"posts": posts})) for posts in (1, True, 1.0)] == [True, False, True]


def test_data_values_that_cannot_be_remembered_are_evaluated_every_time() -> None:
    tagged = EventFilter('data["tags"] == ["a", "b"]')
    assert [tagged.matches(context(data={"tags": tags})) for tags in (["a", "b"], ["a"], ["a", "b"])] == [
        True,
        False,
        True,
    ]


def test_data_used_other_than_by_a_quoted_key_is_evaluated_whole() -> None:
    keyed = EventFilter('"forum" in data')
    assert keyed.matches(context(data={"forum": 1}))
    assert not keyed.matches(context(data={"quiz": 1}))


def test_filters_know_every_event_field_and_the_string_operators() -> None:
    assert FILTER_NAMES == ("kind", "course", "item", "platform", "learner", "score", "data")
    assert EventFilter('kind in ["quiz_graded", "assignment_graded"]').matches(context())
    assert EventFilter('item =~ "quiz-[0-9]+"').matches(context(item="quiz-12"))
    assert EventFilter('platform == "demo" and learner == "7"').matches(context())
    assert EventFilter("not (score < 0.5)").matches(context(score=0.5))


def test_an_unknown_name_is_an_error_naming_it_and_the_known_names() -> None:
    with pytest.raises(ExpressionError) as caught:
        EventFilter("scor >= 0.9")
    assert "unknown name 'scor'" in str(caught.value)
    assert "kind, course, item, platform, learner, score, data" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("score >=", "syntax error (incomplete expression)"),
        ("score >= >= 0.9", "syntax error at '>='"),
    ],
)
def test_a_syntax_error_is_an_error_saying_where(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        EventFilter(text)


def test_reading_data_with_a_dot_is_an_error_that_shows_the_bracket_form() -> None:
    with pytest.raises(ExpressionError, match=re.escape("read event data as data['name'], not data.name")):
        EventFilter("data.points > 3")


def test_comparing_a_string_with_a_number_is_an_error_when_the_filter_is_compiled() -> None:
    with pytest.raises(ExpressionError, match="type mismatch"):
        EventFilter("course > 1")


def test_an_empty_expression_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="empty expression"):
        EventFilter("  ")


def test_python_is_never_evaluated() -> None:
    with pytest.raises(ExpressionError, match="unknown name '__import__'"):
        EventFilter('__import__("os")')


def test_filters_with_the_same_text_are_equal() -> None:
    assert EventFilter("score >= 0.9") == EventFilter("score >= 0.9")
    assert hash(EventFilter("score >= 0.9")) == hash(EventFilter("score >= 0.9"))
    assert EventFilter("score >= 0.9") != EventFilter("score > 0.9")
