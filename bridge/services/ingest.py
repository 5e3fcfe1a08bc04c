"""Storing learning events in the inbox: idempotent, one indexed insert per event, nothing evaluated.

This is the hot path of every webhook and of ``POST /api/v1/events``, so it skips SQLAlchemy's
per-statement machinery (connection checkout, events, type processing), which cost three times the
insert itself (see benchmarks/ingest.py). Each thread keeps one DBAPI connection, made by the engine so
it has the same set-up, and runs one prepared statement. Values are encoded here exactly as the models'
column types store them; tests read them back through the ORM.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.clock import utcnow
from bridge.db.driver import sqlite_time
from bridge.db.engine import Database
from bridge.domain.events import LearningEvent

_COLUMNS = (
    "platform, event_key, kind, learner, course, item, score, occurred_at, received_at, data, status, "
    "attempts, next_attempt_at"
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    created: bool  # False: the same (platform, event_key) was already stored


@dataclass(slots=True)
class _Request:
    events: Sequence[LearningEvent]
    results: list[StoredEvent] | None = None
    error: BaseException | None = None


class Inbox:
    """The events table's writer for one process.

    Group commit: concurrent callers queue their events; whichever thread holds the writer lock writes
    everything queued in one transaction, and each caller returns once that transaction has committed.
    Under load one commit (SQLite's WAL write, PostgreSQL's WAL flush) serves many requests.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._local = threading.local()
        self._writer_lock = threading.Lock()
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        mark = "?" if database.is_sqlite else "%s"
        self._insert = (
            f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join([mark] * 13)}) "
            "ON CONFLICT (platform, event_key) DO NOTHING RETURNING id"
        )
        self._existing = f"SELECT id FROM events WHERE platform = {mark} AND event_key = {mark}"
        self._begin = "BEGIN IMMEDIATE" if database.is_sqlite else "BEGIN"
        self._row: Callable[[LearningEvent, Any], tuple[Any, ...]]
        self._encode_time: Callable[[datetime], Any]
        if database.is_sqlite:
            self._row, self._encode_time = _sqlite_row, sqlite_time
        else:
            self._row, self._encode_time = _postgres_row, _identity

    def store(self, events: Sequence[LearningEvent]) -> list[StoredEvent]:
        """Store ``events`` in one transaction; each answers with its id and whether it was new."""
        request = _Request(events)
        with self._queue_lock:
            self._queue.append(request)
        with self._writer_lock:
            if request.results is None and request.error is None:  # nobody has written it yet
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    self._write(batch)
                except BaseException as error:  # an interrupt: no caller in the batch may wait unanswered
                    for waiting in batch:
                        if waiting.results is None and waiting.error is None:
                            waiting.error = error
                    raise
        if request.error is not None:
            raise request.error
        assert request.results is not None
        return request.results

    def _write(self, batch: list[_Request]) -> None:
        try:
            results = self._transaction([request.events for request in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            # Something in the batch failed: write each request alone, so it fails only its own caller.
            for request in batch:
                self._write([request])
            return
        for request, stored in zip(batch, results, strict=True):
            request.results = stored

    def _transaction(self, groups: list[Sequence[LearningEvent]]) -> list[list[StoredEvent]]:
        now = self._encode_time(utcnow())
        connection = self._connection()
        try:
            cursor = connection.cursor()
            # The connection autocommits, so a single event is one statement and its own transaction.
            single = len(groups) == 1 and len(groups[0]) == 1
            if not single:
                cursor.execute(self._begin)
            results = [[self._insert_one(cursor, event, now) for event in events] for events in groups]
            if not single:
                cursor.execute("COMMIT")
            cursor.close()
            return results
        except BaseException:
            self._discard(connection)
            raise

    def _insert_one(self, cursor: Any, event: LearningEvent, now: Any) -> StoredEvent:
        row = cursor.execute(self._insert, self._row(event, now)).fetchone()
        if row is not None:
            return StoredEvent(row[0], created=True)
        existing = cursor.execute(self._existing, (event.platform, event.event_key)).fetchone()
        return StoredEvent(existing[0], created=False)

    def _connection(self) -> Any:
        # Only the thread holding the writer lock gets here, but the lock may pass between threads, so
        # each keeps its own connection (sqlite3 connections refuse use from another thread).
        connection = getattr(self._local, "connection", None)
        if connection is None:
            pooled = self._database.engine.raw_connection()
            connection = pooled.driver_connection  # the driver's own: settings apply to it, not a proxy
            pooled.detach()  # this thread's for good: not counted against the pool
            if not self._database.is_sqlite:  # SQLite's is in autocommit mode already (see db.engine)
                connection.autocommit = True
            self._local.connection = connection
        return connection

    def _discard(self, connection: Any) -> None:
        """After any failure the connection may be mid-transaction or broken: start afresh next time."""
        self._local.connection = None
        with contextlib.suppress(Exception):  # if it is broken already, closing was a courtesy
            connection.close()  # an open transaction is rolled back


@functools.cache
def _jsonb() -> Any:
    from psycopg.types.json import Jsonb  # imported once, and only where PostgreSQL is used

    return Jsonb


def _identity(value: datetime) -> datetime:
    return value


def _sqlite_row(event: LearningEvent, now: str) -> tuple[Any, ...]:
    return (
        event.platform, event.event_key, event.kind, event.learner, event.course, event.item, event.score,
        sqlite_time(event.occurred_at), now, json.dumps(dict(event.data)) if event.data else "{}", "pending",
        0, now,
    )  # fmt: skip


def _postgres_row(event: LearningEvent, now: datetime) -> tuple[Any, ...]:
    return (
        event.platform, event.event_key, event.kind, event.learner, event.course, event.item, event.score,
        event.occurred_at, now, _jsonb()(dict(event.data)), "pending", 0, now,
    )  # fmt: skip
