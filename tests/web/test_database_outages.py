"""The database unavailable: every route answers 503 with Retry-After and says why, then recovers by itself.

Against real databases made unavailable: a SQLite file that is full (``max_page_count``), locked by
another writer past the busy timeout, or gone with its directory; a PostgreSQL database whose connections
are terminated and refused (``pg_terminate_backend``, ``ALLOW_CONNECTIONS false``). The shared
PostgreSQL server itself is never stopped.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, func, make_url, select, text
from werkzeug.test import TestResponse

from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.migrate import upgrade
from bridge.db.models import Event
from bridge.services.api_keys import create_key
from bridge.settings import Settings
from bridge.web.errors import RETRY_AFTER_SECONDS
from tests.conftest import TEST_DATABASE_ENV, make_settings, on_postgres
from tests.connectors.support import MOODLE_SECRET, MOODLE_URL, fixture

PLATFORMS = [
    {"id": "demo", "kind": "custom", "name": "Demo"},
    {
        "id": "moodle2",
        "kind": "moodle",
        "base_url": MOODLE_URL,
        "token": "ws",
        "webhook_secret": MOODLE_SECRET,
    },
]
COMPLETED = fixture("moodle", "webhook_events")[0]
# Routes that read or write the database, one of each kind: ingest, the webhooks, the REST API, the
# public Open Badges documents.
READ_ROUTES = [
    "/api/v1/events/1",
    "/api/v1/awards",
    "/api/v1/badges",
    "/api/v1/learners/demo/7/progress",
    "/api/v1/leaderboards?platform=demo",
    "/api/v1/audit",
    "/api/v1/sync/runs",
    "/api/v1/lti/registrations",
    "/ob/issuers/x/badges/welcome",
    "/ob/images/welcome.svg",
]
sqlite_only = pytest.mark.skipif(on_postgres(), reason="a SQLite file made unavailable")
postgres_only = pytest.mark.skipif(not on_postgres(), reason="a PostgreSQL database made unavailable")


def login(key: str) -> dict[str, Any]:
    return {"platform": "demo", "event_key": key, "kind": "login", "learner": "7"}


def assert_unavailable(response: TestResponse, cause: str = "") -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    error = response.get_json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["message"].startswith("database unavailable: ")
    assert cause in error["message"]


def stored(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def sqlite_file(database: Database) -> str:
    assert database.url.database is not None
    return database.url.database


class SqliteLimits:
    """Settings applied to every SQLite connection made from now on (the inbox's included)."""

    def __init__(self, database: Database) -> None:
        self.pragmas: dict[str, int] = {}
        event.listen(database.engine, "connect", self._apply)

    def _apply(self, dbapi_connection: Any, _record: Any) -> None:
        for name, value in self.pragmas.items():
            dbapi_connection.execute(f"PRAGMA {name} = {value}")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, platforms=PLATFORMS)


# --- SQLite ------------------------------------------------------------------------------------------


@sqlite_only
def test_a_database_that_may_not_grow_answers_503_for_ingest_then_recovers(
    settings: Settings, database: Database, auth: dict[str, str]
) -> None:
    limits = SqliteLimits(database)
    with sqlite3.connect(sqlite_file(database)) as probe:
        pages = probe.execute("PRAGMA page_count").fetchone()[0]
        free = probe.execute("PRAGMA freelist_count").fetchone()[0]
        page_size = probe.execute("PRAGMA page_size").fetchone()[0]
    limits.pragmas["max_page_count"] = pages  # the file may not grow
    database.engine.dispose()  # the pool's connections are made again, under the limit
    client = create_app(settings, database).test_client()
    # More than the free pages hold: the file must grow to store it.
    bulky = {**login("big"), "data": {"note": "x" * (page_size * (free + 4))}}

    assert_unavailable(client.post("/api/v1/events", json=bulky, headers=auth), "full")

    limits.pragmas.clear()  # room again: nothing restarted, the next request is stored
    assert client.post("/api/v1/events", json=bulky, headers=auth).status_code == 202
    assert stored(database) == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB file system of the test's own (tmpfs), where one may be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\1" * 65536)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    return filler


@sqlite_only
def test_a_full_disk_answers_503_for_ingest_and_webhooks_then_recovers(
    database_url: str, tmp_path: Path, small_disk: Path
) -> None:
    shutil.copyfile(make_url(database_url).database or "", small_disk / "bridge.sqlite3")
    settings = make_settings(f"sqlite:///{small_disk / 'bridge.sqlite3'}", tmp_path, platforms=PLATFORMS)
    database = open_database(settings)
    auth = {"Authorization": f"Bearer {create_key(database, 'outage')}"}
    client = create_app(settings, database).test_client()
    assert client.post("/api/v1/events", json=login("before"), headers=auth).status_code == 202
    filler = fill(small_disk)

    assert_unavailable(client.post("/api/v1/events", json=login("a"), headers=auth), "full")
    assert_unavailable(client.post("/webhooks/moodle/moodle2", json=COMPLETED), "full")

    filler.unlink()  # space freed: nothing restarted
    assert client.post("/api/v1/events", json=login("a"), headers=auth).status_code == 202
    assert client.post("/webhooks/moodle/moodle2", json=COMPLETED).status_code == 202
    assert stored(database) == 3
    database.dispose()


