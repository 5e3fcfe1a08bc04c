"""Statements on the database driver's own cursor, for the few paths where SQLAlchemy's cost shows.

The inbox insert and the worker's per-batch reads and writes run thousands of rows a second. For those,
SQLAlchemy's per-row type processing and parameter building cost more than the database itself (see
benchmarks/ingest.py and benchmarks/evaluator.py). ``Driver`` holds what differs between the two
drivers — the placeholder, how times, JSON and lists of values travel — so the statements themselves
are written once. Values are encoded exactly as the models' column types store them
(``bridge.db.models.UTCDateTime``, ``JsonDocument``), so the ORM reads them back unchanged.

Statements run on the session's own DBAPI connection, inside its transaction.

On PostgreSQL each statement that waits for the server is a round trip (~0.1-0.2 ms, more on a busy
machine): the worker's batch costs what its round trips cost. ``pipeline`` sends a block's statements
without waiting for each (psycopg's pipeline mode): writes are queued, and a read waits once for
everything sent before it; ``fetch_each`` sends several reads and waits once for all of them. Only this
module's statements may run inside a pipeline: SQLAlchemy's expect each result at once (a statement's
columns are unknown there until its rows are read).

A write of many rows is a ``Rows`` statement (``insert_rows``, ``update_rows``): on SQLite it runs once
per row (``executemany``, in-process, cheap); on PostgreSQL once for all the rows, bound as one JSON
text that the server takes apart (``jsonb_array_elements``): psycopg's ``executemany`` sends a message
per row, and binding arrays a value at a time, which cost the client more than the server spent.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

# For a transaction whose statements find a batch's rows by key (a hundred ids, learners, pairs): each key
# an index lookup, joins as nested loops. PostgreSQL's planner, costing as if tables were read from disk,
# would rather scan (and hash) a table of a few thousand rows, milliseconds, than make a hundred index
# lookups in memory, tens of µs; and a prepared statement keeps a plan made while its tables were small
# until the next ANALYZE: on a fresh database, the worker crawled at a tenth of its speed for as long as
# autovacuum had not analysed its tables (benchmarks/evaluator_e2e.py). Scans stay possible where no
# index serves. Planner settings of the transaction alone (SET LOCAL): nothing about what is stored, or
# when it is durable.
KEY_LOOKUPS = (
    "SET LOCAL enable_seqscan = off",
    "SET LOCAL enable_hashjoin = off",
    "SET LOCAL enable_mergejoin = off",
)
# A learner's states (~2.5 KB as jsonb) are compressed when written, every batch: lz4 does it in about
# half the time of PostgreSQL's default (pglz), for the transaction's writes alone (values record their
# method; both read back alike). Where the server was built with lz4 (``lz4_available``).
LZ4_WRITES = "SET LOCAL default_toast_compression = lz4"
LZ4_AVAILABLE = (
    "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)

# session.info key: a pipeline is open on the session's connection (see Driver.pipeline).
_IN_PIPELINE = "bridge.driver.pipeline"

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


class Rows(NamedTuple):
    """A statement over many rows (see the module): per row on SQLite, all in one on PostgreSQL."""

    statement: str
    batched: bool  # PostgreSQL: the rows go as one JSON array of arrays (see _encode_rows)
    key: tuple[int, ...] = ()  # insert_rows with returned ids: the positions of a unique key
    json_at: frozenset[int] = frozenset()  # the positions of JSON text, embedded as it is


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

    def insert_rows(
        self, table: str, columns: Sequence[tuple[str, str]], tail: str = "", *, key: Sequence[str] = ()
    ) -> Rows:
        """``INSERT INTO table`` of rows of ``columns`` (name, PostgreSQL type), then ``tail`` (``ON
        CONFLICT ...``). A ``jsonb`` column's value is its JSON text (see ``json``), or None. ``key``:
        columns of a unique key of the table, by which ``insert_returning_ids`` matches the ids
        PostgreSQL returns to the rows."""
        names = ", ".join(name for name, _ in columns)
        positions = tuple(next(i for i, (name, _) in enumerate(columns) if name == k) for k in key)
        if self.is_sqlite:
            return Rows(f"INSERT INTO {table} ({names}) VALUES ({self.marks(len(columns))}) {tail}", False)
        statement = f"INSERT INTO {table} ({names}) SELECT {_fields(columns)} FROM {_ROWS} {tail}"
        if key:
            statement += f" RETURNING id, {', '.join(key)}"
        json_at = frozenset(i for i, (_, kind) in enumerate(columns) if kind == "jsonb")
        return Rows(statement, True, positions, json_at)

    def update_rows(
        self,
        table: str,
        values: Sequence[tuple[str, str]],
        where: Sequence[tuple[str, str]],
        constant: str = "",
    ) -> Rows:
        """``UPDATE table`` setting ``values`` where ``where`` (name, PostgreSQL type each), a row being
        the values then the keys; ``constant``: more assignments, the same for every row. No two rows
        may name the same table row."""
        extra = f", {constant}" if constant else ""
        if self.is_sqlite:
            sets = ", ".join(f"{name} = ?" for name, _ in values)
            keys = " AND ".join(f"{name} = ?" for name, _ in where)
            return Rows(f"UPDATE {table} SET {sets}{extra} WHERE {keys}", False)
        fields = [_field(i, kind) for i, (_, kind) in enumerate((*values, *where))]
        sets = ", ".join(f"{name} = {field}" for (name, _), field in zip(values, fields, strict=False))
        keys = " AND ".join(
            f"{table}.{name} = {field}" for (name, _), field in zip(where, fields[len(values) :], strict=True)
        )
        return Rows(f"UPDATE {table} SET {sets}{extra} FROM {_ROWS} WHERE {keys}", True)

    def write_rows(self, session: Session, statement: Rows, rows: Sequence[Sequence[Any]]) -> None:
        """Run a ``Rows`` statement over ``rows``: nothing waits for it inside a pipeline."""
        if not rows:
            return
        if statement.batched:
            encoded = _encode_rows(rows, statement.json_at)
            self._run(session, statement.statement, (encoded,), many=False, fetch=False)
        else:
            self._run(session, statement.statement, rows, many=True)

    def execute_many(self, session: Session, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """``statement`` once per row. On PostgreSQL a plain ``INSERT INTO t (columns) VALUES (marks)``
        runs once for all the rows instead (see ``_insert_as_one``); anything else row by row."""
        if not rows:
            return
        batched = None if self.is_sqlite or len(rows) < 2 else _insert_as_one(statement)
        if batched is None:
            self._run(session, statement, rows, many=True)
            return
        one, names, json_at = batched
        self._run(session, one, (_encode_objects(names, json_at, rows),), many=False, fetch=False)

    def fetch_all(self, session: Session, statement: str, parameters: Sequence[Any]) -> list[Any]:
        return self._run(session, statement, parameters, many=False)

    def fetch_each(
        self, session: Session, reads: Sequence[tuple[str, Sequence[Any]]], *, first: Sequence[str] = ()
    ) -> list[list[Any]]:
        """The rows of each ``(statement, parameters)``, in order, as ``fetch_all`` would give them.

        On PostgreSQL they are all sent before any is waited for: one round trip (with whatever a
        pipeline around it has queued), ``first`` (statements without parameters or rows, such as
        ``KEY_LOOKUPS``) sent ahead of them. SQLite runs them one by one, in-process (``first`` is of
        PostgreSQL: ignored there).
        """
        if self.is_sqlite or (len(reads) < 2 and not first):
            return [self.fetch_all(session, statement, parameters) for statement, parameters in reads]
        connection = session.connection()
        driver_connection = connection.connection.driver_connection
        assert driver_connection is not None
        with self.pipeline(session):
            ahead = driver_connection.cursor()
            cursors = []
            try:
                for statement in first:
                    ahead.execute(statement)
                for statement, parameters in reads:
                    cursor = driver_connection.cursor()
                    cursors.append(cursor)
                    cursor.execute(statement, parameters)
                return [cursor.fetchall() for cursor in cursors]
            except connection.dialect.loaded_dbapi.Error as error:
                raise _wrapped(connection, "; ".join(s for s, _ in reads), None, error) from error
            finally:
                for cursor in (ahead, *cursors):
                    cursor.close()

    @contextmanager
    def pipeline(self, session: Session) -> Iterator[None]:
        """On PostgreSQL, the block's statements on this driver go out without waiting for each one.

        A write waits for nothing; a read (``fetch_all``, ``fetch_each``, an insert's ids) waits once for
        everything sent before it; leaving the block waits for the rest. A statement's error is raised at
        the next wait, as SQLAlchemy's exception class (an outage stays an OperationalError), so a block
        must not mix in what should be charged elsewhere: the worker runs one only over statements
        whose failure fails the batch. Nested blocks are one pipeline. No SQLAlchemy statement may run
        in the block. On SQLite: nothing (statements run in-process).
        """
        if self.is_sqlite or session.info.get(_IN_PIPELINE):
            yield
            return
        connection = session.connection()
        driver_connection = connection.connection.driver_connection
        assert driver_connection is not None
        session.info[_IN_PIPELINE] = True
        try:
            with driver_connection.pipeline():
                yield
        except connection.dialect.loaded_dbapi.Error as error:
            raise _wrapped(connection, "(pipeline)", None, error) from error
        finally:
            session.info.pop(_IN_PIPELINE, None)

    def insert_returning_ids(
        self, session: Session, insert: str | Rows, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """The ``id`` of each row ``insert`` (an INSERT statement without RETURNING, or ``insert_rows``
        with a key) adds, in order.

        SQLite's driver cannot return rows from ``executemany``: each row is its own statement there,
        which in-process costs little. psycopg returns a result per row from one ``executemany``; an
        ``insert_rows`` statement returns each row's id with its key, in no promised order.
        """
        if not rows:
            return []
        if isinstance(insert, Rows):
            if not insert.batched:
                insert = insert.statement
            else:
                encoded = _encode_rows(rows, insert.json_at)
                returned = self._run(session, insert.statement, (encoded,), many=False)
                ids = {tuple(found[1:]): found[0] for found in returned}
                return [ids[tuple(row[i] for i in insert.key)] for row in rows]
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
        fetch: bool = True,
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
            if not fetch:
                return None
            return cursor.lastrowid if last_id else cursor.fetchall()
        except connection.dialect.loaded_dbapi.Error as error:
            raise _wrapped(connection, statement, parameters, error) from error
        finally:
            cursor.close()


# The rows of a batched statement: one parameter, a JSON array of rows, each an array of the values, read
# as jsonb: parsed once (with json, each ``->`` parses its row again: a learner's states are ~2 KB).
_ROWS = "jsonb_array_elements(CAST(%s AS jsonb)) AS r"


def _field(position: int, kind: str) -> str:
    """A row's value at ``position`` as ``kind``; JSON text (a ``jsonb`` column's value) is embedded in
    the row as it is (see ``_encode_rows``), so the server parses it once, as it would the text alone."""
    if kind == "jsonb":
        return f"NULLIF(r->{position}, 'null')"
    return f"CAST(r->>{position} AS {kind})"


def _fields(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(_field(i, kind) for i, (_, kind) in enumerate(columns))


_MARK = r"(?:%s|CAST\(%s AS jsonb\))"
_PLAIN_INSERT = re.compile(rf"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \(({_MARK}(?:, {_MARK})*)\)")


@functools.lru_cache(maxsize=64)
def _insert_as_one(statement: str) -> tuple[str, tuple[str, ...], frozenset[int]] | None:
    """A plain INSERT of one row as one statement for many rows (each a JSON object of the columns,
    read by the table's own row type), the columns, and the positions of JSON text; None for others."""
    found = _PLAIN_INSERT.fullmatch(statement)
    if found is None:
        return None
    table, columns, marks = found.groups()
    names = tuple(column.strip() for column in columns.split(","))
    json_at = frozenset(i for i, mark in enumerate(marks.split(", ")) if mark != "%s")
    if len(names) != len(marks.split(", ")):
        return None
    selected = ", ".join(f"r.{name}" for name in names)
    one = (
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {selected} "
        f"FROM jsonb_populate_recordset(NULL::{table}, CAST(%s AS jsonb)) AS r"
    )
    return one, names, json_at


def _encode_slowly(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} in a row")


_encode_rows_slowly = json.JSONEncoder(separators=(",", ":"), default=_encode_slowly).encode


def _encode_objects(names: Sequence[str], json_at: frozenset[int], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a JSON array of objects of ``names``; the values at ``json_at`` are JSON text, embedded."""

    def objects(embed: Callable[[Any], Any]) -> list[dict[str, Any]]:
        return [
            {name: embed(value) if i in json_at and value is not None else value
             for i, (name, value) in enumerate(zip(names, row, strict=True))}
            for row in rows
        ]  # fmt: skip

    try:
        return orjson.dumps(objects(orjson.Fragment)).decode()
    except TypeError:  # integers past 64 bits
        return _encode_rows_slowly(objects(decode_json))


def _encode_rows(rows: Sequence[Sequence[Any]], json_at: frozenset[int]) -> str:
    """Rows as one JSON text (orjson: a few µs for a batch's rows, where binding each value of each row
    cost the client far more); aware times as ISO 8601, which PostgreSQL reads exactly; the values at
    ``json_at`` (JSON text, or None) embedded as JSON."""
    if json_at:
        rows = [
            [orjson.Fragment(v) if i in json_at and v is not None else v for i, v in enumerate(row)]
            for row in rows
        ]
    try:
        return orjson.dumps(rows).decode()
    except TypeError:  # integers past 64 bits (in JSON text too: a Fragment is not looked into)
        return _encode_rows_slowly(
            [
                [decode_json(v) if i in json_at and v is not None else v for i, v in enumerate(row)]
                for row in rows
            ]
        )


def _wrapped(connection: Any, statement: str, parameters: Any, error: Exception) -> DBAPIError:
    """``error`` (the driver's) as SQLAlchemy would raise it (IntegrityError, DataError, ...): callers
    tell a bad value from a failing database by those classes."""
    return DBAPIError.instance(statement, parameters, error, connection.dialect.loaded_dbapi.Error)
