"""Rate limits: per API key, per address without a valid key, per platform on the webhooks; 429 JSON with
Retry-After; counted in memory, or shared between processes in Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.services.api_keys import create_key
from bridge.settings import Settings
from tests.conftest import make_settings
from tests.web.test_webhooks import LMS_PLATFORMS

REDIS_URL = "redis://127.0.0.1:6379/15"


def limited_settings(database_url: str, tmp_path: Path, **limits: Any) -> Settings:
    return make_settings(database_url, tmp_path, platforms=LMS_PLATFORMS, rate_limits=limits)


def assert_throttled(response: TestResponse, says: str, window: int = 60) -> None:
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited" and says in error["message"]
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= window and error["retry_after"] == wait


def test_a_burst_from_one_key_is_throttled_and_other_keys_are_not(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    client = create_app(limited_settings(database_url, tmp_path, api="3/minute"), database).test_client()
    busy = {"Authorization": f"Bearer {create_key(database, 'busy')}"}
    calm = {"Authorization": f"Bearer {create_key(database, 'calm')}"}
    assert [client.get("/api/v1/awards", headers=busy).status_code for _ in range(3)] == [200] * 3
    # One budget per key across the whole API, whichever route is called.
    assert_throttled(client.get("/api/v1/badges", headers=busy), "at most 3/minute")
    assert client.get("/api/v1/badges", headers=calm).status_code == 200


def test_calls_without_a_valid_key_are_throttled_per_address(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = limited_settings(database_url, tmp_path, api_anonymous="2/minute")
    client = create_app(settings, database).test_client()
    guesses = [{"Authorization": f"Bearer bb_guess{n}"} for n in range(3)]
    assert [client.get("/api/v1/awards", headers=g).status_code for g in guesses[:2]] == [401, 401]
    assert_throttled(client.get("/api/v1/awards", headers=guesses[2]), "without a valid API key")
    valid = {"Authorization": f"Bearer {create_key(database, 'valid')}"}
    assert client.get("/api/v1/awards", headers=valid).status_code == 200  # counted apart


def test_webhooks_are_throttled_per_platform(database: Database, database_url: str, tmp_path: Path) -> None:
    settings = limited_settings(database_url, tmp_path, webhooks="2/minute")
    client = create_app(settings, database).test_client()
    for _ in range(2):
        assert client.post("/webhooks/canvas/canvas-open", json={}).status_code != 429
    assert_throttled(client.post("/webhooks/canvas/canvas-open", json={}), "webhooks for this platform")
    assert client.post("/webhooks/moodle/moodle2", json={}).status_code != 429


def test_limits_can_be_turned_off(database: Database, database_url: str, tmp_path: Path) -> None:
    settings = limited_settings(database_url, tmp_path, enabled=False, api="1/minute")
    client = create_app(settings, database).test_client()
    auth = {"Authorization": f"Bearer {create_key(database, 'free')}"}
    assert {client.get("/api/v1/awards", headers=auth).status_code for _ in range(3)} == {200}


def test_a_bad_rate_is_refused_at_start_naming_the_key(database_url: str, tmp_path: Path) -> None:
    from bridge.settings import SettingsError

    with pytest.raises(SettingsError, match=r"rate_limits\.api = 'lots': expected a rate such as"):
        limited_settings(database_url, tmp_path, api="lots")
    with pytest.raises(SettingsError, match=r"rate_limits\.storage_url = .*: expected a redis://"):
        limited_settings(database_url, tmp_path, storage_url="mysql://nope")


@pytest.fixture
def redis_db() -> Any:
    """Database 15 of the Redis on 127.0.0.1, without the counts earlier runs left there."""
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        connection.ping()
    except redis.exceptions.ConnectionError as error:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {error}")
    ours = "*LIMITER/badge-bridge/*"
    for counter in connection.scan_iter(match=ours, count=1000):
        connection.delete(counter)
    yield connection
    for counter in connection.scan_iter(match=ours, count=1000):
        connection.delete(counter)
    connection.close()


def test_processes_share_their_counts_in_redis(
    database: Database, database_url: str, tmp_path: Path, redis_db: Any
) -> None:
    settings = limited_settings(database_url, tmp_path, api="5/hour", storage_url=REDIS_URL)
    first: FlaskClient = create_app(settings, database).test_client()
    second: FlaskClient = create_app(settings, database).test_client()  # another process, as gunicorn runs
    key = create_key(database, "shared")
    auth = {"Authorization": f"Bearer {key}"}
    statuses = [
        (first if n % 2 else second).get("/api/v1/awards", headers=auth).status_code for n in range(5)
    ]
    assert statuses == [200] * 5
    assert_throttled(first.get("/api/v1/awards", headers=auth), "at most 5/hour", 3600)
    assert_throttled(second.get("/api/v1/awards", headers=auth), "at most 5/hour", 3600)
    counters = [k.decode() for k in redis_db.scan_iter(match="*LIMITER/badge-bridge/*", count=1000)]
    assert [c for c in counters if "/key:" in c and c.endswith("/api/5/1/hour")] != []
    assert not any(key in c for c in counters)  # the bearer key itself never reaches Redis


def test_an_unreachable_redis_falls_back_to_counting_in_memory(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = limited_settings(database_url, tmp_path, api="2/minute", storage_url="redis://127.0.0.1:9/0")
    client = create_app(settings, database).test_client()
    auth = {"Authorization": f"Bearer {create_key(database, 'no-redis')}"}
    assert [client.get("/api/v1/awards", headers=auth).status_code for _ in range(2)] == [200, 200]
    assert_throttled(client.get("/api/v1/awards", headers=auth), "at most 2/minute")
