"""Statements on the database driver's own cursor, for the few paths where SQLAlchemy's cost shows.

The inbox insert and the worker's per-batch reads and writes run thousands of rows a second. For those,
SQLAlchemy's per-row type processing and parameter building cost more than the database itself (see
benchmarks/ingest.py and benchmarks/evaluator.py). ``Driver`` holds what differs between the two
drivers — the placeholder, how times, JSON and lists of values travel — so the statements themselves
are written once. Values are encoded exactly as the models' column types store them
(``bridge.db.models.UTCDateTime``, ``JsonDocument``), so the ORM reads them back unchanged.

Statements run on the session's own DBAPI connection, inside its transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

# The standard library's encoder for what orjson refuses (integers past 64 bits); made once, as
# json.dumps with any option makes a new one per call.
_encode_json_slowly = json.JSONEncoder(separators=(",", ":")).encode


def encode_json(value: Any) -> str:
    """JSON text; orjson, as states are encoded and decoded for every event (several times faster)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _encode_json_slowly(value)


def decode_json(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what only the standard library reads (integers past 64 bits)
        return json.loads(text)


def sqlite_time(value: datetime) -> str:
    # SQLAlchemy's storage format for SQLite DATETIME ("2026-11-22 09:15:00.000000"), in UTC
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]  # without the "+00:00"


class Driver:
    def __init__(self, dialect: str) -> None:
        self.is_sqlite = dialect == "sqlite"
        self.mark = "?" if self.is_sqlite else "%s"
        # JSON travels as text; PostgreSQL casts it into the jsonb column.
        self.json_mark = self.mark if self.is_sqlite else "CAST(%s AS jsonb)"

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def in_list(self, column: str) -> str:
        """A condition ``column`` IN the values bound as one parameter (see ``values``)."""
        if self.is_sqlite:
            return f"{column} IN (SELECT value FROM json_each(?))"
        return f"{column} = ANY(%s)"

    def values(self, values: Sequence[Any]) -> Any:
        """The parameter for an ``in_list`` condition: one statement whatever the number of values."""
        return json.dumps(list(values)) if self.is_sqlite else list(values)

    def time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return sqlite_time(value) if self.is_sqlite else value

    def read_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    @staticmethod
    def json(value: Any) -> str:
        return encode_json(value)

    def read_json(self, value: Any) -> Any:
        return decode_json(value) if isinstance(value, str | bytes) else value

    def execute_many(self, session: Session, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._run(session, statement, rows, many=True)

    def fetch_all(self, session: Session, statement: str, parameters: Sequence[Any]) -> list[Any]:
        return self._run(session, statement, parameters, many=False)

    def insert_returning_ids(self, session: Session, insert: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """The ``id`` of each row ``insert`` (an INSERT statement without RETURNING) adds, in order.

        SQLite's driver cannot return rows from ``executemany``: each row is its own statement there,
        which in-process costs little. psycopg returns a result per row from one ``executemany``.
        """
        if not rows:
            return []
        if self.is_sqlite:
            return [self._run(session, insert, row, many=False, last_id=True) for row in rows]
        return self._run(session, f"{insert} RETURNING id", rows, many=True, returning=True)

    @staticmethod
    def _run(
        session: Session,
        statement: str,
        parameters: Any,
        *,
        many: bool,
        returning: bool = False,
        last_id: bool = False,
    ) -> Any:
        connection = session.connection()  # the session's: the statement joins its transaction
        driver_connection = connection.connection.driver_connection
        assert driver_connection is not None
        cursor = driver_connection.cursor()
        try:
            if many and returning:  # psycopg: a result set per row
                cursor.executemany(statement, parameters, returning=True)
                ids = []
                while True:
                    ids.append(cursor.fetchone()[0])
                    if not cursor.nextset():
                        return ids
            if many:
                cursor.executemany(statement, parameters)
                return None
            cursor.execute(statement, parameters)
            return cursor.lastrowid if last_id else cursor.fetchall()
        except connection.dialect.loaded_dbapi.Error as error:
            # As SQLAlchemy would raise it (IntegrityError, DataError, ...): callers tell a bad value
            # from a failing database by those classes.
            raise DBAPIError.instance(
                statement, parameters, error, connection.dialect.loaded_dbapi.Error
            ) from error
        finally:
            cursor.close()
