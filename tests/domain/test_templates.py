"""Badge templates (badge_templates/README.md): what a valid document gives, and how each mistake is named.

Every error names the file, the key and the reason, so that an author can find and fix it.
"""

import tomllib
from datetime import UTC, date, datetime
from typing import Any

import pytest

from bridge.domain.aggregates import MICRO, AllOf, Count, Distinct, EventFacts, Max, Streak, Sum, Window
from bridge.domain.criteria import Tier, Unit
from bridge.domain.events import LearningEvent
from bridge.domain.expressions import EventFilter
from bridge.domain.templates import (
    BadgeTemplate,
    TemplateError,
    check_prerequisites,
    level_tiers,
    parse_template,
)
from bridge.services.badges import shipped_templates_dir
from bridge.settings import Settings

KINDS = Settings().track_event_types
LEVELS = [100, 250, 500]
REQ = "criteria.groups[0].requirements[0]"

QUIZ_ACE = """
id = "quiz-ace"
name = "Quiz Ace"
description = "Scored 90 % or more in a quiz."
image = "quiz-ace.svg"
narrative = "Score at least 90 % in any quiz."
tags = ["quizzes"]
points = 10
prerequisites = ["welcome"]
requires_approval = true
expires_on = 2027-07-31

[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["quiz_graded", "assignment_graded"]
filter = 'score >= 0.9 and data["attempt"] == 1'
aggregate = "count"
target = 3
within_days = 30
unit = "quizzes aced"

[[criteria.groups.requirements]]
kinds = ["course_graded"]
aggregate = "max"
field = "score"
target = 0.95

[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["module_completed"]
aggregate = "all"
items = ["intro", "basics"]
per = "month"
"""


def parse(raw: dict[str, Any], source: str = "bad.toml") -> BadgeTemplate:
    return parse_template(raw, source, KINDS, LEVELS)


def template(**changes: Any) -> dict[str, Any]:
    """A valid template (one login), with the top-level keys given changed; None removes a key."""
    raw: dict[str, Any] = {
        "id": "welcome",
        "name": "Welcome",
        "description": "First sign-in.",
        "image": "welcome.svg",
        "criteria": {"groups": [{"requirements": [{"kinds": ["login"], "aggregate": "count", "target": 1}]}]},
    }
    raw.update(changes)
    return {key: value for key, value in raw.items() if value is not None}


def requirement(**keys: Any) -> dict[str, Any]:
    """A template of one requirement with exactly the given keys (kinds: login, unless given or None)."""
    keys = {"kinds": ["login"], **keys}
    return template(
        criteria={"groups": [{"requirements": [{k: v for k, v in keys.items() if v is not None}]}]}
    )


def tiered(tiers: Any, **keys: Any) -> dict[str, Any]:
    return {**requirement(**keys), "tiers": tiers}


# --- valid templates ----------------------------------------------------------------------------------


def test_a_valid_template_gives_every_key() -> None:
    parsed = parse(tomllib.loads(QUIZ_ACE), "quiz-ace.toml")
    assert (parsed.id, parsed.name, parsed.image) == ("quiz-ace", "Quiz Ace", "quiz-ace.svg")
    assert (parsed.description, parsed.narrative) == (
        "Scored 90 % or more in a quiz.",
        "Score at least 90 % in any quiz.",
    )
    assert (parsed.tags, parsed.points, parsed.prerequisites) == (("quizzes",), 10, ("welcome",))
    assert parsed.requires_approval is True
    assert (parsed.expires_after_days, parsed.expires_on) == (None, date(2027, 7, 31))
    assert parsed.tiers == ()
    assert parsed.document["expires_on"] == "2027-07-31"  # as JSON
    assert parsed.raw_criteria == tomllib.loads(QUIZ_ACE)["criteria"]


