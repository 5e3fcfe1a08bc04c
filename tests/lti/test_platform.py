"""The fake platform (tests/lti/platform.py) is a faithful LTI 1.3 platform: a self-check with pylti1p3.

A tiny Flask tool built on pylti1p3 (the library the bridge wraps), driven through Flask's test client,
completes a Moodle-shaped and a Canvas-shaped launch against the harness; pylti1p3's service client gets an
access token (its tool JWKS fetched over HTTPS with a test CA), pages through NRPS and posts a grade; Dynamic
Registration refuses a missing token. The tests double as examples of how to drive the harness.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify
from flask.testing import FlaskClient
from pylti1p3.contrib.flask import FlaskMessageLaunch, FlaskOIDCLogin, FlaskRequest
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.exception import LtiServiceException
from pylti1p3.grade import Grade
from pylti1p3.lineitem import LineItem
from pylti1p3.names_roles import NamesRolesProvisioningService
from pylti1p3.service_connector import ServiceConnector
from pylti1p3.tool_config import ToolConfDict

from tests.lti.platform import AuthorizationError, FakePlatform
from tests.lti.platform_services import MEDIA_NRPS, NRPS_CURSOR, SCOPE_NRPS
from tests.lti.tls import self_signed_certificate

LAUNCH_URL = "http://localhost/launch"  # Flask's test client serves http://localhost
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def tool_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["moodle", "canvas"])
def platform(request: pytest.FixtureRequest) -> Iterator[FakePlatform]:
    with FakePlatform(request.param, redirect_uris=[LAUNCH_URL]) as running:
        yield running


def tool_conf(platform: FakePlatform, key: rsa.RSAPrivateKey) -> ToolConfDict:
    """The tool's registration of this platform, as an admin would enter it."""
    registration = {
        "default": True,
        "client_id": platform.client_id,
        "auth_login_url": platform.auth_url,
        "auth_token_url": platform.token_url,
        "key_set_url": platform.jwks_url,
        "key_set": None,
        "deployment_ids": [platform.deployment_id],
    }
    conf = ToolConfDict({platform.issuer: [registration]})
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    conf.set_private_key(platform.issuer, private.decode(), client_id=platform.client_id)
    conf.set_public_key(platform.issuer, public.decode(), client_id=platform.client_id)
    return conf


def tool_app(conf: ToolConfDict, launches: list[FlaskMessageLaunch]) -> FlaskClient:
    app = Flask(__name__)
    app.secret_key = "test"
    app.testing = True  # pylti1p3 errors surface in the test

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        return FlaskOIDCLogin(FlaskRequest(), conf).redirect(LAUNCH_URL)

    @app.post("/launch")
    def launch() -> Any:
        message_launch = FlaskMessageLaunch(FlaskRequest(), conf)
        data = message_launch.get_launch_data()  # validates state, nonce, signature, registration, message
        launches.append(message_launch)
        return jsonify(data)

    return app.test_client()


def launch(platform: FakePlatform, client: FlaskClient, **login: Any) -> dict[str, Any]:
    """Login initiation -> the tool's redirect -> platform.authorize -> the form_post launch."""
    redirect = client.get("/login", query_string=platform.login_params(target_link_uri=LAUNCH_URL, **login))
    assert redirect.status_code == 302
    action, fields = platform.authorize(redirect.headers["Location"])
    assert action == LAUNCH_URL and fields["state"].startswith("state-")
    response = client.post("/launch", data=fields)
    assert response.status_code == 200, response.text
    return response.get_json()


