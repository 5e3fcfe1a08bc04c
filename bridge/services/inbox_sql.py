"""The inbox's statements, one set per database, on the driver's own cursor (see bridge.services.ingest).

Values are encoded here exactly as the models' column types store them. A single event is one prepared
statement. Several go in one statement per chunk of rows: a round trip for hundreds of events instead
of one each. PostgreSQL gets them as one array per column through ``unnest``, so the statement's text is
the same whatever the count (prepared once; psycopg's placeholder parsing cost ~9 ms for a 100-row
``VALUES`` list); SQLite, in-process, takes a multi-row ``VALUES`` list.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bridge.db.driver import sqlite_time
from bridge.domain.events import LearningEvent

_COLUMNS = (
    "platform, event_key, kind, learner, course, item, score, occurred_at, received_at, data, status, "
    "attempts, next_attempt_at"
)
_ON_CONFLICT = "ON CONFLICT (platform, event_key) DO NOTHING"
_RETURNING_KEYS = "RETURNING id, platform, event_key"  # only rows stored new: a conflict returns none

Key = tuple[str, str]  # (platform, event_key)
KeyedId = tuple[int, str, str]  # (id, platform, event_key)


class SqliteStatements:
    begin = "BEGIN IMMEDIATE"
    # 13 parameters a row: far below SQLite's 32,766 parameters a statement.
    rows_per_statement = 500

    def __init__(self) -> None:
        self._insert = (
            f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * 13)}) {_ON_CONFLICT} RETURNING id"
        )
        self._row_marks = f"({', '.join('?' * 13)})"

    def now(self, at: datetime) -> str:
        return sqlite_time(at)

    def insert_one(self, cursor: Any, event: LearningEvent, now: str) -> int | None:
        """The new row's id; None when the key was stored before."""
        row = cursor.execute(self._insert, _sqlite_row(event, now)).fetchone()
        return None if row is None else int(row[0])

    def insert_many(self, cursor: Any, events: Sequence[LearningEvent], now: str) -> list[KeyedId]:
        """The rows stored new (keys stored before are skipped), for at most ``rows_per_statement``."""
        values = ", ".join([self._row_marks] * len(events))
        cursor.execute(
            f"INSERT INTO events ({_COLUMNS}) VALUES {values} {_ON_CONFLICT} {_RETURNING_KEYS}",
            [value for event in events for value in _sqlite_row(event, now)],
        )
        return cursor.fetchall()  # type: ignore[no-any-return]

    def stored_ids(self, cursor: Any, keys: Sequence[Key]) -> list[KeyedId]:
        pairs = ", ".join(["(?, ?)"] * len(keys))
        cursor.execute(
            f"SELECT id, platform, event_key FROM events WHERE (platform, event_key) IN (VALUES {pairs})",
            [value for key in keys for value in key],
        )
        return cursor.fetchall()  # type: ignore[no-any-return]


class PostgresStatements:
    begin = "BEGIN"
    # Arrays: the statement's text is the same whatever the count. One statement for any transaction the
    # inbox writes (a sync stores a page of a few thousand at most), so its rows are locked in one order.
    rows_per_statement = 50_000

    _insert = (
        f"INSERT INTO events ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', 0, %s) "
        f"{_ON_CONFLICT} RETURNING id"
    )
    # Ids are drawn in the events' order (the worker claims by id), then rows are inserted in key order:
    # two transactions inserting some of the same new keys wait for each other's rows, and in one order
    # neither can hold a row the other waits for while waiting itself (in any order they deadlocked).
    _insert_many = (
        "WITH numbered AS ("
        "SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id, t.* "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
        "%s::float8[], %s::timestamptz[], %s::text[]) WITH ORDINALITY "
        "AS t(platform, event_key, kind, learner, course, item, score, occurred_at, data, arrival) "
        "ORDER BY arrival) "
        f"INSERT INTO events (id, {_COLUMNS}) "
        "SELECT id, platform, event_key, kind, learner, course, item, score, occurred_at, %s, data::jsonb, "
        "'pending', 0, %s FROM numbered ORDER BY platform, event_key "
        f"{_ON_CONFLICT} {_RETURNING_KEYS}"
    )
    _stored_ids = (
        "SELECT id, platform, event_key FROM events "
        "JOIN unnest(%s::text[], %s::text[]) AS k(platform, event_key) USING (platform, event_key)"
    )

    def now(self, at: datetime) -> datetime:
        return at

    def insert_one(self, cursor: Any, event: LearningEvent, now: datetime) -> int | None:
        row = cursor.execute(
            self._insert,
            (
                event.platform, event.event_key, event.kind, event.learner, event.course, event.item,
                event.score, event.occurred_at, now, _jsonb()(dict(event.data)), now,
            ),
        ).fetchone()  # fmt: skip
        return None if row is None else int(row[0])

    def insert_many(self, cursor: Any, events: Sequence[LearningEvent], now: datetime) -> list[KeyedId]:
        columns = (
            [e.platform for e in events], [e.event_key for e in events], [e.kind for e in events],
            [e.learner for e in events], [e.course for e in events], [e.item for e in events],
            [e.score for e in events], [e.occurred_at for e in events],
            [json.dumps(dict(e.data)) if e.data else "{}" for e in events],
        )  # fmt: skip
        cursor.execute(self._insert_many, (*columns, now, now))
        return cursor.fetchall()  # type: ignore[no-any-return]

    def stored_ids(self, cursor: Any, keys: Sequence[Key]) -> list[KeyedId]:
        cursor.execute(self._stored_ids, ([platform for platform, _ in keys], [key for _, key in keys]))
        return cursor.fetchall()  # type: ignore[no-any-return]


@functools.cache
def _jsonb() -> Any:
    from psycopg.types.json import Jsonb  # imported once, and only where PostgreSQL is used

    return Jsonb


def _sqlite_row(event: LearningEvent, now: str) -> tuple[Any, ...]:
    return (
        event.platform, event.event_key, event.kind, event.learner, event.course, event.item, event.score,
        sqlite_time(event.occurred_at), now, json.dumps(dict(event.data)) if event.data else "{}", "pending",
        0, now,
    )  # fmt: skip
