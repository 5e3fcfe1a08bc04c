"""The inbox as a queue: depth and lag for health and metrics, and the failed events for operators."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event


@dataclass(frozen=True)
class QueueStats:
    pending: int
    failed: int
    lag_seconds: float  # how long the oldest event that is due has been waiting; 0 when none is due


def queue_stats(session: Session) -> QueueStats:
    now = utcnow()
    pending, oldest_due = session.execute(
        select(
            func.count(),
            func.min(Event.next_attempt_at).filter(Event.next_attempt_at <= now),
        ).where(Event.status == "pending")
    ).one()
    failed = session.scalar(select(func.count()).where(Event.status == "failed"))
    lag = max((now - oldest_due).total_seconds(), 0.0) if oldest_due is not None else 0.0
    return QueueStats(pending=pending, failed=failed or 0, lag_seconds=lag)


@dataclass(frozen=True)
class FailedEvent:
    id: int
    platform: str
    event_key: str
    kind: str
    learner: str
    attempts: int
    last_error: str
    received_at: datetime


def failed_events(database: Database, limit: int = 100) -> list[FailedEvent]:
    with database.read() as session:
        rows = session.scalars(
            select(Event).where(Event.status == "failed").order_by(Event.id).limit(limit)
        ).all()
        return [
            FailedEvent(
                e.id,
                e.platform,
                e.event_key,
                e.kind,
                e.learner,
                e.attempts,
                e.last_error or "",
                e.received_at,
            )
            for e in rows
        ]


def retry_failed(database: Database, ids: list[int] | None = None) -> int:
    """Put failed events (all, or those in ``ids``) back in the queue with a fresh attempt count."""
    statement = (
        update(Event)
        .where(Event.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=utcnow(), last_error=None)
    )
    if ids is not None:
        statement = statement.where(Event.id.in_(ids))
    with database.write() as session:
        return session.execute(statement).rowcount
