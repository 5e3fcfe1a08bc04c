"""Reading awards and event status for the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Event, Learner


@dataclass(frozen=True)
class AwardView:
    id: int
    badge_id: str
    badge_name: str
    platform: str
    learner: str
    awarded_at: datetime
    criteria_version: int
    event_id: int | None
    revoked_at: datetime | None


def list_awards(
    database: Database, platform: str | None = None, learner: str | None = None, limit: int = 100
) -> list[AwardView]:
    query = (
        select(Award, Badge.name, Learner.platform, Learner.lms_user_id)
        .join(Badge, Badge.id == Award.badge_id)
        .join(Learner, Learner.id == Award.learner_id)
        .order_by(Award.id)
        .limit(limit)
    )
    if platform is not None:
        query = query.where(Learner.platform == platform)
    if learner is not None:
        query = query.where(Learner.lms_user_id == learner)
    with database.read() as session:
        return [
            AwardView(
                a.id, a.badge_id, name, plat, user, a.awarded_at, a.criteria_version, a.event_id, a.revoked_at
            )
            for a, name, plat, user in session.execute(query)
        ]


@dataclass(frozen=True)
class EventStatus:
    id: int
    platform: str
    event_key: str
    kind: str
    learner: str
    status: str
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    last_error: str | None


def event_status(database: Database, event_id: int) -> EventStatus | None:
    with database.read() as session:
        e = session.get(Event, event_id)
        if e is None:
            return None
        return EventStatus(
            e.id,
            e.platform,
            e.event_key,
            e.kind,
            e.learner,
            e.status,
            e.attempts,
            e.received_at,
            e.processed_at,
            e.last_error,
        )
