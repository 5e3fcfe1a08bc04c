"""Shared fixtures. The suite runs on SQLite by default and on PostgreSQL when
``BRIDGE_TEST_DATABASE_URL=postgresql+psycopg://...`` is set (a fresh database is created beside it)."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text

from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.migrate import upgrade
from bridge.db.models import Base
from bridge.services.api_keys import create_key
from bridge.settings import Settings, load_settings

TEST_DATABASE_ENV = "BRIDGE_TEST_DATABASE_URL"
PLATFORMS = [{"id": "demo", "kind": "custom", "name": "Demo"}, {"id": "moodle1", "kind": "moodle"}]
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def on_postgres() -> bool:
    return bool(os.environ.get(TEST_DATABASE_ENV, "").startswith("postgresql"))


@pytest.fixture(scope="session")
def _migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database made once per run: a file to copy (SQLite) or a database to empty (PostgreSQL)."""
    server_url = os.environ.get(TEST_DATABASE_ENV)
    if not server_url:
        path = tmp_path_factory.mktemp("template") / "bridge.sqlite3"
        database = Database(f"sqlite:///{path}")
        upgrade(database)
        database.dispose()  # the last connection checkpoints the WAL into the file
        yield str(path)
        return
    name = f"bridge_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    upgrade(database)
    database.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for migration tests: a new file, or a new PostgreSQL database."""
    server_url = os.environ.get(TEST_DATABASE_ENV)
    if not server_url:
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = f"bridge_empty_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(_migrated_database: str, tmp_path: Path) -> str:
    """A migrated, empty database for one test."""
    if not on_postgres():
        target = tmp_path / "bridge.sqlite3"
        shutil.copyfile(_migrated_database, target)
        return f"sqlite:///{target}"
    engine = create_engine(_migrated_database)
    with engine.begin() as connection:
        # A transaction leaked by the previous test would block TRUNCATE: fail, naming it, not hang.
        connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return _migrated_database


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "api_access": "write",
        "platforms": PLATFORMS,
        "worker": {"idle_sleep_seconds": 0.05, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
    }
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, database: Database) -> Flask:
    return create_app(settings, database)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def api_key(database: Database) -> str:
    return create_key(database, "tests")


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, database_url: str, data_dir: Path, extra: str = "") -> Path:
    """A TOML settings file for the processes a test starts."""
    platforms = "".join(f'\n[[platforms]]\nid = "{p["id"]}"\nkind = "{p["kind"]}"\n' for p in PLATFORMS)
    path.write_text(
        f'data_dir = "{data_dir.as_posix()}"\ndatabase_url = "{database_url}"\napi_access = "write"\n'
        f"{extra}\n{platforms}",
        encoding="utf-8",
    )
    return path


def process_env(config: Path) -> dict[str, str]:
    """The environment for a child process: this one's, minus BRIDGE_* settings, plus the config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_") or k == TEST_DATABASE_ENV}
    env["BRIDGE_CONFIG"] = str(config)
    return env