def test_a_valid_templates_criteria_are_its_groups_of_requirements() -> None:
    criteria = parse(tomllib.loads(QUIZ_ACE)).criteria
    (aced, graded), (path,) = criteria.groups
    assert aced.kinds == {"quiz_graded", "assignment_graded"}
    assert (aced.aggregate, aced.target, aced.unit) == (Count(3), 3, Unit("quizzes aced", "quizzes aced"))
    assert aced.filter == EventFilter('score >= 0.9 and data["attempt"] == 1')
    assert aced.window == Window(days=30)
    assert (graded.aggregate, graded.field, graded.target, graded.filter) == (Max(), "score", 0.95, None)
    assert path.aggregate == AllOf(frozenset({"intro", "basics"}))
    assert (path.field, path.target, path.window) == ("item", 2, Window(period="month"))
    assert criteria.kinds == {"quiz_graded", "assignment_graded", "course_graded", "module_completed"}


def test_a_unit_may_give_the_singular_and_the_plural() -> None:
    raw = requirement(target=1, unit={"one": "quiz aced", "other": "quizzes aced"})
    (group,) = parse(raw).criteria.groups
    assert group[0].unit == Unit("quiz aced", "quizzes aced")
    assert (group[0].unit.of(1), group[0].unit.of(0), group[0].unit.of(2)) == (
        "quiz aced",
        "quizzes aced",
        "quizzes aced",
    )


def test_optional_keys_have_defaults() -> None:
    parsed = parse(template())
    assert (parsed.narrative, parsed.tags, parsed.points, parsed.prerequisites) == ("", (), 0, ())
    assert (parsed.requires_approval, parsed.expires_after_days, parsed.expires_on) == (False, None, None)


def test_expiry_after_a_number_of_days() -> None:
    assert parse(template(expires_after_days=365)).expires_after_days == 365


def test_a_fixed_expiry_date_may_be_iso_text_as_in_json() -> None:
    parsed = parse(template(expires_on="2027-07-31"))
    assert parsed.expires_on == date(2027, 7, 31)


@pytest.mark.parametrize(
    ("keys", "aggregate", "field", "target"),
    [
        ({"target": 1}, Count(1), None, 1),
        ({"aggregate": "distinct", "field": "day", "target": 5}, Distinct(5), "day", 5),
        ({"aggregate": "sum", "field": "data.points", "target": 2.5}, Sum(2_500_000), "data.points", 2.5),
        ({"aggregate": "sum", "field": "score", "target": 10}, Sum(10 * MICRO), "score", 10),
        ({"aggregate": "max", "field": "score", "target": 0.9}, Max(), "score", 0.9),
        ({"aggregate": "streak", "target": 7}, Streak(), None, 7),
        ({"aggregate": "all", "items": ["a", 3]}, AllOf(frozenset({"a", 3})), "item", 2),
        ({"aggregate": "all", "items": ["a"], "field": "data.room"}, AllOf(frozenset({"a"})), "data.room", 1),
    ],
    ids=["count", "distinct", "sum", "sum-in-millionths", "max", "streak", "all", "all-of-a-field"],
)
def test_each_aggregate_parses_with_its_field_and_target(
    keys: dict[str, Any], aggregate: Any, field: str | None, target: float
) -> None:
    ((parsed,),) = parse(requirement(**keys)).criteria.groups
    assert (parsed.aggregate, parsed.field, parsed.target) == (aggregate, field, target)


def test_a_points_requirement_has_no_kinds() -> None:
    ((parsed,),) = parse(requirement(kinds=None, aggregate="points", target=50)).criteria.groups
    assert (parsed.on_points, parsed.kinds, parsed.target) == (True, frozenset(), 50)


def test_tiers_given_as_a_list_take_the_badges_points_unless_they_name_their_own() -> None:
    parsed = parse(
        {
            **tiered([{"name": "bronze", "target": 10, "points": 3}, {"name": "silver", "target": 25}]),
            "points": 7,
        }
    )
    assert parsed.tiers == (
        {"name": "bronze", "target": 10, "points": 3},
        {"name": "silver", "target": 25, "points": 7},
    )
    assert parsed.criteria.tiers == (Tier("bronze", 10, 3), Tier("silver", 25, 7))
    ((requirement_,),) = parsed.criteria.groups
    assert requirement_.target == 25  # the top tier's
    assert requirement_.aggregate == Count(25)


