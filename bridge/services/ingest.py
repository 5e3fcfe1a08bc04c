"""Storing learning events in the inbox: idempotent, one indexed insert per event, nothing evaluated.

This is the hot path of every webhook and of ``POST /api/v1/events``: SQLAlchemy Core with statements
built once, no ORM objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.db.upsert import insert_ignoring_conflicts
from bridge.domain.events import LearningEvent

_events = Event.__table__


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    created: bool  # False: the same (platform, event_key) was already stored


class Inbox:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._insert = insert_ignoring_conflicts(database.engine.dialect.name, _events).returning(
            _events.c.id
        )
        self._existing = select(_events.c.id).where(
            _events.c.platform == bindparam("platform"), _events.c.event_key == bindparam("event_key")
        )

    def store(self, events: Sequence[LearningEvent]) -> list[StoredEvent]:
        """Store ``events`` in one transaction; each answers with its id and whether it was new."""
        now = utcnow()
        results: list[StoredEvent] = []
        with self._database.write_connection() as connection:
            for event in events:
                row = connection.execute(self._insert, _row(event, now)).first()
                if row is not None:
                    results.append(StoredEvent(row[0], created=True))
                    continue
                keys = {"platform": event.platform, "event_key": event.event_key}
                results.append(StoredEvent(connection.execute(self._existing, keys).scalar_one(), False))
        return results


def _row(event: LearningEvent, now: datetime) -> dict[str, Any]:
    return {
        "platform": event.platform,
        "event_key": event.event_key,
        "kind": event.kind,
        "learner": event.learner,
        "course": event.course,
        "item": event.item,
        "score": event.score,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "data": dict(event.data),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }
