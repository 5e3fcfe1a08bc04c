"""Engines and transactions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

_IMMEDIATE = "bridge_begin_immediate"
# libpq waits for a connection as long as TCP does (minutes) unless told; a server that does not answer
# must not hold a request, or the start-up, that long.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10


class Database:
    """One engine per process; ``write()`` transactions take SQLite's write lock up front.

    SQLite allows one writer at a time. A transaction that reads and then writes must say so at BEGIN
    (``BEGIN IMMEDIATE``), or a concurrent writer makes it fail at its first write instead of waiting.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url, echo=echo, connect_args={"timeout": 30})
            _configure_sqlite(self.engine)
        else:
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in self.url.query:
                connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_SECONDS
            self.engine = create_engine(
                self.url, echo=echo, pool_pre_ping=True, pool_size=10, connect_args=connect_args
            )
        self._write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self, *, foreign_keys: bool = True) -> Iterator[Connection]:
        """A Core connection in a write transaction (migrations run in one).

        ``foreign_keys=False`` lets a SQLite migration rebuild a referenced table (Alembic's batch mode
        copies, drops and renames it); every reference is checked again before the commit.
        """
        if foreign_keys or not self.is_sqlite:
            with self._write_engine.begin() as connection:
                yield connection
            return
        with self._write_engine.connect() as connection:
            # Outside any transaction (in one, the pragma is a no-op), so on the driver's connection.
            driver = connection.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    yield connection
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left broken references: {broken[:5]}")
            finally:
                driver.execute("PRAGMA foreign_keys=ON")

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot say IMMEDIATE; take it over
    # (the recipe in SQLAlchemy's SQLite dialect documentation).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Checkpoint the WAL every ~40 MB instead of SQLite's ~4 MB: the worker rewrites the same
        # pages (learners' states, the inbox's tail) batch after batch, and each checkpoint copies a
        # page once however often it changed since the last (measured: a third less commit time).
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# What SQLite says when the database, not the statement, is the problem: the file cannot be opened or
# written, its disk is full or failing, another process holds the write lock past the busy timeout, or
# the file is no longer the database (replaced, emptied). Each with the short cause a client is told.
_SQLITE_OUTAGES = (
    ("database or disk is full", "the database or its disk is full"),
    ("disk i/o error", "disk I/O error"),
    ("unable to open database", "cannot open the database file"),
    ("is locked", "the database is locked by another writer"),
    ("readonly database", "the database file is read-only"),
    ("no such table", "the database has no schema (replaced or emptied?)"),
    ("file is not a database", "the database file is damaged or not a database"),
    ("database disk image is malformed", "the database file is damaged"),
)
# PostgreSQL error classes (SQLSTATE's first two characters) that say the server is unavailable.
_POSTGRES_CLASSES = {
    "08": "the connection to the database server failed",
    "53": "the database server is out of resources (disk full or too many connections)",
    "57": "the database server ended the connection (shutting down or restarting)",
}


def outage_cause(error: BaseException) -> str | None:
    """The short cause when ``error`` says the database is unavailable rather than a statement is wrong.

    Covers SQLAlchemy's errors (operational, interface, disconnection, no pooled connection to be had)
    and the drivers' own, which the inbox's DBAPI connection raises unwrapped (see services.ingest).
    Errors chained to ``error`` count too. None: not an outage.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = _own_outage_cause(current)
        if cause is not None:
            return cause
        current = current.__cause__ or current.__context__
    return None


def _own_outage_cause(error: BaseException) -> str | None:
    if isinstance(error, exc.TimeoutError):
        return "no database connection is free (the pool is exhausted)"
    if isinstance(error, exc.DisconnectionError):
        return "the connection to the database was lost"
    if isinstance(error, exc.DBAPIError):
        wrapped = error.orig if isinstance(error.orig, BaseException) else None
        driver = _driver_outage_cause(wrapped) if wrapped is not None else None
        if driver is not None:
            return driver
        if isinstance(error, exc.OperationalError | exc.InterfaceError):
            return "the database refused the operation"
        return None
    return _driver_outage_cause(error)


def _driver_outage_cause(error: BaseException) -> str | None:
    if isinstance(error, sqlite3.OperationalError | sqlite3.DatabaseError):
        message = str(error).lower()
        for needle, cause in _SQLITE_OUTAGES:
            if needle in message:
                return cause
        return "the database refused the operation" if isinstance(error, sqlite3.OperationalError) else None
    psycopg = sys.modules.get("psycopg")  # loaded if, and only if, a PostgreSQL database is in use
    if psycopg is not None and isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        state = getattr(error, "sqlstate", None) or ""
        return _POSTGRES_CLASSES.get(
            state[:2], "cannot reach the database server, or the connection was lost"
        )
    return None
