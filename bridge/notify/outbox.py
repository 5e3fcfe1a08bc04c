"""The outbox: which channels hear of what (routes), the rows written in the award's own transaction, and
what people and operators read of them (a learner's in-app list, the parked failures).

A row is written for every channel the settings route a kind to, in the transaction that makes the award
(so an award is never told twice nor lost, whatever crashes when); in-app rows are delivered by being
written. The sender (bridge.notify.sender) delivers the rest after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.driver import Driver
from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Learner
from bridge.db.models_notify import OutboxNotification
from bridge.notify.messages import Kind
from bridge.settings import Settings

Route = tuple[str, str | None]  # (channel, target): a webhook's name; None: resolved when delivered
_COLUMNS = (
    "kind", "channel", "target", "award_id", "learner_id", "payload", "status", "attempts",
    "next_attempt_at", "created_at", "sent_at",
)  # fmt: skip


def routes(settings: Settings, kind: Kind) -> list[Route]:
    """The channels ``kind`` goes to: ``notification_type``'s, a webhook for each endpoint that wants it."""
    found: list[Route] = []
    for channel in settings.notification_type:
        if channel == "webhook":
            found += [
                ("webhook", hook.name) for hook in settings.notifications.webhooks if kind in hook.events
            ]
        elif channel == "in-app" and kind not in ("award.made", "award.revoked"):
            continue  # learners' own list: what happened to their badges
        else:
            found.append((channel, None))
    return found


class OutboxWriter:
    """The outbox rows of a batch's awards, on the driver's cursor with the batch's other rows."""

    def __init__(self, driver: Driver, award_routes: Sequence[Route]) -> None:
        self._driver = driver
        self._routes = list(award_routes)
        marks = [driver.json_mark if column == "payload" else driver.mark for column in _COLUMNS]
        self._insert = f"INSERT INTO notifications ({', '.join(_COLUMNS)}) VALUES ({', '.join(marks)})"

    def awards_made(self, session: Session, made: Sequence[tuple[int, int]], now: datetime) -> None:
        """Rows for each (award id, learner id) made, one per route."""
        if not self._routes or not made:
            return
        at, empty = self._driver.time(now), self._driver.json({})
        rows = [
            (
                "award.made", channel, target, award_id, learner_id, empty,
                # In-app: delivered by being written (the learner's pages read it).
                "sent" if channel == "in-app" else "pending", 0, at, at, at if channel == "in-app" else None,
            )
            for award_id, learner_id in made
            for channel, target in self._routes
        ]  # fmt: skip
        self._driver.execute_many(session, self._insert, rows)


def add_notifications(
    session: Session,
    kind: Kind,
    to: Sequence[Route],
    *,
    award_id: int | None = None,
    learner_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Outbox rows written in the caller's transaction (a revocation, an approval request, a failed sync)."""
    now = utcnow()
    for channel, target in to:
        in_app = channel == "in-app"
        session.add(
            OutboxNotification(
                kind=kind,
                channel=channel,
                target=target,
                award_id=award_id,
                learner_id=learner_id,
                payload=payload or {},
                status="sent" if in_app else "pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                sent_at=now if in_app else None,
            )
        )


@dataclass(frozen=True, slots=True)
class InAppNotification:
    id: int
    kind: str
    award_id: int | None
    badge_id: str | None
    badge_name: str | None
    tier: str | None
    created_at: datetime
    seen: bool


def in_app(database: Database, learner_id: int, *, unseen_only: bool, limit: int) -> list[InAppNotification]:
    """A learner's in-app notifications, latest first."""
    query = (
        select(OutboxNotification, Award.badge_id, Badge.name, Award.tier)
        .outerjoin(Award, Award.id == OutboxNotification.award_id)
        .outerjoin(Badge, Badge.id == Award.badge_id)
        .where(OutboxNotification.learner_id == learner_id, OutboxNotification.channel == "in-app")
        .order_by(OutboxNotification.id.desc())
        .limit(limit)
    )
    if unseen_only:
        query = query.where(OutboxNotification.seen_at.is_(None))
    with database.read() as session:
        return [
            InAppNotification(
                row.id, row.kind, row.award_id, badge_id, name, tier, row.created_at, row.seen_at is not None
            )
            for row, badge_id, name, tier in session.execute(query)
        ]


def mark_seen(database: Database, learner_id: int, ids: Sequence[int] | None) -> int:
    """Mark the learner's in-app notifications seen (``ids``, or all of them); returns how many changed."""
    statement = update(OutboxNotification).where(
        OutboxNotification.learner_id == learner_id,
        OutboxNotification.channel == "in-app",
        OutboxNotification.seen_at.is_(None),
    )
    if ids is not None:
        statement = statement.where(OutboxNotification.id.in_(list(ids)))
    with database.write() as session:
        return session.execute(statement.values(seen_at=utcnow())).rowcount or 0


def learner_id_of(database: Database, platform: str, lms_user_id: str) -> int | None:
    with database.read() as session:
        return session.scalar(
            select(Learner.id).where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
        )


@dataclass(frozen=True, slots=True)
class ParkedNotification:
    id: int
    kind: str
    channel: str
    target: str | None
    award_id: int | None
    attempts: int
    last_error: str | None
    created_at: datetime


def parked(database: Database) -> list[ParkedNotification]:
    with database.read() as session:
        rows = session.scalars(
            select(OutboxNotification)
            .where(OutboxNotification.status == "failed")
            .order_by(OutboxNotification.id)
        )
        return [
            ParkedNotification(
                r.id, r.kind, r.channel, r.target, r.award_id, r.attempts, r.last_error, r.created_at
            )
            for r in rows
        ]


def retry_parked(database: Database, ids: Sequence[int] | None = None) -> int:
    """Queue parked notifications again (``ids``, or every one), their attempts counted from zero."""
    statement = update(OutboxNotification).where(OutboxNotification.status == "failed")
    if ids is not None:
        statement = statement.where(OutboxNotification.id.in_(list(ids)))
    with database.write() as session:
        values = {"status": "pending", "attempts": 0, "next_attempt_at": utcnow(), "leased_until": None}
        return session.execute(statement.values(**values)).rowcount or 0


def pending_count(database: Database) -> int:
    with database.read() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(OutboxNotification)
                .where(OutboxNotification.status == "pending")
            )
            or 0
        )