def test_tiers_from_the_level_setting_are_bronze_silver_and_gold_at_the_given_thresholds() -> None:
    parsed = parse(
        {**requirement(kinds=None, aggregate="points"), "tiers": "badge_level_threshold", "points": 2}
    )
    assert parsed.criteria.tiers == (Tier("bronze", 100, 2), Tier("silver", 250, 2), Tier("gold", 500, 2))
    assert parsed.criteria.groups[0][0].target == 500


def test_levels_beyond_gold_are_platinum_diamond_then_numbered() -> None:
    names = [tier["name"] for tier in level_tiers([1, 2, 3, 4, 5, 6, 7], 0)]
    assert names == ["bronze", "silver", "gold", "platinum", "diamond", "level-6", "level-7"]


# --- bad templates ------------------------------------------------------------------------------------

BAD = [
    # the document
    (template(colour="red"), "colour", "unknown key"),
    (template(id="Quiz-Ace"), "id", "lowercase"),
    (template(id="quiz ace"), "id", "lowercase"),
    (template(id="a" * 65), "id", "at most 64"),
    (template(name=""), "name", "missing"),
    (template(image=None), "image", "missing"),
    (template(points=-1), "points", ">= 0"),
    (template(tags="x"), "tags", "list of strings"),
    (template(prerequisites="welcome"), "prerequisites", "list of strings"),
    (template(requires_approval="yes"), "requires_approval", "true or false"),
    (template(expires_after_days=30, expires_on="2027-07-31"), "expires_on", "not both"),
    (template(expires_on="31/07/2027"), "expires_on", "expected a date"),
    (template(expires_on=20270731), "expires_on", "expected a date"),
    (template(expires_after_days=0), "expires_after_days", ">= 1"),
    # the criteria
    (template(criteria=None), "criteria", "missing"),
    (template(criteria={"groups": []}), "criteria.groups", "at least one group"),
    (template(criteria={}), "criteria.groups", "at least one group"),
    (template(criteria={"groups": [], "mode": "any"}), "criteria.mode", "unknown key"),
    (template(criteria={"groups": [{"requirements": []}]}), "criteria.groups[0].requirements", "empty group"),
    # a requirement
    (requirement(window=7), f"{REQ}.window", "unknown key"),
    (requirement(kinds=None), f"{REQ}.kinds", "non-empty list"),
    (requirement(kinds=["teleport"]), f"{REQ}.kinds", "unknown event kind 'teleport'"),
    (requirement(filter="score >="), f"{REQ}.filter", "syntax error"),
    (requirement(filter="scor >= 0.9"), f"{REQ}.filter", "unknown name 'scor'"),
    (requirement(filter="course > 1"), f"{REQ}.filter", "type mismatch"),
    (requirement(filter="data.points > 3"), f"{REQ}.filter", "read event data as data['name']"),
    (requirement(aggregate="median"), f"{REQ}.aggregate", "'median' is not one of"),
    (requirement(aggregate="sum", target=5), f"{REQ}.field", "the sum aggregate needs a field"),
    (requirement(aggregate="distinct", target=5), f"{REQ}.field", "the distinct aggregate needs a field"),
    (requirement(aggregate="max", target=0.9), f"{REQ}.field", "the max aggregate needs a field"),
    (requirement(aggregate="sum", field="points", target=5), f"{REQ}.field", "data.NAME, got 'points'"),
    (requirement(field="item", target=1), f"{REQ}.field", "not used with the count aggregate"),
    (requirement(aggregate="streak", field="day", target=7), f"{REQ}.field", "not used with the streak"),
    (requirement(aggregate="all"), f"{REQ}.items", "non-empty list"),
    (requirement(aggregate="all", items=[]), f"{REQ}.items", "non-empty list"),
    (requirement(aggregate="all", items=["a", "b"], target=2), f"{REQ}.target", "every item"),
    (requirement(items=["a"], target=1), f"{REQ}.items", "only used with the all aggregate"),
    (requirement(), f"{REQ}.target", ">= 1"),
    (requirement(target=0), f"{REQ}.target", ">= 1"),
    (requirement(target=2.5), f"{REQ}.target", "whole number"),
    (requirement(target=2.0), f"{REQ}.target", "whole number"),
    (requirement(aggregate="sum", field="score", target=0), f"{REQ}.target", "> 0"),
    (requirement(unit=""), f"{REQ}.unit", "non-empty string"),
    (requirement(unit=3), f"{REQ}.unit", "a string or a table"),
    (requirement(unit={"one": "quiz aced"}), f"{REQ}.unit.other", "non-empty string"),
    (requirement(unit={"one": "", "other": "quizzes aced"}), f"{REQ}.unit.one", "non-empty string"),
    (requirement(unit={"one": "a", "other": "b", "few": "c"}), f"{REQ}.unit.few", "unknown key"),
    # windows
    (requirement(target=3, within_days=7, per="week"), f"{REQ}.per", "not both"),
    (requirement(target=3, within_days=400), f"{REQ}.within_days", "at most 366"),
    (requirement(target=3, within_days=0), f"{REQ}.within_days", ">= 1"),
    (requirement(target=3, per="year"), f"{REQ}.per", "expected one of day, week, month"),
    (requirement(aggregate="streak", target=3, per="week"), REQ, "the streak aggregate takes no window"),
    # points
    (requirement(aggregate="points", target=100), f"{REQ}.kinds", "not used with the points aggregate"),
    (requirement(kinds=None, aggregate="points", filter="score > 0.5", target=1), f"{REQ}.filter", "points"),
    # tiers
    (
        {
            **template(criteria={"groups": [{"requirements": [{"kinds": ["login"]}]}] * 2}),
            "tiers": "badge_level_threshold",
        },
        "tiers",
        "one group of one requirement",
    ),
    (
        {
            **template(
                criteria={"groups": [{"requirements": [{"kinds": ["login"]}, {"kinds": ["purchase"]}]}]}
            ),
            "tiers": [{"name": "bronze", "target": 10}],
        },
        "tiers",
        "one group of one requirement",
    ),
    (tiered([{"name": "a", "target": 10}, {"name": "b", "target": 10}]), "tiers[1].target", "must increase"),
    (tiered([{"name": "a", "target": 10}, {"name": "b", "target": 5}]), "tiers[1].target", "must increase"),
    (
        tiered([{"name": "a", "target": 10}, {"name": "a", "target": 20}]),
        "tiers[1].name",
        "'a' is used twice",
    ),
    (tiered([{"name": "a", "target": 10}], target=10), f"{REQ}.target", "takes its targets from the tiers"),
    (tiered([{"name": "a", "target": 2.5}]), "tiers", "whole-number targets"),
    (tiered([{"name": "a", "target": 0}]), "tiers[0].target", "> 0"),
    (tiered([{"target": 10}]), "tiers[0].name", "missing"),
    (tiered([{"name": "a", "target": 1, "colour": "red"}]), "tiers[0].colour", "unknown key"),
    (tiered([]), "tiers", "expected a list of tiers"),
    (tiered("levels"), "tiers", "badge_level_threshold"),
    (tiered([{"name": "a", "target": 1}], aggregate="all", items=["x"]), f"{REQ}.target", "every item"),
]


