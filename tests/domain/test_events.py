from datetime import UTC, datetime

import pytest

from bridge.domain.events import LearningEvent

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def event(**changes: object) -> LearningEvent:
    fields: dict[str, object] = {
        "platform": "demo",
        "event_key": "k1",
        "kind": "login",
        "learner": "7",
        "occurred_at": NOW,
    }
    fields.update(changes)
    return LearningEvent(**fields)  # type: ignore[arg-type]


def test_a_complete_event_keeps_its_fields() -> None:
    made = event(course="DL101", item="quiz-1", score=0.9, data={"points": 9})
    assert (made.course, made.item, made.score, made.data["points"]) == ("DL101", "quiz-1", 0.9, 9)


@pytest.mark.parametrize("field", ["platform", "event_key", "kind", "learner"])
def test_identifying_fields_must_not_be_empty(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        event(**{field: ""})


def test_occurred_at_must_carry_a_timezone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        event(occurred_at=datetime(2026, 11, 1, 12, 0))


@pytest.mark.parametrize("score", [-0.01, 1.01, 90.0])
def test_score_is_a_fraction(score: float) -> None:
    with pytest.raises(ValueError, match="score"):
        event(score=score)


def test_events_are_immutable() -> None:
    with pytest.raises(AttributeError):
        event().kind = "other"  # type: ignore[misc]
