"""Public OB 2.0 URLs and badge pages: hosted and signed assertions, revocation, pages for people."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.db.models import Award, Badge
from bridge.domain.events import LearningEvent
from bridge.services.audit import audit_log
from bridge.services.manual_awards import ManualAwards
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import PLATFORMS, make_settings
from tests.helpers import START, store
from tests.issuing.support import award

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
BASE = "http://127.0.0.1:8000"


def path(url: str) -> str:
    assert url.startswith(BASE), url
    return url.removeprefix(BASE)


def assertion_path(app: Flask, award_id: int) -> str:
    return path(app.extensions["bridge"].publisher.assertion_url(award_id))


def get_json(client: FlaskClient, url: str, status: int = 200) -> dict[str, object]:
    response = client.get(path(url) if url.startswith("http") else url)
    assert response.status_code == status, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


def test_a_hosted_assertion_is_json_ld_at_its_own_id(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    url = assertion_path(app, award(database, settings, "safety-certified"))
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "application/ld+json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    document = response.get_json(force=True)
    assert document["id"] == BASE + url
    assert document["@context"] == "https://w3id.org/openbadges/v2" and document["type"] == "Assertion"
    assert document["verification"] == {"type": "HostedBadge"}
    assert document["issuedOn"] < document["expires"]  # safety-certified lasts a year
    badge = get_json(client, document["badge"])
    assert badge["type"] == "BadgeClass" and badge["name"] == "Safety Certified"
    assert client.get(path(badge["image"])).data.startswith(b"\x89PNG")
    issuer = get_json(client, badge["issuer"])
    assert issuer["type"] == "Issuer"
    assert (issuer["name"], issuer["email"]) == ("LMS Badge Bridge", "badges@example.org")
    assert issuer["url"] == BASE + "/"


def test_plain_json_clients_get_application_json(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    url = assertion_path(app, award(database, settings))
    assert client.get(url, headers={"Accept": "application/json"}).mimetype == "application/json"


def test_the_recipient_is_the_hashed_email_once_known_else_the_fallback_url(
    app: Flask, client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    url = assertion_path(app, award(database, settings))
    recipient = get_json(client, url)["recipient"]
    assert isinstance(recipient, dict) and recipient["type"] == "url" and recipient["hashed"] is True
    response = client.put(
        "/api/v1/learners/demo/42/badge-profile",
        json={"public": False, "email": "Alice@Example.org"},
        headers=auth,
    )
    assert response.status_code == 200 and response.get_json()["email"] == "alice@example.org"
    recipient = get_json(client, url)["recipient"]
    assert isinstance(recipient, dict) and recipient["type"] == "email"
    expected = hashlib.sha256(("alice@example.org" + recipient["salt"]).encode()).hexdigest()
    assert recipient["identity"] == f"sha256${expected}"
    assert "alice" not in client.get(url).get_data(as_text=True)


def test_evidence_names_the_events_that_earned_the_badge(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    store(database, LearningEvent("demo", "first-login", "login", "7", START, course="DL101"))
    Worker(database, settings).run(threading.Event(), drain=True)
    awards = app.extensions["bridge"].publisher
    url = path(awards.assertion_url(1))
    evidence = get_json(client, url)["evidence"]
    assert isinstance(evidence, list)
    assert evidence[0]["name"] == "Login: DL101"
    assert "Awarded by an instructor" not in json.dumps(evidence)


def revoke(database: Database, settings: Settings, award_id: int, reason: str = "Awarded in error") -> None:
    ManualAwards(database, settings).revoke(award_id=award_id, actor="tests", reason=reason)


def test_a_revoked_hosted_assertion_answers_410_with_revoked_and_the_reason(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    award_id = award(database, settings)
    url = assertion_path(app, award_id)
    revoke(database, settings, award_id)
    response = client.get(url)
    assert response.status_code == 410
    document = response.get_json(force=True)
    assert document == {
        "@context": "https://w3id.org/openbadges/v2",
        "type": "Assertion",
        "id": BASE + url,
        "revoked": True,
        "revocationReason": "Awarded in error",
    }
    for download in ("badge.png", "badge.svg", "credential.png", "credential.jwt"):
        refused = client.get(f"{url}/{download}")
        assert refused.status_code == 410 and refused.get_json()["error"]["code"] == "revoked"


def test_a_browser_gets_the_badge_page(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    url = assertion_path(app, award(database, settings, "safety-certified"))
    response = client.get(url, headers=BROWSER)
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for expected in (
        '<meta property="og:title" content="Safety Certified">',
        f'<meta property="og:image" content="{BASE}/ob/images/safety-certified.png">',
        f'<meta property="og:url" content="{BASE}{url}">',
        "https://www.linkedin.com/profile/add?startTask=CERTIFICATION_NAME&amp;name=Safety+Certified",
        f"{BASE}{url}/badge.png",
        f"{BASE}{url}/badge.svg",
        f"{BASE}{url}/credential.jwt",
        "Pass the course HS100",  # criteria
        "LMS Badge Bridge",  # issuer
        "status--valid",
        "Expires",
    ):
        assert expected in page, expected
    assert "banner--revoked" not in page
    assert "Accept" in response.headers["Vary"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # no scripts at all
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert client.get("/ob/static/badges.css").status_code == 200


def test_a_revoked_badge_page_shows_the_banner_and_no_downloads(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    award_id = award(database, settings)
    url = assertion_path(app, award_id)
    revoke(database, settings, award_id, reason="Copied the quiz")
    response = client.get(url, headers=BROWSER)
    assert response.status_code == 410
    page = response.get_data(as_text=True)
    assert "banner--revoked" in page and "Copied the quiz" in page
    assert "badge.png" not in page and "linkedin.com" not in page


@pytest.mark.parametrize(
    "url",
    [
        "/ob/assertions/1-0000",
        "/ob/assertions/abc",
        "/ob/issuers/nobody",
        "/ob/issuers/default/badges/nope",
        "/ob/issuers/default/badges/welcome/tiers/gold",
        "/ob/keys/nope",
        "/ob/images/nope.png",
        "/ob/profiles/x",
    ],
)
def test_unknown_addresses_are_json_404s(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert set(response.get_json()["error"]) >= {"code", "message"}


def test_a_guessed_award_number_with_a_wrong_mac_is_404(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    url = assertion_path(app, award(database, settings))
    assert client.get(url[:-1] + ("0" if url[-1] != "0" else "1")).status_code == 404


def test_tiers_are_badge_classes_of_their_own(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    url = assertion_path(app, award(database, settings, "rising-star", tier="silver"))
    badge = get_json(client, str(get_json(client, url)["badge"]))
    assert badge["id"] == f"{BASE}/ob/issuers/default/badges/rising-star/tiers/silver"
    assert badge["name"] == "Rising Star (Silver)"


def signed_app(database: Database, database_url: str, tmp_path: Path) -> Flask:
    settings = make_settings(database_url, tmp_path, issuer={"name": "Signing U", "signed": True})
    return create_app(settings, database)


def test_a_signed_issuer_issues_jws_checked_with_its_published_key(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    app = signed_app(database, database_url, tmp_path)
    client = app.test_client()
    url = assertion_path(app, award(database, app.extensions["bridge"].settings))
    token = client.get(f"{url}/assertion.jws").get_data(as_text=True)
    unverified = json.loads(
        jwt.api_jws.PyJWS().decode_complete(token, options={"verify_signature": False})["payload"]
    )
    assert unverified["id"].startswith("urn:uuid:")
    assert unverified["verification"]["type"] == "SignedBadge"
    key = get_json(client, unverified["verification"]["creator"])
    issuer = get_json(client, "/ob/issuers/default")
    assert key["owner"] == issuer["id"] and key["id"] in issuer["publicKey"]
    pem_key = load_pem_public_key(str(key["publicKeyPem"]).encode())
    payload = jwt.api_jws.PyJWS().decode(token, pem_key, algorithms=["RS256"])  # type: ignore[arg-type]
    assert json.loads(payload) == unverified
    assert json.loads(client.get(url).get_data(as_text=True)) == unverified  # the page URL serves it too


def test_the_revocation_list_has_exactly_the_one_revoked_signed_badge(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    app = signed_app(database, database_url, tmp_path)
    client, settings = app.test_client(), app.extensions["bridge"].settings
    kept, revoked = award(database, settings, "welcome"), award(database, settings, "safety-certified")
    issuer = get_json(client, "/ob/issuers/default")
    assert get_json(client, str(issuer["revocationList"]))["revokedAssertions"] == []
    revoke(database, settings, revoked, reason="Wrong learner")
    listed = get_json(client, str(issuer["revocationList"]))
    assert listed["type"] == "RevocationList" and listed["issuer"] == issuer["id"]
    revoked_id = client.get(assertion_path(app, revoked)).get_json(force=True)["id"]  # 410, stripped
    assert listed["revokedAssertions"] == [{"id": revoked_id, "revocationReason": "Wrong learner"}]
    assert json.loads(client.get(assertion_path(app, kept)).get_data(as_text=True))["id"] != revoked_id


def test_a_platform_with_its_own_issuer_issues_its_learners_badges(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    platforms = [PLATFORMS[0], {**PLATFORMS[1], "issuer": {"name": "Moodle U", "email": "b@moodle.example"}}]
    settings = make_settings(database_url, tmp_path, platforms=platforms)
    app = create_app(settings, database)
    client = app.test_client()
    url = assertion_path(app, award(database, settings, platform="moodle1"))
    badge = get_json(client, str(get_json(client, url)["badge"]))
    assert badge["issuer"] == f"{BASE}/ob/issuers/moodle1"
    assert get_json(client, str(badge["issuer"]))["email"] == "b@moodle.example"
    other = assertion_path(app, award(database, settings, platform="demo"))
    assert "/ob/issuers/default/" in str(get_json(client, other)["badge"])


def test_a_public_profile_is_opt_in_at_an_unguessable_url(
    app: Flask, client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    award(database, settings, "welcome")
    revoked = award(database, settings, "safety-certified")
    revoke(database, settings, revoked)
    endpoint = "/api/v1/learners/demo/42/badge-profile"
    opted: TestResponse = client.put(endpoint, json={"public": True}, headers=auth)
    assert opted.status_code == 200
    url = opted.get_json()["url"]
    assert url.startswith(f"{BASE}/ob/profiles/") and len(url.rsplit("/", 1)[1]) >= 32
    page = client.get(path(url)).get_data(as_text=True)
    assert "Welcome" in page and "Safety Certified" not in page  # revoked badges are not shown
    assert client.put(endpoint, json={"public": True}, headers=auth).get_json()["url"] == url
    assert client.put(endpoint, json={"public": False}, headers=auth).get_json()["url"] is None
    assert client.get(path(url)).status_code == 404
    # Each change is in the audit log under the API key's name, without the email.
    entries = audit_log(database, learner="42")
    assert [(e.action, e.details["public"]) for e in entries[:3]] == [
        ("badge_profile", False),
        ("badge_profile", True),
        ("badge_profile", True),
    ]
    assert {e.actor for e in entries[:3]} == {"tests"}


def test_the_badge_profile_api_refuses_bad_input(client: FlaskClient, auth: dict[str, str]) -> None:
    endpoint = "/api/v1/learners/demo/42/badge-profile"
    unknown = client.put("/api/v1/learners/nowhere/42/badge-profile", json={"public": True}, headers=auth)
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "unknown_platform"
    long_id = f"/api/v1/learners/demo/{'x' * 256}/badge-profile"
    too_long = client.put(long_id, json={"public": True}, headers=auth)
    assert too_long.status_code == 422 and too_long.get_json()["error"]["message"].startswith("learner:")
    invalid = client.put(endpoint, json={"public": "yes"}, headers=auth)
    assert invalid.status_code == 422 and invalid.get_json()["error"]["message"].startswith("public")
    bad_email = client.put(endpoint, json={"public": True, "email": "nope"}, headers=auth)
    assert bad_email.status_code == 422
    for unstorable in ("a\u0000b@example.edu", "a\ud800b@example.edu", "a\u0007@example.edu"):
        refused = client.put(endpoint, json={"public": True, "email": unstorable}, headers=auth)
        assert refused.status_code == 422 and "email" in refused.get_json()["error"]["message"]
    assert client.put(endpoint, json={"public": True}).status_code == 401


def test_after_a_rotation_the_issuer_lists_the_new_key_and_the_retired_one_stays_served(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    app = signed_app(database, database_url, tmp_path)
    client = app.test_client()
    url = assertion_path(app, award(database, app.extensions["bridge"].settings))
    old_token = client.get(f"{url}/assertion.jws").get_data(as_text=True)
    old_payload = json.loads(
        jwt.api_jws.PyJWS().decode_complete(old_token, options={"verify_signature": False})["payload"]
    )
    app.extensions["bridge"].publisher.keys.rotate()
    issuer = get_json(client, "/ob/issuers/default")
    assert issuer["publicKey"] != [old_payload["verification"]["creator"]]
    assert len(issuer["publicKey"]) == 1  # type: ignore[arg-type]
    retired = get_json(client, old_payload["verification"]["creator"])
    assert retired["owner"] == issuer["id"]
    pem_key = load_pem_public_key(str(retired["publicKeyPem"]).encode())
    assert json.loads(jwt.api_jws.PyJWS().decode(old_token, pem_key, algorithms=["RS256"])) == old_payload  # type: ignore[arg-type]
    new_token = client.get(f"{url}/assertion.jws").get_data(as_text=True)
    new_payload = json.loads(
        jwt.api_jws.PyJWS().decode_complete(new_token, options={"verify_signature": False})["payload"]
    )
    assert [new_payload["verification"]["creator"]] == issuer["publicKey"]


def test_a_badge_image_outside_the_templates_folder_is_never_served(
    client: FlaskClient, database: Database, tmp_path: Path
) -> None:
    (tmp_path / "secret.svg").write_text("<svg/>")
    for outside in ("../../../../../../../../" + str(tmp_path / "secret.svg"), str(tmp_path / "secret.svg")):
        with database.write() as session:
            session.execute(update(Badge).where(Badge.id == "welcome").values(image=outside))
        assert client.get("/ob/images/welcome.svg").status_code == 404
    assert client.get("/ob/images/welcome.png").status_code == 404


def test_an_expired_badge_page_says_so_and_the_assertion_keeps_its_expiry(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    award_id = award(database, settings, "safety-certified")
    with database.write() as session:
        session.execute(
            update(Award).where(Award.id == award_id).values(expires_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    url = assertion_path(app, award_id)
    page = client.get(url, headers=BROWSER)
    assert page.status_code == 200
    assert "banner--expired" in page.get_data(as_text=True) and "status--expired" in page.get_data(
        as_text=True
    )
    assert get_json(client, url)["expires"] == "2026-01-01T00:00:00+00:00"
