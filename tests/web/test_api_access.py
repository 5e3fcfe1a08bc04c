"""Who may use the REST API: the api_access setting and bearer API keys."""

from pathlib import Path

from flask.testing import FlaskClient

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.services.api_keys import create_key, revoke_key
from tests.conftest import make_settings

EVENT = {"platform": "demo", "event_key": "k", "kind": "login", "learner": "1"}


def client_with(database: Database, database_url: str, tmp_path: Path, access: str) -> FlaskClient:
    return create_app(make_settings(database_url, tmp_path, api_access=access), database).test_client()


def test_the_api_is_disabled_by_default_with_403(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    client = client_with(database, database_url, tmp_path, "disabled")
    response = client.post("/api/v1/events", json=EVENT)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "api_disabled"


def test_no_key_is_401_with_a_bearer_challenge(client: FlaskClient) -> None:
    response = client.post("/api/v1/events", json=EVENT)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "missing_credentials"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_or_revoked_key_is_401(client: FlaskClient, database: Database) -> None:
    response = client.post("/api/v1/events", json=EVENT, headers={"Authorization": "Bearer bb_nope"})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_credentials"
    key = create_key(database, "short-lived")
    assert revoke_key(database, "short-lived")
    response = client.post("/api/v1/events", json=EVENT, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


def test_read_access_allows_reading_but_not_posting(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    client = client_with(database, database_url, tmp_path, "read")
    headers = {"Authorization": f"Bearer {create_key(database, 'reader')}"}
    assert client.get("/api/v1/awards", headers=headers).status_code == 200
    response = client.post("/api/v1/events", json=EVENT, headers=headers)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "api_read_only"


def test_unknown_routes_and_methods_answer_json(client: FlaskClient, auth: dict[str, str]) -> None:
    missing = client.get("/api/v1/nothing-here", headers=auth)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong_method = client.delete("/api/v1/events", headers=auth)
    assert (
        wrong_method.status_code == 405 and wrong_method.get_json()["error"]["code"] == "method_not_allowed"
    )


def test_event_status_and_bad_queries(client: FlaskClient, auth: dict[str, str]) -> None:
    event_id = client.post("/api/v1/events", json=EVENT, headers=auth).get_json()["id"]
    found = client.get(f"/api/v1/events/{event_id}", headers=auth).get_json()
    assert (found["status"], found["attempts"], found["event_key"]) == ("pending", 0, "k")
    assert client.get("/api/v1/events/999", headers=auth).status_code == 404
    bad_limit = client.get("/api/v1/awards?limit=many", headers=auth)
    assert bad_limit.status_code == 422 and "limit" in bad_limit.get_json()["error"]["message"]
