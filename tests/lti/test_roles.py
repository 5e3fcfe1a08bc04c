"""What a launch's LIS role URIs let its user do here: learner, instructor (of this course), administrator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.lti.roles import ADMINISTRATOR, INSTRUCTOR, LEARNER, bridge_roles

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lti"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"


def roles_sent_by(fixture: str) -> dict[str, list[str]]:
    """The role lists a platform sends for a learner, an instructor and a site administrator."""
    document = json.loads((FIXTURES / fixture).read_text(encoding="utf-8"))
    return document["_roles"]


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("learner", [LEARNER]),
        ("instructor", [INSTRUCTOR]),
        # Moodle sends a site administrator as an instructor of the course too.
        ("administrator", [INSTRUCTOR, ADMINISTRATOR]),
    ],
)
def test_moodle_role_lists(user: str, expected: list[str]) -> None:
    assert bridge_roles(roles_sent_by("moodle_resource_link_launch.json")[user]) == expected


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("learner", [LEARNER]),
        ("instructor", [INSTRUCTOR]),
        # A Canvas account administrator has no course role: administrator only.
        ("administrator", [ADMINISTRATOR]),
    ],
)
def test_canvas_role_lists(user: str, expected: list[str]) -> None:
    assert bridge_roles(roles_sent_by("canvas_resource_link_launch.json")[user]) == expected


def test_institution_roles_say_nothing_about_this_course() -> None:
    # Canvas sends institution/person#Instructor for every teacher, whatever course they launch from.
    assert bridge_roles([f"{LIS}institution/person#Instructor"]) == []
    assert bridge_roles([f"{LIS}institution/person#Student"]) == []
    assert bridge_roles([f"{LIS}institution/person#Instructor", f"{LIS}membership#Learner"]) == [LEARNER]
    assert bridge_roles([f"{LIS}system/person#User"]) == []


def test_an_institution_or_system_administrator_administers_the_tool() -> None:
    assert bridge_roles([f"{LIS}institution/person#Administrator"]) == [ADMINISTRATOR]
    assert bridge_roles([f"{LIS}system/person#Administrator"]) == [ADMINISTRATOR]
    assert bridge_roles([f"{LIS}system/person#SysAdmin"]) == [ADMINISTRATOR]


def test_a_teaching_assistant_and_other_teaching_sub_roles_are_instructors() -> None:
    assert bridge_roles([f"{LIS}membership/Instructor#TeachingAssistant"]) == [INSTRUCTOR]
    assert bridge_roles([f"{LIS}membership#ContentDeveloper"]) == [INSTRUCTOR]
    assert bridge_roles([f"{LIS}membership#Administrator"]) == [INSTRUCTOR]
    assert bridge_roles([f"{LIS}membership#Manager"]) == [INSTRUCTOR]


def test_a_learner_sub_role_is_a_learner() -> None:
    assert bridge_roles([f"{LIS}membership/Learner#NonCreditLearner"]) == [LEARNER]


def test_the_deprecated_short_forms_are_understood() -> None:
    assert bridge_roles(["Learner"]) == [LEARNER]
    assert bridge_roles(["Instructor"]) == [INSTRUCTOR]


def test_roles_outside_the_lis_vocabulary_give_nothing() -> None:
    assert bridge_roles([f"{LIS}membership#Mentor", "Mentor", "https://example.org/roles#Instructor"]) == []
    assert bridge_roles([]) == []


def test_entries_that_are_not_strings_are_ignored() -> None:
    sent = [None, 7, {"role": "Instructor"}, ["Instructor"], f"{LIS}membership#Learner"]
    assert bridge_roles(sent) == [LEARNER]  # type: ignore[list-item]


def test_the_order_is_fixed_and_each_role_appears_once() -> None:
    sent = [
        f"{LIS}system/person#Administrator",
        f"{LIS}membership#Instructor",
        f"{LIS}membership/Instructor#TeachingAssistant",
        f"{LIS}membership#Learner",
        "Learner",
    ]
    assert bridge_roles(sent) == [LEARNER, INSTRUCTOR, ADMINISTRATOR]
    assert bridge_roles(reversed(sent)) == [LEARNER, INSTRUCTOR, ADMINISTRATOR]
