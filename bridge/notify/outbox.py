"""The outbox: which channels hear of what (routes), the rows written in the award's own transaction, and
what people and operators read of them (a learner's in-app list, the parked failures).

A row is written for every channel the settings route a kind to, in the transaction that makes the award
(so an award is never told twice nor lost, whatever crashes when); in-app rows are delivered by being
written. The sender (bridge.notify.sender) delivers the rest after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from bridge.notify.messages import LEARNER_KINDS, Kind
from bridge.services.paging import Keyset, Page, page_of, paged
from bridge.settings import Settings

Route = tuple[str, str | None]  # (channel, target): a webhook's name; None: resolved when delivered
AwardToTell = tuple[int, int, tuple[str, ...] | None]  # award id, learner id, its badge's own channels
_COLUMNS = (
    "kind", "channel", "target", "award_id", "learner_id", "payload", "status", "attempts",
    "next_attempt_at", "created_at", "sent_at",
)  # fmt: skip


def routes(settings: Settings, kind: Kind, channels: Sequence[str] | None = None) -> list[Route]:
    """Where ``kind`` goes. Learners hear of their awards by ``channels`` (a badge template's own
    ``notification_type``) or the setting's, leaving out a channel the settings do not configure; xAPI
    records the earning alone. The alerts (a badge waiting for approval, a failed sync) go to the
    administrators' address when ``notifications.email.admin_address`` is set, and to each webhook that
    subscribed to them."""
    notifications = settings.notifications
    configured = {
        "in-app": True,
        "email": notifications.email is not None,
        "xapi": notifications.xapi is not None,
    }
    found: list[Route] = []
    for channel in settings.notification_type if channels is None else channels:
        if channel == "webhook":
            found += [("webhook", hook.name) for hook in notifications.webhooks if kind in hook.events]
        elif kind in LEARNER_KINDS and configured[channel] and (channel != "xapi" or kind == "award.made"):
            found.append((channel, None))
    if kind not in LEARNER_KINDS and notifications.email is not None and notifications.email.admin_address:
        found.append(("email", None))  # the renderer addresses it to admin_address
    return found


class OutboxWriter:
    """The outbox rows of a batch's awards and approval requests, on the driver's cursor with the batch's
    other rows. ``award_routes`` gives the routes of a badge's awards from its own channels (or None)."""

    def __init__(
        self,
        driver: Driver,
        award_routes: Callable[[tuple[str, ...] | None], Sequence[Route]],
        approval_routes: Sequence[Route] = (),
    ) -> None:
        self._driver = driver
        self._routes = award_routes
        self._approval_routes = list(approval_routes)
        marks = [driver.json_mark if column == "payload" else driver.mark for column in _COLUMNS]
        self._insert = f"INSERT INTO notifications ({', '.join(_COLUMNS)}) VALUES ({', '.join(marks)})"

    def awards_made(self, session: Session, made: Sequence[AwardToTell], now: datetime) -> None:
        """Rows for each award made, one per route of its badge."""
        if not made:
            return
        at, empty = self._driver.time(now), self._driver.json({})
        rows = [
            (
                "award.made", channel, target, award_id, learner_id, empty,
                # In-app: delivered by being written (the learner's pages read it).
                "sent" if channel == "in-app" else "pending", 0, at, at, at if channel == "in-app" else None,
            )
            for award_id, learner_id, channels in made
            for channel, target in self._routes(channels)
        ]  # fmt: skip
        if rows:
            self._driver.execute_many(session, self._insert, rows)

    def approvals_requested(
        self, session: Session, requested: Sequence[tuple[int, int]], now: datetime
    ) -> None:
        """Alert rows for each (approval id, learner id); the renderer adds the badge and the learner."""
        if not self._approval_routes or not requested:
            return
        at = self._driver.time(now)
        rows = [
            (
                "approval.requested", channel, target, None, learner_id,
                self._driver.json({"approval": {"id": approval_id}}), "pending", 0, at, at, None,
            )
            for approval_id, learner_id in requested
            for channel, target in self._approval_routes
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
    return in_app_page(database, learner_id, unseen_only=unseen_only, keyset=Keyset(limit)).rows


def in_app_page(
    database: Database, learner_id: int, *, unseen_only: bool, keyset: Keyset
) -> Page[InAppNotification]:
    """A page of a learner's in-app notifications, latest first unless ``keyset`` says otherwise."""
    query = (
        select(OutboxNotification, Award.badge_id, Badge.name, Award.tier)
        .outerjoin(Award, Award.id == OutboxNotification.award_id)
        .outerjoin(Badge, Badge.id == Award.badge_id)
        .where(OutboxNotification.learner_id == learner_id, OutboxNotification.channel == "in-app")
    )
    if unseen_only:
        query = query.where(OutboxNotification.seen_at.is_(None))
    with database.read() as session:
        rows = [
            InAppNotification(
                row.id, row.kind, row.award_id, badge_id, name, tier, row.created_at, row.seen_at is not None
            )
            for row, badge_id, name, tier in session.execute(paged(query, OutboxNotification.id, keyset))
        ]
    return page_of(rows, keyset, lambda n: n.id)


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
