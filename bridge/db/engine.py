"""Engines and transactions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

_IMMEDIATE = "bridge_begin_immediate"


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
            self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True, pool_size=10)
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
