"""Who and where a launch is, in the ids the platform's webhooks and REST API use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.lti_identity import CONTEXT, CUSTOM, LaunchIdentity, lti_identity

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lti"


def launch(name: str, **changes: Any) -> dict[str, Any]:
    """The claims of a fixture launch; a change whose value is None removes the claim."""
    claims = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    for claim, value in changes.items():
        if value is None:
            claims.pop(claim, None)
        else:
            claims[claim] = value
    return claims


def canvas_launch(custom: dict[str, Any] | None) -> dict[str, Any]:
    return launch("canvas_resource_link_launch.json", **{CUSTOM: custom})


def test_moodle_names_the_user_by_sub_and_the_course_by_context_id() -> None:
    claims = launch("moodle_resource_link_launch.json")
    assert lti_identity("moodle", claims) == LaunchIdentity(user_id="105", course_id="2", missing=None)


def test_a_moodle_deep_linking_launch_is_read_the_same_way() -> None:
    claims = launch("moodle_deep_linking_launch.json")
    identity = lti_identity("moodle", claims)
    assert identity.user_id == claims["sub"]
    assert identity.course_id == claims[CONTEXT]["id"]


def test_moodle_without_a_context_has_no_course() -> None:
    claims = launch("moodle_resource_link_launch.json", **{CONTEXT: None})
    assert lti_identity("moodle", claims) == LaunchIdentity("105", None)


def test_canvas_names_the_user_and_course_by_its_custom_fields_not_the_lti_ids() -> None:
    claims = launch("canvas_resource_link_launch.json")
    identity = lti_identity("canvas", claims)
    assert identity == LaunchIdentity(user_id="2001", course_id="3", missing=None)
    assert identity.user_id != claims["sub"] and identity.course_id != claims[CONTEXT]["id"]


def test_canvas_custom_fields_may_be_numbers_or_strings() -> None:
    assert lti_identity("canvas", canvas_launch({"canvas_user_id": 2001, "canvas_course_id": 3})) == (
        LaunchIdentity("2001", "3")
    )
    assert lti_identity("canvas", canvas_launch({"canvas_user_id": " 2001 ", "canvas_course_id": "3"})) == (
        LaunchIdentity("2001", "3")
    )


def test_canvas_falls_back_to_the_context_id_for_the_course() -> None:
    claims = canvas_launch({"canvas_user_id": "2001"})
    assert lti_identity("canvas", claims) == LaunchIdentity("2001", claims[CONTEXT]["id"])
    unexpanded = canvas_launch({"canvas_user_id": "2001", "canvas_course_id": "$Canvas.course.id"})
    assert lti_identity("canvas", unexpanded).course_id == claims[CONTEXT]["id"]


def test_canvas_reports_the_missing_custom_field_when_the_user_id_is_absent() -> None:
    for custom in ({"canvas_course_id": "3"}, None, {"canvas_user_id": ""}, {"canvas_user_id": None}):
        identity = lti_identity("canvas", canvas_launch(custom))
        assert identity.user_id is None
        assert identity.missing == "custom field canvas_user_id=$Canvas.user.id"


def test_canvas_reports_a_custom_field_left_unexpanded_as_missing() -> None:
    # Canvas sends the substitution variable itself when the developer key cannot expand it.
    identity = lti_identity("canvas", canvas_launch({"canvas_user_id": "$Canvas.user.id"}))
    assert identity.user_id is None
    assert identity.missing is not None and "canvas_user_id" in identity.missing


def test_canvas_never_falls_back_to_the_opaque_sub_for_the_user() -> None:
    claims = canvas_launch({"canvas_course_id": "3"})
    assert claims["sub"]
    assert lti_identity("canvas", claims).user_id is None


def test_a_custom_platform_uses_the_lti_sub_and_context_id() -> None:
    claims = launch("canvas_resource_link_launch.json")
    assert lti_identity("custom", claims) == LaunchIdentity(claims["sub"], claims[CONTEXT]["id"])


def test_booleans_and_other_values_are_not_ids() -> None:
    assert lti_identity("canvas", canvas_launch({"canvas_user_id": True})).user_id is None
    assert lti_identity("canvas", canvas_launch({"canvas_user_id": ["2001"]})).user_id is None
    assert lti_identity("moodle", launch("moodle_resource_link_launch.json", sub=None)).user_id is None
