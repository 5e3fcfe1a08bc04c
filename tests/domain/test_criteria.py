from datetime import UTC, datetime

from bridge.domain.criteria import Criteria, Requirement
from bridge.domain.events import LearningEvent
from bridge.domain.rules import ActiveBadge, RuleBook


def event(kind: str, key: str = "k") -> LearningEvent:
    return LearningEvent("demo", key, kind, "7", datetime(2026, 11, 1, tzinfo=UTC))


def req(key: str, kind: str, target: int) -> Requirement:
    return Requirement(key=key, kinds=frozenset({kind}), target=target)


def test_count_advances_only_on_matching_kinds() -> None:
    criteria = Criteria(groups=((req("a", "login", 3),),))
    state = criteria.advance({}, event("login"))
    state = criteria.advance(state, event("purchase"))
    assert state == {"a": 1.0}
    assert criteria.progress(state).value == 1 and not criteria.progress(state).complete


def test_advance_leaves_the_given_state_untouched() -> None:
    criteria = Criteria(groups=((req("a", "login", 3),),))
    before = {"a": 1.0}
    criteria.advance(before, event("login"))
    assert before == {"a": 1.0}


def test_a_group_is_met_by_any_one_of_its_requirements() -> None:
    criteria = Criteria(groups=((req("a", "login", 5), req("b", "purchase", 2)),))
    state = criteria.advance(criteria.advance({}, event("purchase")), event("purchase"))
    progress = criteria.progress(state)
    assert progress.complete and progress.value == 2 and progress.target == 2


def test_every_group_must_be_met() -> None:
    criteria = Criteria(groups=((req("a", "login", 1),), (req("b", "course_completed", 1),)))
    after_login = criteria.advance({}, event("login"))
    assert not criteria.progress(after_login).complete
    assert criteria.progress(after_login).fraction == 0.5
    assert criteria.progress(criteria.advance(after_login, event("course_completed"))).complete


def test_progress_is_capped_at_the_target() -> None:
    criteria = Criteria(groups=((req("a", "login", 2),),))
    progress = criteria.progress({"a": 9.0})
    assert (progress.value, progress.target, progress.fraction) == (2.0, 2.0, 1.0)


def test_the_rule_book_finds_badges_by_event_kind() -> None:
    welcome = ActiveBadge("welcome", 1, 5, Criteria(groups=((req("a", "login", 1),),)))
    mixed = ActiveBadge("mixed", 1, 0, Criteria(groups=((req("a", "login", 2), req("b", "purchase", 1)),)))
    book = RuleBook([welcome, mixed])
    assert book.for_kind("login") == (welcome, mixed)
    assert book.for_kind("purchase") == (mixed,)
    assert book.for_kind("course_completed") == ()