@contextmanager
def serve_tool_jwks(jwks: dict[str, Any], cert: str, key: str) -> Iterator[str]:
    """The tool's JWKS over HTTPS on 127.0.0.1 with the test certificate (as gunicorn --certfile would)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def test_resource_link_launches_complete_through_pylti1p3(
    platform: FakePlatform, tool_key: rsa.RSAPrivateKey
) -> None:
    launches: list[FlaskMessageLaunch] = []
    data = launch(platform, tool_app(tool_conf(platform, tool_key), launches))

    claims = "https://purl.imsglobal.org/spec/lti/claim/"
    assert data["iss"] == platform.issuer and data["aud"] == platform.client_id
    assert data[claims + "deployment_id"] == platform.deployment_id
    assert data[claims + "message_type"] == "LtiResourceLinkRequest"
    assert data[claims + "target_link_uri"] == LAUNCH_URL
    assert "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner" in data[claims + "roles"]
    if platform.kind == "moodle":  # the Moodle user id is the sub; the issuer is the site URL
        assert data["sub"] == "105" and platform.issuer == platform.base_url
    else:  # an opaque sub; the Canvas user id comes as a custom field
        assert data["iss"] == "https://canvas.instructure.com" and data["azp"] == platform.client_id
        assert data[claims + "custom"]["canvas_user_id"] == "2001" and len(data["sub"]) == 36
    assert launches[0].has_nrps() and launches[0].has_ags()
    assert platform.jwks_requests >= 1  # pylti1p3 fetched the platform's keys over HTTP


def test_authorize_refuses_what_a_platform_refuses() -> None:
    with FakePlatform("moodle", redirect_uris=[LAUNCH_URL]) as platform:
        login = platform.login_params()
        good = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": platform.client_id,
            "redirect_uri": LAUNCH_URL,
            "login_hint": login["login_hint"],
            "lti_message_hint": login["lti_message_hint"],
            "state": "s",
            "nonce": "n",
        }
        assert platform.authorize_params(good)[0] == LAUNCH_URL
        for change, error in [
            ({"client_id": "other"}, "unauthorized_client"),
            ({"redirect_uri": LAUNCH_URL + "/"}, "invalid_request"),  # exact match: no trailing slash
            ({"scope": "openid profile"}, "invalid_scope"),
            ({"response_type": "code"}, "unsupported_response_type"),
            ({"response_mode": "query"}, "invalid_request"),
            ({"nonce": ""}, "invalid_request"),
            ({"lti_message_hint": "999"}, "invalid_request"),
            ({"login_hint": "106"}, "access_denied"),
        ]:
            with pytest.raises(AuthorizationError) as refused:
                platform.authorize_params({**good, **change})
            assert refused.value.error == error
        page = requests.get(platform.auth_url, params={**good, "response_mode": "query"}, timeout=5)
        assert 'name="error" value="invalid_request"' in page.text and 'name="state" value="s"' in page.text
        evil = {**good, "redirect_uri": "https://evil.example"}  # no form_post to an unregistered URI
        assert requests.get(platform.auth_url, params=evil, timeout=5).status_code == 400


def test_attack_tokens_are_what_their_names_say() -> None:
    with FakePlatform("canvas") as platform:
        jwks = jwt.PyJWKSet.from_dict(platform.jwks())
        real = jwks[platform.key.kid].key
        decode = {"algorithms": ["RS256"], "audience": platform.client_id}
        assert jwt.decode(platform.id_token(), real, **decode)["iss"] == "https://canvas.instructure.com"
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(platform.id_token(key=platform.foreign_key()), real, **decode)
        assert jwt.get_unverified_header(platform.id_token(kid="unknown"))["kid"] not in [
            k.key_id for k in jwks.keys
        ]
        assert jwt.get_unverified_header(platform.id_token(alg="none"))["alg"] == "none"
        signing_input, _, signature = platform.id_token(alg="HS256").rpartition(".")
        mac = hmac.new(platform.key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        assert base64.urlsafe_b64encode(mac).rstrip(b"=").decode() == signature
        aud = jwt.decode(platform.id_token({"aud": [platform.client_id, "x"]}, drop=("azp",)), real, **decode)
        assert aud["aud"] == [platform.client_id, "x"] and "azp" not in aud
        expired = platform.id_token({"exp": int(time.time()) - 60})
        with pytest.raises(jwt.ExpiredSignatureError):
            jwt.decode(expired, real, **decode)
        broken = jwt.decode(
            platform.id_token({"version": "1.2.0"}, drop=(("resource_link", "id"),)), real, **decode
        )
        assert broken["https://purl.imsglobal.org/spec/lti/claim/version"] == "1.2.0"
        assert "id" not in broken["https://purl.imsglobal.org/spec/lti/claim/resource_link"]


def test_token_endpoint_checks_the_client_assertion_against_the_tool_jwks_over_https(
    tool_key: rsa.RSAPrivateKey, tls: tuple[str, str]
) -> None:
    with FakePlatform("moodle", ca_bundle=tls[0]) as platform:
        conf = tool_conf(platform, tool_key)
        registration = conf.find_registration_by_params(platform.issuer, platform.client_id)
        with serve_tool_jwks(conf.get_jwks(platform.issuer, platform.client_id), *tls) as jwks_url:
            platform.tool_jwks_url = jwks_url
            token = ServiceConnector(registration).get_access_token([SCOPE_NRPS])
            assert token and platform.tokens_issued == 1
            sent = platform.requests_to("/token", "POST")[0].form()
            assert sent["client_assertion_type"] == ASSERTION_TYPE and sent["scope"] == SCOPE_NRPS

            now = int(time.time())
            claims = {"iss": platform.client_id, "sub": platform.client_id, "aud": platform.token_url}
            claims |= {"iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
            kid = registration.get_kid()

            def ask(key: Any, **changes: Any) -> requests.Response:
                assertion = jwt.encode({**claims, **changes}, key, algorithm="RS256", headers={"kid": kid})
                form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
                form |= {"client_assertion": assertion, "scope": SCOPE_NRPS}
                return requests.post(platform.token_url, data=form, timeout=5)

            forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            assert ask(forged).status_code == 401  # signed by another key under the tool's kid
            assert ask(tool_key, aud="https://elsewhere.example/token").status_code == 401
            answer = ask(tool_key)
            assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
            assert answer.json()["expires_in"] == 3600 and answer.json()["scope"] == SCOPE_NRPS
            assert ask(tool_key).json()["error"] == "invalid_grant"  # the same jti again
            assert platform.tokens_issued == 2


def test_nrps_serves_two_pages_behind_a_case_sensitive_next_link(
    platform: FakePlatform, tool_key: rsa.RSAPrivateKey
) -> None:
    conf = tool_conf(platform, tool_key)
    platform.tool_jwks = conf.get_jwks(platform.issuer, platform.client_id)  # no HTTP fetch needed here
    connector = ServiceConnector(conf.find_registration_by_params(platform.issuer, platform.client_id))
    url = platform.claims()["https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"][
        "context_memberships_url"
    ]
    headers = {"Authorization": "Bearer " + connector.get_access_token([SCOPE_NRPS]), "Accept": MEDIA_NRPS}

    first = requests.get(url, headers=headers, timeout=5)
    assert first.status_code == 200 and first.headers["Content-Type"] == MEDIA_NRPS
    assert first.links["next"]["url"].endswith(f"?page=2&cursor={NRPS_CURSOR}")
    second = requests.get(first.links["next"]["url"], headers=headers, timeout=5)
    members = first.json()["members"] + second.json()["members"]
    assert len(members) == 3 and "next" not in second.links
    assert members[0]["user_id"] == platform.claims()["sub"]  # the launching learner is on the roster
    assert (
        first.json()["context"]["id"]
        == platform.claims()["https://purl.imsglobal.org/spec/lti/claim/context"]["id"]
    )
    lowered = requests.get(first.links["next"]["url"].lower(), headers=headers, timeout=5)
    assert lowered.status_code == 400
    assert requests.get(url, timeout=5).status_code == 401

    # pylti1p3 2.0.0 lower-cases the next URL (dmitry-viskov/pylti1.3 PR #139): the harness catches it.
    with pytest.raises(LtiServiceException):
        NamesRolesProvisioningService(connector, {"context_memberships_url": url}).get_members()


def test_ags_and_deep_linking_with_pylti1p3(tool_key: rsa.RSAPrivateKey) -> None:
    with FakePlatform("moodle", redirect_uris=[LAUNCH_URL]) as platform:
        conf = tool_conf(platform, tool_key)
        platform.tool_jwks = conf.get_jwks(platform.issuer, platform.client_id)
        launches: list[FlaskMessageLaunch] = []
        client = tool_app(conf, launches)
        launch(platform, client, roles="instructor")
        ags = launches[0].get_ags()  # Moodle's line item URLs carry ?type_id=3
        line = ags.find_or_create_lineitem(
            LineItem().set_tag("badges").set_label("Badges").set_score_maximum(10)
        )
        grade = Grade().set_score_given(7).set_score_maximum(10).set_user_id("105")
        grade.set_timestamp("2026-01-01T10:00:00.000Z").set_activity_progress("Completed")
        ags.put_grade(grade.set_grading_progress("FullyGraded"), line)
        assert platform.scores[-1]["score"]["scoreGiven"] == 7 and "?type_id=3" in line.get_id()
        assert platform.requests_to("/ags/2/lineitems/2/lineitem/scores")[0].header("Content-Type") == (
            "application/vnd.ims.lis.v1.score+json"
        )

        data = launch(platform, client, message="deep_linking")
        assert (
            data["https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"]["accept_multiple"]
            == "true"
        )
        resource = DeepLinkResource().set_url(LAUNCH_URL).set_title("My badges")
        response = launches[-1].get_deep_link().get_response_jwt([resource])
        claims = platform.verify_deep_linking_response(response)
        assert claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == "dl-Moodle-7f3KzQ"


def test_dynamic_registration_needs_the_registration_token(tmp_path: Path) -> None:
    with FakePlatform("canvas") as platform:
        bearer = {"Authorization": f"Bearer {platform.registration_token}"}
        assert requests.get(platform.openid_configuration_url, timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.get(platform.openid_configuration_url, headers=wrong, timeout=5).status_code == 401
        configuration = requests.get(platform.openid_configuration_url, headers=bearer, timeout=5).json()
        assert configuration["issuer"] == platform.issuer
        assert configuration["registration_endpoint"] == platform.registration_url

        metadata = {
            "application_type": "web",
            "grant_types": ["client_credentials", "implicit"],
            "response_types": ["id_token"],
            "initiate_login_uri": "https://127.0.0.1:8443/lti/login",
            "redirect_uris": ["https://127.0.0.1:8443/lti/launch"],
            "client_name": "LMS Badge Bridge",
            "jwks_uri": "https://127.0.0.1:8443/lti/jwks",
            "token_endpoint_auth_method": "private_key_jwt",
            "scope": SCOPE_NRPS,
            "https://purl.imsglobal.org/spec/lti-tool-configuration": {
                "domain": "127.0.0.1",
                "target_link_uri": "https://127.0.0.1:8443/lti/launch",
                "claims": ["sub", "iss", "name", "email"],
                "messages": [{"type": "LtiResourceLinkRequest"}],
            },
        }
        assert requests.post(platform.registration_url, json=metadata, timeout=5).status_code == 401
        assert platform.registrations == []
        broken = {key: value for key, value in metadata.items() if key != "jwks_uri"}
        assert (
            requests.post(platform.registration_url, json=broken, headers=bearer, timeout=5).status_code
            == 400
        )
        answer = requests.post(platform.registration_url, json=metadata, headers=bearer, timeout=5).json()
        assert (
            answer["client_id"]
            and answer["https://purl.imsglobal.org/spec/lti-tool-configuration"]["deployment_id"]
        )
        assert platform.registrations == [metadata]
        again = requests.post(platform.registration_url, json=metadata, headers=bearer, timeout=5)
        assert again.status_code == 401  # the registration token is single use
