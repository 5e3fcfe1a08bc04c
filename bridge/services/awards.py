"""Reading awards and event status for the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Event, Learner
from bridge.services.paging import Keyset, Page, page_of, paged


@dataclass(frozen=True)
class AwardView:
    id: int
    badge_id: str
    badge_name: str
    tier: str  # "" for a badge without tiers
    platform: str
    learner: str
    awarded_at: datetime
    criteria_version: int
    event_id: int | None
    revoked_at: datetime | None


def list_awards(
    database: Database,
    platform: str | None = None,
    learner: str | None = None,
    keyset: Keyset | None = None,
) -> Page[AwardView]:
    """Awards, the newest first unless ``keyset`` says otherwise."""
    keyset = keyset or Keyset(100)
    query = (
        select(Award, Badge.name, Learner.platform, Learner.lms_user_id)
        .join(Badge, Badge.id == Award.badge_id)
        .join(Learner, Learner.id == Award.learner_id)
    )
    if platform is not None:
        query = query.where(Learner.platform == platform)
    if learner is not None:
        query = query.where(Learner.lms_user_id == learner)
    with database.read() as session:
        rows = [
            AwardView(
                a.id,
                a.badge_id,
                name,
                a.tier,
                plat,
                user,
                a.awarded_at,
                a.criteria_version,
                a.event_id,
                a.revoked_at,
            )
            for a, name, plat, user in session.execute(paged(query, Award.id, keyset))
        ]
    return page_of(rows, keyset, lambda a: a.id)


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


def _status(e: Event) -> EventStatus:
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


def event_status(database: Database, event_id: int) -> EventStatus | None:
    with database.read() as session:
        e = session.get(Event, event_id)
        return None if e is None else _status(e)


def list_events(
    database: Database,
    *,
    status: str | None = None,
    platform: str | None = None,
    learner: str | None = None,
    keyset: Keyset | None = None,
) -> Page[EventStatus]:
    """Events in the inbox with their processing status, the latest received first by default."""
    keyset = keyset or Keyset(100)
    query = select(Event)
    if status is not None:
        query = query.where(Event.status == status)
    if platform is not None:
        query = query.where(Event.platform == platform)
    if learner is not None:
        query = query.where(Event.learner == learner)
    with database.read() as session:
        rows = [_status(e) for e in session.scalars(paged(query, Event.id, keyset))]
    return page_of(rows, keyset, lambda e: e.id)