@pytest.mark.parametrize(("raw", "key", "reason"), BAD, ids=[f"{key}: {reason}" for _, key, reason in BAD])
def test_a_bad_template_names_the_file_the_key_and_the_reason(
    raw: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        parse(raw, "bad.toml")
    assert (caught.value.source, caught.value.key) == ("bad.toml", key)
    assert reason in caught.value.reason
    assert str(caught.value) == f"bad.toml: {key}: {caught.value.reason}"


def test_an_id_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(TemplateError):
        parse(template(id="welcome\n"))


def test_a_sum_target_finer_than_a_millionth_is_met_by_a_sum_above_it() -> None:
    parsed = parse(requirement(aggregate="sum", field="score", target=0.1234564))
    above = LearningEvent("demo", "k", "login", "7", datetime(2026, 11, 2, tzinfo=UTC), score=0.123457)
    state = parsed.criteria.advance({}, EventFacts(above, UTC))
    assert state is not None
    assert parsed.criteria.progress(state).complete


# --- prerequisites ------------------------------------------------------------------------------------


def loaded(*badges: tuple[str, list[str]]) -> tuple[list[BadgeTemplate], dict[str, str]]:
    """Templates of the given (id, prerequisites), each from the file named after it."""
    templates = [
        parse(template(id=badge_id, prerequisites=needs), f"{badge_id}.toml") for badge_id, needs in badges
    ]
    return templates, {t.id: f"{t.id}.toml" for t in templates}


def errors_of(*badges: tuple[str, list[str]]) -> dict[str, tuple[str, str, str]]:
    return {
        error.source: (error.source, error.key, error.reason)
        for error in check_prerequisites(*loaded(*badges))
    }


def test_a_chain_of_prerequisites_that_all_load_is_valid() -> None:
    assert (
        errors_of(
            ("welcome", []), ("course-ready", ["welcome"]), ("course-graduate", ["course-ready", "welcome"])
        )
        == {}
    )


def test_an_unknown_prerequisite_is_an_error_of_the_badge_naming_it() -> None:
    assert errors_of(("graduate", ["ready"])) == {
        "graduate.toml": ("graduate.toml", "prerequisites", "'ready' is not a badge that loads")
    }


def test_a_cycle_of_two_is_an_error_of_each_member() -> None:
    found = errors_of(("a", ["b"]), ("b", ["a"]), ("c", []))
    assert set(found) == {"a.toml", "b.toml"}
    for source, key, reason in found.values():
        assert key == "prerequisites" and reason.startswith("cycle: "), source
    assert found["a.toml"][2] == "cycle: a -> b -> a"


def test_a_badge_that_needs_itself_is_a_cycle() -> None:
    assert errors_of(("narcissus", ["narcissus"])) == {
        "narcissus.toml": ("narcissus.toml", "prerequisites", "cycle: narcissus -> narcissus")
    }


def test_a_dependant_of_a_rejected_template_is_rejected_too() -> None:
    found = errors_of(("top", ["middle"]), ("middle", ["missing"]), ("beside", []))
    assert set(found) == {"top.toml", "middle.toml"}
    assert found["top.toml"] == ("top.toml", "prerequisites", "'middle' did not load")


def test_a_dependant_of_a_cycle_is_rejected_but_not_reported_as_part_of_it() -> None:
    found = errors_of(("fan", ["a"]), ("a", ["b"]), ("b", ["a"]))
    assert found["fan.toml"] == ("fan.toml", "prerequisites", "'a' did not load")
    assert found["a.toml"][2].startswith("cycle: ") and found["b.toml"][2].startswith("cycle: ")


# --- the shipped templates ----------------------------------------------------------------------------


def shipped() -> list[tuple[str, BadgeTemplate]]:
    directory = shipped_templates_dir()
    return [
        (path.name, parse_template(tomllib.loads(path.read_text()), path.name, KINDS, LEVELS))
        for path in sorted(directory.glob("*.toml"))
    ]


def test_every_shipped_template_parses_and_has_its_svg_image_beside_it() -> None:
    directory = shipped_templates_dir()
    templates = shipped()
    assert len(templates) >= 12
    for source, parsed in templates:
        assert source == f"{parsed.id}.toml"
        image = directory / parsed.image
        assert image.is_file(), source
        assert image.read_text().lstrip().startswith("<svg"), source


def test_the_shipped_templates_prerequisites_all_load() -> None:
    templates = shipped()
    assert check_prerequisites([t for _, t in templates], {t.id: source for source, t in templates}) == []


def test_the_shipped_level_badge_uses_the_level_thresholds() -> None:
    levels = dict(shipped())["rising-star.toml"]
    assert [(t.name, t.target) for t in levels.criteria.tiers] == [
        ("bronze", 100),
        ("silver", 250),
        ("gold", 500),
    ]
    assert levels.criteria.on_points
