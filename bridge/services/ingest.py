"""Storing learning events in the inbox: idempotent, indexed inserts, nothing evaluated.

This is the hot path of every webhook and of ``POST /api/v1/events``, so it skips SQLAlchemy's
per-statement machinery (connection checkout, events, type processing), which cost three times the
insert itself (see benchmarks/ingest.py). Each thread keeps one DBAPI connection, made by the engine so
it has the same set-up, and runs the statements of bridge.services.inbox_sql; tests read the rows back
through the ORM.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.domain.events import LearningEvent
from bridge.services.inbox_sql import Key, PostgresStatements, SqliteStatements


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

    On SQLite, group commit: concurrent callers queue their events; whichever thread holds the writer
    lock writes everything queued in one transaction, and each caller returns once that transaction has
    committed. SQLite has one writer at a time anyway, and under load one WAL write serves many requests.

    On PostgreSQL each thread writes on its own connection at once: the server already flushes the WAL
    of concurrent commits together, and funnelling them through one writer per process only serialised
    them (single events at 0.62x a plain psycopg insert with the funnel, 0.88x without it).
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._local = threading.local()
        self._writer_lock = threading.Lock()
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        self._sql = SqliteStatements() if database.is_sqlite else PostgresStatements()
        self._gathers = database.is_sqlite

    def store(self, events: Sequence[LearningEvent]) -> list[StoredEvent]:
        """Store ``events`` in one transaction; each answers with its id and whether it was new."""
        if not self._gathers:
            return self._transaction([events])[0]
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
        now = self._sql.now(utcnow())
        connection = self._connection()
        try:
            cursor = connection.cursor()
            if len(groups) == 1 and len(groups[0]) == 1:  # autocommit: one statement, its own transaction
                results = [[self._insert_one(cursor, groups[0][0], now)]]
            else:
                results = self._insert_many(cursor, groups, now)
            cursor.close()
            return results
        except BaseException:
            self._discard(connection)
            raise

    def _insert_one(self, cursor: Any, event: LearningEvent, now: Any) -> StoredEvent:
        new_id = self._sql.insert_one(cursor, event, now)
        if new_id is not None:
            return StoredEvent(new_id, created=True)
        [(stored_id, _, _)] = self._sql.stored_ids(cursor, [(event.platform, event.event_key)])
        return StoredEvent(stored_id, created=False)

    def _insert_many(
        self, cursor: Any, groups: list[Sequence[LearningEvent]], now: Any
    ) -> list[list[StoredEvent]]:
        """Every event of ``groups``, a statement per chunk of rows. A key repeated in the transaction is
        stored from its first event, as if the events had been inserted one by one in order."""
        first_of_key: dict[Key, LearningEvent] = {}
        for events in groups:
            for event in events:
                first_of_key.setdefault((event.platform, event.event_key), event)
        unique = list(first_of_key.values())
        size = self._sql.rows_per_statement
        chunks = [unique[start : start + size] for start in range(0, len(unique), size)]
        in_one_statement = len(chunks) == 1
        if not in_one_statement:  # else the connection's autocommit makes the one statement atomic
            cursor.execute(self._sql.begin)
        created = {
            (platform, key): id_
            for chunk in chunks
            for id_, platform, key in self._sql.insert_many(cursor, chunk, now)
        }
        # Keys stored before this transaction (a retried webhook, the nightly sync's overlap).
        stored_before: dict[Key, int] = {}
        missing = [key for key in first_of_key if key not in created]
        for start in range(0, len(missing), size):
            for id_, platform, key in self._sql.stored_ids(cursor, missing[start : start + size]):
                stored_before[platform, key] = id_
        if not in_one_statement:
            cursor.execute("COMMIT")
        results = []
        answered: set[Key] = set()
        for events in groups:
            group = []
            for event in events:
                key = (event.platform, event.event_key)
                new = key in created and key not in answered
                answered.add(key)
                group.append(StoredEvent(created[key] if key in created else stored_before[key], created=new))
            results.append(group)
        return results

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
