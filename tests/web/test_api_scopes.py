"""API keys with scopes (read < write < admin), bound to a platform or not, expiring or not, and the one
place that enforces them for every /api/v1 route."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

from bridge.app import create_app
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.migrate import upgrade
from bridge.db.models import ApiKey
from bridge.services.api_keys import ApiKeyVerifier, create_key, list_keys
from bridge.settings import Settings
from bridge.web.access import API_PREFIX, api_endpoints, check_declared, need_of, needs
from tests.conftest import make_settings
from tests.issuing.support import award

EVENT = {"platform": "demo", "event_key": "k", "kind": "login", "learner": "1"}
BADGE = {
    "id": "api-made",
    "name": "API made",
    "description": "d",
    "image": "welcome.svg",
    "criteria": {"groups": [{"requirements": [{"kinds": ["login"], "aggregate": "count", "target": 1}]}]},
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(database: Database) -> dict[str, dict[str, str]]:
    return {
        scope: bearer(create_key(database, f"{scope}-key", scope=scope))
        for scope in ("read", "write", "admin")
    }


def test_every_api_route_declares_the_scope_it_needs(app: Flask) -> None:
    endpoints = api_endpoints(app)
    assert len(endpoints) > 20  # every blueprint under /api/v1, not an empty walk
    assert {e for e in endpoints if need_of(app, e) is None} == set()
    assert {r.rule for r in app.url_map.iter_rules() if r.endpoint in endpoints} == {
        r.rule for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX)
    }


def test_an_app_with_an_undeclared_api_route_refuses_to_start(app: Flask) -> None:
    extra = Blueprint("extra", __name__, url_prefix="/api/v1/extra")
    extra.add_url_rule("/forgotten", "forgotten", lambda: "open to all")
    extra.add_url_rule("/declared", "declared", needs("read")(lambda: "fine"))
    extra.add_url_rule("/public", "public", needs("public")(lambda: "for everyone"))
    app.register_blueprint(extra)
    with pytest.raises(RuntimeError, match=r"API views without @needs\(scope\): extra.forgotten \("):
        check_declared(app)
    client = app.test_client()
    assert client.get("/api/v1/extra/public").get_data(as_text=True) == "for everyone"  # no key asked
    assert client.get("/api/v1/extra/declared").status_code == 401


def test_a_read_key_reads_and_gets_403_naming_the_scope_for_changes(
    client: FlaskClient, keys: dict[str, dict[str, str]]
) -> None:
    assert client.get("/api/v1/awards", headers=keys["read"]).status_code == 200
    refused = client.post("/api/v1/events", json=EVENT, headers=keys["read"])
    assert refused.status_code == 403
    error = refused.get_json()["error"]
    assert error["code"] == "insufficient_scope" and error["required_scope"] == "write"
    assert "'write' scope" in error["message"] and "'read'" in error["message"]


def test_a_write_key_changes_learners_but_only_admin_changes_badges_and_lti(
    client: FlaskClient, keys: dict[str, dict[str, str]]
) -> None:
    assert client.post("/api/v1/events", json=EVENT, headers=keys["write"]).status_code == 202
    for method, path, body in (
        ("post", "/api/v1/badges", BADGE),
        ("patch", "/api/v1/badges/welcome", {"enabled": False}),
        ("get", "/api/v1/lti/registrations", None),
    ):
        refused = getattr(client, method)(path, json=body, headers=keys["write"])
        assert refused.status_code == 403, path
        assert refused.get_json()["error"]["required_scope"] == "admin"
    assert client.post("/api/v1/badges", json=BADGE, headers=keys["admin"]).status_code == 201
    assert client.get("/api/v1/lti/registrations", headers=keys["admin"]).status_code == 200


def test_api_access_read_caps_every_key_whatever_its_scope(
    database: Database, database_url: str, tmp_path: Path, keys: dict[str, dict[str, str]]
) -> None:
    client = create_app(make_settings(database_url, tmp_path, api_access="read"), database).test_client()
    assert client.get("/api/v1/lti/registrations", headers=keys["admin"]).status_code == 200
    refused = client.post("/api/v1/events", json=EVENT, headers=keys["admin"])
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "api_read_only"


def test_a_platform_key_sees_and_changes_only_its_platform(
    client: FlaskClient, database: Database, settings: Settings
) -> None:
    demo_award = award(database, settings, "welcome", "42", platform="demo")
    other_award = award(database, settings, "welcome", "7", platform="moodle1")
    key = bearer(create_key(database, "demo-only", scope="write", platform="demo"))

    listed = client.get("/api/v1/awards", headers=key).get_json()["awards"]
    assert [a["id"] for a in listed] == [demo_award]
    refused = client.get("/api/v1/awards?platform=moodle1", headers=key)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "other_platform"
    assert client.get("/api/v1/learners/moodle1/7/progress", headers=key).status_code == 403
    assert client.get("/api/v1/learners/demo/42/progress", headers=key).status_code == 200

    elsewhere = client.post("/api/v1/events", json=EVENT | {"platform": "moodle1"}, headers=key)
    assert elsewhere.status_code == 403 and "platform" in elsewhere.get_json()["error"]["message"]
    batch = {"events": [EVENT, EVENT | {"platform": "moodle1", "event_key": "k2"}]}
    refused_batch = client.post("/api/v1/events", json=batch, headers=key)
    assert refused_batch.status_code == 403
    assert refused_batch.get_json()["error"]["message"].startswith("events[1].platform")
    event_id = client.post("/api/v1/events", json=EVENT, headers=key).get_json()["id"]
    assert client.get(f"/api/v1/events/{event_id}", headers=key).status_code == 200

    # Another platform's award by id is as good as absent; the bridge's own key still sees it.
    revoke = client.post(f"/api/v1/awards/{other_award}/revoke", json={"reason": "no"}, headers=key)
    assert revoke.status_code == 404
    assert (
        client.post(f"/api/v1/awards/{demo_award}/revoke", json={"reason": "wrong"}, headers=key).status_code
        == 200
    )

    # What acts on every platform at once is not for a key bound to one, whatever its scope.
    admin_of_demo = bearer(create_key(database, "demo-admin", scope="admin", platform="demo"))
    refused_badge = client.post("/api/v1/badges", json=BADGE, headers=admin_of_demo)
    assert refused_badge.status_code == 403 and refused_badge.get_json()["error"]["code"] == "platform_key"


def test_a_platform_key_reads_only_its_platform_in_events_audit_and_sync_runs(
    client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    award(database, settings, "welcome", "42", platform="demo")
    award(database, settings, "welcome", "7", platform="moodle1")
    for platform in ("demo", "moodle1"):
        client.post("/api/v1/events", json=EVENT | {"platform": platform}, headers=auth)
    key = bearer(create_key(database, "moodle-reader", scope="read", platform="moodle1"))
    events = client.get("/api/v1/events", headers=key).get_json()["events"]
    assert {e["platform"] for e in events} == {"moodle1"}
    entries = client.get("/api/v1/audit", headers=key).get_json()["entries"]
    assert [(e["platform"], e["learner"]) for e in entries] == [("moodle1", "7")]
    assert client.get("/api/v1/sync/runs", headers=key).status_code == 200
    assert client.get("/api/v1/sync/runs?platform=demo", headers=key).status_code == 403


def test_unknown_and_expired_keys_are_401(client: FlaskClient, database: Database) -> None:
    unknown = client.get("/api/v1/awards", headers=bearer("bb_not-a-key"))
    assert unknown.status_code == 401 and unknown.get_json()["error"]["code"] == "invalid_credentials"
    expired = create_key(database, "past", scope="read", expires_at=utcnow() - timedelta(seconds=1))
    refused = client.get("/api/v1/awards", headers=bearer(expired))
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "expired_credentials"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    lasting = create_key(database, "future", scope="read", expires_at=utcnow() + timedelta(days=1))
    assert client.get("/api/v1/awards", headers=bearer(lasting)).status_code == 200


def test_a_remembered_key_is_not_remembered_past_its_expiry(database: Database) -> None:
    now = [utcnow()]
    key = create_key(database, "brief", scope="read", expires_at=now[0] + timedelta(seconds=2))
    verifier = ApiKeyVerifier(database, cache_seconds=3600, clock=lambda: now[0])
    assert verifier.verify(key).caller is not None
    now[0] += timedelta(seconds=3)
    time.sleep(2.1)  # the remembered verdict lasts until the expiry by the process's monotonic clock
    assert verifier.verify(key).refusal == "expired"


def test_last_use_is_recorded_at_most_once_a_minute(database: Database) -> None:
    key = create_key(database, "busy", scope="read")
    now = [utcnow()]
    verifier = ApiKeyVerifier(database, cache_seconds=0, clock=lambda: now[0])
    writes: list[str] = []

    def count_writes(_conn: object, _cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("UPDATE api_keys"):
            writes.append(statement)

    event.listen(database.engine, "before_cursor_execute", count_writes)
    try:
        for _ in range(50):
            assert verifier.verify(key).caller is not None
        first = _last_used(database, "busy")
        now[0] += timedelta(seconds=59)
        verifier.verify(key)
        now[0] += timedelta(seconds=2)
        verifier.verify(key)
    finally:
        event.remove(database.engine, "before_cursor_execute", count_writes)
    assert len(writes) == 2  # 52 uses, two writes: the first, and the first a minute after it
    assert first == now[0] - timedelta(seconds=61)
    [listed] = [k for k in list_keys(database) if k.name == "busy"]
    assert listed.last_used_at == now[0]


def _last_used(database: Database, name: str) -> object:
    with database.read() as session:
        return session.scalar(select(ApiKey.last_used_at).where(ApiKey.name == name))


def test_no_key_appears_in_the_logs(
    client: FlaskClient, database: Database, keys: dict[str, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "bb_wrong-secret-value-0123456789"
    client.get("/api/v1/awards", headers=keys["read"])
    client.post("/api/v1/events", json=EVENT, headers=keys["read"])  # refused: scope
    client.get("/api/v1/awards", headers=bearer(wrong))  # refused: unknown
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "request" in logged  # the requests were logged, and nothing of their keys
    secrets = [h["Authorization"].split()[1] for h in keys.values()] + [wrong]
    assert [s for s in secrets if s in logged] == []
    with database.read() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
    assert not any(s in stored for s in secrets)  # only digests are kept


def test_keys_made_before_scopes_become_admin_keys_of_every_platform(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    upgrade(database, "0013")
    with database.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO api_keys (name, key_hash, created_at) VALUES ('old', :hash, :now)"),
            {"hash": "a" * 64, "now": "2026-11-01 09:00:00"},
        )
    upgrade(database)
    [old] = list_keys(database)
    assert (old.name, old.scope, old.platform, old.expires_at, old.last_used_at) == (
        "old",
        "admin",
        None,
        None,
        None,
    )
    # A key made now must name its scope: the default that filled the old rows is gone.
    new_key = text("INSERT INTO api_keys (name, key_hash, created_at) VALUES ('new', :hash, :now)")
    with pytest.raises(IntegrityError, match=r"(?i)null"), database.engine.begin() as connection:
        connection.execute(new_key, {"hash": "b" * 64, "now": "2026-11-01 09:00:00"})
    database.dispose()
