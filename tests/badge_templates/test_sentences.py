"""The progress sentences of every shipped badge template, pinned: what a learner reads under each badge
on their page, at the start, after one step, one step short, done, and at every tier.

Each sentence must also read correctly: the noun agrees with its number ("0 of 1 quiz aced", "3 of 5
quizzes aced", "1 more assignment graded"), no word is said twice, and no fraction is over its whole.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from bridge.domain.aggregates import AllOf, Streak
from bridge.domain.criteria import Requirement, retired
from bridge.domain.progress_text import describe
from bridge.domain.templates import BadgeTemplate
from bridge.services.badges import load_template_files, shipped_templates_dir
from bridge.settings import Settings
from tests.grammar import grammar_problems

TODAY = date(2026, 11, 23).toordinal()


def shipped() -> list[BadgeTemplate]:
    defaults = Settings()
    loaded = load_template_files(
        shipped_templates_dir(), defaults.track_event_types, defaults.badge_level_threshold
    )
    assert loaded.errors == []
    return loaded.templates


def _state(requirement: Requirement, value: float) -> Any:
    """A learner's state of ``requirement`` measuring ``value``, shaped as the evaluator keeps it."""
    aggregate = requirement.aggregate
    if isinstance(aggregate, AllOf):
        return sorted(aggregate.items)[: int(value)]
    if isinstance(aggregate, Streak) and value:  # a run that is still going: active yesterday
        return {"runs": [[TODAY - int(value), TODAY - 1]], "best": 0, "from": None}
    return retired(float(value))


def _steps(template: BadgeTemplate) -> list[float]:
    """The values worth a sentence: none, one, one short of each target, each target."""
    targets = {tier.target for tier in template.criteria.tiers} or {
        requirement.target for group in template.criteria.groups for requirement in group
    }
    steps = {0.0, 1.0}
    for target in targets:
        steps |= {max(target - 1, 0.0), target}
    return sorted(steps)


def sentences_of(template: BadgeTemplate) -> list[str]:
    sentences: list[str] = []
    for value in _steps(template):
        states = {
            requirement.key: _state(requirement, min(value, requirement.target))
            for group in template.criteria.groups
            for requirement in group
        }
        sentence = describe(template.criteria.progress(states, points=value), TODAY)
        if sentence not in sentences:
            sentences.append(sentence)
    return sentences


PINNED: dict[str, list[str]] = {
    "all-rounder": [
        "0 of 3 requirements met; next: 0 of 1 quiz with 80 % or more",
        "1 of 3 requirements met; next: 1 of 3 assignments graded",
        "1 of 3 requirements met; next: 2 of 3 assignments graded",
        "Complete: all 3 requirements met",
    ],
    "assignment-achiever": [
        "0 of 10 assignments graded for bronze",
        "1 of 10 assignments graded for bronze",
        "9 of 10 assignments graded for bronze",
        "Bronze reached; 15 more assignments graded for silver",
        "Bronze reached; 1 more assignment graded for silver",
        "Silver reached; 25 more assignments graded for gold",
        "Silver reached; 1 more assignment graded for gold",
        "Gold reached: 50 assignments graded",
    ],
    "course-graduate": [
        "0 of 1 DL101 course completion",
        "Complete: 1 DL101 course completion",
    ],
    "course-ready": [
        "0 of 8 DL101 modules completed; still to do: module-0, module-1, module-2, module-3, module-4, ...",
        "1 of 8 DL101 modules completed; still to do: module-1, module-2, module-3, module-4, module-5, ...",
        "7 of 8 DL101 modules completed; still to do: module-7",
        "Complete: 8 DL101 modules completed",
    ],
    "golden-fit": [
        "0 of 100 days of activity",
        "1 of 100 days of activity",
        "99 of 100 days of activity",
        "Complete: 100 days of activity",
    ],
    "high-flyer": [
        "0 of 10 full marks earned in total",
        "1 of 10 full marks earned in total",
        "9 of 10 full marks earned in total",
        "Complete: 10 full marks earned",
    ],
    "honours": [
        "Best course grade so far: 0 of 0.95",
        "Complete: best course grade of 0.95 or more",
    ],
    "hundred-purchases": [
        "0 of 100 purchases",
        "1 of 100 purchases",
        "99 of 100 purchases",
        "Complete: 100 purchases",
    ],
    "level-up": [
        "0 of 1 course completed",
        "Complete: 1 course completed",
    ],
    "module-explorer": [
        "0 of 5 modules completed",
        "1 of 5 modules completed",
        "4 of 5 modules completed",
        "Complete: 5 modules completed",
    ],
    "on-a-roll": [
        "0 of 7 days in a row: start today",
        "1-day streak (last active yesterday): 6 more days in a row to earn it",
        "6-day streak (last active yesterday): 1 more day in a row to earn it",
        "Complete: a 7-day streak",
    ],
    "pathfinder": [
        "0 of 4 modules of the path completed; still to do: basics, intro, practice, project",
        "1 of 4 modules of the path completed; still to do: intro, practice, project",
        "3 of 4 modules of the path completed; still to do: project",
        "Complete: 4 modules of the path completed",
    ],
    "peer-mentor": [
        "0 of 10 forum activities",
        "1 of 10 forum activities",
        "9 of 10 forum activities",
        "Complete: 10 forum activities",
    ],
    "quiz-ace": [
        "0 of 1 quiz aced",
        "Complete: 1 quiz aced",
    ],
    "rising-star": [
        "0 of 100 badge points for bronze",
        "1 of 100 badge points for bronze",
        "99 of 100 badge points for bronze",
        "Bronze reached; 150 more badge points for silver",
        "Bronze reached; 1 more badge point for silver",
        "Silver reached; 250 more badge points for gold",
        "Silver reached; 1 more badge point for gold",
        "Gold reached: 500 badge points",
    ],
    "safety-certified": [
        "0 of 1 HS100 pass",
        "Complete: 1 HS100 pass",
    ],
    "sprint": [
        "0 of 5 modules completed within 7 days (best so far)",
        "1 of 5 modules completed within 7 days (best so far)",
        "4 of 5 modules completed within 7 days (best so far)",
        "Complete: 5 modules completed within 7 days",
    ],
    "steady-submitter": [
        "0 of 10 assignments graded",
        "1 of 10 assignments graded",
        "9 of 10 assignments graded",
        "Complete: 10 assignments graded",
    ],
    "weekly-challenge": [
        "0 of 3 activities or modules in one week (best so far)",
        "1 of 3 activities or modules in one week (best so far)",
        "2 of 3 activities or modules in one week (best so far)",
        "Complete: 3 activities or modules in one week",
    ],
    "welcome": [
        "0 of 1 sign-in",
        "Complete: 1 sign-in",
    ],
}


@pytest.mark.parametrize("template", shipped(), ids=lambda template: template.id)
def test_the_sentences_of_a_shipped_template_are_pinned(template: BadgeTemplate) -> None:
    assert sentences_of(template) == PINNED[template.id]


@pytest.mark.parametrize("template", shipped(), ids=lambda template: template.id)
def test_every_sentence_of_a_shipped_template_reads_correctly(template: BadgeTemplate) -> None:
    for sentence in sentences_of(template):
        assert grammar_problems(sentence) == [], sentence


def test_every_shipped_template_is_pinned() -> None:
    assert sorted(PINNED) == sorted(template.id for template in shipped())
