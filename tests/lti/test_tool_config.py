"""The tool's description: its derived URLs, and its Canvas developer-key JSON against Canvas's shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.lti.tool_config import (
    CANVAS_CUSTOM_FIELDS,
    TOOL_CLAIMS,
    TOOL_SCOPES,
    ToolDescription,
    canvas_developer_key,
)

SHARED_FIXTURE = (
    Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "canvas" / "lti_developer_key_config.json"
)
TOOL = ToolDescription(
    title="Badge Bridge",
    description="Open Badges for what learners do.",
    base_url="https://badges.example.org/",
)


def canvas_fixture() -> dict[str, Any]:
    return json.loads(SHARED_FIXTURE.read_text(encoding="utf-8"))


def test_every_url_is_derived_from_the_base_url() -> None:
    assert TOOL.base_url == "https://badges.example.org"  # the trailing slash is dropped
    assert TOOL.login_url == "https://badges.example.org/lti/login"
    assert TOOL.launch_url == "https://badges.example.org/lti/launch"
    assert TOOL.deep_linking_url == TOOL.launch_url
    assert TOOL.jwks_url == "https://badges.example.org/lti/jwks.json"
    assert TOOL.icon_url == f"https://badges.example.org{TOOL.icon_path}"
    assert TOOL.registration_url == "https://badges.example.org/lti/register"
    assert TOOL.redirect_uris == (TOOL.launch_url,)
    assert TOOL.domain == "badges.example.org"


def test_the_tool_asks_for_the_roster_and_grade_scopes_and_the_identity_claims() -> None:
    assert TOOL.scopes == TOOL_SCOPES
    assert set(TOOL_SCOPES) == {
        "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
        "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
        "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
        "https://purl.imsglobal.org/spec/lti-ags/scope/score",
        "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    }
    assert TOOL.claims == TOOL_CLAIMS == ("iss", "sub", "name", "given_name", "family_name", "email")


def test_the_domain_keeps_a_port_that_is_not_the_default() -> None:
    assert ToolDescription("T", "", "https://badges.example.org:8443").domain == "badges.example.org:8443"
    assert ToolDescription("T", "", "https://Badges.Example.org:443/x").domain == "badges.example.org"
    assert ToolDescription("T", "", "http://127.0.0.1:5000").launch_url == "http://127.0.0.1:5000/lti/launch"


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://badges.example.org", "https"),
        ("ftp://badges.example.org", "https"),
        ("badges.example.org", "https"),
        ("https://badges.example.org/?x=1", "query"),
        ("https://user:pw@badges.example.org", "credentials"),
    ],
)
def test_a_base_url_that_platforms_could_not_use_is_refused(base_url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ToolDescription("T", "", base_url)


def test_a_title_is_required() -> None:
    with pytest.raises(ValueError, match="title"):
        ToolDescription(" ", "", "https://badges.example.org")


def test_the_canvas_developer_key_has_the_documented_top_level_keys() -> None:
    ours = canvas_developer_key(TOOL)
    documented = canvas_fixture()
    # Canvas takes public_jwk or public_jwk_url (lti_dev_key_config.md); ours is the URL, so keys can rotate.
    assert set(ours) == set(documented) - {"public_jwk"} | {"public_jwk_url"}
    assert ours["public_jwk_url"] == TOOL.jwks_url
    assert ours["title"] == "Badge Bridge"
    assert ours["description"] == "Open Badges for what learners do."
    assert ours["oidc_initiation_url"] == TOOL.login_url
    assert ours["target_link_uri"] == TOOL.launch_url
    assert ours["scopes"] == list(TOOL_SCOPES)
    assert json.loads(json.dumps(ours)) == ours  # served as JSON as it stands


def test_the_canvas_extension_matches_the_documented_one_and_asks_for_names_and_emails() -> None:
    (extension,) = canvas_developer_key(TOOL)["extensions"]
    (documented,) = canvas_fixture()["extensions"]
    assert set(extension) == set(documented)
    assert extension["platform"] == documented["platform"] == "canvas.instructure.com"
    assert extension["privacy_level"] == "public"
    assert extension["domain"] == "badges.example.org"
    assert extension["tool_id"] == "lms-badge-bridge"
    assert {"text", "icon_url", "placements"} <= set(extension["settings"])
    assert extension["settings"]["icon_url"] == TOOL.icon_url


def test_each_placement_has_the_documented_fields_and_launches_the_launch_url() -> None:
    placements = canvas_developer_key(TOOL)["extensions"][0]["settings"]["placements"]
    documented = canvas_fixture()["extensions"][0]["settings"]["placements"][0]
    core = {"text", "icon_url", "placement", "message_type", "target_link_uri"}
    assert core <= set(documented)
    assert all(set(placement) == core for placement in placements)
    assert all(placement["target_link_uri"] == TOOL.launch_url for placement in placements)
    assert [(p["placement"], p["message_type"], p["text"]) for p in placements] == [
        ("course_navigation", "LtiResourceLinkRequest", "Badges"),
        ("user_navigation", "LtiResourceLinkRequest", "My badges"),
        ("link_selection", "LtiDeepLinkingRequest", "Badges"),
        ("editor_button", "LtiDeepLinkingRequest", "Badges"),
    ]


def test_custom_fields_carry_the_canvas_ids_the_learner_is_found_by() -> None:
    fields = canvas_developer_key(TOOL)["custom_fields"]
    assert isinstance(canvas_fixture()["custom_fields"], dict)
    assert (
        fields
        == CANVAS_CUSTOM_FIELDS
        == {
            "canvas_user_id": "$Canvas.user.id",
            "canvas_course_id": "$Canvas.course.id",
        }
    )
    fields["x"] = "y"  # a copy: the constant is not changed through the document
    assert "x" not in CANVAS_CUSTOM_FIELDS
