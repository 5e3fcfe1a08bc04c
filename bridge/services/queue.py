"""The inbox as a queue: depth and lag for health and metrics, and the failed events for operators.

Webhook follow-ups (reads a webhook implies, see services.sync_webhooks) are reported beside the events:
counted in the stats, listed among the failed with negative ids (``-7`` is follow-up 7), retried alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.db.models_webhooks import WebhookFollowUp


@dataclass(frozen=True)
class QueueStats:
    pending: int
    failed: int
    lag_seconds: float  # how long the oldest event that is due has been waiting; 0 when none is due
    follow_ups_pending: int = 0  # webhook follow-ups to be read (under way, or waiting to be retried)
    follow_ups_failed: int = 0  # webhook follow-ups parked as failed


def queue_stats(session: Session) -> QueueStats:
    now = utcnow()
    pending, oldest_due = session.execute(
        select(
            func.count(),
            func.min(Event.next_attempt_at).filter(Event.next_attempt_at <= now),
        ).where(Event.status == "pending")
    ).one()
    failed = session.scalar(select(func.count()).where(Event.status == "failed"))
    follow_ups = dict(
        session.execute(select(WebhookFollowUp.status, func.count()).group_by(WebhookFollowUp.status)).all()
    )
    lag = max((now - oldest_due).total_seconds(), 0.0) if oldest_due is not None else 0.0
    return QueueStats(
        pending=pending,
        failed=failed or 0,
        lag_seconds=lag,
        follow_ups_pending=follow_ups.get("pending", 0),
        follow_ups_failed=follow_ups.get("failed", 0),
    )


@dataclass(frozen=True)
class FailedEvent:
    id: int  # negative for a webhook follow-up
    platform: str
    event_key: str
    kind: str
    learner: str
    attempts: int
    last_error: str
    received_at: datetime
    source: str = "event"  # or "webhook_follow_up": a read a webhook implied (kind: the webhook's type)


def failed_events(database: Database, limit: int = 100) -> list[FailedEvent]:
    """Parked webhook follow-ups first (they are few, and stand for events not stored at all), then events."""
    with database.read() as session:
        follow_ups = session.scalars(
            select(WebhookFollowUp)
            .where(WebhookFollowUp.status == "failed")
            .order_by(WebhookFollowUp.id)
            .limit(limit)
        ).all()
        found = [
            FailedEvent(
                -f.id,
                f.platform,
                f"webhook_follow_up:{f.id}",
                f.webhook_type,
                "",
                f.attempts,
                f.last_error or "",
                f.received_at,
                source="webhook_follow_up",
            )
            for f in follow_ups
        ]
        rows = session.scalars(
            select(Event).where(Event.status == "failed").order_by(Event.id).limit(limit - len(found))
        ).all()
        return found + [
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
    """Put failed events and follow-ups (all, or those in ``ids``) back in the queue, attempts reset.

    A negative id names a webhook follow-up (as ``failed_events`` lists it).
    """
    now = utcnow()
    events = (
        update(Event)
        .where(Event.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None)
    )
    follow_ups = (
        update(WebhookFollowUp)
        .where(WebhookFollowUp.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None)
    )
    if ids is not None:
        events = events.where(Event.id.in_([i for i in ids if i > 0]))
        follow_ups = follow_ups.where(WebhookFollowUp.id.in_([-i for i in ids if i < 0]))
    with database.write() as session:
        return session.execute(events).rowcount + session.execute(follow_ups).rowcount


_ID_MAX = 2**63 - 1  # ids are 64-bit in both databases; a larger one names nothing


@dataclass(frozen=True)
class RetryOutcome:
    queued: list[int]  # the ids put back in the queue, as named
    refused: list[tuple[int, str]]  # (id, why not): "done", "pending" (queued, not failed) or "unknown"


def retry_named(database: Database, ids: list[int]) -> RetryOutcome:
    """Put the failed ones among ``ids`` back in the queue (as ``retry_failed``), and say why each other
    id was not: its event is done or still pending, or there is no such event or follow-up."""
    named = [i for i in dict.fromkeys(ids) if 0 < abs(i) <= _ID_MAX]
    event_ids = [i for i in named if i > 0]
    follow_up_ids = [-i for i in named if i < 0]
    now = utcnow()
    again = {"status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": None}
    with database.write() as session:
        queued = set(
            session.scalars(
                update(Event)
                .where(Event.status == "failed", Event.id.in_(event_ids))
                .values(**again)
                .returning(Event.id)
            )
        )
        queued.update(
            -i
            for i in session.scalars(
                update(WebhookFollowUp)
                .where(WebhookFollowUp.status == "failed", WebhookFollowUp.id.in_(follow_up_ids))
                .values(**again)
                .returning(WebhookFollowUp.id)
            )
        )
        status = dict(session.execute(select(Event.id, Event.status).where(Event.id.in_(event_ids))).all())
        status.update(
            (-i, state)
            for i, state in session.execute(
                select(WebhookFollowUp.id, WebhookFollowUp.status).where(
                    WebhookFollowUp.id.in_(follow_up_ids)
                )
            )
        )
    refused = [(i, status.get(i, "unknown")) for i in dict.fromkeys(ids) if i not in queued]
    return RetryOutcome([i for i in named if i in queued], refused)
