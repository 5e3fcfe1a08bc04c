"""LTI Dynamic Registration against Moodle 4.x and Canvas as they publish themselves (fixtures shaped on
moodle/moodle mod/lti/openid-configuration.php and canvas-lms security_controller.rb / registration.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from bridge.lti.dynamic_registration import (
    DEFAULT_TIMEOUT,
    PLATFORM_CONFIGURATION,
    TOOL_CONFIGURATION,
    PlatformConfiguration,
    RegisteredTool,
    RegistrationRefused,
    fetch_platform_configuration,
    parse_platform_configuration,
    register,
    registration_request,
)
from bridge.lti.tool_config import ToolDescription

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lti"
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJYeTdRIiwic2NvcGUiOiJyZWcifQ.c2lnbmF0dXJl"
MOODLE_URL = "https://moodle.example.edu/mod/lti/openid-configuration.php"
# Canvas also puts the token in the configuration URL's query (security_controller.rb#openid_configuration).
CANVAS_URL = (
    f"https://canvas.instructure.com/api/lti/security/openid-configuration?registration_token={TOKEN}"
)
TOOL = ToolDescription("Badge Bridge", "Open Badges for what learners do.", "https://badges.example.org")
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"


def moodle() -> dict[str, Any]:
    return json.loads((FIXTURES / "moodle_openid_configuration.json").read_text(encoding="utf-8"))


def canvas() -> dict[str, Any]:
    return json.loads((FIXTURES / "canvas_openid_configuration.json").read_text(encoding="utf-8"))


def refused(document: dict[str, Any], url: str = MOODLE_URL) -> str:
    with pytest.raises(RegistrationRefused) as caught:
        parse_platform_configuration(document, url)
    return str(caught.value)


# --- the platform's configuration ---------------------------------------------------------------------


@responses.activate
def test_moodle_configuration_is_fetched_with_the_token_as_bearer_and_a_timeout() -> None:
    responses.get(MOODLE_URL, json=moodle())
    platform = fetch_platform_configuration(MOODLE_URL, TOKEN, requests.Session())
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.req_kwargs["timeout"] == DEFAULT_TIMEOUT
    assert platform.issuer == "https://moodle.example.edu"
    assert platform.registration_endpoint == "https://moodle.example.edu/mod/lti/openid-registration.php"
    assert platform.product_family_code == "moodle"
    assert [(m.type, m.placements) for m in platform.messages_supported] == [
        ("LtiResourceLinkRequest", ()),
        ("LtiDeepLinkingRequest", ()),
    ]
    assert platform.authorization_server is None
    assert "User.id" in platform.variables


@responses.activate
def test_canvas_configuration_is_read_with_its_placements_and_authorization_server() -> None:
    responses.get(CANVAS_URL, json=canvas())
    platform = fetch_platform_configuration(CANVAS_URL, TOKEN, requests.Session(), timeout=3.0)
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert responses.calls[0].request.req_kwargs["timeout"] == 3.0
    assert platform.issuer == "https://canvas.instructure.com"
    assert platform.authorization_endpoint == "https://sso.canvaslms.com/api/lti/authorize_redirect"
    assert platform.authorization_server == "sso.canvaslms.com"
    assert platform.product_family_code == "canvas"
    deep_linking = platform.message("LtiDeepLinkingRequest")
    assert deep_linking is not None and "editor_button" in deep_linking.placements


@responses.activate
def test_without_a_token_no_authorization_header_is_sent() -> None:
    responses.get(MOODLE_URL, json=moodle())
    fetch_platform_configuration(MOODLE_URL, None, requests.Session())
    assert "Authorization" not in responses.calls[0].request.headers


@pytest.mark.parametrize(
    "field", ["issuer", "authorization_endpoint", "registration_endpoint", "jwks_uri", "token_endpoint"]
)
def test_a_missing_required_field_is_refused_by_name(field: str) -> None:
    document = moodle()
    del document[field]
    assert f"'{field}' is missing" in refused(document)


@pytest.mark.parametrize("field", ["product_family_code", "messages_supported"])
def test_a_missing_lti_platform_field_is_refused_by_name(field: str) -> None:
    document = moodle()
    del document[PLATFORM_CONFIGURATION][field]
    message = refused(document)
    assert f"'{field}' is missing" in message and PLATFORM_CONFIGURATION in message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.pop(PLATFORM_CONFIGURATION), PLATFORM_CONFIGURATION),
        (lambda d: d.update(jwks_uri="not a url"), "'jwks_uri' is not an absolute https URL"),
        (lambda d: d.update(token_endpoint="http://moodle.example.edu/t"), "'token_endpoint' must use https"),
        (lambda d: d.update(scopes_supported="openid"), "'scopes_supported' must be a list of strings"),
        (
            lambda d: d.update(token_endpoint_auth_methods_supported=["client_secret_basic"]),
            "private_key_jwt",
        ),
        (lambda d: d.update(id_token_signing_alg_values_supported=["HS256"]), "RS256"),
        (lambda d: d.update(authorization_server=7), "'authorization_server'"),
        (lambda d: d[PLATFORM_CONFIGURATION].update(messages_supported=[3]), "'messages_supported'[0]"),
        (lambda d: d[PLATFORM_CONFIGURATION].update(messages_supported=["LtiDeepLinkingRequest"]), "lacks"),
        (lambda d: d[PLATFORM_CONFIGURATION].update(variables={"a": 1}), "'variables' must be a list"),
    ],
)
def test_an_invalid_field_is_refused_by_name(change: Any, named: str) -> None:
    document = moodle()
    change(document)
    assert named in refused(document)


@pytest.mark.parametrize(
    ("issuer", "url"),
    [
        ("https://other.example.edu", MOODLE_URL),
        # A plain string prefix would let these through; the match is by host and by whole path segment.
        (
            "https://moodle.example.edu",
            "https://moodle.example.edu.evil.example/mod/lti/openid-configuration.php",
        ),
        ("https://example.edu/moodle", "https://example.edu/moodle2/mod/lti/openid-configuration.php"),
        ("https://moodle.example.edu:8443", MOODLE_URL),
    ],
)
def test_an_issuer_that_does_not_match_the_configuration_url_is_refused(issuer: str, url: str) -> None:
    document = moodle()
    document["issuer"] = issuer
    assert "does not match the openid_configuration URL" in refused(document, url)


def test_the_configuration_url_may_sit_under_the_issuers_path_and_carry_a_query() -> None:
    document = moodle()
    document["issuer"] = "https://example.edu/moodle/"
    assert parse_platform_configuration(
        document, "https://example.edu/moodle/mod/lti/openid-configuration.php"
    )
    assert parse_platform_configuration(canvas(), CANVAS_URL).issuer == "https://canvas.instructure.com"


@responses.activate
def test_a_mismatch_message_does_not_quote_the_token_from_the_url_query() -> None:
    document = canvas()
    document["issuer"] = "https://canvas.evil.example"
    responses.get(CANVAS_URL, json=document)
    with pytest.raises(RegistrationRefused) as caught:
        fetch_platform_configuration(CANVAS_URL, TOKEN, requests.Session())
    assert "https://canvas.instructure.com/api/lti/security/openid-configuration" in str(caught.value)
    assert TOKEN not in str(caught.value)


@responses.activate
def test_a_token_the_platform_echoes_into_its_configuration_is_kept_out_of_the_message() -> None:
    document = canvas()
    document["issuer"] = f"https://canvas.instructure.com/{TOKEN}"
    responses.get(CANVAS_URL, json=document)
    with pytest.raises(RegistrationRefused, match="does not match") as caught:
        fetch_platform_configuration(CANVAS_URL, TOKEN, requests.Session())
    assert TOKEN not in str(caught.value) and "[registration token]" in str(caught.value)


@responses.activate
def test_a_plain_http_platform_is_refused_before_the_token_is_sent() -> None:
    with pytest.raises(RegistrationRefused, match="must use https"):
        fetch_platform_configuration(
            "http://moodle.example.edu/mod/lti/openid-configuration.php", TOKEN, requests.Session()
        )
    assert len(responses.calls) == 0
    document = moodle()
    document["issuer"] = "http://moodle.example.edu"  # served over https, but naming a plain http issuer
    assert "'issuer' must use https" in refused(document)


@responses.activate
def test_a_fake_platform_on_loopback_may_use_plain_http_end_to_end() -> None:
    base = "http://127.0.0.1:8765"
    document = moodle()
    for key in ("token_endpoint", "jwks_uri", "authorization_endpoint", "registration_endpoint"):
        document[key] = document[key].replace("https://moodle.example.edu", base)
    document["issuer"] = base
    responses.get(f"{base}/mod/lti/openid-configuration.php", json=document)
    responses.post(f"{base}/mod/lti/openid-registration.php", json={"client_id": "c1"})
    platform = fetch_platform_configuration(
        f"{base}/mod/lti/openid-configuration.php", TOKEN, requests.Session()
    )
    assert register(TOOL, platform, TOKEN, requests.Session()).client_id == "c1"
    localhost = moodle()
    localhost["issuer"] = "http://localhost:8000"
    assert parse_platform_configuration(localhost, "http://localhost:8000/mod/lti/openid-configuration.php")


@responses.activate
def test_the_platforms_refusal_to_serve_its_configuration_names_the_status_but_not_the_token() -> None:
    body = {"error": f"Access token missing or invalid: {TOKEN}"}  # even if the platform echoes it
    responses.get(CANVAS_URL, json=body, status=401)
    with pytest.raises(RegistrationRefused) as caught:
        fetch_platform_configuration(CANVAS_URL, TOKEN, requests.Session())
    assert caught.value.status == 401
    assert "HTTP 401" in str(caught.value) and "Access token missing" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"body": "<html>Login</html>", "content_type": "text/html"}, "not JSON"),
        ({"json": ["issuer"]}, "not a JSON object"),
        ({"status": 302, "headers": {"Location": "https://elsewhere.example/"}}, "HTTP 302"),
        ({"body": requests.ConnectionError(f"failed: Bearer {TOKEN}")}, "ConnectionError"),
    ],
)
@responses.activate
def test_an_unusable_answer_is_refused_without_the_token(answer: dict[str, Any], reason: str) -> None:
    responses.get(MOODLE_URL, **answer)
    with pytest.raises(RegistrationRefused, match=reason) as caught:
        fetch_platform_configuration(MOODLE_URL, TOKEN, requests.Session())
    assert TOKEN not in str(caught.value)


@responses.activate
def test_a_token_that_is_not_a_bearer_token_is_refused_unsent_and_unquoted() -> None:
    bad = "abc\r\nX-Injected: 1"
    with pytest.raises(RegistrationRefused, match="not a bearer token") as caught:
        fetch_platform_configuration(MOODLE_URL, bad, requests.Session())
    assert bad not in str(caught.value) and len(responses.calls) == 0


# --- the registration request ----------------------------------------------------------------------------


def moodle_platform(**lti: Any) -> PlatformConfiguration:
    document = moodle()
    document[PLATFORM_CONFIGURATION].update(lti)
    return parse_platform_configuration(document, MOODLE_URL)


def canvas_platform(**lti: Any) -> PlatformConfiguration:
    document = canvas()
    document[PLATFORM_CONFIGURATION].update(lti)
    return parse_platform_configuration(document, CANVAS_URL)


def test_the_moodle_request_is_standard_client_metadata_and_nothing_of_canvas() -> None:
    request = registration_request(TOOL, moodle_platform())
    assert request["application_type"] == "web"
    assert request["response_types"] == ["id_token"]
    assert request["grant_types"] == ["implicit", "client_credentials"]
    assert request["initiate_login_uri"] == "https://badges.example.org/lti/login"
    assert request["redirect_uris"] == ["https://badges.example.org/lti/launch"]
    assert request["client_name"] == "Badge Bridge"
    assert request["jwks_uri"] == "https://badges.example.org/lti/jwks.json"
    assert request["logo_uri"] == TOOL.icon_url
    assert request["token_endpoint_auth_method"] == "private_key_jwt"
    assert request["scope"].split() == list(TOOL.scopes)  # Moodle lists all five
    configuration = request[TOOL_CONFIGURATION]
    # Moodle refuses a domain other than the target_link_uri's host (registration_helper.php).
    assert configuration["domain"] == "badges.example.org"
    assert configuration["target_link_uri"] == TOOL.launch_url
    assert configuration["claims"] == ["iss", "sub", "name", "given_name", "family_name", "email"]
    assert [m["type"] for m in configuration["messages"]] == [
        "LtiResourceLinkRequest",
        "LtiDeepLinkingRequest",
    ]
    assert all(m["target_link_uri"] == TOOL.launch_url for m in configuration["messages"])
    assert "placements" not in configuration["messages"][0]
    assert not any(key.startswith("https://canvas.instructure.com/") for key in configuration)
    assert "custom_parameters" not in configuration
    assert json.loads(json.dumps(request)) == request


def test_deep_linking_is_offered_only_to_a_platform_that_lists_it() -> None:
    platform = moodle_platform(messages_supported=["LtiResourceLinkRequest"])
    messages = registration_request(TOOL, platform)[TOOL_CONFIGURATION]["messages"]
    assert [m["type"] for m in messages] == ["LtiResourceLinkRequest"]
    platform = canvas_platform(messages_supported=[{"type": "LtiResourceLinkRequest"}])
    messages = registration_request(TOOL, platform)[TOOL_CONFIGURATION]["messages"]
    assert {m["type"] for m in messages} == {"LtiResourceLinkRequest"}


def test_only_scopes_the_platform_lists_are_asked_for() -> None:
    document = moodle()
    document["scopes_supported"] = [NRPS, "openid"]
    platform = parse_platform_configuration(document, MOODLE_URL)
    assert registration_request(TOOL, platform)["scope"] == NRPS
    document["scopes_supported"] = []
    assert registration_request(TOOL, parse_platform_configuration(document, MOODLE_URL))["scope"] == ""
    del document["scopes_supported"]  # silent: ask for ours, the administrator can trim them
    assert registration_request(TOOL, parse_platform_configuration(document, MOODLE_URL))[
        "scope"
    ].split() == list(TOOL.scopes)


def test_the_canvas_request_has_canvas_placements_ids_and_privacy_level() -> None:
    request = registration_request(TOOL, canvas_platform())
    configuration = request[TOOL_CONFIGURATION]
    assert configuration["https://canvas.instructure.com/lti/privacy_level"] == "public"
    assert configuration["https://canvas.instructure.com/lti/tool_id"] == "lms-badge-bridge"
    assert configuration["custom_parameters"] == {
        "canvas_user_id": "$Canvas.user.id",
        "canvas_course_id": "$Canvas.course.id",
    }
    assert [(m["type"], m["label"], m["placements"]) for m in configuration["messages"]] == [
        ("LtiResourceLinkRequest", "Badges", ["course_navigation"]),
        ("LtiResourceLinkRequest", "My badges", ["user_navigation"]),
        ("LtiDeepLinkingRequest", "Badges", ["link_selection", "editor_button"]),
    ]
    assert all(
        m["target_link_uri"] == TOOL.launch_url and m["icon_uri"] == TOOL.icon_url
        for m in configuration["messages"]
    )
    assert set(request["scope"].split()) == set(TOOL.scopes)  # none of Canvas's own scopes


def test_canvas_placements_and_variables_it_does_not_list_are_left_out() -> None:
    platform = canvas_platform(
        messages_supported=[
            {"type": "LtiResourceLinkRequest", "placements": ["course_navigation"]},
            {"type": "LtiDeepLinkingRequest", "placements": ["link_selection"]},
        ],
        variables=["Canvas.course.id"],
    )
    configuration = registration_request(TOOL, platform)[TOOL_CONFIGURATION]
    assert [m["placements"] for m in configuration["messages"]] == [["course_navigation"], ["link_selection"]]
    assert configuration["custom_parameters"] == {"canvas_course_id": "$Canvas.course.id"}


def test_a_platform_listing_message_objects_gets_its_generic_placements() -> None:
    # LTI-DR's object form, as some Moodle plugins publish it: deep linking in the content area only.
    platform = moodle_platform(
        messages_supported=[
            {"type": "LtiResourceLinkRequest"},
            {"type": "LtiDeepLinkingRequest", "placements": ["ContentArea"]},
        ]
    )
    messages = registration_request(TOOL, platform)[TOOL_CONFIGURATION]["messages"]
    assert messages[1]["placements"] == ["ContentArea"]


# --- registering -------------------------------------------------------------------------------------------


def moodle_answer(request: dict[str, Any], deployment_id: Any = "7") -> dict[str, Any]:
    """What moodle/moodle registration_helper::config_to_registration sends back."""
    configuration = {
        "version": "1.3.0",
        "target_link_uri": TOOL.launch_url,
        "domain": "badges.example.org",
        "description": TOOL.description,
        "messages": [{"type": "LtiDeepLinkingRequest", "target_link_uri": TOOL.launch_url}],
        "claims": ["sub", "iss", "name", "family_name", "middle_name", "email"],
    }
    if deployment_id is not None:
        configuration["deployment_id"] = deployment_id
    return {
        "client_id": "Xy7Q2wR9sLk1mNb",
        "response_types": ["id_token"],
        "jwks_uri": request["jwks_uri"],
        "initiate_login_uri": request["initiate_login_uri"],
        "grant_types": ["client_credentials", "implicit"],
        "redirect_uris": request["redirect_uris"],
        "application_type": "web",
        "token_endpoint_auth_method": "private_key_jwt",
        "client_name": "Badge Bridge",
        "logo_uri": request["logo_uri"],
        "scope": f"https://purl.imsglobal.org/spec/lti-ags/scope/score {NRPS}",
        TOOL_CONFIGURATION: configuration,
    }


@responses.activate
def test_moodle_registration_posts_the_request_with_the_bearer_and_stores_the_deployment() -> None:
    platform = moodle_platform()
    expected = registration_request(TOOL, platform)
    responses.post(platform.registration_endpoint, json=moodle_answer(expected))
    registered = register(TOOL, platform, TOKEN, requests.Session())
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.req_kwargs["timeout"] == DEFAULT_TIMEOUT
    assert json.loads(sent.body) == expected
    assert registered == RegisteredTool(
        issuer="https://moodle.example.edu",
        client_id="Xy7Q2wR9sLk1mNb",
        deployment_id="7",
        auth_login_url="https://moodle.example.edu/mod/lti/auth.php",
        auth_token_url="https://moodle.example.edu/mod/lti/token.php",
        auth_audience=None,
        key_set_url="https://moodle.example.edu/mod/lti/certs.php",
        product_family_code="moodle",
        scopes=("https://purl.imsglobal.org/spec/lti-ags/scope/score", NRPS),
    )


@responses.activate
def test_a_numeric_deployment_id_is_kept_as_text() -> None:
    platform = moodle_platform()
    responses.post(
        platform.registration_endpoint, json=moodle_answer(registration_request(TOOL, platform), 7)
    )
    assert register(TOOL, platform, TOKEN, requests.Session()).deployment_id == "7"


@responses.activate
def test_canvas_registration_has_no_deployment_until_an_admin_installs_the_tool() -> None:
    platform = canvas_platform()
    request = registration_request(TOOL, platform)
    config_url = "https://school.instructure.com/api/lti/registrations/10000000000042/view"
    answer = {  # canvas-lms dynamic_registration_controller.rb#render_registration
        **{key: value for key, value in request.items() if key != TOOL_CONFIGURATION},
        "client_id": "10000000000042",
        "scope": f"{NRPS} {LINEITEM}",  # the administrator may grant fewer than asked
        TOOL_CONFIGURATION: {
            **request[TOOL_CONFIGURATION],
            "https://canvas.instructure.com/lti/registration_config_url": config_url,
        },
    }
    responses.post("https://school.instructure.com/api/lti/registrations", json=answer)
    registered = register(TOOL, platform, TOKEN, requests.Session())
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert registered.client_id == "10000000000042"
    assert registered.deployment_id is None
    assert registered.issuer == "https://canvas.instructure.com"
    assert registered.auth_login_url == "https://sso.canvaslms.com/api/lti/authorize_redirect"
    assert registered.auth_token_url == "https://sso.canvaslms.com/login/oauth2/token"
    assert registered.auth_audience == "sso.canvaslms.com"
    assert registered.key_set_url == "https://sso.canvaslms.com/api/lti/security/jwks"
    assert registered.product_family_code == "canvas"
    assert registered.scopes == (NRPS, LINEITEM)


@pytest.mark.parametrize(
    ("status", "answer", "reason"),
    [
        (
            400,
            {"json": {"error": "invalid_client_metadata", "error_description": f"bad {TOKEN}"}},
            "invalid_client_metadata: bad",
        ),
        (401, {"json": {"errorMessage": "JWT did not include expected contents"}}, "JWT did not include"),
        (
            400,
            {"body": "missing required attribute domain", "content_type": "text/plain"},
            "missing required attribute domain",
        ),
        (401, {"body": f"token_already_used {TOKEN}", "content_type": "text/plain"}, "token_already_used"),
    ],
)
@responses.activate
def test_a_platform_error_is_refused_with_its_status_and_reason_never_the_token(
    status: int, answer: dict[str, Any], reason: str
) -> None:
    platform = moodle_platform()
    responses.post(platform.registration_endpoint, status=status, **answer)
    with pytest.raises(RegistrationRefused) as caught:
        register(TOOL, platform, TOKEN, requests.Session())
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value) and reason in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value.args)


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ({"client_name": "Badge Bridge"}, "'client_id' is missing"),
        ({"client_id": ""}, "'client_id' is missing"),
        ({"client_id": "c", TOOL_CONFIGURATION: "x"}, f"'{TOOL_CONFIGURATION}' is not an object"),
        ({"client_id": "c", TOOL_CONFIGURATION: {"deployment_id": ["1"]}}, "'deployment_id'"),
    ],
)
@responses.activate
def test_an_answer_without_a_usable_client_id_or_deployment_is_refused(
    answer: dict[str, Any], named: str
) -> None:
    platform = moodle_platform()
    responses.post(platform.registration_endpoint, json=answer)
    with pytest.raises(RegistrationRefused, match=re.escape(named)):
        register(TOOL, platform, TOKEN, requests.Session())


@responses.activate
def test_a_registration_endpoint_that_cannot_be_reached_is_refused_without_the_token() -> None:
    platform = moodle_platform()
    responses.post(platform.registration_endpoint, body=requests.ReadTimeout(f"Bearer {TOKEN}"))
    with pytest.raises(RegistrationRefused, match="ReadTimeout") as caught:
        register(TOOL, platform, TOKEN, requests.Session())
    assert TOKEN not in str(caught.value)


# --- closing the platform's window -----------------------------------------------------------------------
