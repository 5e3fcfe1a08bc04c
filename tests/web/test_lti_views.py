"""The LTI views in process: cookies behind a TLS-terminating proxy, and the tool's published keys."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient

from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.lti.registry import register
from tests.conftest import PLATFORMS, make_settings
from tests.lti.platform import FakePlatform, registration_of

BASE = "https://badges.example.edu"


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform("moodle", redirect_uris=(f"{BASE}/lti/launch",), target_link_uri=f"{BASE}/lti/launch")


def tool(database_url: str, tmp_path: Path, platform: FakePlatform, **settings: object) -> FlaskClient:
    values = make_settings(database_url, tmp_path, public_base_url=BASE, platforms=PLATFORMS, **settings)
    database = open_database(values)
    register(database, registration_of(platform, "moodle1"), actor="test", known_platforms={"moodle1"})
    return create_app(values, database).test_client()


def login(client: FlaskClient, platform: FakePlatform, **environ: str) -> tuple[str, str]:
    params = platform.login_params(target_link_uri=f"{BASE}/lti/launch")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "badges.example.edu"}
    response = client.get(f"/lti/login?{urlencode(params)}", headers=headers, environ_base=environ)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"], response.headers["Set-Cookie"]


def test_behind_a_trusted_proxy_the_state_cookie_is_secure_partitioned_and_cross_site(
    database_url: str, tmp_path: Path, platform: FakePlatform
) -> None:
    client = tool(database_url, tmp_path, platform, server={"trusted_proxies": ["10.0.0.0/8"]})
    location, cookie = login(client, platform, REMOTE_ADDR="10.1.2.3")
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Partitioned", "Path=/lti/"):
        assert attribute in cookie, cookie
    redirect_uri = parse_qs(urlsplit(location).query)["redirect_uri"][0]
    assert redirect_uri == f"{BASE}/lti/launch"


def test_forwarded_headers_from_anyone_else_are_ignored(
    database_url: str, tmp_path: Path, platform: FakePlatform
) -> None:
    client = tool(database_url, tmp_path, platform, server={"trusted_proxies": ["10.0.0.0/8"]})
    _, cookie = login(client, platform, REMOTE_ADDR="192.0.2.7")
    assert "Secure" not in cookie and "SameSite=Lax" in cookie


def test_a_rotated_tool_key_stays_published_for_the_retirement_period_only(
    database_url: str, tmp_path: Path, platform: FakePlatform
) -> None:
    client = tool(database_url, tmp_path, platform)
    lti = client.application.extensions["bridge"].lti
    first = lti.signing_key.kid
    lti.keys.rotate()
    kids = [key["kid"] for key in client.get("/lti/jwks.json").get_json()["keys"]]
    assert kids == [lti.signing_key.kid, first]  # the new key signs; the old one still verifies
    settings = make_settings(database_url, tmp_path, public_base_url=BASE, lti={"retired_key_days": 0})
    later = create_app(settings, open_database(settings)).test_client()
    assert [key["kid"] for key in later.get("/lti/jwks.json").get_json()["keys"]] == [lti.signing_key.kid]