@sqlite_only
def test_a_database_locked_past_the_busy_timeout_answers_503_then_recovers(
    settings: Settings, database: Database, auth: dict[str, str]
) -> None:
    SqliteLimits(database).pragmas["busy_timeout"] = 100
    database.engine.dispose()
    client = create_app(settings, database).test_client()
    writer = sqlite3.connect(sqlite_file(database), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert_unavailable(client.post("/api/v1/events", json=login("a"), headers=auth), "locked")
        assert_unavailable(client.post("/webhooks/moodle/moodle2", json=COMPLETED), "locked")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert client.post("/api/v1/events", json=login("a"), headers=auth).status_code == 202
    assert client.post("/webhooks/moodle/moodle2", json=COMPLETED).status_code == 202


@sqlite_only
def test_a_database_file_gone_with_its_directory_answers_503_on_every_route_then_recovers(
    database_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "volume"
    home.mkdir()
    shutil.copyfile(make_url(database_url).database or "", home / "bridge.sqlite3")
    settings = make_settings(f"sqlite:///{home / 'bridge.sqlite3'}", tmp_path, platforms=PLATFORMS)
    database = open_database(settings)
    key = create_key(database, "outage")
    auth = {"Authorization": f"Bearer {key}"}
    client = create_app(settings, database).test_client()
    database.engine.dispose()  # no connection left open: the next ones must open the file
    away = tmp_path / "unmounted"
    home.rename(away)  # the volume is gone
    try:
        assert_unavailable(client.post("/webhooks/moodle/moodle2", json=COMPLETED), "cannot open")
        assert_unavailable(client.post("/api/v1/events", json=login("a"), headers=auth), "cannot open")
        for route in READ_ROUTES:
            assert_unavailable(client.get(route, headers=auth), "cannot open")
        health = client.get("/healthz")
        assert health.status_code == 503 and health.headers["Retry-After"]
    finally:
        away.rename(home)  # back
    assert client.post("/webhooks/moodle/moodle2", json=COMPLETED).status_code == 202
    assert client.post("/api/v1/events", json=login("a"), headers=auth).status_code == 202
    assert client.get("/api/v1/awards", headers=auth).status_code == 200
    assert client.get("/healthz").status_code == 200
    database.dispose()


# --- PostgreSQL --------------------------------------------------------------------------------------


@pytest.fixture
def own_postgres(empty_database_url: str) -> Iterator[str]:
    """A migrated database of this test's own, to make unavailable without touching any other."""
    database = Database(empty_database_url)
    upgrade(database)
    database.dispose()
    yield empty_database_url


def _admin(sql: str, **values: Any) -> None:
    admin = create_engine(os.environ[TEST_DATABASE_ENV], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(sql), values)
    finally:
        admin.dispose()


def _take_down(name: str) -> None:
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()",
        name=name,
    )


def _bring_up(name: str) -> None:
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@postgres_only
def test_a_postgres_database_whose_connections_are_cut_answers_503_on_every_route_then_recovers(
    own_postgres: str, tmp_path: Path
) -> None:
    settings = make_settings(own_postgres, tmp_path, platforms=PLATFORMS)
    database = open_database(settings)
    auth = {"Authorization": f"Bearer {create_key(database, 'outage')}"}
    client: FlaskClient = create_app(settings, database).test_client()
    assert client.post("/api/v1/events", json=login("before"), headers=auth).status_code == 202
    name = make_url(own_postgres).database or ""
    _take_down(name)
    try:
        # The inbox's own connection was cut: psycopg's error, unwrapped.
        assert_unavailable(client.post("/api/v1/events", json=login("a"), headers=auth))
        # Then no new connection is accepted.
        assert_unavailable(client.post("/api/v1/events", json=login("a"), headers=auth))
        assert_unavailable(client.post("/webhooks/moodle/moodle2", json=COMPLETED))
        for route in READ_ROUTES:
            assert_unavailable(client.get(route, headers=auth))
        health = client.get("/healthz")
        assert health.status_code == 503 and health.headers["Retry-After"]
    finally:
        _bring_up(name)
    # Back: the inbox opens a new connection, the pool's pre-ping replaces its dead ones.
    assert client.post("/api/v1/events", json=login("a"), headers=auth).status_code == 202
    assert client.post("/webhooks/moodle/moodle2", json=COMPLETED).status_code == 202
    assert client.get("/api/v1/awards", headers=auth).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert stored(database) == 3
    database.dispose()


# --- Both --------------------------------------------------------------------------------------------


def test_an_error_that_is_not_an_outage_is_still_a_500(app: Flask, client: FlaskClient) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise sqlite3.IntegrityError("UNIQUE constraint failed: x")

    response = client.get("/boom")
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert json.loads(response.get_data())["error"]["code"] == "internal_error"
