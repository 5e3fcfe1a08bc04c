"""``/api/v1/lti/registrations``: the LTI tool's registrations and deployments, for administrators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.services.api_keys import create_key
from bridge.services.audit import audit_log
from tests.conftest import make_settings

URL = "/api/v1/lti/registrations"
MOODLE: dict[str, Any] = {
    "platform": "moodle1",
    "issuer": "https://moodle.example.edu",
    "client_id": "kM4vZ9pQ2xR7tLw",
    "auth_login_url": "https://moodle.example.edu/mod/lti/auth.php",
    "auth_token_url": "https://moodle.example.edu/mod/lti/token.php",
    "key_set_url": "https://moodle.example.edu/mod/lti/certs.php",
    "deployment_ids": ["3"],
}


def create(client: FlaskClient, auth: dict[str, str], **changes: Any) -> Any:
    return client.post(URL, json={**MOODLE, **changes}, headers=auth)


def decide(client: FlaskClient, auth: dict[str, str], registration_id: int, **body: Any) -> Any:
    return client.post(f"{URL}/{registration_id}/status", json=body, headers=auth)


def error_of(response: Any) -> tuple[int, str, str]:
    error = response.get_json()["error"]
    return response.status_code, error["code"], error["message"]


def test_a_registration_is_created_with_201_and_answered_as_stored(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = create(client, auth)
    assert response.status_code == 201
    created = response.get_json()
    assert {k: created[k] for k in MOODLE if k != "deployment_ids"} == {
        k: v for k, v in MOODLE.items() if k != "deployment_ids"
    }
    assert (created["status"], created["source"], created["auth_audience"]) == ("active", "manual", None)
    assert isinstance(created["id"], int) and created["created_at"]
    [deployment] = created["deployments"]
    assert (deployment["deployment_id"], deployment["status"], deployment["decided_by"]) == (
        "3",
        "active",
        "tests",  # the API key's name
    )


def test_the_calling_key_is_the_actor_in_the_audit_log(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    registration_id = create(client, auth).get_json()["id"]
    decide(client, auth, registration_id, status="disabled")
    assert [(e.actor, e.action) for e in audit_log(database)] == [
        ("tests", "lti.disable"),
        ("tests", "lti.register"),
    ]


def test_get_lists_the_registrations_with_their_deployments(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    assert client.get(URL, headers=auth).get_json() == {"registrations": []}
    first = create(client, auth).get_json()["id"]
    second = create(client, auth, platform="demo", client_id="other", deployment_ids=[]).get_json()["id"]
    listed = client.get(URL, headers=auth).get_json()["registrations"]
    assert [(r["id"], r["platform"], r["client_id"]) for r in listed] == [
        (first, "moodle1", "kM4vZ9pQ2xR7tLw"),
        (second, "demo", "other"),
    ]
    assert [(d["deployment_id"], d["status"]) for d in listed[0]["deployments"]] == [("3", "active")]
    assert listed[1]["deployments"] == []


def test_a_registration_with_several_deployments_is_created(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = create(client, auth, deployment_ids=["3", "4"])
    assert response.status_code == 201
    assert [d["deployment_id"] for d in response.get_json()["deployments"]] == ["3", "4"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"key_set_url": "ftp://moodle.example.edu/certs"}, "key_set_url"),
        ({"auth_login_url": "http://moodle.example.edu/mod/lti/auth.php"}, "auth_login_url"),
        ({"client_id": ""}, "client_id"),
        ({"issuer": None}, "issuer"),
        ({"deployment_ids": "3"}, "deployment_ids"),
        ({"deployment_ids": ["3", ""]}, "deployment_ids[1]"),
        ({"secret": "x"}, "secret"),
    ],
)
def test_a_bad_field_is_422_naming_it(
    client: FlaskClient, auth: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    status, code, message = error_of(create(client, auth, **changes))
    assert status == 422 and code == "invalid_registration"
    assert message.startswith(f"{field}: ")
    assert client.get(URL, headers=auth).get_json() == {"registrations": []}


def test_a_missing_field_is_422_naming_it(client: FlaskClient, auth: dict[str, str]) -> None:
    body = {k: v for k, v in MOODLE.items() if k != "key_set_url"}
    status, code, message = error_of(client.post(URL, json=body, headers=auth))
    assert (status, code) == (422, "invalid_registration") and message.startswith("key_set_url: ")


def test_an_unknown_platform_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    status, code, message = error_of(create(client, auth, platform="nowhere"))
    assert (status, code) == (422, "unknown_platform") and "'nowhere'" in message


def test_a_body_that_is_not_json_is_refused(client: FlaskClient, auth: dict[str, str]) -> None:
    assert client.post(URL, data="platform=moodle1", headers=auth).status_code == 415
    malformed = client.post(URL, data="{", content_type="application/json", headers=auth)
    assert malformed.status_code == 400


def test_the_same_client_id_at_the_same_issuer_is_409(client: FlaskClient, auth: dict[str, str]) -> None:
    assert create(client, auth).status_code == 201
    status, code, message = error_of(create(client, auth, deployment_ids=[]))
    assert (status, code) == (409, "registration_exists") and "kM4vZ9pQ2xR7tLw" in message
    assert create(client, auth, client_id="another").status_code == 201  # same issuer, another client


def test_a_registration_and_a_deployment_are_disabled_and_approved(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    registration_id = create(client, auth).get_json()["id"]
    disabled = decide(client, auth, registration_id, status="disabled")
    assert disabled.status_code == 200 and disabled.get_json()["status"] == "disabled"
    approved = decide(client, auth, registration_id, status="active").get_json()
    assert approved["status"] == "active"
    one = decide(client, auth, registration_id, status="disabled", deployment_id="3").get_json()
    assert one["status"] == "active"
    assert [(d["deployment_id"], d["status"]) for d in one["deployments"]] == [("3", "disabled")]


def test_an_unknown_registration_or_deployment_is_404(client: FlaskClient, auth: dict[str, str]) -> None:
    assert error_of(decide(client, auth, 999, status="active"))[:2] == (404, "unknown_registration")
    registration_id = create(client, auth).get_json()["id"]
    status, code, message = error_of(
        decide(client, auth, registration_id, status="active", deployment_id="9")
    )
    assert (status, code) == (404, "unknown_deployment") and "'9'" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "pending"}, "status"),
        ({}, "status"),
        ({"status": "active", "deployment_id": ""}, "deployment_id"),
    ],
)
def test_a_bad_decision_is_422_naming_the_field(
    client: FlaskClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    registration_id = create(client, auth).get_json()["id"]
    status, code, message = error_of(decide(client, auth, registration_id, **body))
    assert (status, code) == (422, "invalid_decision") and message.startswith(f"{field}: ")


def test_without_a_key_every_route_is_401(client: FlaskClient, auth: dict[str, str]) -> None:
    registration_id = create(client, auth).get_json()["id"]
    for response in (
        client.get(URL),
        client.post(URL, json=MOODLE),
        client.post(f"{URL}/{registration_id}/status", json={"status": "disabled"}),
        client.get(URL, headers={"Authorization": "Bearer bb_unknown"}),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(URL, headers=auth).get_json()["registrations"][0]["status"] == "active"


def test_a_read_only_api_lists_but_neither_registers_nor_decides(
    database: Database, database_url: str, tmp_path: Path, client: FlaskClient, auth: dict[str, str]
) -> None:
    registration_id = create(client, auth).get_json()["id"]
    reader = create_app(make_settings(database_url, tmp_path, api_access="read"), database).test_client()
    headers = {"Authorization": f"Bearer {create_key(database, 'reader')}"}
    assert reader.get(URL, headers=headers).status_code == 200
    for response in (
        reader.post(URL, json={**MOODLE, "client_id": "x"}, headers=headers),
        reader.post(f"{URL}/{registration_id}/status", json={"status": "disabled"}, headers=headers),
    ):
        assert error_of(response)[:2] == (403, "api_read_only")
    assert len(client.get(URL, headers=auth).get_json()["registrations"]) == 1
    assert client.get(URL, headers=auth).get_json()["registrations"][0]["status"] == "active"
